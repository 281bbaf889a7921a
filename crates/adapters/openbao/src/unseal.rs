//! Remediation's [`Unsealer`] port over OpenBao's seal API: read `sys/seal-status`, and
//! when the server is sealed, submit Shamir key shares to `sys/unseal` until it reports
//! unsealed. The shares come from a [`SecretStore`] (in production a second, SPIRE-gated
//! OpenBao whose policy only the remediation webhook's workload identity passes): the
//! handbook's "auto-unseal via SPIRE-attested unseal keys".
//!
//! A share never leaves this module except in the request body to the sealed server: it
//! is held in a type whose `Debug` is redacted, and no error or outcome quotes it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use sre_core::PortError;
use sre_core::ports::SecretStore;
use sre_remediation::actions::{ActionOutcome, BaoInstance, Mode, Unsealer};

use crate::client::{Raw, build, envelope};
use crate::config::BaoConfig;
use crate::error::BACKEND;

/// Where the sealed servers are and where their key shares are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealConfig {
    /// Address of an instance, with `{name}` (the alert's pod) and `{namespace}` filled
    /// in, e.g. `http://{name}.openbao-internal.{namespace}.svc:8200`: each pod of the
    /// `StatefulSet` has to be unsealed on its own, not through the load-balanced service.
    pub address_template: String,
    /// Fixed addresses by instance name; they win over the template (servers outside
    /// Kubernetes, tests).
    pub addresses: BTreeMap<String, String>,
    /// The path in the key store that holds the shares, with the same placeholders, e.g.
    /// `openbao-unseal/{namespace}` (one share set per cluster, shared by its pods).
    pub keys_path: String,
    /// The field at `keys_path` that lists the shares: a JSON array of strings, or the
    /// shares separated by whitespace or commas (base64 and hex hold neither).
    pub keys_field: String,
    /// PEM files with extra CA certificates for `https` instance addresses.
    pub ca_certs: Vec<String>,
    /// Limit for one request, so a hung pod fails the action instead of holding it.
    pub timeout: Duration,
}

