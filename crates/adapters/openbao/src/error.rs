//! Construction errors of this crate, and the mapping of `vaultrs` failures onto
//! [`PortError`] by what the caller should do next.

use rustify::errors::ClientError as HttpError;
use sre_core::PortError;
use vaultrs::error::ClientError;

pub(crate) const BACKEND: &str = "openbao";

/// Why a [`BaoSecretStore`](crate::BaoSecretStore) could not be built. Port calls return
/// [`PortError`] instead; this is only about wiring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address is not an `http` or `https` URL.
    #[error("invalid openbao address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as configured.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be set up (unreadable CA file, TLS setup).
    #[error("cannot build the openbao client")]
    Client {
        /// What vaultrs reported.
        #[source]
        source: ClientError,
    },
}

impl Error {
    /// A stable label for metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidAddress { .. } => "invalid_address",
            Self::Client { .. } => "client",
        }
    }
}

/// What a failed call was, before deciding what it means for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server answered with this status (and these error strings, if any).
    Status { code: u16, errors: Vec<String> },
    /// No usable answer: connection refused, timeout, broken response.
    Transport(String),
    /// The answer arrived but did not have the expected shape.
    Malformed(String),
    /// The request could not be built from our arguments.
    Invalid(String),
}

impl Failure {
    pub(crate) fn from_client(err: &ClientError) -> Self {
        match err {
            ClientError::APIError { code, errors } => Self::Status {
                code: *code,
                errors: errors.clone(),
            },
            ClientError::RestClientError { source } => match source {
                HttpError::ServerResponseError { code, .. } => Self::Status {
                    code: *code,
                    errors: Vec::new(),
                },
                HttpError::RequestError { source, .. } | HttpError::ResponseError { source } => {
                    Self::Transport(format!("{source:#}"))
                }
                HttpError::ResponseParseError { source, .. }
                | HttpError::ResponseConversionError { source, .. } => {
                    Self::Malformed(format!("{source:#}"))
                }
                other => Self::Invalid(other.to_string()),
            },
            ClientError::JsonParseError { source } => Self::Malformed(source.to_string()),
            ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
                Self::Malformed(err.to_string())
            }
            other => Self::Invalid(other.to_string()),
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { code: 404, .. })
    }

    /// KV v2 answers a check-and-set mismatch with 400 and this message.
    pub(crate) fn is_cas_mismatch(&self) -> bool {
        matches!(self, Self::Status { code: 400, errors } if errors.iter().any(|e| e.contains("check-and-set")))
    }

    pub(crate) fn into_port(self, what: &str) -> PortError {
        match self {
            Self::Status { code, errors } => {
                let message = if errors.is_empty() {
                    format!("status {code}")
                } else {
                    format!("status {code}: {}", errors.join("; "))
                };
                match code {
                    // 503: sealed or standby without forwarding; 429: rate limited; 5xx: server trouble.
                    429 | 500..=599 => PortError::Unavailable {
                        backend: BACKEND,
                        message,
                    },
                    404 => PortError::NotFound {
                        what: what.to_owned(),
                    },
                    // 401/403: bad or expired token, policy; 400: the request itself.
                    _ => PortError::Rejected {
                        backend: BACKEND,
                        message,
                    },
                }
            }
            Self::Transport(message) => PortError::Unavailable {
                backend: BACKEND,
                message,
            },
            Self::Malformed(message) => PortError::Malformed {
                backend: BACKEND,
                what: what.to_owned(),
                message,
            },
            Self::Invalid(message) => PortError::Invalid(format!("{what}: {message}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: Failure, expect: &str) {
        let got = f.into_port("p");
        let label = match got {
            PortError::Unavailable { .. } => "unavailable",
            PortError::Rejected { .. } => "rejected",
            PortError::NotFound { .. } => "not_found",
            PortError::Malformed { .. } => "malformed",
            PortError::Invalid(_) => "invalid",
            _ => "other",
        };
        assert_eq!(label, expect, "{got:?}");
    }

    #[test]
    fn statuses_map_by_what_the_caller_should_do() {
        let st = |code| Failure::Status {
            code,
            errors: vec!["x".into()],
        };
        check(st(503), "unavailable");
        check(st(500), "unavailable");
        check(st(429), "unavailable");
        check(st(403), "rejected");
        check(st(401), "rejected");
        check(st(400), "rejected");
        check(st(404), "not_found");
        check(Failure::Transport("refused".into()), "unavailable");
        check(Failure::Malformed("bad json".into()), "malformed");
    }

    #[test]
    fn only_the_cas_message_is_a_cas_mismatch() {
        let cas = Failure::Status {
            code: 400,
            errors: vec!["check-and-set parameter did not match the current version".into()],
        };
        assert!(cas.is_cas_mismatch());
        assert!(
            !Failure::Status {
                code: 400,
                errors: vec!["invalid path".into()]
            }
            .is_cas_mismatch()
        );
        assert!(
            !Failure::Status {
                code: 403,
                errors: vec!["check-and-set".into()]
            }
            .is_cas_mismatch()
        );
    }
}
