//! What the controller believes about one secret: which KV version is pending, current
//! and previous, and how far the pending one got. It is persisted as KV v2 custom
//! metadata (string pairs under [`KEY_PREFIX`]) after every step, so that a restarted
//! controller resumes where the last one stopped.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use thiserror::Error;

/// Prefix of every custom-metadata key this crate owns; other keys on the same path are
/// left untouched.
pub const KEY_PREFIX: &str = "sre-rotation.";

/// How far a pending version got. Each stage is persisted only after its work is done,
/// so a crash repeats at most the step in flight, and every step is idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Written as a KV version; the target may not accept it yet.
    Created,
    /// The target accepts it (set, or minted by the target itself).
    AtTarget,
    /// A real login or signature check succeeded with it.
    Tested,
    /// Setting or testing it failed: it is being revoked and destroyed; current stays.
    Aborting {
        /// Why, for the report and the alert.
        reason: String,
    },
}

/// Where the secret stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// No rotation in flight.
    Idle,
    /// A rotation is in flight with this pending version.
    Pending {
        /// The KV version that holds the pending credential.
        version: u64,
        /// How far it got.
        stage: Stage,
    },
}

/// The version that was current before the last promotion, valid until `retire_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// Its KV version.
    pub version: u64,
    /// End of the overlap window: consumers have moved on by then.
    pub retire_at: DateTime<Utc>,
}

/// How the last rotation attempt ended, for `/metrics` and the status table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastResult {
    /// Promoted a new version.
    Rotated,
    /// The target rejected the new version; it was dropped and current kept.
    Aborted {
        /// What the target said.
        reason: String,
    },
    /// A step failed and will be retried (OpenBao sealed or unreachable, say).
    Failed {
        /// What failed.
        message: String,
    },
}

impl LastResult {
    /// A stable label for metrics.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Rotated => "rotated",
            Self::Aborted { .. } => "aborted",
            Self::Failed { .. } => "failed",
        }
    }
}

/// The persisted rotation state of one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationState {
    /// In flight or not.
    pub phase: Phase,
    /// The version consumers should use; `None` before the first rotation.
    pub current: Option<u64>,
    /// The version before it, still valid during the overlap window.
    pub previous: Option<Previous>,
    /// When `current` was promoted.
    pub rotated_at: Option<DateTime<Utc>>,
    /// The highest KV version this state machine has accounted for: a newer one was
    /// written by a step whose bookkeeping a crash lost, and is adopted as pending.
    pub highest_seen: u64,
    /// Completed rotations.
    pub rotations: u64,
    /// How the last attempt ended.
    pub last_result: Option<LastResult>,
    /// When it ended: an aborted rotation is retried only [`crate::plan::ABORT_RETRY_AFTER`]
    /// later, not at the next tick.
    pub last_result_at: Option<DateTime<Utc>>,
}

impl RotationState {
    /// The state of a secret never rotated by us.
    #[must_use]
    pub fn new() -> Self {
        Self {
            phase: Phase::Idle,
            current: None,
            previous: None,
            rotated_at: None,
            highest_seen: 0,
            rotations: 0,
            last_result: None,
            last_result_at: None,
        }
    }

    /// The pending version, if a rotation is in flight.
    #[must_use]
    pub fn pending(&self) -> Option<u64> {
        match self.phase {
            Phase::Pending { version, .. } => Some(version),
            Phase::Idle => None,
        }
    }
}

impl Default for RotationState {
    fn default() -> Self {
        Self::new()
    }
}

/// Custom metadata that does not decode: somebody edited it by hand, or a newer
/// controller wrote a format this one does not know. Never read as "no state", which
/// would start a second rotation over the first.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StateError {
    /// A key holds a value that does not parse.
    #[error("rotation state key {key} has unreadable value {value:?}")]
    BadValue {
        /// The metadata key.
        key: String,
        /// What it holds.
        value: String,
    },
    /// A key the stored phase needs is missing.
    #[error("rotation state key {key} is missing")]
    Missing {
        /// The metadata key.
        key: String,
    },
}