impl UnsealConfig {
    /// Settings with the shares under field `keys` and a 10 s request timeout.
    #[must_use]
    pub fn new(address_template: impl Into<String>, keys_path: impl Into<String>) -> Self {
        Self {
            address_template: address_template.into(),
            addresses: BTreeMap::new(),
            keys_path: keys_path.into(),
            keys_field: "keys".to_owned(),
            ca_certs: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What `sys/seal-status` says about one server: the evidence the outcome reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealStatus {
    /// Whether the server is sealed.
    pub sealed: bool,
    /// Whether the server was ever initialized (an uninitialized one has no shares).
    pub initialized: bool,
    /// Seal type (`shamir`; auto-unseal types such as `transit` unseal themselves).
    pub seal_type: String,
    /// Shares needed to unseal (`t`).
    pub threshold: u32,
    /// Shares that exist (`n`).
    pub shares: u32,
    /// Shares submitted so far towards the threshold.
    pub progress: u32,
}

impl SealStatus {
    fn parse(v: &Value, instance: &str) -> Result<Self, PortError> {
        let malformed = |field: &str| PortError::Malformed {
            backend: BACKEND,
            what: format!("seal status of {instance}"),
            message: format!("field `{field}` missing or of the wrong type"),
        };
        let num = |field: &str| -> Result<u32, PortError> {
            v.get(field)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| malformed(field))
        };
        Ok(Self {
            sealed: v
                .get("sealed")
                .and_then(Value::as_bool)
                .ok_or_else(|| malformed("sealed"))?,
            initialized: v
                .get("initialized")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            seal_type: v
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("shamir")
                .to_owned(),
            threshold: num("t")?,
            shares: num("n")?,
            progress: num("progress")?,
        })
    }

    fn state(&self) -> String {
        if self.sealed {
            format!("sealed=true progress={}/{}", self.progress, self.threshold)
        } else {
            "sealed=false".to_owned()
        }
    }
}

/// Why an unseal did not happen; the port maps these onto [`PortError`], and callers of
/// [`BaoUnsealer::unseal_instance`] can tell them apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnsealError {
    /// The key store holds fewer shares than the threshold: nothing was submitted, so a
    /// partial set never leaves a half-unsealed server behind.
    #[error(
        "{instance}: {available} unseal key shares at {path}, threshold is {threshold}: nothing submitted"
    )]
    NotEnoughShares {
        /// The instance.
        instance: String,
        /// The key-store path read.
        path: String,
        /// Shares found there.
        available: usize,
        /// Shares needed.
        threshold: u32,
    },
    /// The server refused a share (not a share of its key, or not a valid encoding); it
    /// stays sealed and discards the progress.
    #[error("{instance} rejected the unseal key shares, it stays sealed: {message}")]
    SharesRejected {
        /// The instance.
        instance: String,
        /// What the server said (it never echoes the share).
        message: String,
    },
    /// Every share was accepted and the server is still sealed (duplicate shares).
    #[error(
        "{instance} is still sealed after {submitted} key shares (progress {progress}/{threshold})"
    )]
    StillSealed {
        /// The instance.
        instance: String,
        /// Shares sent.
        submitted: usize,
        /// Progress the server reported last.
        progress: u32,
        /// Shares needed.
        threshold: u32,
    },
    /// The server was never initialized: unsealing is not the remedy, `operator init` is.
    #[error("{instance} is not initialized: there is nothing to unseal")]
    NotInitialized {
        /// The instance.
        instance: String,
    },
    /// An auto-unseal seal (`transit`, a KMS) takes no key shares.
    #[error("{instance} uses a `{seal_type}` seal, which takes no key shares")]
    NotShamir {
        /// The instance.
        instance: String,
        /// The seal type reported.
        seal_type: String,
    },
    /// The configuration gives no usable address or key path for the instance.
    #[error("cannot address {instance}: {reason}")]
    NoAddress {
        /// The instance.
        instance: String,
        /// What is missing or wrong.
        reason: String,
    },
    /// The instance or the key store failed (unreachable, refused, malformed).
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<UnsealError> for PortError {
    fn from(e: UnsealError) -> Self {
        match e {
            UnsealError::Port(p) => p,
            UnsealError::NoAddress { .. } => Self::Invalid(e.to_string()),
            other => Self::Rejected {
                backend: BACKEND,
                message: other.to_string(),
            },
        }
    }
}

/// One unseal key share. `Debug` is redacted so that no log line can carry it.
struct Share(String);

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Share(<redacted>)")
    }
}

/// Reads a share list: a JSON array of strings, or whitespace/comma separated shares.
fn parse_shares(text: &str) -> Result<Vec<Share>, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        let list: Vec<String> = serde_json::from_str(trimmed).map_err(|e| {
            format!(
                "not a JSON array of strings (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        return Ok(list
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .map(Share)
            .collect());
    }
    Ok(trimmed
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| Share(s.to_owned()))
        .collect())
}

/// Fills `{name}` and `{namespace}` into `template`.
fn render(template: &str, instance: &BaoInstance) -> Result<String, String> {
    let mut out = template.replace("{name}", &instance.name);
    if out.contains("{namespace}") {
        let ns = instance
            .namespace
            .as_deref()
            .ok_or_else(|| format!("`{template}` needs a namespace and the target has none"))?;
        out = out.replace("{namespace}", ns);
    }
    if out.contains('{') || out.contains('}') {
        return Err(format!(
            "`{template}` has a placeholder other than {{name}} and {{namespace}}"
        ));
    }
    Ok(out)
}

/// The [`Unsealer`] over OpenBao's HTTP seal API.
pub struct BaoUnsealer {
    config: UnsealConfig,
    keys: Arc<dyn SecretStore>,
}

