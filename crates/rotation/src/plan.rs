//! The staged rotation state machine, as two pure functions: [`decide`] picks the next
//! step from the persisted state, what was observed and `now`; [`apply`] folds the step's
//! outcome back into the state. No IO and no clock: the shell (`run`) supplies both.
//!
//! Steps: create pending -> set at target -> test (a real login or signature check) ->
//! promote (pending becomes current, current becomes previous for the overlap window)
//! -> retire previous once the window has passed. A rejected set or test aborts: the
//! pending version is revoked and destroyed and current stays.
//!
//! A class with a single live credential (`static_db`) has no overlap: the previous
//! version is retired right after the promotion, because the target already refuses it.
//!
//! Invariant: once a secret has a current version, no step ever revokes it: only the
//! previous version (after its window) and a pending version that never became current
//! are retired. Checked by the property test below against every crash point.

use crate::model::{ApprovalPolicy, ManagedSecret};
use crate::state::{LastResult, Phase, Previous, RotationState, Stage};
use chrono::{DateTime, Utc};
use sre_core::approval::{ApprovalRequest, ApprovalStatus};

/// What the shell observed before deciding.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Newest KV version at the secret's path (0 when the path does not exist yet).
    pub latest_version: u64,
    /// The latest approval request made for this secret, if any.
    pub approval: Option<&'a ApprovalRequest>,
}

/// Why nothing is done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The secret is not due yet.
    NotDue,
    /// The previous version is still inside its overlap window.
    Overlap,
    /// An approval request is open.
    Approval,
    /// An approval was denied; a new request is made once it would have expired.
    Denied,
    /// SPIRE or cert-manager rotates this one.
    ObserveOnly,
    /// The last attempt was aborted; the next waits [`ABORT_RETRY_AFTER`].
    AfterAbort,
}

/// The next thing to do for one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing until `until` (`None`: until something changes).
    Wait {
        /// When to look again.
        until: Option<DateTime<Utc>>,
        /// Why.
        reason: WaitReason,
    },
    /// Ask a human; nothing rotates until one approves.
    RequestApproval {
        /// What the approver is asked.
        subject: String,
        /// The request lapses then.
        expires_at: DateTime<Utc>,
        /// True when an earlier request lapsed undecided (worth an alert).
        previous_expired: bool,
    },
    /// Mint new credential material and store it as a new KV version.
    CreatePending,
    /// A KV version newer than any this state machine recorded: a crash lost the
    /// bookkeeping of a create. Take it as pending; the next steps are idempotent.
    AdoptPending {
        /// The version.
        version: u64,
    },
    /// Make the target accept the pending version.
    SetAtTarget {
        /// The pending version.
        version: u64,
    },
    /// Prove the target accepts it (a real login or signature check).
    TestPending {
        /// The pending version.
        version: u64,
    },
    /// Pending becomes current; current becomes previous for the overlap window.
    Promote {
        /// The pending version.
        version: u64,
    },
    /// Revoke and destroy a pending version the target rejected.
    DropPending {
        /// The pending version.
        version: u64,
        /// Why it was rejected.
        reason: String,
    },
    /// Revoke and destroy the previous version after its overlap window.
    RetirePrevious {
        /// The previous version.
        version: u64,
    },
}

impl Step {
    /// A stable label for logs and metrics.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Wait { .. } => "wait",
            Self::RequestApproval { .. } => "request_approval",
            Self::CreatePending => "create_pending",
            Self::AdoptPending { .. } => "adopt_pending",
            Self::SetAtTarget { .. } => "set_at_target",
            Self::TestPending { .. } => "test_pending",
            Self::Promote { .. } => "promote",
            Self::DropPending { .. } => "drop_pending",
            Self::RetirePrevious { .. } => "retire_previous",
        }
    }

    /// Whether the step changes anything (and its outcome must be persisted).
    #[must_use]
    pub fn acts(&self) -> bool {
        !matches!(self, Self::Wait { .. } | Self::RequestApproval { .. })
    }
}