fn key(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// Writes `state` into `custom`, replacing this crate's keys and keeping everybody
/// else's.
pub fn encode(state: &RotationState, custom: &mut BTreeMap<String, String>) {
    custom.retain(|k, _| !k.starts_with(KEY_PREFIX));
    let mut put = |name: &str, value: String| {
        custom.insert(key(name), value);
    };
    match &state.phase {
        Phase::Idle => put("phase", "idle".to_owned()),
        Phase::Pending { version, stage } => {
            let label = match stage {
                Stage::Created => "created",
                Stage::AtTarget => "at_target",
                Stage::Tested => "tested",
                Stage::Aborting { reason } => {
                    put("abort_reason", reason.clone());
                    "aborting"
                }
            };
            put("phase", label.to_owned());
            put("pending", version.to_string());
        }
    }
    if let Some(c) = state.current {
        put("current", c.to_string());
    }
    if let Some(p) = &state.previous {
        put("previous", p.version.to_string());
        put("previous_retire_at", p.retire_at.to_rfc3339());
    }
    if let Some(t) = state.rotated_at {
        put("rotated_at", t.to_rfc3339());
    }
    put("highest_seen", state.highest_seen.to_string());
    put("rotations", state.rotations.to_string());
    if let Some(t) = state.last_result_at {
        put("last_result_at", t.to_rfc3339());
    }
    if let Some(r) = &state.last_result {
        put("last_result", r.label().to_owned());
        match r {
            LastResult::Aborted { reason: m } | LastResult::Failed { message: m } => {
                put("last_message", m.clone());
            }
            LastResult::Rotated => {}
        }
    }
}

/// Reads the state back; a path without any of this crate's keys is a fresh
/// [`RotationState::new`].
pub fn decode(custom: &BTreeMap<String, String>) -> Result<RotationState, StateError> {
    let get = |name: &str| custom.get(&key(name));
    let need = |name: &str| get(name).ok_or_else(|| StateError::Missing { key: key(name) });
    let bad = |name: &str, value: &str| StateError::BadValue {
        key: key(name),
        value: value.to_owned(),
    };
    let num = |name: &str| -> Result<Option<u64>, StateError> {
        get(name)
            .map(|v| v.parse::<u64>().map_err(|_| bad(name, v)))
            .transpose()
    };
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, StateError> {
        get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| bad(name, v))
            })
            .transpose()
    };
    let Some(phase_text) = get("phase") else {
        return Ok(RotationState::new());
    };
    let stage = match phase_text.as_str() {
        "idle" => None,
        "created" => Some(Stage::Created),
        "at_target" => Some(Stage::AtTarget),
        "tested" => Some(Stage::Tested),
        "aborting" => Some(Stage::Aborting {
            reason: need("abort_reason")?.clone(),
        }),
        other => return Err(bad("phase", other)),
    };
    let phase = match stage {
        None => Phase::Idle,
        Some(stage) => Phase::Pending {
            version: num("pending")?.ok_or_else(|| StateError::Missing {
                key: key("pending"),
            })?,
            stage,
        },
    };
    let previous = match (num("previous")?, time("previous_retire_at")?) {
        (Some(version), Some(retire_at)) => Some(Previous { version, retire_at }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(StateError::Missing {
                key: key("previous_retire_at"),
            });
        }
        (None, Some(_)) => {
            return Err(StateError::Missing {
                key: key("previous"),
            });
        }
    };
    let message = || get("last_message").cloned().unwrap_or_default();
    let last_result = match get("last_result").map(String::as_str) {
        None => None,
        Some("rotated") => Some(LastResult::Rotated),
        Some("aborted") => Some(LastResult::Aborted { reason: message() }),
        Some("failed") => Some(LastResult::Failed { message: message() }),
        Some(other) => return Err(bad("last_result", other)),
    };
    Ok(RotationState {
        phase,
        current: num("current")?,
        previous,
        rotated_at: time("rotated_at")?,
        highest_seen: num("highest_seen")?.unwrap_or(0),
        rotations: num("rotations")?.unwrap_or(0),
        last_result,
        last_result_at: time("last_result_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default()
    }

    fn roundtrip(s: &RotationState) {
        let mut custom = BTreeMap::from([("owner".to_owned(), "team".to_owned())]);
        encode(s, &mut custom);
        assert_eq!(custom.get("owner").map(String::as_str), Some("team"));
        assert_eq!(decode(&custom).as_ref(), Ok(s), "{custom:?}");
    }

    #[test]
    fn every_phase_survives_a_roundtrip_through_custom_metadata() {
        roundtrip(&RotationState::new());
        for stage in [
            Stage::Created,
            Stage::AtTarget,
            Stage::Tested,
            Stage::Aborting {
                reason: "login refused".into(),
            },
        ] {
            roundtrip(&RotationState {
                phase: Phase::Pending { version: 4, stage },
                current: Some(3),
                previous: Some(Previous {
                    version: 2,
                    retire_at: t(300),
                }),
                rotated_at: Some(t(0)),
                highest_seen: 4,
                rotations: 2,
                last_result: Some(LastResult::Failed {
                    message: "sealed".into(),
                }),
                last_result_at: Some(t(60)),
            });
        }
    }

    #[test]
    fn a_path_without_state_is_fresh_and_a_broken_one_is_an_error() {
        assert_eq!(decode(&BTreeMap::new()), Ok(RotationState::new()));
        let broken = BTreeMap::from([
            (key("phase"), "tested".to_owned()),
            (key("current"), "x".to_owned()),
        ]);
        assert_eq!(
            decode(&broken),
            Err(StateError::Missing {
                key: key("pending")
            })
        );
        let bad = BTreeMap::from([(key("phase"), "exploded".to_owned())]);
        assert!(matches!(decode(&bad), Err(StateError::BadValue { .. })));
    }

    #[test]
    fn encode_drops_keys_of_a_finished_phase() {
        let mut custom = BTreeMap::new();
        encode(
            &RotationState {
                phase: Phase::Pending {
                    version: 2,
                    stage: Stage::Aborting { reason: "r".into() },
                },
                ..RotationState::new()
            },
            &mut custom,
        );
        encode(&RotationState::new(), &mut custom);
        assert!(!custom.contains_key(&key("pending")));
        assert!(!custom.contains_key(&key("abort_reason")));
    }
}
