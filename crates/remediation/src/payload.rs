//! The Alertmanager webhook payload (version 4), parsed strictly where a wrong value would
//! make us act on the wrong thing, and loosely where Alertmanager may add fields later:
//! unknown fields are kept in `extra` so that they survive into logs and `/runs` instead
//! of failing a delivery that Alertmanager would then retry forever.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use thiserror::Error;

/// The only webhook payload version Alertmanager has ever sent (0.x through 0.27).
pub const SUPPORTED_VERSION: &str = "4";

/// Label and annotation sets: ordered so that plans and hashes are reproducible.
pub type Labels = BTreeMap<String, String>;

/// Whether an alert (or a group) is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The alert's expression holds: remediation may start.
    Firing,
    /// The alert stopped: pending work for it is cancelled.
    Resolved,
}

impl AlertStatus {
    /// Stable label for metrics (`status="firing"`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One delivery from an Alertmanager webhook receiver: one alert group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Payload format version; only [`SUPPORTED_VERSION`] is accepted.
    pub version: String,
    /// Identifies the group across deliveries (Alertmanager's dedup key for the group).
    pub group_key: String,
    /// `firing` if any alert of the group fires.
    pub status: AlertStatus,
    /// The receiver name from the Alertmanager route.
    pub receiver: String,
    /// Labels the route grouped by.
    pub group_labels: Labels,
    /// Labels every alert of the group shares.
    pub common_labels: Labels,
    /// Annotations every alert of the group shares.
    pub common_annotations: Labels,
    /// Where the sending Alertmanager serves its UI.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts of the group.
    pub alerts: Vec<Alert>,
    /// Alerts left out because the receiver's `max_alerts` was reached; when non-zero we
    /// have not seen the whole group and say so in the plan.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// Fields this version of the model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One alert inside a [`WebhookPayload`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Identifying labels; `alertname` is always present after validation.
    pub labels: Labels,
    /// Non-identifying text (summary, runbook URL).
    #[serde(default)]
    pub annotations: Labels,
    /// When the alert started firing; with the fingerprint it identifies one incident.
    pub starts_at: DateTime<Utc>,
    /// When it resolved; Alertmanager sends `0001-01-01T00:00:00Z` while it fires.
    pub ends_at: DateTime<Utc>,
    /// Link to the expression that fired (may be empty for alerts pushed by API).
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    /// Alertmanager's hash of the label set: the same alert keeps it across deliveries.
    pub fingerprint: String,
    /// Fields this version of the model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Alert {
    /// The `alertname` label (validated to exist by [`parse`]).
    #[must_use]
    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// Why a webhook body was rejected (the webhook answers 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not JSON, wrong type, or a required field missing; serde names the field.
    #[error("malformed payload: {message}")]
    Malformed {
        /// `serde_json`'s description, which names the field and position.
        message: String,
    },
    /// A payload version we do not understand; acting on a guessed shape is unsafe.
    #[error("unsupported payload version {version:?}, expected \"4\"")]
    UnsupportedVersion {
        /// The version that was sent.
        version: String,
    },
    /// A group without alerts: nothing to act on, and Alertmanager never sends one.
    #[error("payload has no alerts")]
    NoAlerts,
    /// An alert without a non-empty `alertname` label cannot be matched to a rule.
    #[error("alerts[{index}].labels.alertname is missing or empty")]
    MissingAlertname {
        /// Position in `alerts`.
        index: usize,
    },
    /// An alert without a fingerprint cannot be deduplicated.
    #[error("alerts[{index}].fingerprint is empty")]
    EmptyFingerprint {
        /// Position in `alerts`.
        index: usize,
    },
}

impl PayloadError {
    /// Stable label for metrics (`sre_remediation_requests_rejected_total{reason}`).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::NoAlerts => "no_alerts",
            Self::MissingAlertname { .. } => "missing_alertname",
            Self::EmptyFingerprint { .. } => "empty_fingerprint",
        }
    }
}

/// Parses and validates one webhook body.
pub fn parse(body: &[u8]) -> Result<WebhookPayload, PayloadError> {
    let payload: WebhookPayload =
        serde_json::from_slice(body).map_err(|e| PayloadError::Malformed {
            message: e.to_string(),
        })?;
    validate(&payload)?;
    Ok(payload)
}

