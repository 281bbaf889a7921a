//! What `sre rotation status` prints and `rotation-controller` exports on `/metrics`,
//! computed in one place from the persisted state: pure functions from state + `now` to
//! rows, so that the table and the dashboard can never disagree. Also the dry-run plan
//! of `sre rotation rotate --dry-run`.

use crate::model::{Cadence, ManagedSecret, SecretClass};
use crate::plan::{self, Observed, Outcome, Step, WaitReason};
use crate::state::{Phase, RotationState};
use chrono::{DateTime, Utc};
use sre_core::approval::{ApprovalRequest, ApprovalStatus};
use std::fmt::Write as _;
use std::time::Duration;

/// One secret's line in the status table (and its `/metrics` samples).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// Inventory name.
    pub name: String,
    /// Class.
    pub class: SecretClass,
    /// Version consumers should use.
    pub current: Option<u64>,
    /// Version still valid during the overlap window.
    pub previous: Option<u64>,
    /// Version of a rotation in flight.
    pub pending: Option<u64>,
    /// Time since `current` was promoted.
    pub age: Option<Duration>,
    /// When the next rotation is due (`now` when overdue or never rotated); `None`:
    /// never (observe-only) or while a rotation is in flight.
    pub next_rotation: Option<DateTime<Utc>>,
    /// Label of the last result (`rotated`, `aborted`, `failed`), or `none`.
    pub last_result: &'static str,
    /// What the last result said (the abort reason, the failure).
    pub last_message: Option<String>,
    /// An open approval request for this secret, by id.
    pub approval: Option<String>,
    /// Why the state could not be read, when it could not.
    pub error: Option<String>,
    /// For an observed certificate (svid, tls): what its source said, set by
    /// [`StatusRow::with_certificate`].
    pub certificate: Option<CertificateCell>,
}

/// What an observed certificate's source said, as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateCell {
    /// Read: its expiry and where that stands.
    Read {
        /// `notAfter`.
        not_after: DateTime<Utc>,
        /// `ok`, `warn` or `expired` (see [`crate::expiry::ExpiryStatus`]).
        status: crate::expiry::ExpiryStatus,
    },
    /// The source could not be read (file missing, cert-manager unreachable, ...).
    Unreadable(String),
}

impl StatusRow {
    /// Adds what the certificate's source said at `now` (`alert_before` ahead of
    /// `notAfter` it is `warn`); the age becomes the certificate's own (since
    /// `notBefore`), because no KV version of it is ever promoted here.
    #[must_use]
    pub fn with_certificate(
        mut self,
        observed: &Result<crate::expiry::Validity, String>,
        alert_before: Duration,
        now: DateTime<Utc>,
    ) -> Self {
        self.certificate = Some(match observed {
            Ok(v) => {
                self.age = v.not_before.and_then(|nb| (now - nb).to_std().ok());
                CertificateCell::Read {
                    not_after: v.not_after,
                    status: crate::expiry::expiry_report(now, v.not_after, alert_before),
                }
            }
            Err(e) => {
                self.age = None;
                CertificateCell::Unreadable(e.clone())
            }
        });
        self
    }
}

/// Every label value [`StatusRow::last_result`] can take, so that a metric can export
/// one sample per value (bounded labels).
pub const RESULT_LABELS: [&str; 4] = ["none", "rotated", "aborted", "failed"];

/// The row of `secret` whose persisted state is `state`, at `now`.
#[must_use]
pub fn row(
    secret: &ManagedSecret,
    state: &RotationState,
    approval: Option<&ApprovalRequest>,
    now: DateTime<Utc>,
) -> StatusRow {
    let age = match (state.current, state.rotated_at) {
        (Some(_), Some(at)) => (now - at).to_std().ok(),
        _ => None,
    };
    let next_rotation = match state.phase {
        Phase::Pending { .. } => None,
        Phase::Idle => plan::next_due(state, secret).map(|due| {
            let due = due.max(now);
            plan::retry_after_abort(state, secret).map_or(due, |retry| due.max(retry))
        }),
    };
    let (last_result, last_message) = match &state.last_result {
        None => ("none", None),
        Some(r) => (
            r.label(),
            match r {
                crate::state::LastResult::Rotated => None,
                crate::state::LastResult::Aborted { reason: m }
                | crate::state::LastResult::Failed { message: m } => Some(m.clone()),
            },
        ),
    };
    let approval = approval
        .filter(|a| matches!(a.status(now), ApprovalStatus::Pending))
        .map(|a| a.id.0.clone());
    StatusRow {
        name: secret.name.clone(),
        class: secret.class,
        current: state.current,
        previous: state.previous.as_ref().map(|p| p.version),
        pending: state.pending(),
        age,
        next_rotation,
        last_result,
        last_message,
        approval,
        error: None,
        certificate: None,
    }
}

