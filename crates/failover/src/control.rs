//! Human input to the loop: promotion approvals (semi-automatic mode) and operator
//! commands (`promote` in manual mode, `demote` in any mode).
//!
//! The controller is the requester of every approval, so four eyes holds by
//! construction: an approval must name a person other than the controller (and, when
//! approvers are configured, one of them). A request expires after the approval TTL; an
//! approval arriving later is refused, and the loop asks again with a new plan id while
//! the rules still allow the promotion. A `promote` command stays pending for the same
//! TTL, until the region leaves standby. Neither ever bypasses the rules in
//! [`mod@crate::decide`]: they only open the gate the mode adds.
//!
//! Wall time is passed in (`now`): approval expiry is a human-scale deadline, written in
//! the approval record, not a lease.

use crate::model::OperatorCommand;
use crate::state::Role;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sre_core::approval::{ApprovalError, ApprovalId, ApprovalRequest, ApprovalStatus, Principal};
use sre_core::{Generation, RegionId};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use thiserror::Error;

/// Who asks and who may answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSettings {
    /// The requester of every approval: this controller.
    pub requester: Principal,
    /// Who may approve (empty: anyone but the requester).
    pub approvers: Vec<Principal>,
    /// How long a request or a `promote` command stays valid.
    pub ttl: Duration,
}

impl ControlSettings {
    /// `failover-controller/<region>` as requester, anyone may approve, ten minutes.
    #[must_use]
    pub fn for_region(region: &RegionId) -> Self {
        Self {
            requester: Principal::new(format!("failover-controller/{region}")),
            approvers: Vec::new(),
            ttl: Duration::from_mins(10),
        }
    }
}

/// Why an approval was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No such plan is waiting for approval (never requested, or superseded).
    #[error("no promotion plan {id} is waiting for approval")]
    UnknownPlan {
        /// The plan id given.
        id: String,
    },
    /// The approval rules refused it (expired, self-approval, not an approver, decided).
    #[error(transparent)]
    Approval(#[from] ApprovalError),
}

impl ControlError {
    /// Stable label for metrics and HTTP status mapping.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownPlan { .. } => "unknown_plan",
            Self::Approval(e) => e.kind(),
        }
    }
}

/// A `promote` command waiting for the rules to allow a promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingPromote {
    /// Who asked.
    pub by: Principal,
    /// It is dropped at this time if the region has not left standby.
    pub expires_at: DateTime<Utc>,
}

/// What `GET /v1/status` shows of the control state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlStatus {
    /// The current approval request, if any, with its status at `now`.
    pub approval: Option<ApprovalView>,
    /// A pending `promote` command.
    pub promote: Option<PendingPromote>,
    /// A `demote` command not yet seen by the loop.
    pub demote_pending: bool,
}

/// One approval request as shown to an approver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalView {
    /// The plan id to pass to `sre failover approve`.
    pub plan_id: String,
    /// What is approved.
    pub subject: String,
    /// When it stops accepting an approval.
    pub expires_at: DateTime<Utc>,
    /// Where it stands.
    pub status: ApprovalStatus,
}

#[derive(Debug, Default)]
struct Inner {
    approval: Option<ApprovalRequest>,
    generation: Option<Generation>,
    promote: Option<PendingPromote>,
    demote: bool,
    requests: u64,
}

/// A shared handle between the loop and the control endpoint.
#[derive(Debug, Clone)]
pub struct Control {
    settings: Arc<ControlSettings>,
    inner: Arc<Mutex<Inner>>,
}

