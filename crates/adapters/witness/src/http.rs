//! [`HttpWitness`]: the client side of the HTTP witness protocol (`PROTOCOL.md`).

use crate::error::{Error, Result};
use crate::token::{BearerToken, LeaseName};
use async_trait::async_trait;
use reqwest::header::{self, HeaderValue};
use reqwest::{Client, StatusCode, Url};
use sre_core::PortError;
use sre_core::ports::{CasOutcome, LeaseParseError, LeaseRecord, Revision, Witness, WitnessRead};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

const BACKEND: &str = "http-witness";

/// How much of an error body goes into a `PortError` message: enough to read the
/// server's reason, bounded so that a misbehaving server cannot flood the logs.
const ERROR_BODY_CHARS: usize = 200;

/// The [`Witness`] port on one lease of a server that speaks the HTTP witness protocol.
///
/// Every call is one request with a total timeout, so the failover loop never waits on
/// the witness longer than it budgeted for. Redirects are not followed: a redirect would
/// carry the bearer token to another host, and a CAS has no business moving.
#[derive(Clone)]
pub struct HttpWitness {
    client: Client,
    url: Url,
    name: LeaseName,
    auth: HeaderValue,
}

impl fmt::Debug for HttpWitness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written by hand so that the token can never end up in a log line.
        f.debug_struct("HttpWitness")
            .field("url", &self.url.as_str())
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl HttpWitness {
    /// A sensible per-request budget: well under the 10 s renew interval, so that one
    /// slow witness call does not cost a renewal.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

    /// The lease `name` at the witness server `endpoint` (a base URL; the protocol paths
    /// go below it). `https` is required except on loopback, because the bearer token
    /// travels in every request.
    pub fn new(
        endpoint: &str,
        name: LeaseName,
        token: &BearerToken,
        timeout: Duration,
    ) -> Result<Self> {
        let url = lease_url(endpoint, &name)?;
        if timeout.is_zero() {
            return Err(Error::InvalidTimeout);
        }
        let mut auth =
            HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                Error::InvalidToken {
                    reason: "not a valid header value",
                }
            })?;
        auth.set_sensitive(true);
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| Error::Client { source })?;
        Ok(Self {
            client,
            url,
            name,
            auth,
        })
    }

    /// The full URL of the lease resource.
    #[must_use]
    pub fn url(&self) -> &Url {
        &self.url
    }
}

fn lease_url(endpoint: &str, name: &LeaseName) -> Result<Url> {
    let bad = |reason| Error::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let base = Url::parse(endpoint).map_err(|_| bad("not an absolute URL"))?;
    if !base.username().is_empty() || base.password().is_some() {
        return Err(bad("credentials belong in the bearer token, not the URL"));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(bad("no query or fragment allowed"));
    }
    match base.scheme() {
        "https" => {}
        "http" if is_loopback(base.host_str().unwrap_or_default()) => {}
        "http" => return Err(bad("plain http is only allowed on loopback")),
        _ => return Err(bad("scheme must be https (or http on loopback)")),
    }
    let joined = format!(
        "{}/v1/leases/{}",
        base.as_str().trim_end_matches('/'),
        name.as_str()
    );
    Url::parse(&joined).map_err(|_| bad("cannot append the lease path"))
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Connection failures, timeouts and broken bodies: the witness may work again later.
fn transport_error(e: &reqwest::Error) -> PortError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // `without_url` is not needed: the URL holds no secret (the token is a header).
    PortError::Unavailable {
        backend: BACKEND,
        message: format!("{what}: {e}"),
    }
}

/// Largest record body the client accepts. A lease record is a few hundred bytes; the
/// bound keeps a broken or hostile server from filling the controller's memory.
const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Reads at most `limit` bytes of the body (a little more: whole chunks); the flag says
/// whether the body was longer.
async fn read_bounded(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        buf.extend_from_slice(&chunk);
        if buf.len() > limit {
            return Ok((buf, true));
        }
    }
    Ok((buf, false))
}

/// Maps a status the protocol does not treat as an outcome to the port's error kinds.
async fn status_error(mut resp: reqwest::Response, lease: &LeaseName) -> PortError {
    let status = resp.status();
    // The reason is best effort: a body that fails to arrive leaves it empty.
    let body = read_bounded(&mut resp, 4 * ERROR_BODY_CHARS)
        .await
        .map(|(b, _)| b)
        .unwrap_or_default();
    let reason: String = String::from_utf8_lossy(&body)
        .trim()
        .chars()
        .take(ERROR_BODY_CHARS)
        .collect();
    let message = format!("{status} for lease {lease}: {reason}");
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => PortError::Rejected {
            backend: BACKEND,
            message,
        },
        // The server is overloaded or broken: the same request may work later.
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => PortError::Unavailable {
            backend: BACKEND,
            message,
        },
        // 400 invalid record, 409 generation rule, 413 too large: our request was wrong
        // and repeating it will not help.
        StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::PAYLOAD_TOO_LARGE => {
            PortError::Invalid(message)
        }
        _ => PortError::Rejected {
            backend: BACKEND,
            message,
        },
    }
}

