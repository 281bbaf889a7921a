//! Driving one secret through as many steps as it can take now: the loop that
//! `rotation-controller` runs per due secret and `sre rotation rotate` runs once. It adds
//! the approval bookkeeping around [`run::step`] (load the latest
//! request, persist a new one when the plan asks for it) and stops at a wait.

use crate::approvals::{self, ApprovalStoreError};
use crate::error::Error;
use crate::model::ManagedSecret;
use crate::plan::Step;
use crate::run::{self, Ports};
use crate::state::RotationState;
use crate::status::{self, StatusRow};
use chrono::{DateTime, Utc};
use sre_core::approval::ApprovalRequest;
use thiserror::Error;

/// When [`drive`] stops, besides at a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// Keep stepping until the plan says wait (the controller).
    Quiet,
    /// Stop once one rotation ended in a promotion or an abort (`sre rotation rotate`,
    /// whose secret is always due and would otherwise rotate again after retiring).
    RotationEnd,
}

/// What one [`drive`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveReport {
    /// The steps taken, in order; the last one is a wait unless the limit or
    /// [`StopAt::RotationEnd`] stopped it.
    pub steps: Vec<Step>,
    /// The state after the last step.
    pub state: RotationState,
    /// When to look at the secret again (the wait's deadline), if the plan named one.
    pub wake_at: Option<DateTime<Utc>>,
    /// The approval request this drive made, if the plan asked for one.
    pub requested: Option<ApprovalRequest>,
}

/// Why a drive stopped early. The persisted state names the step to repeat.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DriveError {
    /// A step could not run or be recorded.
    #[error(transparent)]
    Step(#[from] Error),
    /// The approval record could not be read or written.
    #[error(transparent)]
    Approval(#[from] ApprovalStoreError),
    /// The plan never settled within the step limit (a bug, or a target that keeps
    /// failing a step without reporting it).
    #[error("{secret}: no wait after {steps} steps")]
    NoQuiescence {
        /// The secret.
        secret: String,
        /// The limit.
        steps: usize,
    },
}

impl DriveError {
    /// A stable label for metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Step(e) => e.kind(),
            Self::Approval(e) => e.kind(),
            Self::NoQuiescence { .. } => "no_quiescence",
        }
    }

    /// True when calling again later may succeed without anybody changing anything.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Step(e) => e.is_retryable(),
            Self::Approval(e) => e.is_retryable(),
            Self::NoQuiescence { .. } => true,
        }
    }
}

/// The status row of `secret` as OpenBao holds it now; a state or approval record that
/// cannot be read gives a row that says so rather than an error, so that one sealed
/// path does not hide the other secrets.
pub async fn status(
    store: &dyn sre_core::ports::SecretStore,
    secret: &ManagedSecret,
    now: DateTime<Utc>,
) -> StatusRow {
    let state = match run::load(store, &secret.path).await {
        Ok((state, _, _)) => state,
        Err(e) => return status::unavailable_row(secret, error_chain(&e)),
    };
    match approvals::load(store, secret).await {
        Ok(a) => status::row(secret, &state, a.as_ref().map(|a| &a.request), now),
        Err(e) => status::unavailable_row(secret, error_chain(&e)),
    }
}

/// An error with its sources, on one line (`a: b: c`), for tables and logs.
#[must_use]
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// The most steps one drive takes: a full rotation with a crash-adopted version and a
/// retirement is 7.
pub const MAX_STEPS: usize = 12;

