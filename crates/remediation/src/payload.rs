//! The Alertmanager webhook payload (version 4), parsed strictly where a wrong value would
//! make us act on the wrong thing, and loosely where Alertmanager may add fields later:
//! unknown fields are kept in `extra` so that they survive into logs and `/runs` instead
//! of failing a delivery that Alertmanager would then retry forever.
//!
//! Parsing sits on the webhook's request path, so [`Deserialize`] is written by hand: one
//! pass over the body, known fields read straight into the model and unknown ones
//! collected into `extra`, with the derive's strictness (required fields, no duplicates).

use chrono::{DateTime, FixedOffset, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// have not seen the whole group and say so in the plan. Absent in older payloads: 0.
    pub truncated_alerts: u64,
    /// Fields this version of the model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One alert inside a [`WebhookPayload`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Identifying labels; `alertname` is always present after validation.
    pub labels: Labels,
    /// Non-identifying text (summary, runbook URL); may be absent (empty).
    pub annotations: Labels,
    /// When the alert started firing; with the fingerprint it identifies one incident.
    pub starts_at: DateTime<Utc>,
    /// When it resolved; Alertmanager sends `0001-01-01T00:00:00Z` while it fires.
    pub ends_at: DateTime<Utc>,
    /// Link to the expression that fired (empty or absent for alerts pushed by API).
    #[serde(rename = "generatorURL")]
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
    let payload = read(body).map_err(|e| PayloadError::Malformed {
        message: e.to_string(),
    })?;
    validate(&payload)?;
    Ok(payload)
}

/// The JSON step of [`parse`]. The body is checked to be UTF-8 once, up front, so that
/// `serde_json` need not check every string again; a body that is not UTF-8 is read as
/// bytes only to get `serde_json`'s usual error (with its position).
fn read(body: &[u8]) -> Result<WebhookPayload, serde_json::Error> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
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

// Deserialisation by hand. `#[serde(flatten)]` would make serde buffer every object of the
// body into an intermediate tree and read the tree a second time (once per nesting level),
// which was the largest cost on the webhook's request path. These visitors read each field
// once, straight from the JSON; only unknown fields go through `Value`. The rules match
// the derive they replace: required fields, `duplicate field`, objects only (no arrays),
// last unknown key wins.

/// A JSON object key, borrowed from the body when it holds no escapes, so that matching a
/// known field allocates nothing; only unknown keys are copied (into `extra`).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// An RFC 3339 timestamp, read with chrono's strict RFC 3339 parser, which is several
/// times faster than the relaxed one chrono's `Deserialize` uses and accepts everything
/// Alertmanager (Go's `time.Time`) writes; anything else falls back to chrono's own rules,
/// so that what is accepted, and how a refusal reads, stay chrono's.
struct Timestamp(DateTime<Utc>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 formatted date and time string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                DateTime::parse_from_rfc3339(v)
                    .or_else(|_| v.parse::<DateTime<FixedOffset>>())
                    .map(|t| Timestamp(t.with_timezone(&Utc)))
                    .map_err(E::custom)
            }
        }
        d.deserialize_str(TimestampVisitor)
    }
}