/// What executing a step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done as asked.
    Done,
    /// [`Step::CreatePending`] wrote this KV version.
    Created {
        /// The new version.
        version: u64,
    },
    /// The target refused the pending credential (set or test): abort the rotation.
    Rejected {
        /// What the target said.
        reason: String,
    },
    /// Could not be done now (OpenBao sealed or unreachable, a lost race): retry later;
    /// nothing was half-done that the next attempt cannot repeat.
    Failed {
        /// What failed.
        message: String,
    },
}

/// When the secret is next due, given its state; `None` for never.
#[must_use]
pub fn next_due(state: &RotationState, secret: &ManagedSecret) -> Option<DateTime<Utc>> {
    match (state.current, state.rotated_at) {
        (Some(_), Some(at)) => secret.cadence.next_due(at),
        // Never rotated by us: due at once (unless observe-only).
        _ if secret.class.is_observe_only() => None,
        _ => Some(DateTime::<Utc>::MIN_UTC),
    }
}

fn retire_or_wait(previous: &Previous, now: DateTime<Utc>) -> Step {
    if now >= previous.retire_at {
        Step::RetirePrevious {
            version: previous.version,
        }
    } else {
        Step::Wait {
            until: Some(previous.retire_at),
            reason: WaitReason::Overlap,
        }
    }
}

/// The next step for one secret. Pure: same inputs, same step.
#[must_use]
pub fn decide(
    state: &RotationState,
    obs: &Observed<'_>,
    secret: &ManagedSecret,
    now: DateTime<Utc>,
) -> Step {
    if secret.class.is_observe_only() {
        return Step::Wait {
            until: None,
            reason: WaitReason::ObserveOnly,
        };
    }
    match &state.phase {
        Phase::Pending { version, stage } => {
            let version = *version;
            match stage {
                Stage::Created => Step::SetAtTarget { version },
                Stage::AtTarget => Step::TestPending { version },
                // A promotion would overwrite `previous`; retire it first so that no
                // valid credential is ever forgotten.
                Stage::Tested => match &state.previous {
                    Some(p) => retire_or_wait(p, now),
                    None => Step::Promote { version },
                },
                Stage::Aborting { reason } => Step::DropPending {
                    version,
                    reason: reason.clone(),
                },
            }
        }
        Phase::Idle => {
            if obs.latest_version > state.highest_seen {
                return Step::AdoptPending {
                    version: obs.latest_version,
                };
            }
            if let Some(p) = &state.previous {
                return retire_or_wait(p, now);
            }
            match next_due(state, secret) {
                None => Step::Wait {
                    until: None,
                    reason: WaitReason::NotDue,
                },
                Some(due) if due > now => Step::Wait {
                    until: Some(due),
                    reason: WaitReason::NotDue,
                },
                Some(_) => match retry_after_abort(state, secret) {
                    Some(at) if at > now => Step::Wait {
                        until: Some(at),
                        reason: WaitReason::AfterAbort,
                    },
                    _ => gate(state, obs, secret, now),
                },
            }
        }
    }
}

/// How long a secret whose last rotation was aborted (the target refused the new
/// credential) waits before the next attempt. Without it a due secret would be retried
/// at once, minting and revoking a refused credential every tick; the refusal usually
/// needs a person (a role without LOGIN, a revoked grant), who can retry at once with
/// `sre rotation rotate`.
pub const ABORT_RETRY_AFTER: std::time::Duration = std::time::Duration::from_mins(15);

/// When the next attempt after an abort may start; `None` when the last attempt was
/// not aborted or the run is forced ([`crate::status::due_now`]: an operator's explicit
/// rotation).
pub(crate) fn retry_after_abort(
    state: &RotationState,
    secret: &ManagedSecret,
) -> Option<DateTime<Utc>> {
    let forced = matches!(secret.cadence, crate::model::Cadence::MaxAge(d) if d.is_zero());
    match (&state.last_result, state.last_result_at) {
        (Some(LastResult::Aborted { .. }), Some(at)) if !forced => {
            let wait = chrono::Duration::from_std(ABORT_RETRY_AFTER).unwrap_or_default();
            at.checked_add_signed(wait)
        }
        _ => None,
    }
}

