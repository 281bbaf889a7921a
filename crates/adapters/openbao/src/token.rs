//! [`GeneratedTokenTarget`]: API tokens and OAuth client secrets (class `api_token`)
//! generated here from OS randomness. The rotation stores each token as a new KV v2
//! version at the secret's path (`run::step` writes what `issue` returns), and that KV
//! version is the only place the token lives: consumers read it through ESO, and an
//! issuer that validates it reads the same path.
//!
//! - issue: `length` random bytes from the OS (`getrandom`), encoded as configured;
//!   KV field `token`.
//! - install: nothing to do. No issuer API is called (there is no generic "set the
//!   client secret" call to make); the new KV version *is* the installation.
//! - verify: with `verify_url`, a real `GET` with `Authorization: Bearer <token>`: 2xx
//!   accepts, 401/403 refuses, anything else is a retryable error. This only proves
//!   something when the endpoint's side reads the token from the same KV path. Without
//!   a URL the check is structural (length and alphabet), which proves the stored value
//!   is one this target made, not that any service accepts it.
//! - revoke: nothing to do; the retired KV version is destroyed by the state machine,
//!   and an issuer that reads the KV stops accepting it from then on.

use async_trait::async_trait;
use sre_core::PortError;
use sre_core::ports::SecretData;
use sre_rotation::config::{TargetSpec, TokenEncoding};
use sre_rotation::{CredentialTarget, Verification};
use std::fmt;
use std::time::Duration;

const FIELD: &str = "token";

/// A generated bearer token as a rotation target.
pub struct GeneratedTokenTarget {
    length: usize,
    encoding: TokenEncoding,
    verify_url: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for GeneratedTokenTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedTokenTarget")
            .field("length", &self.length)
            .field("encoding", &self.encoding)
            .field("verify_url", &self.verify_url)
            .finish_non_exhaustive()
    }
}

fn unavailable(backend: &'static str, message: impl Into<String>) -> PortError {
    PortError::Unavailable {
        backend,
        message: message.into(),
    }
}

impl GeneratedTokenTarget {
    /// Tokens of `length` random bytes written as `encoding`, checked against
    /// `verify_url` when one is given (10 s timeout, so a hung endpoint fails the step
    /// and it is retried instead of holding the controller).
    pub fn new(
        length: usize,
        encoding: TokenEncoding,
        verify_url: Option<String>,
    ) -> Result<Self, crate::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| crate::Error::InvalidAddress {
                address: verify_url.clone().unwrap_or_default(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            length,
            encoding,
            verify_url,
            http,
        })
    }

    /// Builds the target a `generated` section names; `None` for another kind.
    pub fn from_spec(spec: &TargetSpec) -> Result<Option<Self>, crate::Error> {
        match spec {
            TargetSpec::Generated {
                length,
                encoding,
                verify_url,
            } => Self::new(*length, *encoding, verify_url.clone()).map(Some),
            _ => Ok(None),
        }
    }

    fn token(credential: &SecretData) -> Result<&str, PortError> {
        credential
            .get(FIELD)
            .ok_or_else(|| PortError::Invalid(format!("credential without {FIELD}")))
    }
}

#[async_trait]
impl CredentialTarget for GeneratedTokenTarget {
    /// A fresh token each call: a repeat after a crash just makes another one, and the
    /// one never stored is never used.
    async fn issue(&self) -> Result<SecretData, PortError> {
        let mut bytes = vec![0u8; self.length];
        getrandom::fill(&mut bytes).map_err(|e| unavailable("os-random", e.to_string()))?;
        let token = self.encoding.encode(&bytes);
        bytes.fill(0);
        Ok(SecretData::from_pairs([(FIELD, token)]))
    }

    /// Nothing to set: the KV version the state machine wrote is where the token lives.
    async fn install(&self, credential: &SecretData) -> Result<(), PortError> {
        Self::token(credential).map(|_| ())
    }

    async fn verify(&self, credential: &SecretData) -> Result<Verification, PortError> {
        let token = Self::token(credential)?;
        if !self.encoding.is_well_formed(token, self.length) {
            return Ok(Verification::Refused {
                reason: format!(
                    "the stored token is not {} random bytes in {}",
                    self.length,
                    self.encoding.as_str()
                ),
            });
        }
        let Some(url) = &self.verify_url else {
            return Ok(Verification::Accepted);
        };
        let answer = self
            .http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| unavailable(BACKEND_HTTP, format!("{url}: {e}")))?;
        let status = answer.status();
        if status.is_success() {
            Ok(Verification::Accepted)
        } else if matches!(status.as_u16(), 401 | 403) {
            Ok(Verification::Refused {
                reason: format!("{url} answered {status}"),
            })
        } else {
            Err(unavailable(
                BACKEND_HTTP,
                format!("{url} answered {status}"),
            ))
        }
    }

    /// Nothing to do at an issuer; the state machine destroys the retired KV version.
    async fn revoke(&self, _credential: &SecretData) -> Result<(), PortError> {
        Ok(())
    }
}

/// The backend named in errors of the token check (it is not OpenBao).
const BACKEND_HTTP: &str = "token-verify-endpoint";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_are_random_well_formed_and_checked_structurally() {
        for encoding in [TokenEncoding::Base64Url, TokenEncoding::Hex] {
            let t = GeneratedTokenTarget::new(32, encoding, None).unwrap_or_else(|e| panic!("{e}"));
            let a = t.issue().await.unwrap_or_else(|e| panic!("{e}"));
            let b = t.issue().await.unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(a, b, "two issues give two tokens");
            assert_eq!(a.get("token").map(str::len), Some(encoding.encoded_len(32)));
            assert_eq!(t.install(&a).await, Ok(()));
            assert_eq!(t.verify(&a).await, Ok(Verification::Accepted));
            let short = SecretData::from_pairs([("token", "abc")]);
            assert!(matches!(
                t.verify(&short).await,
                Ok(Verification::Refused { .. })
            ));
            assert!(matches!(
                t.verify(&SecretData::default()).await,
                Err(PortError::Invalid(_))
            ));
            assert_eq!(t.revoke(&a).await, Ok(()));
        }
    }

    /// Serves `answers` HTTP requests on a plain thread: 200 when the bearer token is
    /// `good`, else 401; `/broken` answers 500.
    fn endpoint(good: String, answers: usize) -> String {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        std::thread::spawn(move || {
            for _ in 0..answers {
                let Ok((mut s, _)) = l.accept() else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let status = if req.starts_with("get /broken") {
                    "500 Internal Server Error"
                } else if req.contains(&format!("authorization: bearer {}", good.to_lowercase())) {
                    "200 OK"
                } else {
                    "401 Unauthorized"
                };
                let _ = s.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_verify_url_accepts_the_token_it_knows_and_refuses_others() {
        let plain = GeneratedTokenTarget::new(16, TokenEncoding::Hex, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let good = plain.issue().await.unwrap_or_else(|e| panic!("{e}"));
        let other = plain.issue().await.unwrap_or_else(|e| panic!("{e}"));
        let base = endpoint(good.get("token").unwrap_or_default().to_owned(), 3);
        let t = GeneratedTokenTarget::new(16, TokenEncoding::Hex, Some(format!("{base}/whoami")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.verify(&good).await, Ok(Verification::Accepted));
        assert!(
            matches!(t.verify(&other).await, Ok(Verification::Refused { reason }) if reason.contains("401"))
        );
        let broken =
            GeneratedTokenTarget::new(16, TokenEncoding::Hex, Some(format!("{base}/broken")))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            broken.verify(&good).await,
            Err(PortError::Unavailable { .. })
        ));
    }
}