fn validate(p: &WebhookPayload) -> Result<(), PayloadError> {
    if p.version != SUPPORTED_VERSION {
        return Err(PayloadError::UnsupportedVersion {
            version: p.version.clone(),
        });
    }
    if p.alerts.is_empty() {
        return Err(PayloadError::NoAlerts);
    }
    for (index, a) in p.alerts.iter().enumerate() {
        if a.alertname().is_empty() {
            return Err(PayloadError::MissingAlertname { index });
        }
        if a.fingerprint.is_empty() {
            return Err(PayloadError::EmptyFingerprint { index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    pub(crate) fn fixture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/alertmanager")
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = fixture_dir().join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_captured_fixture_parses() {
        let mut n = 0;
        let dir = std::fs::read_dir(fixture_dir()).expect("fixture dir beside the repo");
        for entry in dir {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let body = std::fs::read(&path).expect("read fixture");
                let p = parse(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(p.receiver, "sre");
                assert!(p.extra.is_empty(), "{}: {:?}", path.display(), p.extra);
                n += 1;
            }
        }
        assert!(n >= 3, "expected the captured fixtures, found {n}");
    }

    #[test]
    fn fixture_fields_are_read() {
        let p = parse(&fixture("firing-vllm-oom-two-pods.json")).expect("valid");
        assert_eq!(p.status, AlertStatus::Firing);
        assert_eq!(p.alerts.len(), 2);
        assert_eq!(p.alerts[1].labels["pod"], "vllm-1");
        assert_eq!(p.alerts[1].fingerprint, "51261d6e7565e83c");
        assert_eq!(p.alerts[0].alertname(), "VLLMOOMKilled");
        assert_eq!(p.group_labels["namespace"], "cortex");
        assert_eq!(p.external_url, "http://vm:9093");
        let r = parse(&fixture("resolved-high-memory.json")).expect("valid");
        let f = parse(&fixture("firing-high-memory.json")).expect("valid");
        assert_eq!(r.alerts[0].status, AlertStatus::Resolved);
        assert_eq!(r.alerts[0].fingerprint, f.alerts[0].fingerprint);
        assert_eq!(r.alerts[0].starts_at, f.alerts[0].starts_at);
        assert!(r.alerts[0].ends_at > r.alerts[0].starts_at);
    }

    fn mutate(f: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut v: Value =
            serde_json::from_slice(&fixture("firing-high-memory.json")).expect("json");
        f(&mut v);
        serde_json::to_vec(&v).expect("encode")
    }

    #[test]
    fn unknown_fields_are_kept_and_round_trip() {
        let body = mutate(|v| {
            v["newTopLevel"] = Value::from(1);
            v["alerts"][0]["silencedBy"] = Value::from(vec!["x"]);
        });
        let p = parse(&body).expect("unknown fields are not an error");
        assert_eq!(p.extra["newTopLevel"], Value::from(1));
        assert_eq!(p.alerts[0].extra["silencedBy"], Value::from(vec!["x"]));
        let again = serde_json::to_vec(&p).expect("encode");
        assert_eq!(parse(&again).expect("round trip"), p);
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        let check = |body: Vec<u8>, kind: &str, needle: &str| {
            let err = parse(&body).expect_err("must be rejected");
            assert_eq!(err.kind(), kind, "{err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        };
        check(b"not json".to_vec(), "malformed", "expected");
        check(b"{}".to_vec(), "malformed", "missing field");
        check(
            mutate(|v| v["version"] = Value::from("3")),
            "unsupported_version",
            "\"3\"",
        );
        check(
            mutate(|v| v["status"] = Value::from("pending")),
            "malformed",
            "unknown variant `pending`",
        );
        check(
            mutate(|v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("groupKey");
                }
            }),
            "malformed",
            "groupKey",
        );
        check(
            mutate(|v| v["alerts"] = Value::Array(vec![])),
            "no_alerts",
            "no alerts",
        );
        check(
            mutate(|v| v["alerts"][0]["labels"]["alertname"] = Value::from("")),
            "missing_alertname",
            "alerts[0]",
        );
        check(
            mutate(|v| v["alerts"][0]["fingerprint"] = Value::from("")),
            "empty_fingerprint",
            "alerts[0]",
        );
        check(
            mutate(|v| v["alerts"][0]["startsAt"] = Value::from("yesterday")),
            "malformed",
            "input contains invalid characters",
        );
    }
}