/// The row of a secret whose state could not be read (OpenBao sealed, say): shown, not
/// hidden, so that an outage is visible in the table.
#[must_use]
pub fn unavailable_row(secret: &ManagedSecret, error: String) -> StatusRow {
    StatusRow {
        name: secret.name.clone(),
        class: secret.class,
        current: None,
        previous: None,
        pending: None,
        age: None,
        next_rotation: None,
        last_result: "none",
        last_message: None,
        approval: None,
        error: Some(error),
        certificate: None,
    }
}

fn version(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A duration as the table shows it: the two largest units (`1h 5m`, `3d 2h`, `42s`).
#[must_use]
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m {secs}s"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn next_cell(r: &StatusRow, now: DateTime<Utc>) -> String {
    match &r.certificate {
        Some(CertificateCell::Read { not_after, status }) => {
            let left = (*not_after - now).to_std().ok().map_or_else(
                || "expired".to_owned(),
                |d| format!("in {}", short_duration(d)),
            );
            return format!(
                "renewed by its issuer; expires {} ({left}): {}",
                not_after.format("%Y-%m-%d %H:%M:%SZ"),
                status.label()
            );
        }
        Some(CertificateCell::Unreadable(e)) => return format!("certificate unreadable: {e}"),
        None => {}
    }
    match (r.next_rotation, r.pending) {
        (_, Some(_)) => "in progress".to_owned(),
        (None, None) => "never".to_owned(),
        (Some(t), None) if t <= now => "due now".to_owned(),
        (Some(t), None) => format!(
            "{} (in {})",
            t.format("%Y-%m-%d %H:%M:%SZ"),
            short_duration((t - now).to_std().unwrap_or_default())
        ),
    }
}

fn result_cell(r: &StatusRow) -> String {
    if let Some(e) = &r.error {
        return format!("unavailable: {e}");
    }
    let mut s = r.last_result.to_owned();
    if let Some(m) = &r.last_message {
        let _ = write!(s, " ({m})");
    }
    if let Some(id) = &r.approval {
        let _ = write!(s, "; awaiting approval {id}");
    }
    s
}