fn etag(resp: &reqwest::Response, lease: &LeaseName) -> Result<Revision, PortError> {
    resp.headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(|v| Revision(v.to_owned()))
        .ok_or_else(|| PortError::Malformed {
            backend: BACKEND,
            what: lease.to_string(),
            message: format!("{} without an ETag", resp.status()),
        })
}

#[async_trait]
impl Witness for HttpWitness {
    #[tracing::instrument(skip_all, fields(lease = %self.name))]
    async fn read(&self) -> Result<WitnessRead, PortError> {
        let resp = self
            .client
            .get(self.url.clone())
            .header(header::AUTHORIZATION, self.auth.clone())
            .header(header::CACHE_CONTROL, "no-cache")
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(WitnessRead::Absent),
            StatusCode::OK => {
                let mut resp = resp;
                let revision = etag(&resp, &self.name)?;
                let (body, too_long) = read_bounded(&mut resp, MAX_RECORD_BYTES)
                    .await
                    .map_err(|e| transport_error(&e))?;
                let parsed = if too_long {
                    Err(LeaseParseError(format!(
                        "record larger than {MAX_RECORD_BYTES} bytes"
                    )))
                } else {
                    LeaseRecord::from_bytes(&body)
                };
                Ok(match parsed {
                    Ok(record) => WitnessRead::Present { record, revision },
                    Err(error) => {
                        // Garbage must never read as "no lease": failover holds on Malformed.
                        tracing::warn!(%error, "witness record does not parse");
                        WitnessRead::Malformed { revision, error }
                    }
                })
            }
            _ => Err(status_error(resp, &self.name).await),
        }
    }

    #[tracing::instrument(skip_all, fields(
        lease = %self.name,
        region = %record.holder,
        lease_epoch = %record.generation,
    ))]
    async fn compare_and_swap(
        &self,
        expected: Option<&Revision>,
        record: &LeaseRecord,
    ) -> Result<CasOutcome, PortError> {
        let (name, value) = match expected {
            None => (header::IF_NONE_MATCH, HeaderValue::from_static("*")),
            Some(rev) => (
                header::IF_MATCH,
                HeaderValue::from_str(&rev.0).map_err(|_| {
                    PortError::Invalid(format!("revision {:?} is not a header value", rev.0))
                })?,
            ),
        };
        let resp = self
            .client
            .put(self.url.clone())
            .header(header::AUTHORIZATION, self.auth.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(name, value)
            .body(record.to_bytes())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        match resp.status() {
            StatusCode::OK | StatusCode::CREATED | StatusCode::NO_CONTENT => {
                Ok(CasOutcome::Swapped(etag(&resp, &self.name)?))
            }
            // Somebody else wrote first: an expected outcome, not an error.
            StatusCode::PRECONDITION_FAILED => Ok(CasOutcome::Conflict),
            _ => Err(status_error(resp, &self.name).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(endpoint: &str) -> Result<String> {
        let name = LeaseName::new("failover")?;
        lease_url(endpoint, &name).map(String::from)
    }

    #[test]
    fn endpoints() {
        let ok = |e: &str, want: &str| assert_eq!(url(e).expect(e), want, "{e}");
        ok(
            "https://witness.example",
            "https://witness.example/v1/leases/failover",
        );
        ok(
            "https://witness.example/base/",
            "https://witness.example/base/v1/leases/failover",
        );
        ok(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/v1/leases/failover",
        );
        ok("http://[::1]:8080/", "http://[::1]:8080/v1/leases/failover");
        ok(
            "http://localhost:9",
            "http://localhost:9/v1/leases/failover",
        );
        for bad in [
            "witness.example",
            "http://witness.example",
            "http://10.0.0.1",
            "ftp://witness.example",
            "https://user:pw@witness.example",
            "https://witness.example/?x=1",
            "https://witness.example/#frag",
        ] {
            assert!(
                matches!(url(bad), Err(Error::InvalidEndpoint { .. })),
                "{bad} must be rejected"
            );
        }
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let token = BearerToken::new("t").expect("valid token");
        let name = LeaseName::new("l").expect("valid name");
        assert!(matches!(
            HttpWitness::new("http://127.0.0.1:1", name, &token, Duration::ZERO),
            Err(Error::InvalidTimeout)
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let token = BearerToken::new("hunter2").expect("valid token");
        let name = LeaseName::new("l").expect("valid name");
        let w = HttpWitness::new("http://127.0.0.1:1", name, &token, Duration::from_secs(1))
            .expect("valid witness");
        let shown = format!("{w:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }
}
