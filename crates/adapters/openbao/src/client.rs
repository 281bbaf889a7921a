//! Building the `vaultrs` client from a [`BaoConfig`], shared by every engine of this
//! crate, and the raw requests for endpoints `vaultrs` 0.8 does not expose (or exposes
//! without the lease information rotation needs).

use crate::config::BaoConfig;
use crate::error::{Error, Failure};
use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use rustify::errors::ClientError as HttpError;
use sre_core::PortError;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

/// Builds the client. No request is made.
pub(crate) fn build(config: &BaoConfig) -> Result<VaultClient, Error> {
    let invalid = |reason: String| Error::InvalidAddress {
        address: config.address.clone(),
        reason,
    };
    // vaultrs' builder panics on an unparsable address, so parse it first.
    let url = url::Url::parse(&config.address).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    let mut b = VaultClientSettingsBuilder::default();
    b.address(url.as_str())
        .token(config.token.clone())
        .timeout(Some(config.timeout))
        // Explicit values, so that the builder's defaults never read VAULT_* variables.
        .verify(true)
        .ca_certs(config.ca_certs.clone())
        .identity(None)
        .namespace(config.namespace.clone());
    let settings = b.build().map_err(|e| invalid(e.to_string()))?;
    VaultClient::new(settings).map_err(|source| Error::Client { source })
}

/// One request to an OpenBao API path (relative to `/v1/`), answered with the whole
/// JSON envelope (`lease_id`, `lease_duration`, `data`, ...).
pub(crate) struct Raw {
    method: RequestMethod,
    path: String,
    body: Option<serde_json::Value>,
}

impl Raw {
    pub(crate) fn get(path: impl Into<String>) -> Self {
        Self {
            method: RequestMethod::GET,
            path: path.into(),
            body: None,
        }
    }

    pub(crate) fn put(path: impl Into<String>, body: serde_json::Value) -> Self {
        Self {
            method: RequestMethod::PUT,
            path: path.into(),
            body: Some(body),
        }
    }
}

impl Endpoint for Raw {
    type Response = serde_json::Value;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> Result<Option<Vec<u8>>, HttpError> {
        self.body
            .as_ref()
            .map(|b| {
                serde_json::to_vec(b).map_err(|source| HttpError::DataParseError {
                    source: source.into(),
                })
            })
            .transpose()
    }
}

/// Sends `req` and returns the envelope.
pub(crate) async fn envelope(
    client: &VaultClient,
    req: Raw,
    what: &str,
) -> Result<serde_json::Value, PortError> {
    vaultrs::api::exec_with_no_result(client, req)
        .await
        .map_err(|e| Failure::from_client(&e).into_port(what))
}

/// Sends `req`, which answers 204 No Content.
pub(crate) async fn empty(client: &VaultClient, req: Raw, what: &str) -> Result<(), PortError> {
    vaultrs::api::exec_with_empty(client, req)
        .await
        .map_err(|e| Failure::from_client(&e).into_port(what))
}

/// Mounts a secrets engine of `engine_type` at `mount`; already mounted is success, so
/// a controller can call this on every start.
pub(crate) async fn enable_engine(
    client: &VaultClient,
    mount: &str,
    engine_type: &str,
) -> Result<(), PortError> {
    match vaultrs::sys::mount::enable(client, mount, engine_type, None).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let f = Failure::from_client(&e);
            // OpenBao answers 400 "path is already in use at <mount>/".
            if matches!(&f, Failure::Status { code: 400, errors } if errors.iter().any(|m| m.contains("already in use")))
            {
                Ok(())
            } else {
                Err(f.into_port(mount))
            }
        }
    }
}
