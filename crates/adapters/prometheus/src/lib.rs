//! Prometheus adapter: the `sre-remediation`
//! [`MetricsQuery`](sre_remediation::ports::MetricsQuery) port over the Prometheus HTTP API
//! (`GET /api/v1/query`), through `reqwest`.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod parse;

use async_trait::async_trait;
use parse::BACKEND;
use sre_core::PortError;
use sre_remediation::ports::{MetricsQuery, QueryValue};
use std::time::Duration;
use thiserror::Error;
use url::Url;

/// Why a [`PrometheusClient`] could not be built; raised at startup, before any query.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL does not parse or is not `http(s)://host[:port][/prefix]`.
    #[error("bad prometheus url {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Default per-query time limit: verification loops retry, so one slow answer should not
/// hold a loop for longer than a poll interval or so.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read: a verify query returns a handful of series; a runaway selector
/// must not make the webhook buffer gigabytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Instant queries against one Prometheus server (or anything speaking its HTTP API:
/// Thanos Query, Mimir, `VictoriaMetrics`).
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    query_url: Url,
    max_body_bytes: usize,
}

impl PrometheusClient {
    /// A client for the server at `base_url` (`http://prometheus:9090`, optionally with a
    /// path prefix such as `/prometheus`), with a per-query `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut url = Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not carry a query or fragment"));
        }
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}/api/v1/query"));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(Error::Client)?;
        Ok(Self {
            http,
            query_url: url,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        })
    }

    /// The same client with another answer size limit.
    #[must_use]
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The query endpoint, for logs.
    #[must_use]
    pub fn query_url(&self) -> &str {
        self.query_url.as_str()
    }
}

fn transport(e: &reqwest::Error) -> PortError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    // `{e:#}`-style chains are not available on reqwest errors; the source says why.
    let source = std::error::Error::source(e).map(ToString::to_string);
    PortError::Unavailable {
        backend: BACKEND,
        message: match source {
            Some(s) => format!("{what}: {e}: {s}"),
            None => format!("{what}: {e}"),
        },
    }
}

#[async_trait]
impl MetricsQuery for PrometheusClient {
    #[tracing::instrument(level = "debug", skip(self), fields(url = %self.query_url))]
    async fn instant(&self, promql: &str) -> Result<QueryValue, PortError> {
        let mut url = self.query_url.clone();
        url.query_pairs_mut().append_pair("query", promql);
        let mut resp = self.http.get(url).send().await.map_err(|e| transport(&e))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&e))? {
            if body.len().saturating_add(chunk.len()) > self.max_body_bytes {
                return Err(PortError::Malformed {
                    backend: BACKEND,
                    what: promql.to_owned(),
                    message: format!("answer larger than {} bytes", self.max_body_bytes),
                });
            }
            body.extend_from_slice(&chunk);
        }
        parse::response(status, &body, promql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_prefixes_kept() {
        let url = |base: &str| {
            PrometheusClient::new(base, DEFAULT_TIMEOUT).map(|c| c.query_url().to_owned())
        };
        assert_eq!(
            url("http://127.0.0.1:9090").ok().as_deref(),
            Some("http://127.0.0.1:9090/api/v1/query")
        );
        assert_eq!(
            url("https://obs.example/prometheus/").ok().as_deref(),
            Some("https://obs.example/prometheus/api/v1/query")
        );
        for bad in [
            "",
            "127.0.0.1:9090",
            "ftp://x",
            "http://x/?a=b",
            "http://x/#f",
        ] {
            assert!(
                matches!(url(bad), Err(Error::BadUrl { .. })),
                "{bad:?} accepted"
            );
        }
    }
}