impl fmt::Debug for BaoUnsealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaoUnsealer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl BaoUnsealer {
    /// An unsealer reading shares from `keys`. No request is made.
    #[must_use]
    pub fn new(config: UnsealConfig, keys: Arc<dyn SecretStore>) -> Self {
        Self { config, keys }
    }

    /// The address the instance is reached at: a fixed one, else the template's.
    pub fn address_of(&self, instance: &BaoInstance) -> Result<String, UnsealError> {
        if let Some(a) = self.config.addresses.get(&instance.name) {
            return Ok(a.clone());
        }
        render(&self.config.address_template, instance).map_err(|reason| UnsealError::NoAddress {
            instance: instance.to_string(),
            reason,
        })
    }

    fn client(&self, instance: &BaoInstance) -> Result<vaultrs::client::VaultClient, UnsealError> {
        let address = self.address_of(instance)?;
        // The seal endpoints are unauthenticated: a sealed server cannot check a token.
        let mut cfg = BaoConfig::new(address, String::new());
        cfg.ca_certs.clone_from(&self.config.ca_certs);
        cfg.timeout = self.config.timeout;
        build(&cfg).map_err(|e| UnsealError::NoAddress {
            instance: instance.to_string(),
            reason: e.to_string(),
        })
    }

    /// The instance's seal status (`GET /v1/sys/seal-status`).
    pub async fn seal_status(&self, instance: &BaoInstance) -> Result<SealStatus, UnsealError> {
        let client = self.client(instance)?;
        let what = instance.to_string();
        let v = envelope(&client, Raw::get("sys/seal-status"), &what).await?;
        Ok(SealStatus::parse(&v, &what)?)
    }

    async fn shares(&self, instance: &BaoInstance) -> Result<(String, Vec<Share>), UnsealError> {
        let path =
            render(&self.config.keys_path, instance).map_err(|reason| UnsealError::NoAddress {
                instance: instance.to_string(),
                reason,
            })?;
        let Some(secret) = self.keys.read(&path, None).await? else {
            return Ok((path, Vec::new()));
        };
        let Some(text) = secret.data.get(&self.config.keys_field) else {
            return Ok((path, Vec::new()));
        };
        let shares = parse_shares(text).map_err(|message| PortError::Malformed {
            backend: "secret store",
            what: format!("{path}:{}", self.config.keys_field),
            message,
        })?;
        Ok((path, shares))
    }

    /// Unseals `instance` if it is sealed; the typed errors of [`UnsealError`].
    pub async fn unseal_instance(
        &self,
        instance: &BaoInstance,
        mode: Mode,
    ) -> Result<ActionOutcome, UnsealError> {
        let client = self.client(instance)?;
        let what = instance.to_string();
        let status = SealStatus::parse(
            &envelope(&client, Raw::get("sys/seal-status"), &what).await?,
            &what,
        )?;
        if !status.initialized {
            return Err(UnsealError::NotInitialized { instance: what });
        }
        if !status.sealed {
            return Ok(ActionOutcome::unchanged(
                mode,
                status.state(),
                format!("{instance} is already unsealed: nothing to do"),
            ));
        }
        if status.seal_type != "shamir" {
            return Err(UnsealError::NotShamir {
                instance: what,
                seal_type: status.seal_type,
            });
        }
        let (path, shares) = self.shares(instance).await?;
        let threshold = status.threshold;
        if shares.len() < usize::try_from(threshold).unwrap_or(usize::MAX) {
            return Err(UnsealError::NotEnoughShares {
                instance: what,
                path,
                available: shares.len(),
                threshold,
            });
        }
        let evidence = format!(
            "{} key shares available, threshold {threshold} of {}",
            shares.len(),
            status.shares
        );
        if mode.is_dry_run() {
            return Ok(ActionOutcome::changed(
                mode,
                Some(status.state()),
                Some("sealed=false".into()),
                format!("would unseal {instance}: {evidence}"),
            ));
        }
        if status.progress > 0 {
            // A stale partial unseal (an earlier attempt, a human) would mix its shares
            // with ours; start the count afresh.
            tracing::info!(%instance, progress = status.progress, "resetting unseal progress");
            envelope(
                &client,
                Raw::put("sys/unseal", json!({"reset": true})),
                &what,
            )
            .await?;
        }
        let mut last = status.clone();
        let mut submitted = 0usize;
        for share in &shares {
            let body = json!({ "key": share.0 });
            let answer = match envelope(&client, Raw::put("sys/unseal", body), &what).await {
                Ok(v) => v,
                Err(PortError::Rejected { message, .. }) => {
                    return Err(UnsealError::SharesRejected {
                        instance: what,
                        message,
                    });
                }
                Err(e) => return Err(e.into()),
            };
            submitted += 1;
            last = SealStatus::parse(&answer, &what)?;
            tracing::info!(%instance, submitted, progress = last.progress, sealed = last.sealed, "unseal key share submitted");
            if !last.sealed {
                break;
            }
        }
        if last.sealed {
            return Err(UnsealError::StillSealed {
                instance: what,
                submitted,
                progress: last.progress,
                threshold,
            });
        }
        Ok(ActionOutcome::changed(
            mode,
            Some(status.state()),
            Some(last.state()),
            format!("unsealed {instance} with {submitted} key shares ({evidence})"),
        ))
    }
}