/// The table `sre rotation status` prints: one line per secret, columns aligned.
#[must_use]
pub fn render_table(rows: &[StatusRow], now: DateTime<Utc>) -> String {
    let header = [
        "NAME",
        "CLASS",
        "VERSION (CUR/PREV)",
        "AGE",
        "NEXT ROTATION",
        "LAST RESULT",
    ]
    .map(str::to_owned);
    let mut lines = vec![header];
    for r in rows {
        lines.push([
            r.name.clone(),
            r.class.as_str().to_owned(),
            format!("{}/{}", version(r.current), version(r.previous)),
            r.age.map_or_else(|| "-".to_owned(), short_duration),
            next_cell(r, now),
            result_cell(r),
        ]);
    }
    let mut widths = [0_usize; 6];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut line = String::new();
        for (i, (c, w)) in l.iter().zip(widths).enumerate() {
            if i + 1 == l.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The secret as `sre rotation rotate` sees it: due now, whatever its cadence, so that
/// the state machine (and its approval gate and overlap rules) runs one rotation.
#[must_use]
pub fn due_now(secret: &ManagedSecret) -> ManagedSecret {
    ManagedSecret {
        cadence: Cadence::MaxAge(Duration::ZERO),
        ..secret.clone()
    }
}

/// The steps one rotation of `secret` would take from `state` if every step succeeded:
/// what `sre rotation rotate --dry-run` prints. Stops at the first step that does not
/// act (a wait, an approval request), after a promotion or an abort, or after 16 steps.
#[must_use]
pub fn preview(
    state: &RotationState,
    obs: &Observed<'_>,
    secret: &ManagedSecret,
    now: DateTime<Utc>,
) -> Vec<Step> {
    let mut state = state.clone();
    let mut latest = obs.latest_version;
    let mut steps = Vec::new();
    for _ in 0..16 {
        let step = plan::decide(
            &state,
            &Observed {
                latest_version: latest,
                approval: obs.approval,
            },
            secret,
            now,
        );
        let outcome = match step {
            Step::CreatePending => {
                latest += 1;
                Outcome::Created { version: latest }
            }
            _ => Outcome::Done,
        };
        let end = !step.acts() || matches!(step, Step::Promote { .. } | Step::DropPending { .. });
        state = plan::apply(&state, &step, &outcome, secret, now);
        steps.push(step);
        if end {
            break;
        }
    }
    steps
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One line per planned step, in words, for the dry run.
#[must_use]
pub fn describe(step: &Step) -> String {
    match step {
        Step::Wait { until, reason } => {
            let why = match reason {
                WaitReason::NotDue => "not due",
                WaitReason::Overlap => "previous version still in its overlap window",
                WaitReason::Approval => "approval requested, not decided yet",
                WaitReason::Denied => "approval denied",
                WaitReason::ObserveOnly => "rotated by another system (observe only)",
                WaitReason::AfterAbort => "last attempt aborted; retried after a pause",
            };
            match until {
                Some(u) => format!("wait ({why}) until {}", rfc3339(*u)),
                None => format!("wait ({why})"),
            }
        }
        Step::RequestApproval {
            subject,
            expires_at,
            ..
        } => format!(
            "request approval for {subject:?}, expiring {}",
            rfc3339(*expires_at)
        ),
        Step::CreatePending => "create a pending version (issue a new credential)".to_owned(),
        Step::AdoptPending { version } => format!("adopt version {version} as pending"),
        Step::SetAtTarget { version } => format!("set version {version} at the target"),
        Step::TestPending { version } => {
            format!("test version {version} with a real login or signature check")
        }
        Step::Promote { version } => {
            format!("promote version {version} to current (current becomes previous)")
        }
        Step::DropPending { version, reason } => {
            format!("revoke and destroy rejected version {version} ({reason})")
        }
        Step::RetirePrevious { version } => {
            format!("revoke and destroy previous version {version}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ApprovalPolicy;
    use crate::state::{LastResult, Previous, Stage};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default()
    }

    fn secret(class: SecretClass, cadence: Cadence) -> ManagedSecret {
        ManagedSecret {
            name: "billing-db".into(),
            class,
            path: "apps/billing/db".into(),
            cadence,
            overlap: Duration::from_mins(5),
            owner: "team".into(),
            consumers: vec![],
            approval: ApprovalPolicy::NotRequired,
        }
    }

    fn hourly() -> ManagedSecret {
        secret(
            SecretClass::DynamicDb,
            Cadence::MaxAge(Duration::from_hours(1)),
        )
    }

    fn rotated(at: i64) -> RotationState {
        RotationState {
            current: Some(3),
            previous: Some(Previous {
                version: 2,
                retire_at: t(at + 300),
            }),
            rotated_at: Some(t(at)),
            highest_seen: 3,
            rotations: 3,
            last_result: Some(LastResult::Rotated),
            ..RotationState::new()
        }
    }

    #[test]
    fn a_rotated_secret_shows_versions_age_and_next_rotation() {
        let r = row(&hourly(), &rotated(0), None, t(600));
        assert_eq!((r.current, r.previous, r.pending), (Some(3), Some(2), None));
        assert_eq!(r.age, Some(Duration::from_mins(10)));
        assert_eq!(r.next_rotation, Some(t(3600)));
        assert_eq!(r.last_result, "rotated");
    }

    #[test]
    fn never_rotated_is_due_now_and_in_flight_has_no_next_time() {
        let fresh = row(&hourly(), &RotationState::new(), None, t(5));
        assert_eq!((fresh.age, fresh.next_rotation), (None, Some(t(5))));
        assert_eq!(fresh.last_result, "none");
        let mut st = rotated(0);
        st.phase = Phase::Pending {
            version: 4,
            stage: Stage::AtTarget,
        };
        let flying = row(&hourly(), &st, None, t(4000));
        assert_eq!((flying.pending, flying.next_rotation), (Some(4), None));
        let tls = row(
            &secret(SecretClass::Tls, Cadence::Never),
            &RotationState::new(),
            None,
            t(0),
        );
        assert_eq!(tls.next_rotation, None);
    }

    #[test]
    fn an_overdue_secret_is_due_now_not_in_the_past() {
        let r = row(&hourly(), &rotated(0), None, t(7200));
        assert_eq!(r.next_rotation, Some(t(7200)));
    }

    #[test]
    fn only_an_open_approval_is_shown() {
        let open = ApprovalRequest::new(
            sre_core::approval::ApprovalId("billing-db-1".into()),
            "rotate",
            sre_core::approval::Principal::new("sre-rotation"),
            t(0),
            t(100),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let st = RotationState::new();
        assert_eq!(
            row(&hourly(), &st, Some(&open), t(50)).approval.as_deref(),
            Some("billing-db-1")
        );
        assert_eq!(row(&hourly(), &st, Some(&open), t(100)).approval, None);
    }

    #[test]
    fn the_table_has_one_aligned_line_per_secret() {
        let mut failed = rotated(-7200);
        failed.last_result = Some(LastResult::Failed {
            message: "openbao sealed".into(),
        });
        let rows = [
            row(&hourly(), &rotated(0), None, t(600)),
            row(
                &ManagedSecret {
                    name: "tok".into(),
                    ..hourly()
                },
                &failed,
                None,
                t(600),
            ),
            unavailable_row(&hourly(), "openbao unavailable".into()),
        ];
        let table = render_table(&rows, t(600));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("NAME "), "{table}");
        let col = lines[0].find("AGE").unwrap_or_default();
        assert_eq!(lines[1].find("10m 0s"), Some(col), "{table}");
        assert!(lines[1].contains("3/2"), "{table}");
        assert!(
            lines[1].contains("2026-01-01 01:00:00Z (in 50m 0s)"),
            "{table}"
        );
        assert!(lines[2].contains("failed (openbao sealed)"), "{table}");
        assert!(lines[2].contains("due now"), "{table}");
        assert!(
            lines[3].contains("unavailable: openbao unavailable"),
            "{table}"
        );
    }

    #[test]
    fn observed_certificates_show_their_expiry_or_why_not() {
        let tls = ManagedSecret {
            name: "ingress".into(),
            class: SecretClass::Tls,
            cadence: Cadence::Never,
            ..hourly()
        };
        let valid = crate::expiry::Validity {
            not_before: Some(t(0)),
            not_after: t(86_400),
        };
        let lead = Duration::from_hours(48);
        let read = row(&tls, &RotationState::new(), None, t(600)).with_certificate(
            &Ok(valid),
            lead,
            t(600),
        );
        assert_eq!(read.age, Some(Duration::from_mins(10)));
        let gone = row(&tls, &RotationState::new(), None, t(600)).with_certificate(
            &Err("/run/spire/svid.pem: No such file or directory".into()),
            lead,
            t(600),
        );
        assert_eq!(gone.age, None);
        let table = render_table(&[read, gone], t(600));
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].contains("expires 2026-01-02 00:00:00Z (in 23h 50m): warn"),
            "{table}"
        );
        assert!(lines[1].contains("10m 0s"), "{table}");
        assert!(
            lines[2].contains("certificate unreadable: /run/spire/svid.pem: No such file"),
            "{table}"
        );
    }

    #[test]
    fn short_durations_keep_two_units() {
        for (secs, text) in [
            (42, "42s"),
            (65, "1m 5s"),
            (3900, "1h 5m"),
            (90_000, "1d 1h"),
        ] {
            assert_eq!(short_duration(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn the_dry_run_plan_of_a_forced_rotation() {
        let s = due_now(&hourly());
        let mut st = rotated(0);
        st.previous = None;
        let obs = Observed {
            latest_version: 3,
            approval: None,
        };
        let labels: Vec<&str> = preview(&st, &obs, &s, t(60))
            .iter()
            .map(Step::label)
            .collect();
        assert_eq!(
            labels,
            ["create_pending", "set_at_target", "test_pending", "promote"]
        );
        // Inside the overlap window, nothing can rotate yet: the plan says wait.
        let waiting = preview(&rotated(0), &obs, &s, t(60));
        assert!(
            matches!(waiting.as_slice(), [Step::Wait { until: Some(u), .. }] if *u == t(300)),
            "{waiting:?}"
        );
        assert_eq!(
            describe(&waiting[0]),
            "wait (previous version still in its overlap window) until 2026-01-01T00:05:00Z"
        );
    }
}