/// Reads the value of a known field, refusing a second occurrence as the derive does.
fn once<'de, A, T>(
    map: &mut A,
    slot: &mut Option<T>,
    dup: impl FnOnce() -> A::Error,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    if slot.is_some() {
        return Err(dup());
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Deserialize<'de> for WebhookPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PayloadVisitor)
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = WebhookPayload;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct WebhookPayload")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WebhookPayload, A::Error> {
        let mut version = None;
        let mut group_key = None;
        let mut status = None;
        let mut receiver = None;
        let mut group_labels = None;
        let mut common_labels = None;
        let mut common_annotations = None;
        let mut external_url = None;
        let mut alerts = None;
        let mut truncated_alerts = None;
        let mut extra = BTreeMap::new();
        let dup = |name: &'static str| move || de::Error::duplicate_field(name);
        while let Some(Key(key)) = map.next_key()? {
            match &*key {
                "version" => once(&mut map, &mut version, dup("version"))?,
                "groupKey" => once(&mut map, &mut group_key, dup("groupKey"))?,
                "status" => once(&mut map, &mut status, dup("status"))?,
                "receiver" => once(&mut map, &mut receiver, dup("receiver"))?,
                "groupLabels" => once(&mut map, &mut group_labels, dup("groupLabels"))?,
                "commonLabels" => once(&mut map, &mut common_labels, dup("commonLabels"))?,
                "commonAnnotations" => {
                    once(&mut map, &mut common_annotations, dup("commonAnnotations"))?;
                }
                "externalURL" => once(&mut map, &mut external_url, dup("externalURL"))?,
                "truncatedAlerts" => {
                    once(&mut map, &mut truncated_alerts, dup("truncatedAlerts"))?;
                }
                "alerts" => {
                    if alerts.is_some() {
                        return Err(de::Error::duplicate_field("alerts"));
                    }
                    alerts = Some(map.next_value_seed(AlertsSeed)?);
                }
                _ => {
                    let value: Value = map.next_value()?;
                    extra.insert(key.into_owned(), value);
                }
            }
        }
        let missing = de::Error::missing_field;
        Ok(WebhookPayload {
            version: version.ok_or_else(|| missing("version"))?,
            group_key: group_key.ok_or_else(|| missing("groupKey"))?,
            status: status.ok_or_else(|| missing("status"))?,
            receiver: receiver.ok_or_else(|| missing("receiver"))?,
            group_labels: group_labels.ok_or_else(|| missing("groupLabels"))?,
            common_labels: common_labels.ok_or_else(|| missing("commonLabels"))?,
            common_annotations: common_annotations.ok_or_else(|| missing("commonAnnotations"))?,
            external_url: external_url.ok_or_else(|| missing("externalURL"))?,
            alerts: alerts.ok_or_else(|| missing("alerts"))?,
            truncated_alerts: truncated_alerts.unwrap_or_default(),
            extra,
        })
    }
}

/// The `alerts` array, each alert told its position so that its errors name their path.
struct AlertsSeed;

impl<'de> DeserializeSeed<'de> for AlertsSeed {
    type Value = Vec<Alert>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Alert>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for AlertsSeed {
    type Value = Vec<Alert>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Alert>, A::Error> {
        let mut alerts = Vec::new();
        while let Some(a) = seq.next_element_seed(AlertVisitor {
            index: Some(alerts.len()),
        })? {
            alerts.push(a);
        }
        Ok(alerts)
    }
}

impl<'de> Deserialize<'de> for Alert {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(AlertVisitor { index: None })
    }
}

/// One alert; `index` is its position in `alerts` when read as part of a payload.
#[derive(Clone, Copy)]
struct AlertVisitor {
    index: Option<usize>,
}

impl AlertVisitor {
    /// `missing field` naming the path (`alerts[3].fingerprint`) inside a payload.
    fn missing<E: de::Error>(self, field: &'static str) -> E {
        match self.index {
            Some(i) => E::custom(format_args!("missing field `alerts[{i}].{field}`")),
            None => E::missing_field(field),
        }
    }

    /// `duplicate field` naming the path inside a payload.
    fn duplicate<E: de::Error>(self, field: &'static str) -> impl FnOnce() -> E {
        move || match self.index {
            Some(i) => E::custom(format_args!("duplicate field `alerts[{i}].{field}`")),
            None => E::duplicate_field(field),
        }
    }
}

impl<'de> DeserializeSeed<'de> for AlertVisitor {
    type Value = Alert;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Alert, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AlertVisitor {
    type Value = Alert;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct Alert")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Alert, A::Error> {
        let mut status = None;
        let mut labels = None;
        let mut annotations = None;
        let mut starts_at = None;
        let mut ends_at = None;
        let mut generator_url = None;
        let mut fingerprint = None;
        let mut extra = BTreeMap::new();
        while let Some(Key(key)) = map.next_key()? {
            match &*key {
                "status" => once(&mut map, &mut status, self.duplicate("status"))?,
                "labels" => once(&mut map, &mut labels, self.duplicate("labels"))?,
                "annotations" => once(&mut map, &mut annotations, self.duplicate("annotations"))?,
                "startsAt" => once(&mut map, &mut starts_at, self.duplicate("startsAt"))?,
                "endsAt" => once(&mut map, &mut ends_at, self.duplicate("endsAt"))?,
                "generatorURL" => {
                    once(&mut map, &mut generator_url, self.duplicate("generatorURL"))?;
                }
                "fingerprint" => once(&mut map, &mut fingerprint, self.duplicate("fingerprint"))?,
                _ => {
                    let value: Value = map.next_value()?;
                    extra.insert(key.into_owned(), value);
                }
            }
        }
        Ok(Alert {
            status: status.ok_or_else(|| self.missing("status"))?,
            labels: labels.ok_or_else(|| self.missing("labels"))?,
            annotations: annotations.unwrap_or_default(),
            starts_at: starts_at
                .map(|Timestamp(t)| t)
                .ok_or_else(|| self.missing("startsAt"))?,
            ends_at: ends_at
                .map(|Timestamp(t)| t)
                .ok_or_else(|| self.missing("endsAt"))?,
            generator_url: generator_url.unwrap_or_default(),
            fingerprint: fingerprint.ok_or_else(|| self.missing("fingerprint"))?,
            extra,
        })
    }
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

