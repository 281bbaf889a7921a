//! Approval requests: a human says yes or no to an automated action before it runs
//! (semi-automatic failover, signing-key rotation, a costly remediation).
//!
//! A request is plain, serialisable state (it is persisted between the request and the
//! decision, which may come from another process); every rule is checked when a decision
//! is recorded, with `now` passed in:
//! - a request expires: no decision is accepted at or after `expires_at`;
//! - four eyes: the requester cannot approve their own request unless the request was
//!   created with [`SelfApproval::Allowed`];
//! - if the request names its approvers, nobody else can approve or deny it (the
//!   requester may still withdraw it by denying);
//! - decisions are final: a second decision of any kind is an error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use thiserror::Error;

/// Identifies one approval request (and its evidence records).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApprovalId(pub String);

impl fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person or system account as the identity provider names it; compared exactly, so
/// callers normalise (case, realm) before building one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Principal(pub String);

impl Principal {
    /// Wraps a name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether the requester may approve their own request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfApproval {
    /// Four eyes: someone other than the requester must approve (the default).
    Forbidden,
    /// The requester may approve (single-operator environments, drills).
    Allowed,
}

/// The recorded decision, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum ApprovalState {
    /// No decision yet.
    Pending,
    /// Approved.
    Approved {
        /// Who approved.
        by: Principal,
        /// When.
        at: DateTime<Utc>,
    },
    /// Denied (or withdrawn by the requester).
    Denied {
        /// Who denied.
        by: Principal,
        /// Why, for the audit trail.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Where a request stands at a given time: the persisted state plus expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ApprovalStatus {
    /// Waiting for a decision.
    Pending,
    /// Approved: the action may run.
    Approved {
        /// Who approved.
        by: Principal,
        /// When.
        at: DateTime<Utc>,
    },
    /// Denied: the action must not run.
    Denied {
        /// Who denied.
        by: Principal,
        /// Why.
        reason: String,
    },
    /// Nobody decided in time: the action must not run.
    Expired,
}

/// Why a decision was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// The request expired before the decision came in.
    #[error("approval {id} expired at {expires_at}")]
    Expired {
        /// The request.
        id: ApprovalId,
        /// When it expired.
        expires_at: DateTime<Utc>,
    },
    /// The requester tried to approve their own request (four eyes).
    #[error("approval {id}: {requester} cannot approve their own request")]
    SelfApproval {
        /// The request.
        id: ApprovalId,
        /// The requester.
        requester: Principal,
    },
    /// The principal is not among the request's approvers.
    #[error("approval {id}: {who} is not an allowed approver")]
    NotAnApprover {
        /// The request.
        id: ApprovalId,
        /// Who tried.
        who: Principal,
    },
    /// A decision was already recorded; decisions are final.
    #[error("approval {id} was already decided: {decision:?}")]
    AlreadyDecided {
        /// The request.
        id: ApprovalId,
        /// The decision that stands.
        decision: ApprovalState,
    },
    /// The request would expire before (or when) it is made.
    #[error("approval {id}: expiry {expires_at} is not after the request time {requested_at}")]
    InvalidWindow {
        /// The request.
        id: ApprovalId,
        /// When it was requested.
        requested_at: DateTime<Utc>,
        /// The expiry that was asked for.
        expires_at: DateTime<Utc>,
    },
}

impl ApprovalError {
    /// Stable label for metrics and logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Expired { .. } => "expired",
            Self::SelfApproval { .. } => "self_approval",
            Self::NotAnApprover { .. } => "not_an_approver",
            Self::AlreadyDecided { .. } => "already_decided",
            Self::InvalidWindow { .. } => "invalid_window",
        }
    }
}

/// A request for a human decision on one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// Identifies the request.
    pub id: ApprovalId,
    /// What is to be approved, in words an approver understands ("promote region-b at
    /// generation 7").
    pub subject: String,
    /// Who (or which controller) asked.
    pub requested_by: Principal,
    /// When it was asked.
    pub requested_at: DateTime<Utc>,
    /// No decision is accepted at or after this time.
    pub expires_at: DateTime<Utc>,
    /// Who may decide; `None`: anyone (subject to four eyes).
    pub allowed_approvers: Option<BTreeSet<Principal>>,
    /// Whether the requester may approve.
    pub self_approval: SelfApproval,
    /// The recorded decision; private so that only [`ApprovalRequest::approve`] and
    /// [`ApprovalRequest::deny`], which enforce the rules, can change it.
    state: ApprovalState,
}