impl Control {
    /// An empty control state.
    #[must_use]
    pub fn new(settings: ControlSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a new approval request for promoting at `generation`, replacing any older
    /// one; returns its plan id.
    #[must_use]
    pub fn request(&self, generation: Generation, now: DateTime<Utc>) -> ApprovalId {
        let mut inner = self.lock();
        inner.requests += 1;
        let id = ApprovalId(format!("promote-g{}-{}", generation.0, inner.requests));
        let s = &self.settings;
        let expires = now + chrono::Duration::from_std(s.ttl).unwrap_or(chrono::Duration::MAX);
        let subject = format!("promote {} at generation {}", s.requester, generation.0);
        // `new` only fails for an empty window, which a ttl of zero would be: then the
        // request is born expired and the loop asks again, which is the honest outcome.
        let req =
            ApprovalRequest::new(id.clone(), subject, s.requester.clone(), now, expires).map(|r| {
                if s.approvers.is_empty() {
                    r
                } else {
                    r.with_approvers(s.approvers.iter().cloned())
                }
            });
        inner.approval = req.ok();
        inner.generation = Some(generation);
        id
    }

    /// Records `by`'s approval of `plan_id` at `now`.
    pub fn approve(
        &self,
        plan_id: &str,
        by: Principal,
        now: DateTime<Utc>,
    ) -> Result<ApprovalStatus, ControlError> {
        let mut inner = self.lock();
        let req = inner
            .approval
            .as_mut()
            .filter(|r| r.id.0 == plan_id)
            .ok_or_else(|| ControlError::UnknownPlan {
                id: plan_id.to_owned(),
            })?;
        req.approve(by, now)?;
        Ok(req.status(now))
    }

    /// Queues an operator command from `by` at `now`.
    pub fn command(&self, cmd: OperatorCommand, by: Principal, now: DateTime<Utc>) {
        let mut inner = self.lock();
        match cmd {
            OperatorCommand::Promote => {
                let ttl =
                    chrono::Duration::from_std(self.settings.ttl).unwrap_or(chrono::Duration::MAX);
                inner.promote = Some(PendingPromote {
                    by,
                    expires_at: now + ttl,
                });
            }
            OperatorCommand::Demote => inner.demote = true,
        }
    }

    /// True when the current request is approved and unexpired at `now`.
    #[must_use]
    pub fn approval_granted(&self, now: DateTime<Utc>) -> bool {
        self.lock()
            .approval
            .as_ref()
            .is_some_and(|r| r.is_approved() && now < r.expires_at)
    }

    /// The command for this tick's observations: a demote first, else an unexpired
    /// promote.
    #[must_use]
    pub fn pending_command(&self, now: DateTime<Utc>) -> Option<OperatorCommand> {
        let inner = self.lock();
        if inner.demote {
            Some(OperatorCommand::Demote)
        } else {
            inner
                .promote
                .as_ref()
                .filter(|p| now < p.expires_at)
                .map(|_| OperatorCommand::Promote)
        }
    }

    /// After a decision: a demote has been seen; a promotion consumed the approval and
    /// the `promote` command; an expired command is dropped. Returns the generation to
    /// ask approval for again when the request expired while the core still waits on it.
    #[must_use]
    pub fn settle(
        &self,
        role: Role,
        still_waiting: bool,
        now: DateTime<Utc>,
    ) -> Option<Generation> {
        let mut inner = self.lock();
        inner.demote = false;
        if inner.promote.as_ref().is_some_and(|p| now >= p.expires_at) {
            inner.promote = None;
        }
        if role != Role::Standby {
            inner.promote = None;
            inner.approval = None;
            inner.generation = None;
            return None;
        }
        let expired = inner
            .approval
            .as_ref()
            .is_some_and(|r| r.status(now) == ApprovalStatus::Expired);
        if expired && still_waiting {
            inner.generation
        } else {
            None
        }
    }

    /// The control state at `now`, for the status endpoint.
    #[must_use]
    pub fn status(&self, now: DateTime<Utc>) -> ControlStatus {
        let inner = self.lock();
        ControlStatus {
            approval: inner.approval.as_ref().map(|r| ApprovalView {
                plan_id: r.id.0.clone(),
                subject: r.subject.clone(),
                expires_at: r.expires_at,
                status: r.status(now),
            }),
            promote: inner.promote.clone(),
            demote_pending: inner.demote,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> (Control, DateTime<Utc>) {
        let mut s = ControlSettings::for_region(&RegionId::new("eu"));
        s.ttl = Duration::from_mins(1);
        (Control::new(s), DateTime::UNIX_EPOCH)
    }

    #[test]
    fn four_eyes_named_approver_and_expiry() {
        let (c, t0) = control();
        let id = c.request(Generation(7), t0);
        let me = Principal::new("failover-controller/eu");
        let e = c.approve(&id.0, me, t0).err().map(|e| e.kind());
        assert_eq!(e, Some("self_approval"));
        let e = c.approve("promote-g1-9", Principal::new("ana"), t0).err();
        assert_eq!(e.map(|e| e.kind()), Some("unknown_plan"));
        let late = t0 + chrono::Duration::seconds(60);
        let e = c.approve(&id.0, Principal::new("ana"), late).err();
        assert_eq!(e.map(|e| e.kind()), Some("expired"));
        assert!(!c.approval_granted(late));
        assert_eq!(c.settle(Role::Standby, true, late), Some(Generation(7)));
        let id2 = c.request(Generation(7), late);
        assert_ne!(id, id2, "a new request gets a new plan id");
        assert!(c.approve(&id2.0, Principal::new("ana"), late).is_ok());
        assert!(c.approval_granted(late));
    }

    #[test]
    fn configured_approvers_only() {
        let mut s = ControlSettings::for_region(&RegionId::new("eu"));
        s.approvers = vec![Principal::new("ana")];
        let c = Control::new(s);
        let t0 = DateTime::UNIX_EPOCH;
        let id = c.request(Generation(1), t0);
        let e = c.approve(&id.0, Principal::new("bob"), t0).err();
        assert_eq!(e.map(|e| e.kind()), Some("not_an_approver"));
        assert!(c.approve(&id.0, Principal::new("ana"), t0).is_ok());
    }

    #[test]
    fn commands_are_pending_until_seen_or_expired() {
        let (c, t0) = control();
        c.command(OperatorCommand::Demote, Principal::new("ana"), t0);
        c.command(OperatorCommand::Promote, Principal::new("ana"), t0);
        assert_eq!(c.pending_command(t0), Some(OperatorCommand::Demote));
        let _ = c.settle(Role::Standby, false, t0);
        assert_eq!(c.pending_command(t0), Some(OperatorCommand::Promote));
        let late = t0 + chrono::Duration::seconds(61);
        assert_eq!(c.pending_command(late), None);
        let _ = c.settle(Role::Standby, false, late);
        assert!(c.status(late).promote.is_none());
    }
}