    /// The model as it was derived before deserialisation was written by hand (with
    /// `#[serde(flatten)]`): the reference the hand-written visitors must agree with.
    mod derived {
        use super::super::{AlertStatus, Labels};
        use chrono::{DateTime, Utc};
        use serde::Deserialize;
        use serde_json::Value;
        use std::collections::BTreeMap;

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(super) struct WebhookPayload {
            pub version: String,
            pub group_key: String,
            pub status: AlertStatus,
            pub receiver: String,
            pub group_labels: Labels,
            pub common_labels: Labels,
            pub common_annotations: Labels,
            #[serde(rename = "externalURL")]
            pub external_url: String,
            pub alerts: Vec<Alert>,
            #[serde(default)]
            pub truncated_alerts: u64,
            #[serde(flatten)]
            pub extra: BTreeMap<String, Value>,
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(super) struct Alert {
            pub status: AlertStatus,
            pub labels: Labels,
            #[serde(default)]
            pub annotations: Labels,
            pub starts_at: DateTime<Utc>,
            pub ends_at: DateTime<Utc>,
            #[serde(rename = "generatorURL", default)]
            pub generator_url: String,
            pub fingerprint: String,
            #[serde(flatten)]
            pub extra: BTreeMap<String, Value>,
        }

        impl From<WebhookPayload> for super::WebhookPayload {
            fn from(p: WebhookPayload) -> Self {
                Self {
                    version: p.version,
                    group_key: p.group_key,
                    status: p.status,
                    receiver: p.receiver,
                    group_labels: p.group_labels,
                    common_labels: p.common_labels,
                    common_annotations: p.common_annotations,
                    external_url: p.external_url,
                    alerts: p
                        .alerts
                        .into_iter()
                        .map(|a| super::Alert {
                            status: a.status,
                            labels: a.labels,
                            annotations: a.annotations,
                            starts_at: a.starts_at,
                            ends_at: a.ends_at,
                            generator_url: a.generator_url,
                            fingerprint: a.fingerprint,
                            extra: a.extra,
                        })
                        .collect(),
                    truncated_alerts: p.truncated_alerts,
                    extra: p.extra,
                }
            }
        }
    }

    /// Every variation of a fixture: each field (top level and in an alert) removed or
    /// replaced by a value of every JSON type, unknown fields added, escaped keys.
    fn variations() -> Vec<Vec<u8>> {
        let base: Value =
            serde_json::from_slice(&fixture("firing-vllm-oom-two-pods.json")).expect("json");
        let wrong = [
            Value::Null,
            Value::from(true),
            Value::from(7),
            Value::from(-1),
            Value::from(1.5),
            Value::from("firing"),
            Value::from("2026-01-01T00:00:00Z"),
            Value::Array(vec![]),
            serde_json::json!({}),
            serde_json::json!({"alertname": "X"}),
        ];
        let mut out = vec![serde_json::to_vec(&base).expect("encode")];
        let mut edit = |f: &dyn Fn(&mut Value)| {
            let mut v = base.clone();
            f(&mut v);
            out.push(serde_json::to_vec(&v).expect("encode"));
        };
        let top: Vec<String> = base
            .as_object()
            .map(|o| o.keys().cloned().chain(["newField".into()]).collect())
            .unwrap_or_default();
        let alert: Vec<String> = base["alerts"][0]
            .as_object()
            .map(|o| o.keys().cloned().chain(["newField".into()]).collect())
            .unwrap_or_default();
        for k in &top {
            edit(&|v| {
                v.as_object_mut().map(|o| o.remove(k));
            });
            for w in &wrong {
                edit(&|v| v[k.as_str()] = w.clone());
            }
        }
        for k in &alert {
            edit(&|v| {
                v["alerts"][1].as_object_mut().map(|o| o.remove(k));
            });
            for w in &wrong {
                edit(&|v| v["alerts"][1][k.as_str()] = w.clone());
            }
        }
        for body in [
            &b"[]"[..],
            b"null",
            b"\"x\"",
            b"{\"version\":\"4\",\"version\":\"4\"}",
        ] {
            out.push(body.to_vec());
        }
        let text = String::from_utf8(out[0].clone()).expect("utf-8");
        for (from, to) in [
            ("\"groupKey\"", "\"gr\\u006fupKey\""),
            ("\"fingerprint\"", "\"fingerprin\\u0074\""),
            (
                "\"receiver\":\"sre\",",
                "\"receiver\":\"sre\",\"receiver\":\"sre\",",
            ),
            (
                "\"status\":\"firing\",\"labels\"",
                "\"status\":\"firing\",\"status\":\"firing\",\"labels\"",
            ),
            ("{", "{\"x\":{\"y\":[1,2,{\"z\":null}]},\"x\":2,"),
        ] {
            out.push(text.replacen(from, to, 1).into_bytes());
        }
        out
    }

