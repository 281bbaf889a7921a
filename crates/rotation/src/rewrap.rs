//! KMS master-key rotation for envelope encryption, as a resumable re-wrap: add a master
//! key version, re-wrap every data key from the old version to the new one (checking
//! that each still decrypts to the same key), then cut over by refusing the old
//! version. The progress (target version, data keys done) is persisted as KV v2 custom
//! metadata after every data key (as a cursor: data keys are handled in sorted order,
//! and OpenBao limits a metadata value to 512 bytes), so a controller that crashes halfway resumes with the
//! first key not yet done instead of starting over, and never cuts over before every
//! data key is re-wrapped.

use crate::state::{KEY_PREFIX, StateError};
use std::collections::BTreeMap;

/// How far a re-wrap got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapProgress {
    /// The master key version every data key is moved to.
    pub target_version: u64,
    /// Every data key whose id sorts at or before this one is re-wrapped and checked.
    pub done_through: Option<String>,
}

/// The next thing to do in a master-key rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewrapStep {
    /// Add a master key version and record it as the target.
    Start,
    /// Re-wrap this data key under the target version and check it.
    Rewrap {
        /// The data key's id.
        id: String,
    },
    /// Every data key is on the target: refuse older versions from now on.
    CutOver {
        /// The new `min_decryption_version`.
        min_version: u64,
    },
}

/// The next step, given the persisted progress (`None`: no re-wrap in flight) and the
/// data keys that exist now. Pure. A data key added after the start was wrapped by the
/// newest version already, so one that sorts before the cursor needs nothing.
#[must_use]
pub fn next(progress: Option<&RewrapProgress>, data_keys: &[String]) -> RewrapStep {
    let Some(p) = progress else {
        return RewrapStep::Start;
    };
    let todo = data_keys
        .iter()
        .filter(|id| p.done_through.as_ref().is_none_or(|d| *id > d))
        .min();
    match todo {
        Some(id) => RewrapStep::Rewrap { id: id.clone() },
        None => RewrapStep::CutOver {
            min_version: p.target_version,
        },
    }
}

const TARGET: &str = "rewrap.target_version";
const DONE: &str = "rewrap.done";

/// Writes `progress` into `custom` (`None` clears it), keeping every other key.
pub fn encode(progress: Option<&RewrapProgress>, custom: &mut BTreeMap<String, String>) {
    let (t, d) = (
        format!("{KEY_PREFIX}{TARGET}"),
        format!("{KEY_PREFIX}{DONE}"),
    );
    custom.remove(&t);
    custom.remove(&d);
    if let Some(p) = progress {
        custom.insert(t, p.target_version.to_string());
        if let Some(done) = &p.done_through {
            custom.insert(d, done.clone());
        }
    }
}

/// Reads the progress back; `None` when no re-wrap is in flight.
pub fn decode(custom: &BTreeMap<String, String>) -> Result<Option<RewrapProgress>, StateError> {
    let t = format!("{KEY_PREFIX}{TARGET}");
    let Some(raw) = custom.get(&t) else {
        return Ok(None);
    };
    let target_version = raw.parse().map_err(|_| StateError::BadValue {
        key: t.clone(),
        value: raw.clone(),
    })?;
    Ok(Some(RewrapProgress {
        target_version,
        done_through: custom.get(&format!("{KEY_PREFIX}{DONE}")).cloned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn steps_go_start_then_each_key_then_cut_over() {
        let keys = ids(&["b", "a"]);
        assert_eq!(next(None, &keys), RewrapStep::Start);
        let mut p = RewrapProgress {
            target_version: 3,
            done_through: None,
        };
        assert_eq!(next(Some(&p), &keys), RewrapStep::Rewrap { id: "a".into() });
        p.done_through = Some("a".into());
        assert_eq!(next(Some(&p), &keys), RewrapStep::Rewrap { id: "b".into() });
        p.done_through = Some("b".into());
        assert_eq!(
            next(Some(&p), &keys),
            RewrapStep::CutOver { min_version: 3 }
        );
    }

    #[test]
    fn progress_round_trips_through_custom_metadata_and_keeps_other_keys() {
        let mut custom = BTreeMap::from([("owner".to_owned(), "x".to_owned())]);
        let p = RewrapProgress {
            target_version: 7,
            done_through: Some("k2".to_owned()),
        };
        encode(Some(&p), &mut custom);
        assert_eq!(decode(&custom), Ok(Some(p)));
        encode(None, &mut custom);
        assert_eq!(decode(&custom), Ok(None));
        assert_eq!(custom.len(), 1);
        custom.insert(format!("{KEY_PREFIX}{TARGET}"), "x".into());
        assert!(decode(&custom).is_err());
    }
}