/// Due: rotate now, or first get (or wait for) an approval.
fn gate(
    state: &RotationState,
    obs: &Observed<'_>,
    secret: &ManagedSecret,
    now: DateTime<Utc>,
) -> Step {
    let ApprovalPolicy::Required { expires_after, .. } = &secret.approval else {
        return Step::CreatePending;
    };
    let request = |previous_expired| Step::RequestApproval {
        subject: format!("rotate {} ({})", secret.name, secret.class),
        expires_at: chrono::Duration::from_std(*expires_after)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
        previous_expired,
    };
    // An approval given for an earlier rotation does not carry over to this one.
    let fresh = obs
        .approval
        .filter(|a| state.rotated_at.is_none_or(|t| a.requested_at >= t));
    let Some(approval) = fresh else {
        return request(false);
    };
    match approval.status(now) {
        ApprovalStatus::Approved { .. } => Step::CreatePending,
        ApprovalStatus::Pending => Step::Wait {
            until: Some(approval.expires_at),
            reason: WaitReason::Approval,
        },
        ApprovalStatus::Expired => request(true),
        ApprovalStatus::Denied { .. } if now < approval.expires_at => Step::Wait {
            until: Some(approval.expires_at),
            reason: WaitReason::Denied,
        },
        ApprovalStatus::Denied { .. } => request(false),
    }
}

