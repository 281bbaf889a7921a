//! The thin async shell around [`crate::plan`]: load the state from KV v2 custom
//! metadata, decide, carry the step out through the ports, persist the new state. One
//! call is one step, and holds nothing between calls, so a restarted controller simply
//! calls [`step`] again and continues from what was persisted.

use crate::error::Error;
use crate::model::ManagedSecret;
use crate::plan::{self, Observed, Outcome, Step};
use crate::ports::{CredentialTarget, Verification};
use crate::state::{self, RotationState};
use chrono::{DateTime, Utc};
use sre_core::PortError;
use sre_core::approval::ApprovalRequest;
use sre_core::ports::{SecretData, SecretStore};
use std::collections::BTreeMap;

/// The ports one secret is rotated through.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    /// Where the versions and the rotation state live (OpenBao KV v2).
    pub store: &'a dyn SecretStore,
    /// The system that accepts the credential.
    pub target: &'a dyn CredentialTarget,
}

/// What one call to [`step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The step decided.
    pub step: Step,
    /// Its outcome (`Done` for a step that does nothing).
    pub outcome: Outcome,
    /// The state after the step, as persisted.
    pub state: RotationState,
}

/// The persisted state of a secret and the newest KV version at its path.
pub async fn load(
    store: &dyn SecretStore,
    path: &str,
) -> Result<(RotationState, u64, BTreeMap<String, String>), Error> {
    let meta = store.metadata(path).await.map_err(|source| Error::Store {
        path: path.to_owned(),
        source,
    })?;
    let (latest, custom) = meta.map_or((0, BTreeMap::new()), |m| (m.current_version, m.custom));
    let st = state::decode(&custom).map_err(|source| Error::State {
        path: path.to_owned(),
        source,
    })?;
    Ok((st, latest, custom))
}

/// Runs one step for `secret` at `now`. `approval` is the latest approval request made
/// for it (the caller persists requests; see [`Step::RequestApproval`]).
#[tracing::instrument(skip_all, fields(secret_path = %secret.path, step))]
pub async fn step(
    ports: Ports<'_>,
    secret: &ManagedSecret,
    approval: Option<&ApprovalRequest>,
    now: DateTime<Utc>,
) -> Result<StepReport, Error> {
    let (before, latest, mut custom) = load(ports.store, &secret.path).await?;
    let obs = Observed {
        latest_version: latest,
        approval,
    };
    let step = plan::decide(&before, &obs, secret, now);
    tracing::Span::current().record("step", step.label());
    if !step.acts() {
        return Ok(StepReport {
            step,
            outcome: Outcome::Done,
            state: before,
        });
    }
    let outcome = execute(ports, secret, &step, latest).await;
    match &outcome {
        Outcome::Rejected { reason } => {
            tracing::warn!(secret = %secret.name, owner = %secret.owner, %reason,
                "target refused the new credential: rotation aborted, current version kept");
        }
        Outcome::Failed { message } => {
            tracing::warn!(secret = %secret.name, %message, "rotation step failed; will retry");
        }
        Outcome::Done | Outcome::Created { .. } => {}
    }
    let after = plan::apply(&before, &step, &outcome, secret, now);
    if after != before {
        state::encode(&after, &mut custom);
        ports
            .store
            .set_custom_metadata(&secret.path, &custom)
            .await
            .map_err(|source| Error::Store {
                path: secret.path.clone(),
                source,
            })?;
    }
    Ok(StepReport {
        step,
        outcome,
        state: after,
    })
}

fn failed(e: &PortError) -> Outcome {
    Outcome::Failed {
        message: e.to_string(),
    }
}

async fn read_version(
    store: &dyn SecretStore,
    path: &str,
    version: u64,
) -> Result<Option<SecretData>, Outcome> {
    store
        .read(path, Some(version))
        .await
        .map(|v| v.map(|v| v.data))
        .map_err(|e| failed(&e))
}

