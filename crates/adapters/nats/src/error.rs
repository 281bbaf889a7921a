//! What can go wrong talking to NATS and JetStream, and how each failure maps onto
//! [`PortError`] by what the caller should do next (retry, fix config, give up).

use sre_core::PortError;

pub(crate) const BACKEND: &str = "nats";

/// JetStream's `err_code` for "consumer not found".
pub const ERR_CONSUMER_NOT_FOUND: u32 = 10014;
/// JetStream's `err_code` for "stream not found".
pub const ERR_STREAM_NOT_FOUND: u32 = 10059;

/// A failed NATS or JetStream call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The address is not `host:port` or `nats://host:port`.
    #[error("invalid nats address {0:?}: expected host:port or nats://host:port")]
    InvalidAddress(String),
    /// The TCP connection failed or broke.
    #[error("nats connection to {address}: {source}")]
    Io {
        /// The server address.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time: no JetStream leader, an overloaded server, or nobody listening
    /// on the subject (this client sends no headers, so there is no "no responders").
    #[error("nats: no answer to {what} within {timeout_ms} ms")]
    Timeout {
        /// The request or step.
        what: String,
        /// The limit.
        timeout_ms: u128,
    },
    /// The server asked for TLS, which this client does not speak.
    #[error("nats server {0} requires TLS, which this client does not support")]
    TlsRequired(String),
    /// The server broke the protocol (or is no NATS server).
    #[error("nats protocol error: {0}")]
    Protocol(String),
    /// The server sent `-ERR` (authorization violation, maximum payload, ...).
    #[error("nats server error: {0}")]
    Server(String),
    /// A payload is larger than the server's `max_payload`.
    #[error("nats payload of {size} bytes exceeds the server's max_payload {max}")]
    TooLarge {
        /// The payload size.
        size: usize,
        /// The server's limit.
        max: usize,
    },
    /// A name or subject would not fit into one protocol line or subject token.
    #[error("invalid nats name or subject {0:?}")]
    InvalidName(String),
    /// The JetStream API answered with an error object.
    #[error("jetstream {subject}: {description} (code {code}, err_code {err_code})")]
    Api {
        /// The API subject called.
        subject: String,
        /// HTTP-like status (`404`, `400`, `503`, ...).
        code: u16,
        /// JetStream's own error code (`10014` consumer not found, ...).
        err_code: u32,
        /// What the server said.
        description: String,
    },
    /// The JetStream API answered with JSON we cannot read.
    #[error("jetstream {what}: malformed answer: {message}")]
    Malformed {
        /// The API call.
        what: String,
        /// The parse error.
        message: String,
    },
}

impl NatsError {
    /// True for a JetStream "not found" answer (stream or consumer).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { code: 404, .. })
            || matches!(
                self,
                Self::Api { err_code, .. } if *err_code == ERR_CONSUMER_NOT_FOUND || *err_code == ERR_STREAM_NOT_FOUND
            )
    }
}

impl From<NatsError> for PortError {
    fn from(e: NatsError) -> Self {
        match e {
            NatsError::Io { .. } | NatsError::Timeout { .. } => Self::Unavailable {
                backend: BACKEND,
                message: e.to_string(),
            },
            NatsError::Api {
                ref description, ..
            } if e.is_not_found() => Self::NotFound {
                what: description.clone(),
            },
            // 503: JetStream temporarily unavailable (no meta leader, no quorum).
            NatsError::Api { code, .. } if code == 503 || code >= 500 => Self::Unavailable {
                backend: BACKEND,
                message: e.to_string(),
            },
            NatsError::Api { .. } | NatsError::Server(_) | NatsError::TlsRequired(_) => {
                Self::Rejected {
                    backend: BACKEND,
                    message: e.to_string(),
                }
            }
            NatsError::Protocol(ref m) | NatsError::Malformed { message: ref m, .. } => {
                Self::Malformed {
                    backend: BACKEND,
                    what: "jetstream answer".into(),
                    message: m.clone(),
                }
            }
            NatsError::InvalidAddress(_)
            | NatsError::InvalidName(_)
            | NatsError::TooLarge { .. } => Self::Invalid(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, err_code: u32) -> NatsError {
        NatsError::Api {
            subject: "$JS.API.CONSUMER.INFO.S.C".into(),
            code,
            err_code,
            description: "consumer not found".into(),
        }
    }

    #[test]
    fn failures_map_by_what_the_caller_should_do() {
        assert!(matches!(
            PortError::from(api(404, ERR_CONSUMER_NOT_FOUND)),
            PortError::NotFound { .. }
        ));
        assert!(PortError::from(api(503, 10008)).is_retryable());
        assert!(matches!(
            PortError::from(api(400, 10012)),
            PortError::Rejected { .. }
        ));
        assert!(
            PortError::from(NatsError::Timeout {
                what: "x".into(),
                timeout_ms: 1
            })
            .is_retryable()
        );
        assert!(matches!(
            PortError::from(NatsError::InvalidName("a.b".into())),
            PortError::Invalid(_)
        ));
        assert!(matches!(
            PortError::from(NatsError::Server("Authorization Violation".into())),
            PortError::Rejected { .. }
        ));
    }
}