    #[test]
    fn hand_written_deserialize_agrees_with_the_derive() {
        let bodies = variations();
        assert!(bodies.len() > 150, "{}", bodies.len());
        let (mut ok, mut err) = (0, 0);
        for body in bodies {
            let text = String::from_utf8_lossy(&body);
            let ours = read(&body);
            let reference = serde_json::from_slice::<derived::WebhookPayload>(&body);
            match (ours, reference) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, WebhookPayload::from(b), "{text}");
                    ok += 1;
                }
                (Err(a), Err(b)) => {
                    // Same complaint; only the position (ours points at the value, not
                    // at the end of the buffered object) and the path may differ.
                    let head = |e: &serde_json::Error| {
                        let s = e.to_string();
                        let s = s.split(" at line ").next().unwrap_or_default().to_owned();
                        s.replace("alerts[1].", "")
                    };
                    assert_eq!(head(&a), head(&b), "{text}");
                    err += 1;
                }
                (a, b) => panic!("ours {a:?} vs derived {:?} for {text}", b.map(|_| ())),
            }
        }
        assert!(ok > 10 && err > 50, "ok {ok} err {err}");
    }

    #[test]
    fn fixtures_read_every_field() {
        for name in [
            "firing-high-memory.json",
            "firing-vllm-oom-two-pods.json",
            "resolved-high-memory.json",
        ] {
            let body = fixture(name);
            let mut want: Value = serde_json::from_slice(&body).expect("json");
            if let Some(o) = want.as_object_mut() {
                o.entry("truncatedAlerts").or_insert(Value::from(0));
            }
            let got = serde_json::to_value(parse(&body).expect("valid")).expect("encode");
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn timestamps_read_as_chrono_reads_them() {
        for text in [
            "2026-11-23T06:45:34.417623816Z",
            "0001-01-01T00:00:00Z",
            "2026-11-23T06:45:34+02:00",
            "2026-11-23t06:45:34.5z",
            "2026-11-23 06:45:34Z",
            "2016-12-31T23:59:60Z",
            "+12026-11-23T06:45:34Z",
            "2026-11-23T06:45:34",
            "2026-02-30T00:00:00Z",
            "2026-11-23T06:45:34Z ",
            "yesterday",
            "",
        ] {
            let json = Value::from(text);
            let ours = Timestamp::deserialize(&json).map(|Timestamp(t)| t);
            let chrono = DateTime::<Utc>::deserialize(&json);
            match (ours, chrono) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                (a, b) => panic!("{text:?}: ours {a:?}, chrono {b:?}"),
            }
        }
    }

    #[test]
    fn errors_in_an_alert_name_its_path() {
        let body = mutate(|v| {
            v["alerts"][0]
                .as_object_mut()
                .map(|o| o.remove("fingerprint"));
        });
        let err = parse(&body).expect_err("fingerprint is required");
        assert!(
            err.to_string()
                .contains("missing field `alerts[0].fingerprint`"),
            "{err}"
        );
        let alone = serde_json::from_str::<Alert>(r#"{"status":"firing","labels":{}}"#)
            .expect_err("startsAt is required");
        assert!(
            alone.to_string().contains("missing field `startsAt`"),
            "{alone}"
        );
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
