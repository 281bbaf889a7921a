//! Mapping of SDK failures onto [`PortError`], by what the caller should do next.
//!
//! The SDK error types stay inside this crate: the domain only ever sees `PortError`.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use sre_core::PortError;

pub(crate) const BACKEND: &str = "s3";

/// The raw HTTP response type every SDK error carries.
type Raw = aws_sdk_s3::config::http::HttpResponse;

/// What a failed call looked like on the wire: enough to classify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// HTTP status, when a response arrived.
    pub(crate) status: Option<u16>,
    /// The S3 error code (`NoSuchKey`, `PreconditionFailed`, ...), when the body had one.
    pub(crate) code: Option<String>,
    /// What went wrong, with the SDK's error chain, never the request (it is signed).
    pub(crate) message: String,
    /// No response: the endpoint was unreachable or the call timed out.
    pub(crate) transport: bool,
    /// The request could not even be built (a bad key or argument).
    pub(crate) invalid: bool,
}

impl Failure {
    pub(crate) fn from_sdk<E>(err: &SdkError<E, Raw>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let message = DisplayErrorContext(err).to_string();
        let (transport, invalid) = match err {
            SdkError::TimeoutError(_) => (true, false),
            SdkError::DispatchFailure(d) => (!d.is_user(), d.is_user()),
            SdkError::ConstructionFailure(_) => (false, true),
            _ => (false, false),
        };
        Self {
            status,
            code,
            message,
            transport,
            invalid,
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        // NoSuchBucket is also a 404 but means misconfiguration, never "no object".
        self.code.as_deref() != Some("NoSuchBucket")
            && (self.status == Some(404) || self.code.as_deref() == Some("NoSuchKey"))
    }

    /// A conditional write that lost. Besides 412, S3 answers 409
    /// `ConditionalRequestConflict` when a concurrent conditional write is in flight, and
    /// some stores answer 404 `NoSuchKey` to `If-Match` on a key that does not exist.
    pub(crate) fn is_precondition(&self, conditional: bool) -> bool {
        self.status == Some(412)
            || self.code.as_deref() == Some("PreconditionFailed")
            || self.code.as_deref() == Some("ConditionalRequestConflict")
            || (conditional && self.is_not_found())
    }

    /// The port error for a failure that the operation did not handle itself.
    pub(crate) fn into_port(self, what: &str) -> PortError {
        let code = self.code.as_deref().unwrap_or("");
        let message = if code.is_empty() {
            self.message
        } else {
            format!("{code}: {}", self.message)
        };
        if self.invalid {
            return PortError::Invalid(format!("{what}: {message}"));
        }
        if self.transport {
            return PortError::Unavailable {
                backend: BACKEND,
                message,
            };
        }
        match (self.status, code) {
            (_, "PreconditionFailed" | "ConditionalRequestConflict") | (Some(412), _) => {
                PortError::PreconditionFailed {
                    what: what.to_owned(),
                }
            }
            (_, "SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout") => {
                PortError::Unavailable {
                    backend: BACKEND,
                    message,
                }
            }
            (Some(s), _) if s >= 500 || s == 429 || s == 408 => PortError::Unavailable {
                backend: BACKEND,
                message,
            },
            (Some(404), _) | (_, "NoSuchBucket") => PortError::NotFound {
                what: what.to_owned(),
            },
            // 401/403 (bad keys, policy), 400 (bad request): retrying will not help.
            _ => PortError::Rejected {
                backend: BACKEND,
                message,
            },
        }
    }
}

/// Reading a body that broke off half-way is a transport failure like any other.
pub(crate) fn body_error(err: &aws_smithy_types::byte_stream::error::Error) -> PortError {
    PortError::Unavailable {
        backend: BACKEND,
        message: format!("reading the body: {err}"),
    }
}