/// Folds the outcome of `step` into `state`. A step that does not match the state (a
/// stale decision) changes nothing, so replaying an old step is harmless.
#[must_use]
pub fn apply(
    state: &RotationState,
    step: &Step,
    outcome: &Outcome,
    secret: &ManagedSecret,
    now: DateTime<Utc>,
) -> RotationState {
    let mut next = state.clone();
    if let Outcome::Failed { message } = outcome {
        next.last_result = Some(LastResult::Failed {
            message: message.clone(),
        });
        next.last_result_at = Some(now);
        return next;
    }
    let pending_at = |stage: &Stage, version: u64| match &state.phase {
        Phase::Pending {
            version: v,
            stage: s,
        } => *v == version && s == stage,
        Phase::Idle => false,
    };
    match (step, outcome) {
        (Step::CreatePending, Outcome::Created { version })
        | (Step::AdoptPending { version }, _)
            if state.phase == Phase::Idle && *version > state.highest_seen =>
        {
            next.phase = Phase::Pending {
                version: *version,
                stage: Stage::Created,
            };
            next.highest_seen = *version;
        }
        (Step::SetAtTarget { version }, Outcome::Done) if pending_at(&Stage::Created, *version) => {
            next.phase = Phase::Pending {
                version: *version,
                stage: Stage::AtTarget,
            };
        }
        (Step::TestPending { version }, Outcome::Done)
            if pending_at(&Stage::AtTarget, *version) =>
        {
            next.phase = Phase::Pending {
                version: *version,
                stage: Stage::Tested,
            };
        }
        (
            Step::SetAtTarget { version } | Step::TestPending { version },
            Outcome::Rejected { reason },
        ) if state.pending() == Some(*version) => {
            next.phase = Phase::Pending {
                version: *version,
                stage: Stage::Aborting {
                    reason: reason.clone(),
                },
            };
        }
        (Step::Promote { version }, Outcome::Done)
            if pending_at(&Stage::Tested, *version) && state.previous.is_none() =>
        {
            // One live credential (a static role): the old one already stopped working
            // at the target, so it is retired at once instead of kept for an overlap
            // that cannot exist (the inventory also refuses a non-zero overlap).
            let overlap = if secret.class.has_single_live_credential() {
                chrono::Duration::zero()
            } else {
                chrono::Duration::from_std(secret.overlap).unwrap_or(chrono::Duration::MAX)
            };
            next.previous = state.current.map(|c| Previous {
                version: c,
                retire_at: now
                    .checked_add_signed(overlap)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            });
            next.current = Some(*version);
            next.rotated_at = Some(now);
            next.rotations += 1;
            next.phase = Phase::Idle;
            next.last_result = Some(LastResult::Rotated);
            next.last_result_at = Some(now);
        }
        (Step::DropPending { version, reason }, Outcome::Done)
            if state.pending() == Some(*version) =>
        {
            next.phase = Phase::Idle;
            next.last_result = Some(LastResult::Aborted {
                reason: reason.clone(),
            });
            next.last_result_at = Some(now);
        }
        (Step::RetirePrevious { version }, Outcome::Done)
            if state
                .previous
                .as_ref()
                .is_some_and(|p| p.version == *version) =>
        {
            next.previous = None;
        }
        _ => {}
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cadence, SecretClass};
    use proptest::prelude::*;
    use sre_core::approval::{ApprovalId, Principal};
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default()
    }

    fn secret(max_age: u64, overlap: u64) -> ManagedSecret {
        ManagedSecret {
            name: "billing-db".into(),
            class: SecretClass::DynamicDb,
            path: "apps/billing/db".into(),
            cadence: Cadence::MaxAge(Duration::from_secs(max_age)),
            overlap: Duration::from_secs(overlap),
            owner: "team".into(),
            consumers: vec![],
            approval: ApprovalPolicy::NotRequired,
        }
    }

    fn signing() -> ManagedSecret {
        ManagedSecret {
            class: SecretClass::SigningKey,
            approval: ApprovalPolicy::Required {
                approvers: BTreeSet::from([Principal::new("sec")]),
                expires_after: Duration::from_mins(10),
            },
            ..secret(3600, 60)
        }
    }

    fn obs(latest: u64) -> Observed<'static> {
        Observed {
            latest_version: latest,
            approval: None,
        }
    }

    fn pending(version: u64, stage: Stage) -> RotationState {
        RotationState {
            phase: Phase::Pending { version, stage },
            current: Some(1),
            rotated_at: Some(t(0)),
            highest_seen: version,
            ..RotationState::new()
        }
    }

    fn idle(current: u64, rotated: i64) -> RotationState {
        RotationState {
            current: Some(current),
            rotated_at: Some(t(rotated)),
            highest_seen: current,
            rotations: 1,
            ..RotationState::new()
        }
    }

    /// `check(state, observed, now, expected step)`.
    fn check(state: &RotationState, o: &Observed<'_>, s: &ManagedSecret, now: i64, expect: &Step) {
        assert_eq!(&decide(state, o, s, t(now)), expect, "{state:?}");
    }

    #[test]
    fn each_stage_leads_to_the_next_step() {
        let s = secret(3600, 60);
        check(&RotationState::new(), &obs(0), &s, 0, &Step::CreatePending);
        check(
            &pending(2, Stage::Created),
            &obs(2),
            &s,
            0,
            &Step::SetAtTarget { version: 2 },
        );
        check(
            &pending(2, Stage::AtTarget),
            &obs(2),
            &s,
            0,
            &Step::TestPending { version: 2 },
        );
        check(
            &pending(2, Stage::Tested),
            &obs(2),
            &s,
            0,
            &Step::Promote { version: 2 },
        );
        check(
            &pending(
                2,
                Stage::Aborting {
                    reason: "no".into(),
                },
            ),
            &obs(2),
            &s,
            0,
            &Step::DropPending {
                version: 2,
                reason: "no".into(),
            },
        );
        check(
            &idle(1, 0),
            &obs(1),
            &s,
            10,
            &Step::Wait {
                until: Some(t(3600)),
                reason: WaitReason::NotDue,
            },
        );
        check(&idle(1, 0), &obs(1), &s, 3600, &Step::CreatePending);
        check(
            &idle(1, 0),
            &obs(3),
            &s,
            10,
            &Step::AdoptPending { version: 3 },
        );
    }

    #[test]
    fn promote_keeps_previous_for_the_overlap_then_retires_it() {
        let s = secret(3600, 60);
        let st = apply(
            &pending(2, Stage::Tested),
            &Step::Promote { version: 2 },
            &Outcome::Done,
            &s,
            t(100),
        );
        assert_eq!(st.current, Some(2));
        assert_eq!(
            st.previous,
            Some(Previous {
                version: 1,
                retire_at: t(160)
            })
        );
        assert_eq!((st.rotations, st.rotated_at), (1, Some(t(100))));
        check(
            &st,
            &obs(2),
            &s,
            159,
            &Step::Wait {
                until: Some(t(160)),
                reason: WaitReason::Overlap,
            },
        );
        check(&st, &obs(2), &s, 160, &Step::RetirePrevious { version: 1 });
        let st = apply(
            &st,
            &Step::RetirePrevious { version: 1 },
            &Outcome::Done,
            &s,
            t(160),
        );
        assert_eq!(st.previous, None);
    }

    #[test]
    fn a_static_role_retires_the_old_password_right_after_the_promotion() {
        // Even a (hand-built) secret with an overlap: the old password is dead already.
        let s = ManagedSecret {
            class: SecretClass::StaticDb,
            ..secret(3600, 60)
        };
        let st = apply(
            &pending(2, Stage::Tested),
            &Step::Promote { version: 2 },
            &Outcome::Done,
            &s,
            t(100),
        );
        assert_eq!(st.current, Some(2));
        assert_eq!(
            st.previous,
            Some(Previous {
                version: 1,
                retire_at: t(100)
            })
        );
        check(&st, &obs(2), &s, 100, &Step::RetirePrevious { version: 1 });
    }

    #[test]
    fn a_rejected_test_aborts_keeps_current_and_reports() {
        let s = secret(3600, 60);
        let st = apply(
            &pending(2, Stage::AtTarget),
            &Step::TestPending { version: 2 },
            &Outcome::Rejected {
                reason: "password authentication failed".into(),
            },
            &s,
            t(1),
        );
        let step = decide(&st, &obs(2), &s, t(1));
        assert_eq!(
            step,
            Step::DropPending {
                version: 2,
                reason: "password authentication failed".into()
            }
        );
        let st = apply(&st, &step, &Outcome::Done, &s, t(2));
        assert_eq!((st.phase.clone(), st.current), (Phase::Idle, Some(1)));
        assert_eq!(
            st.last_result.as_ref().map(LastResult::label),
            Some("aborted")
        );
        assert_eq!(
            st.highest_seen, 2,
            "a dropped version is never adopted again"
        );
        // Still due once the cadence says so.
        check(&st, &obs(2), &s, 3600, &Step::CreatePending);
    }

    #[test]
    fn an_overdue_secret_pauses_after_an_abort_unless_forced() {
        let s = secret(3600, 60);
        // Overdue (rotated two hours ago), and its last attempt was just refused.
        let mut st = idle(1, -7200);
        st.last_result = Some(LastResult::Aborted {
            reason: "role has no LOGIN".into(),
        });
        st.last_result_at = Some(t(2));
        st.highest_seen = 2; // the refused version 2 was written, then dropped
        let retry_at = 2 + 15 * 60;
        check(
            &st,
            &obs(2),
            &s,
            3,
            &Step::Wait {
                until: Some(t(retry_at)),
                reason: WaitReason::AfterAbort,
            },
        );
        check(&st, &obs(2), &s, retry_at, &Step::CreatePending);
        // `sre rotation rotate` after the operator fixed the target: at once.
        check(
            &st,
            &obs(2),
            &crate::status::due_now(&s),
            3,
            &Step::CreatePending,
        );
        // The status shows the pause as the next rotation time.
        let row = crate::status::row(&s, &st, None, t(3));
        assert_eq!(row.next_rotation, Some(t(retry_at)));
        // A failure (not an abort) does not pause: the shell backs off on errors.
        st.last_result = Some(LastResult::Failed {
            message: "sealed".into(),
        });
        check(&st, &obs(2), &s, 3, &Step::CreatePending);
    }

    #[test]
    fn a_failed_step_changes_nothing_but_the_report() {
        let s = secret(3600, 60);
        let before = pending(2, Stage::Created);
        let after = apply(
            &before,
            &Step::SetAtTarget { version: 2 },
            &Outcome::Failed {
                message: "sealed".into(),
            },
            &s,
            t(1),
        );
        assert_eq!(after.phase, before.phase);
        assert_eq!(
            after.last_result.as_ref().map(LastResult::label),
            Some("failed")
        );
    }

    #[test]
    fn stale_steps_are_ignored() {
        let s = secret(3600, 60);
        let st = idle(3, 0);
        for step in [
            Step::Promote { version: 2 },
            Step::SetAtTarget { version: 2 },
            Step::RetirePrevious { version: 1 },
            Step::AdoptPending { version: 3 },
        ] {
            assert_eq!(apply(&st, &step, &Outcome::Done, &s, t(5)), st, "{step:?}");
        }
    }

    fn approval(requested: i64) -> ApprovalRequest {
        ApprovalRequest::new(
            ApprovalId("a1".into()),
            "rotate",
            Principal::new("rotation-controller"),
            t(requested),
            t(requested + 600),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn with(a: &ApprovalRequest) -> Observed<'_> {
        Observed {
            latest_version: 1,
            approval: Some(a),
        }
    }

    #[test]
    fn signing_keys_wait_for_an_approval_that_expires() {
        let s = signing();
        let st = idle(1, 0);
        let due = 3600;
        let step = decide(&st, &obs(1), &s, t(due));
        assert!(
            matches!(step, Step::RequestApproval { expires_at, previous_expired: false, .. } if expires_at == t(due + 600)),
            "{step:?}"
        );
        let open = approval(due);
        check(
            &st,
            &with(&open),
            &s,
            due + 1,
            &Step::Wait {
                until: Some(t(due + 600)),
                reason: WaitReason::Approval,
            },
        );
        // Nobody decided in time: ask again, and say so.
        let step = decide(&st, &with(&open), &s, t(due + 600));
        assert!(
            matches!(
                step,
                Step::RequestApproval {
                    previous_expired: true,
                    ..
                }
            ),
            "{step:?}"
        );
        let mut yes = approval(due);
        yes.approve(Principal::new("sec"), t(due + 5))
            .unwrap_or_else(|e| panic!("{e}"));
        check(&st, &with(&yes), &s, due + 700, &Step::CreatePending);
        // An approval from before the last rotation is spent.
        let old = {
            let mut a = approval(-100);
            a.approve(Principal::new("sec"), t(-90))
                .unwrap_or_else(|e| panic!("{e}"));
            a
        };
        assert!(matches!(
            decide(&st, &with(&old), &s, t(due)),
            Step::RequestApproval { .. }
        ));
        let mut no = approval(due);
        no.deny(Principal::new("sec"), "freeze", t(due + 5))
            .unwrap_or_else(|e| panic!("{e}"));
        check(
            &st,
            &with(&no),
            &s,
            due + 10,
            &Step::Wait {
                until: Some(t(due + 600)),
                reason: WaitReason::Denied,
            },
        );
    }

    #[test]
    fn observe_only_classes_never_act() {
        let s = ManagedSecret {
            class: SecretClass::Tls,
            cadence: Cadence::Never,
            ..secret(60, 0)
        };
        check(
            &RotationState::new(),
            &obs(0),
            &s,
            0,
            &Step::Wait {
                until: None,
                reason: WaitReason::ObserveOnly,
            },
        );
    }

    // ---- simulation: a target that accepts credentials by version, crashes anywhere ----

    /// The world outside the persisted state: KV versions written and the credentials
    /// the target accepts.
    #[derive(Debug, Default)]
    struct World {
        latest: u64,
        accepted: BTreeSet<u64>,
        revoked_current: bool,
    }

    #[derive(Debug, Clone)]
    enum Fault {
        None,
        /// The step ran; the controller died before persisting its outcome.
        CrashBeforePersist,
        /// OpenBao was unreachable: the step did not run.
        Unavailable,
        /// The target refuses the pending credential.
        Reject,
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![
            6 => Just(Fault::None),
            2 => Just(Fault::CrashBeforePersist),
            1 => Just(Fault::Unavailable),
            1 => Just(Fault::Reject),
        ]
    }

    fn execute(
        world: &mut World,
        persisted: &RotationState,
        step: &Step,
        fault: &Fault,
    ) -> Outcome {
        if matches!(fault, Fault::Unavailable) {
            return Outcome::Failed {
                message: "openbao unavailable".into(),
            };
        }
        let reject = matches!(fault, Fault::Reject);
        match step {
            Step::CreatePending => {
                world.latest += 1;
                Outcome::Created {
                    version: world.latest,
                }
            }
            Step::SetAtTarget { version } if reject => Outcome::Rejected {
                reason: format!("set {version}"),
            },
            Step::SetAtTarget { version } => {
                world.accepted.insert(*version);
                Outcome::Done
            }
            Step::TestPending { version } if reject || !world.accepted.contains(version) => {
                Outcome::Rejected {
                    reason: format!("login with {version} failed"),
                }
            }
            Step::RetirePrevious { version } | Step::DropPending { version, .. } => {
                if persisted.current == Some(*version) {
                    world.revoked_current = true;
                }
                world.accepted.remove(version);
                Outcome::Done
            }
            _ => Outcome::Done,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// For any schedule of crashes, outages and rejections: the current version is
        /// always accepted by the target, it is never revoked, and once faults stop the
        /// secret settles with exactly one accepted credential.
        #[test]
        fn crashes_anywhere_never_lose_the_only_valid_credential(
            faults in proptest::collection::vec(fault(), 1..120),
            ticks in proptest::collection::vec(0u64..40, 120),
        ) {
            let s = secret(100, 30);
            let mut world = World::default();
            let mut persisted = RotationState::new();
            let mut now = t(0);
            let mut rotations_seen = 0;
            let run = |fault: &Fault, world: &mut World, persisted: &mut RotationState, now| {
                let step = decide(persisted, &obs(world.latest), &s, now);
                if !step.acts() {
                    return;
                }
                let outcome = execute(world, persisted, &step, fault);
                if !matches!(fault, Fault::CrashBeforePersist) {
                    *persisted = apply(persisted, &step, &outcome, &s, now);
                }
            };
            for (fault, tick) in faults.iter().zip(&ticks) {
                run(fault, &mut world, &mut persisted, now);
                now += chrono::Duration::seconds(i64::try_from(*tick).unwrap_or(0));
                prop_assert!(!world.revoked_current, "revoked the current version: {persisted:?}");
                if let Some(c) = persisted.current {
                    prop_assert!(world.accepted.contains(&c), "current {c} not accepted: {world:?} {persisted:?}");
                }
                if persisted.pending().is_some() {
                    prop_assert_ne!(persisted.pending(), persisted.current);
                }
                prop_assert!(persisted.rotations >= rotations_seen);
                rotations_seen = persisted.rotations;
            }
            // Faults stop: after the pause that follows an abort, within a bounded
            // number of steps the secret is rotated and settled, with only the current
            // credential accepted.
            let pause_over = |persisted: &RotationState, world: &World, now| {
                match decide(persisted, &obs(world.latest), &s, now) {
                    Step::Wait { until: Some(u), reason: WaitReason::AfterAbort } => u,
                    _ => now + chrono::Duration::seconds(10),
                }
            };
            for _ in 0..20 {
                run(&Fault::None, &mut world, &mut persisted, now);
                now = pause_over(&persisted, &world, now);
            }
            for _ in 0..10 {
                if persisted.previous.is_none() && persisted.phase == Phase::Idle { break; }
                run(&Fault::None, &mut world, &mut persisted, now);
                now = pause_over(&persisted, &world, now);
            }
            prop_assert_eq!(&persisted.phase, &Phase::Idle);
            prop_assert!(persisted.current.is_some());
            let only: BTreeSet<u64> = persisted.current.into_iter().collect();
            prop_assert_eq!(&world.accepted, &only, "{:?}", persisted);
        }
    }
}