impl ApprovalRequest {
    /// A pending request with four eyes enforced; `expires_at` must be after
    /// `requested_at`.
    pub fn new(
        id: ApprovalId,
        subject: impl Into<String>,
        requested_by: Principal,
        requested_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Self, ApprovalError> {
        if expires_at <= requested_at {
            return Err(ApprovalError::InvalidWindow {
                id,
                requested_at,
                expires_at,
            });
        }
        Ok(Self {
            id,
            subject: subject.into(),
            requested_by,
            requested_at,
            expires_at,
            allowed_approvers: None,
            self_approval: SelfApproval::Forbidden,
            state: ApprovalState::Pending,
        })
    }

    /// Restricts the decision to these principals (e.g. the security officers for a
    /// signing-key rotation).
    #[must_use]
    pub fn with_approvers(mut self, approvers: impl IntoIterator<Item = Principal>) -> Self {
        self.allowed_approvers = Some(approvers.into_iter().collect());
        self
    }

    /// Sets whether the requester may approve.
    #[must_use]
    pub fn with_self_approval(mut self, policy: SelfApproval) -> Self {
        self.self_approval = policy;
        self
    }

    /// Where the request stands at `now`.
    #[must_use]
    pub fn status(&self, now: DateTime<Utc>) -> ApprovalStatus {
        match &self.state {
            ApprovalState::Pending if now >= self.expires_at => ApprovalStatus::Expired,
            ApprovalState::Pending => ApprovalStatus::Pending,
            ApprovalState::Approved { by, at } => ApprovalStatus::Approved {
                by: by.clone(),
                at: *at,
            },
            ApprovalState::Denied { by, reason, .. } => ApprovalStatus::Denied {
                by: by.clone(),
                reason: reason.clone(),
            },
        }
    }

    /// The recorded decision, without expiry applied (see [`ApprovalRequest::status`]).
    #[must_use]
    pub fn state(&self) -> &ApprovalState {
        &self.state
    }

    /// True only when approved: the one question an executor asks before acting.
    #[must_use]
    pub fn is_approved(&self) -> bool {
        matches!(self.state, ApprovalState::Approved { .. })
    }

    /// Records an approval by `by` at `now`.
    pub fn approve(&mut self, by: Principal, now: DateTime<Utc>) -> Result<(), ApprovalError> {
        self.check_open(now)?;
        if by == self.requested_by && self.self_approval == SelfApproval::Forbidden {
            return Err(ApprovalError::SelfApproval {
                id: self.id.clone(),
                requester: by,
            });
        }
        if !self.may_decide(&by) {
            return Err(ApprovalError::NotAnApprover {
                id: self.id.clone(),
                who: by,
            });
        }
        self.state = ApprovalState::Approved { by, at: now };
        Ok(())
    }

    /// Records a denial by `by` at `now`. The requester may always deny (withdraw) their
    /// own request; anyone else must be an allowed approver.
    pub fn deny(
        &mut self,
        by: Principal,
        reason: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Result<(), ApprovalError> {
        self.check_open(now)?;
        if by != self.requested_by && !self.may_decide(&by) {
            return Err(ApprovalError::NotAnApprover {
                id: self.id.clone(),
                who: by,
            });
        }
        self.state = ApprovalState::Denied {
            by,
            reason: reason.into(),
            at: now,
        };
        Ok(())
    }

    fn check_open(&self, now: DateTime<Utc>) -> Result<(), ApprovalError> {
        if self.state != ApprovalState::Pending {
            return Err(ApprovalError::AlreadyDecided {
                id: self.id.clone(),
                decision: self.state.clone(),
            });
        }
        if now >= self.expires_at {
            return Err(ApprovalError::Expired {
                id: self.id.clone(),
                expires_at: self.expires_at,
            });
        }
        Ok(())
    }

    fn may_decide(&self, who: &Principal) -> bool {
        self.allowed_approvers
            .as_ref()
            .is_none_or(|set| set.contains(who))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default()
    }

    fn p(name: &str) -> Principal {
        Principal::new(name)
    }

    fn request() -> ApprovalRequest {
        ApprovalRequest::new(
            ApprovalId("apr-1".into()),
            "promote region-b at generation 7",
            p("failover-controller"),
            t0(),
            t0() + Duration::minutes(15),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn approve_records_who_and_when() {
        let mut r = request();
        assert_eq!(r.status(t0()), ApprovalStatus::Pending);
        assert_eq!(r.approve(p("alice"), t0() + Duration::minutes(1)), Ok(()));
        assert_eq!(
            r.status(t0() + Duration::hours(1)),
            ApprovalStatus::Approved {
                by: p("alice"),
                at: t0() + Duration::minutes(1)
            },
            "an approval given in time stays approved after expiry"
        );
        assert!(r.is_approved());
    }

    #[test]
    fn decisions_at_or_after_expiry_are_rejected() {
        let mut r = request();
        let expiry = t0() + Duration::minutes(15);
        assert_eq!(r.status(expiry), ApprovalStatus::Expired);
        assert_eq!(
            r.status(expiry - Duration::seconds(1)),
            ApprovalStatus::Pending
        );
        let err = r.approve(p("alice"), expiry).err();
        assert_eq!(err.map(|e| e.kind()), Some("expired"));
        let err = r.deny(p("alice"), "too late", expiry).err();
        assert_eq!(err.map(|e| e.kind()), Some("expired"));
        assert_eq!(r.state, ApprovalState::Pending);
        assert!(!r.is_approved());
    }

    #[test]
    fn requester_cannot_approve_own_request_unless_allowed() {
        let mut r = request();
        assert_eq!(
            r.approve(p("failover-controller"), t0()),
            Err(ApprovalError::SelfApproval {
                id: ApprovalId("apr-1".into()),
                requester: p("failover-controller"),
            })
        );
        let mut relaxed = request().with_self_approval(SelfApproval::Allowed);
        assert_eq!(relaxed.approve(p("failover-controller"), t0()), Ok(()));
    }

    #[test]
    fn only_listed_approvers_decide() {
        let mut r = request().with_approvers([p("security-officer")]);
        let err = r.approve(p("alice"), t0()).err();
        assert_eq!(err.map(|e| e.kind()), Some("not_an_approver"));
        let err = r.deny(p("alice"), "no", t0()).err();
        assert_eq!(err.map(|e| e.kind()), Some("not_an_approver"));
        assert_eq!(r.approve(p("security-officer"), t0()), Ok(()));
    }

    #[test]
    fn requester_may_withdraw_by_denying() {
        let mut r = request().with_approvers([p("security-officer")]);
        assert_eq!(
            r.deny(p("failover-controller"), "region recovered", t0()),
            Ok(())
        );
        assert_eq!(
            r.status(t0()),
            ApprovalStatus::Denied {
                by: p("failover-controller"),
                reason: "region recovered".into()
            }
        );
    }

    #[test]
    fn decisions_are_final() {
        let mut r = request();
        assert_eq!(r.deny(p("bob"), "not during the freeze", t0()), Ok(()));
        let err = r.approve(p("alice"), t0()).err();
        assert_eq!(err.map(|e| e.kind()), Some("already_decided"));
        let err = r.deny(p("alice"), "again", t0()).err();
        assert_eq!(err.map(|e| e.kind()), Some("already_decided"));
        assert!(!r.is_approved());

        let mut r = request();
        assert_eq!(r.approve(p("alice"), t0()), Ok(()));
        let err = r.deny(p("bob"), "changed my mind", t0()).err();
        assert_eq!(err.map(|e| e.kind()), Some("already_decided"));
        let err = r.approve(p("bob"), t0()).err();
        assert_eq!(err.map(|e| e.kind()), Some("already_decided"));
    }

    #[test]
    fn expiry_must_follow_request() {
        let err = ApprovalRequest::new(ApprovalId("x".into()), "s", p("a"), t0(), t0()).err();
        assert_eq!(err.map(|e| e.kind()), Some("invalid_window"));
    }

    #[test]
    fn survives_a_serde_round_trip() {
        let mut r = request().with_approvers([p("alice"), p("bob")]);
        let json = serde_json::to_string(&r).unwrap_or_else(|e| panic!("{e}"));
        let back: ApprovalRequest = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, r);
        assert_eq!(r.approve(p("bob"), t0()), Ok(()));
        let json = serde_json::to_string(&r).unwrap_or_else(|e| panic!("{e}"));
        assert!(json.contains(r#""decision":"approved""#), "{json}");
        let back: ApprovalRequest = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, r);
    }
}
