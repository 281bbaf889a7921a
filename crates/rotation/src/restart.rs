//! Reloader-compatible restarts, coalesced: when several secrets a workload reads change
//! close together, it is rolled out once, not once per secret. [`coalesce`] is pure: the
//! shell feeds it the changes not yet acted on and carries out the restarts it returns.
//!
//! Rule: a workload restarts once `window` has passed since the oldest change it has not
//! yet picked up; every change up to `now` is folded into that one rollout. So a burst of
//! rotations within one window costs one rollout, and no change waits longer than
//! `window` (the overlap of a secret must be longer than the window, or consumers would
//! still hold the retired version).

use crate::model::Consumer;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One secret's new version that `workload` has to pick up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretChange {
    /// Inventory name of the secret.
    pub secret: String,
    /// The Deployment that reads it.
    pub workload: Consumer,
    /// When the new version was promoted.
    pub changed_at: DateTime<Utc>,
}

/// One rollout to start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The Deployment to restart.
    pub workload: Consumer,
    /// Every secret whose change this rollout picks up (recorded in the annotation).
    pub secrets: BTreeSet<String>,
}

/// What to do now and when to look again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coalesced {
    /// Rollouts to start now, one per workload at most.
    pub restarts: Vec<Restart>,
    /// When the earliest held-back workload becomes due (`None`: nothing held back).
    pub next_at: Option<DateTime<Utc>>,
}

/// Groups `changes` by workload and returns the rollouts due at `now`. Pure.
#[must_use]
pub fn coalesce(changes: &[SecretChange], window: Duration, now: DateTime<Utc>) -> Coalesced {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let mut by_workload: BTreeMap<&Consumer, (DateTime<Utc>, BTreeSet<String>)> = BTreeMap::new();
    // Changes from the future (clock skew between controllers) wait until they are due.
    for c in changes.iter().filter(|c| c.changed_at <= now) {
        let e = by_workload
            .entry(&c.workload)
            .or_insert_with(|| (c.changed_at, BTreeSet::new()));
        e.0 = e.0.min(c.changed_at);
        e.1.insert(c.secret.clone());
    }
    let mut out = Coalesced::default();
    for (workload, (oldest, secrets)) in by_workload {
        let due = oldest
            .checked_add_signed(window)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if due <= now {
            out.restarts.push(Restart {
                workload: workload.clone(),
                secrets,
            });
        } else {
            out.next_at = Some(out.next_at.map_or(due, |n| n.min(due)));
        }
    }
    for c in changes.iter().filter(|c| c.changed_at > now) {
        let due = c
            .changed_at
            .checked_add_signed(window)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        out.next_at = Some(out.next_at.map_or(due, |n| n.min(due)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConsumerKind;
    use proptest::prelude::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default()
    }

    fn deploy(name: &str) -> Consumer {
        Consumer {
            kind: ConsumerKind::Deployment,
            namespace: "apps".into(),
            name: name.into(),
        }
    }

    fn change(secret: &str, workload: &str, at: i64) -> SecretChange {
        SecretChange {
            secret: secret.into(),
            workload: deploy(workload),
            changed_at: t(at),
        }
    }

    #[test]
    fn several_secrets_of_one_workload_become_one_rollout_after_the_window() {
        let changes = [
            change("db", "api", 0),
            change("token", "api", 20),
            change("token", "web", 50),
        ];
        let held = coalesce(&changes, Duration::from_mins(1), t(30));
        assert!(held.restarts.is_empty());
        assert_eq!(held.next_at, Some(t(60)));
        let due = coalesce(&changes, Duration::from_mins(1), t(60));
        assert_eq!(
            due.restarts,
            vec![Restart {
                workload: deploy("api"),
                secrets: BTreeSet::from(["db".to_owned(), "token".to_owned()]),
            }]
        );
        assert_eq!(due.next_at, Some(t(110)), "web waits for its own window");
        assert_eq!(
            coalesce(&[], Duration::from_mins(1), t(0)),
            Coalesced::default()
        );
    }

    #[test]
    fn a_change_from_the_future_waits() {
        let c = coalesce(&[change("db", "api", 100)], Duration::ZERO, t(0));
        assert!(c.restarts.is_empty());
        assert_eq!(c.next_at, Some(t(100)));
    }

    proptest! {
        #[test]
        fn at_most_one_rollout_per_workload_and_no_change_waits_past_its_window(
            raw in proptest::collection::vec((0u8..3, 0u8..4, 0i64..200), 0..20),
            window in 0u64..100,
            now in 0i64..300,
        ) {
            let changes: Vec<SecretChange> = raw
                .iter()
                .map(|(s, w, at)| change(&format!("s{s}"), &format!("w{w}"), *at))
                .collect();
            let out = coalesce(&changes, Duration::from_secs(window), t(now));
            let workloads: BTreeSet<&Consumer> = out.restarts.iter().map(|r| &r.workload).collect();
            prop_assert_eq!(workloads.len(), out.restarts.len(), "one rollout per workload");
            for c in &changes {
                let overdue = c.changed_at <= t(now)
                    && t(now) >= c.changed_at + chrono::Duration::seconds(i64::try_from(window).unwrap_or(0));
                let r = out.restarts.iter().find(|r| r.workload == c.workload);
                if overdue {
                    prop_assert!(r.is_some_and(|r| r.secrets.contains(&c.secret)), "{c:?} overdue but not restarted");
                }
                if c.changed_at > t(now) {
                    prop_assert!(r.is_none_or(|r| !r.secrets.contains(&c.secret) || changes.iter().any(|o| o.secret == c.secret && o.workload == c.workload && o.changed_at <= t(now))));
                }
            }
            for r in &out.restarts {
                let oldest = changes.iter().filter(|c| c.workload == r.workload && c.changed_at <= t(now)).map(|c| c.changed_at).min();
                prop_assert!(oldest.is_some_and(|o| o + chrono::Duration::seconds(i64::try_from(window).unwrap_or(0)) <= t(now)), "restarted before its window");
            }
            if let Some(n) = out.next_at { prop_assert!(n > t(now)); }
        }
    }
}