#[async_trait]
impl Unsealer for BaoUnsealer {
    async fn unseal(&self, instance: &BaoInstance, mode: Mode) -> Result<ActionOutcome, PortError> {
        self.unseal_instance(instance, mode)
            .await
            .map_err(PortError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_lists_read_as_json_or_separated_and_never_print() {
        let json = parse_shares(r#"["a1", " b2 ", ""]"#).expect("json");
        assert_eq!(
            json.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
            ["a1", "b2"]
        );
        let plain = parse_shares("a1, b2\nc3").expect("plain");
        assert_eq!(plain.len(), 3);
        assert!(parse_shares("[1, 2]").is_err());
        assert_eq!(format!("{:?}", plain[0]), "Share(<redacted>)");
    }

    #[test]
    fn templates_fill_name_and_namespace_or_say_what_is_missing() {
        let i = BaoInstance::new(Some("vault"), "openbao-1");
        assert_eq!(
            render("http://{name}.openbao-internal.{namespace}.svc:8200", &i).as_deref(),
            Ok("http://openbao-1.openbao-internal.vault.svc:8200")
        );
        let bare = BaoInstance::new(None, "openbao-1");
        assert!(render("{name}.{namespace}", &bare).is_err());
        assert_eq!(
            render("unseal/{name}", &bare).as_deref(),
            Ok("unseal/openbao-1")
        );
        assert!(render("unseal/{pod}", &bare).is_err());
    }

    #[test]
    fn seal_status_parses_the_fields_the_outcome_reports() {
        let v = json!({"type": "shamir", "initialized": true, "sealed": true, "t": 3, "n": 5, "progress": 1});
        let s = SealStatus::parse(&v, "x").expect("parse");
        assert_eq!(
            (s.sealed, s.threshold, s.shares, s.progress),
            (true, 3, 5, 1)
        );
        assert_eq!(s.state(), "sealed=true progress=1/3");
        assert!(matches!(
            SealStatus::parse(&json!({"sealed": true}), "x"),
            Err(PortError::Malformed { .. })
        ));
    }

    #[test]
    fn typed_errors_map_onto_port_errors_by_what_to_do() {
        let short = UnsealError::NotEnoughShares {
            instance: "openbao vault/openbao-0".into(),
            path: "unseal/vault".into(),
            available: 1,
            threshold: 3,
        };
        let p = PortError::from(short);
        assert!(
            matches!(&p, PortError::Rejected { message, .. } if message.contains("1 unseal key shares") && message.contains("threshold is 3")),
            "{p:?}"
        );
        let down = PortError::Unavailable {
            backend: BACKEND,
            message: "refused".into(),
        };
        assert_eq!(PortError::from(UnsealError::Port(down.clone())), down);
    }
}