/// Carries out one acting step. Every branch is idempotent: see `CredentialTarget`.
async fn execute(ports: Ports<'_>, secret: &ManagedSecret, step: &Step, latest: u64) -> Outcome {
    let path = secret.path.as_str();
    let run = async {
        match step {
            Step::CreatePending => {
                let data = ports.target.issue().await.map_err(|e| failed(&e))?;
                // Check-and-set on the version we decided from: a concurrent controller
                // that rotated first makes this fail instead of forking the history.
                let version = ports
                    .store
                    .write(path, &data, Some(latest))
                    .await
                    .map_err(|e| failed(&e))?;
                Ok(Outcome::Created { version })
            }
            Step::SetAtTarget { version } => {
                let Some(data) = read_version(ports.store, path, *version).await? else {
                    return Ok(Outcome::Rejected {
                        reason: format!("pending version {version} is gone from the store"),
                    });
                };
                match ports.target.install(&data).await {
                    Ok(()) => Ok(Outcome::Done),
                    Err(e) if e.is_retryable() => Err(failed(&e)),
                    Err(e) => Ok(Outcome::Rejected {
                        reason: e.to_string(),
                    }),
                }
            }
            Step::TestPending { version } => {
                let Some(data) = read_version(ports.store, path, *version).await? else {
                    return Ok(Outcome::Rejected {
                        reason: format!("pending version {version} is gone from the store"),
                    });
                };
                match ports.target.verify(&data).await.map_err(|e| failed(&e))? {
                    Verification::Accepted => Ok(Outcome::Done),
                    Verification::Refused { reason } => Ok(Outcome::Rejected { reason }),
                }
            }
            Step::RetirePrevious { version } | Step::DropPending { version, .. } => {
                // Revoke first, destroy after: a crash in between leaves the data to
                // revoke again; destroyed data means both are done.
                if let Some(data) = read_version(ports.store, path, *version).await? {
                    ports.target.revoke(&data).await.map_err(|e| failed(&e))?;
                    ports
                        .store
                        .destroy_versions(path, &[*version])
                        .await
                        .map_err(|e| failed(&e))?;
                }
                Ok(Outcome::Done)
            }
            Step::AdoptPending { .. }
            | Step::Promote { .. }
            | Step::Wait { .. }
            | Step::RequestApproval { .. } => Ok(Outcome::Done),
        }
    };
    run.await.unwrap_or_else(|o: Outcome| o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ApprovalPolicy, Cadence, SecretClass};
    use crate::state::Phase;
    use async_trait::async_trait;
    use sre_core::testing::MemSecretStore;
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A target that accepts passwords it was told about.
    #[derive(Default)]
    struct MemTarget {
        accepted: Mutex<BTreeSet<String>>,
        issued: Mutex<u64>,
        refuse_logins: bool,
    }

    fn pw(d: &SecretData) -> String {
        d.get("password").unwrap_or_default().to_owned()
    }

    #[async_trait]
    impl CredentialTarget for MemTarget {
        async fn issue(&self) -> Result<SecretData, PortError> {
            let mut n = self
                .issued
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *n += 1;
            Ok(SecretData::from_pairs([("password", format!("pw-{n}"))]))
        }
        async fn install(&self, c: &SecretData) -> Result<(), PortError> {
            self.accepted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(pw(c));
            Ok(())
        }
        async fn verify(&self, c: &SecretData) -> Result<Verification, PortError> {
            let ok = !self.refuse_logins
                && self
                    .accepted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .contains(&pw(c));
            Ok(if ok {
                Verification::Accepted
            } else {
                Verification::Refused {
                    reason: "password authentication failed".into(),
                }
            })
        }
        async fn revoke(&self, c: &SecretData) -> Result<(), PortError> {
            self.accepted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&pw(c));
            Ok(())
        }
    }

    fn secret() -> ManagedSecret {
        ManagedSecret {
            name: "api".into(),
            class: SecretClass::ApiToken,
            path: "apps/api/token".into(),
            cadence: Cadence::MaxAge(Duration::from_secs(100)),
            overlap: Duration::from_secs(10),
            owner: "team".into(),
            consumers: vec![],
            approval: ApprovalPolicy::NotRequired,
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default()
    }

    async fn steps(ports: Ports<'_>, s: &ManagedSecret, now: i64, n: usize) -> Vec<&'static str> {
        let mut out = Vec::new();
        for _ in 0..n {
            let r = step(ports, s, None, t(now))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            out.push(r.step.label());
        }
        out
    }

    #[tokio::test]
    async fn two_rotations_through_the_kv_store_with_overlap() {
        let store = MemSecretStore::new();
        let target = MemTarget::default();
        let ports = Ports {
            store: &store,
            target: &target,
        };
        let s = secret();
        assert_eq!(
            steps(ports, &s, 0, 5).await,
            [
                "create_pending",
                "set_at_target",
                "test_pending",
                "promote",
                "wait"
            ]
        );
        assert_eq!(
            steps(ports, &s, 100, 5).await,
            [
                "create_pending",
                "set_at_target",
                "test_pending",
                "promote",
                "wait"
            ]
        );
        let (st, latest, _) = load(&store, &s.path)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((st.current, st.rotations, latest), (Some(2), 2, 2));
        assert_eq!(st.previous.as_ref().map(|p| p.version), Some(1));
        assert_eq!(
            target.accepted.lock().map_or(0, |a| a.len()),
            2,
            "both valid during overlap"
        );
        assert_eq!(steps(ports, &s, 110, 2).await, ["retire_previous", "wait"]);
        assert_eq!(
            *target
                .accepted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            BTreeSet::from(["pw-2".to_owned()])
        );
        assert_eq!(
            store.read(&s.path, Some(1)).await,
            Ok(None),
            "retired data is destroyed"
        );
    }

    #[tokio::test]
    async fn a_refused_login_aborts_and_keeps_current() {
        let store = MemSecretStore::new();
        let good = MemTarget::default();
        let s = secret();
        steps(
            Ports {
                store: &store,
                target: &good,
            },
            &s,
            0,
            4,
        )
        .await;
        let bad = MemTarget {
            refuse_logins: true,
            ..MemTarget::default()
        };
        let ports = Ports {
            store: &store,
            target: &bad,
        };
        assert_eq!(
            steps(ports, &s, 100, 4).await,
            [
                "create_pending",
                "set_at_target",
                "test_pending",
                "drop_pending"
            ]
        );
        let (st, _, _) = load(&store, &s.path)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((st.phase, st.current), (Phase::Idle, Some(1)));
        assert_eq!(st.last_result.map(|r| r.label()), Some("aborted"));
        assert_eq!(
            store.read(&s.path, Some(2)).await,
            Ok(None),
            "the refused version is destroyed"
        );
    }

    #[tokio::test]
    async fn an_unavailable_store_is_an_error_and_nothing_moves() {
        let store = MemSecretStore::new();
        let target = MemTarget::default();
        let s = secret();
        store.set_unavailable(true);
        let err = step(
            Ports {
                store: &store,
                target: &target,
            },
            &s,
            None,
            t(0),
        )
        .await
        .err();
        assert!(err.as_ref().is_some_and(Error::is_retryable), "{err:?}");
        assert_eq!(
            *target
                .issued
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            0
        );
    }
}