/// Steps `secret` at `now` until the plan waits (or `stop_at` says so).
#[tracing::instrument(skip_all, fields(secret = %secret.name))]
pub async fn drive(
    ports: Ports<'_>,
    secret: &ManagedSecret,
    now: DateTime<Utc>,
    stop_at: StopAt,
) -> Result<DriveReport, DriveError> {
    let approval = approvals::load(ports.store, secret).await?;
    let mut taken = Vec::new();
    let mut requested = None;
    for _ in 0..MAX_STEPS {
        let report = run::step(ports, secret, approval.as_ref().map(|a| &a.request), now).await?;
        let step = report.step.clone();
        taken.push(report.step);
        let wake_at = match &step {
            Step::Wait { until, .. } => *until,
            Step::RequestApproval {
                subject,
                expires_at,
                previous_expired,
            } => {
                let request = approvals::new_request(secret, subject, now, *expires_at)
                    .map_err(ApprovalStoreError::from)?;
                let seen = approval.as_ref().map_or(0, |a| a.version);
                approvals::request(ports.store, secret, &request, seen).await?;
                tracing::warn!(secret = %secret.name, approval_id = %request.id,
                    previous_expired = *previous_expired, expires_at = %expires_at,
                    "rotation waits for approval");
                requested = Some(request);
                Some(*expires_at)
            }
            Step::Promote { .. } | Step::DropPending { .. } if stop_at == StopAt::RotationEnd => {
                return Ok(DriveReport {
                    steps: taken,
                    state: report.state,
                    wake_at: None,
                    requested,
                });
            }
            _ => continue,
        };
        return Ok(DriveReport {
            steps: taken,
            state: report.state,
            wake_at,
            requested,
        });
    }
    Err(DriveError::NoQuiescence {
        secret: secret.name.clone(),
        steps: MAX_STEPS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ApprovalPolicy, Cadence, SecretClass};
    use crate::ports::{CredentialTarget, Verification};
    use crate::status::due_now;
    use async_trait::async_trait;
    use sre_core::PortError;
    use sre_core::approval::Principal;
    use sre_core::ports::SecretData;
    use sre_core::testing::MemSecretStore;
    use std::collections::BTreeSet;
    use std::time::Duration;

    /// Accepts every credential it issued.
    struct Always;

    #[async_trait]
    impl CredentialTarget for Always {
        async fn issue(&self) -> Result<SecretData, PortError> {
            Ok(SecretData::from_pairs([("password", "pw")]))
        }
        async fn install(&self, _: &SecretData) -> Result<(), PortError> {
            Ok(())
        }
        async fn verify(&self, _: &SecretData) -> Result<Verification, PortError> {
            Ok(Verification::Accepted)
        }
        async fn revoke(&self, _: &SecretData) -> Result<(), PortError> {
            Ok(())
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default()
    }

    fn secret(approval: ApprovalPolicy) -> ManagedSecret {
        ManagedSecret {
            name: "k".into(),
            class: SecretClass::ApiToken,
            path: "apps/k".into(),
            cadence: Cadence::MaxAge(Duration::from_secs(100)),
            overlap: Duration::from_secs(10),
            owner: "o".into(),
            consumers: vec![],
            approval,
        }
    }

    fn labels(r: &DriveReport) -> Vec<&'static str> {
        r.steps.iter().map(Step::label).collect()
    }

    #[tokio::test]
    async fn the_controller_drive_rotates_and_names_the_next_wake_up() {
        let store = MemSecretStore::new();
        let ports = Ports {
            store: &store,
            target: &Always,
        };
        let s = secret(ApprovalPolicy::NotRequired);
        let r = drive(ports, &s, t(0), StopAt::Quiet)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            labels(&r),
            [
                "create_pending",
                "set_at_target",
                "test_pending",
                "promote",
                "wait"
            ]
        );
        assert_eq!(r.wake_at, Some(t(100)));
        let r = drive(ports, &s, t(100), StopAt::Quiet)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.wake_at, Some(t(110)), "overlap ends: {:?}", labels(&r));
    }

    #[tokio::test]
    async fn a_forced_rotation_stops_after_the_promotion() {
        let store = MemSecretStore::new();
        let ports = Ports {
            store: &store,
            target: &Always,
        };
        let s = due_now(&secret(ApprovalPolicy::NotRequired));
        let r = drive(ports, &s, t(0), StopAt::RotationEnd)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(labels(&r).last(), Some(&"promote"));
        assert_eq!(r.state.rotations, 1);
        let r = drive(ports, &s, t(1), StopAt::RotationEnd)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.state.rotations, 2, "{:?}", labels(&r));
    }

    #[tokio::test]
    async fn an_approval_is_requested_once_then_the_rotation_runs_when_approved() {
        let store = MemSecretStore::new();
        let ports = Ports {
            store: &store,
            target: &Always,
        };
        let s = secret(ApprovalPolicy::Required {
            approvers: BTreeSet::from([Principal::new("officer")]),
            expires_after: Duration::from_secs(50),
        });
        let r = drive(ports, &s, t(0), StopAt::Quiet)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(labels(&r), ["request_approval"]);
        let id = r.requested.map(|a| a.id.0).unwrap_or_default();
        let r = drive(ports, &s, t(1), StopAt::Quiet)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(labels(&r), ["wait"], "an open request is not repeated");
        approvals::approve(
            &store,
            std::slice::from_ref(&s),
            &id,
            Principal::new("officer"),
            t(2),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let r = drive(ports, &s, t(3), StopAt::Quiet)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.state.rotations, 1, "{:?}", labels(&r));
    }
}
