//! Prometheus metrics of the controller loop, registered by the library (STYLE §5) and
//! served by the binary: `Metrics::register(&mut registry)` once, `update(&status)` per
//! scrape.

use crate::plan::{Direction, StepStatus};
use crate::run::RuntimeStatus;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;

/// The controller's metrics: the upstream deployment's `failover_lease_status`,
/// `failover_witness_reachable` and `failover_last_failover_time` (their dashboards and
/// alerts exist) plus `sre_failover_*`. They are gauges and counters set from a
/// [`RuntimeStatus`] snapshot, so a scrape never waits on the witness or a resolver.
#[derive(Debug, Default)]
pub struct Metrics {
    lease_status: Gauge,
    witness_reachable: Gauge,
    last_failover_time: Gauge,
    role: Family<Labels, Gauge>,
    serving: Gauge,
    generation: Gauge,
    lease_generation: Gauge,
    lease_age: Gauge<f64, AtomicU64>,
    quorum_answers: Family<Labels, Gauge>,
    resolver_answer: Family<Labels, Gauge>,
    plan_steps: Family<Labels, Gauge>,
    pages: Family<Labels, Counter>,
    fences: Counter,
    approvals: Counter,
    evidence_failures: Counter,
    ticks: Counter,
}

impl Metrics {
    /// Registers every metric in `registry` (upstream names at its root, the rest under
    /// `sre_failover_`).
    #[must_use]
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        registry.register(
            "failover_lease_status",
            "1 while this region is active (holds failover authority)",
            m.lease_status.clone(),
        );
        registry.register(
            "failover_witness_reachable",
            "1 when the last witness read answered",
            m.witness_reachable.clone(),
        );
        registry.register(
            "failover_last_failover_time",
            "Unix time this region last became active (0: never)",
            m.last_failover_time.clone(),
        );
        let s = registry.sub_registry_with_prefix("sre_failover");
        s.register("role", "1 for the current role", m.role.clone());
        s.register(
            "serving",
            "1 while active with the promotion plan complete",
            m.serving.clone(),
        );
        s.register(
            "generation",
            "Fencing token of the current role (0: none)",
            m.generation.clone(),
        );
        s.register(
            "lease_generation",
            "Generation of the record at the witness",
            m.lease_generation.clone(),
        );
        s.register(
            "lease_age_seconds",
            "Seconds since the witness record was last renewed",
            m.lease_age.clone(),
        );
        s.register(
            "quorum_answers",
            "Resolvers giving each answer per region",
            m.quorum_answers.clone(),
        );
        s.register(
            "resolver_answer",
            "1 for each resolver's current answer per region",
            m.resolver_answer.clone(),
        );
        s.register(
            "plan_steps",
            "Steps of the last layer plan by status",
            m.plan_steps.clone(),
        );
        s.register("pages", "Pages raised by reason", m.pages.clone());
        s.register(
            "fences",
            "Times this region fenced itself",
            m.fences.clone(),
        );
        s.register(
            "approvals_requested",
            "Promotion approvals requested",
            m.approvals.clone(),
        );
        s.register(
            "evidence_failures",
            "Evidence appends that failed",
            m.evidence_failures.clone(),
        );
        s.register("ticks", "Controller loop iterations", m.ticks.clone());
        m
    }

    /// Sets every metric from `status` (counters catch up to the status totals).
    pub fn update(&self, status: &RuntimeStatus) {
        update(self, status);
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn catch_up(c: &Counter, total: u64) {
    c.inc_by(total.saturating_sub(c.get()));
}

fn update(m: &Metrics, st: &RuntimeStatus) {
    m.lease_status.set(i64::from(st.role.is_active()));
    m.witness_reachable.set(i64::from(st.witness_reachable));
    m.last_failover_time
        .set(st.last_failover_at.map_or(0, |t| t.timestamp()));
    m.role.clear();
    for r in ["standby", "acquiring", "active", "fenced", "demoting"] {
        m.role
            .get_or_create(&labels(&[("role", r)]))
            .set(i64::from(st.role.name() == r));
    }
    m.serving.set(i64::from(st.serving));
    let g = st.role.generation().map_or(0, |g| g.0);
    m.generation.set(i64::try_from(g).unwrap_or(i64::MAX));
    let lg = st.lease.as_ref().map_or(0, |l| l.generation.0);
    m.lease_generation
        .set(i64::try_from(lg).unwrap_or(i64::MAX));
    m.lease_age
        .set(st.lease.as_ref().map_or(0.0, |l| l.age_seconds));
    m.quorum_answers.clear();
    m.resolver_answer.clear();
    for a in &st.answers {
        let answer = serde_json::to_value(a.answer).ok();
        let answer = answer
            .as_ref()
            .and_then(|v| v.as_str())
            .unwrap_or("unknown");
        m.quorum_answers
            .get_or_create(&labels(&[
                ("region", a.region.as_str()),
                ("answer", answer),
            ]))
            .inc();
        m.resolver_answer
            .get_or_create(&labels(&[
                ("resolver", &a.resolver),
                ("region", a.region.as_str()),
                ("answer", answer),
            ]))
            .set(1);
    }
    m.plan_steps.clear();
    if let Some(p) = &st.plan {
        let dir = match p.direction {
            Direction::Promotion => "promotion",
            Direction::Demotion => "demotion",
        };
        for s in &p.steps {
            let status = match s.status {
                StepStatus::Pending => "pending",
                StepStatus::Running => "running",
                StepStatus::Verified => "verified",
                StepStatus::Skipped { .. } => "skipped",
                StepStatus::Failed { .. } => "failed",
            };
            m.plan_steps
                .get_or_create(&labels(&[("direction", dir), ("status", status)]))
                .inc();
        }
    }
    for (reason, n) in &st.pages_total {
        catch_up(&m.pages.get_or_create(&labels(&[("reason", reason)])), *n);
    }
    catch_up(&m.fences, st.fences_total);
    catch_up(&m.approvals, st.approvals_requested_total);
    catch_up(&m.evidence_failures, st.evidence_failures_total);
    catch_up(&m.ticks, st.ticks_total);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reachability;
    use crate::observe::ResolverAnswer;
    use crate::run::LeaseSummary;
    use crate::state::{Authority, Role};
    use sre_core::{Generation, RegionId};
    use std::collections::BTreeMap;

    #[test]
    fn upstream_names_and_role_quorum_and_counters_are_rendered() {
        let eu = RegionId::new("eu");
        let answer = |resolver: &str, answer| ResolverAnswer {
            resolver: resolver.into(),
            region: eu.clone(),
            answer,
        };
        let status = RuntimeStatus {
            region: eu.clone(),
            role: Role::Active {
                generation: Generation(42),
                authority: Authority::DnsAfterLease,
            },
            serving: true,
            witness_reachable: false,
            lease: Some(LeaseSummary {
                holder: eu.clone(),
                generation: Generation(42),
                released: false,
                age_seconds: 3.5,
            }),
            answers: vec![
                answer("r1", Reachability::Reachable),
                answer("r2", Reachability::Reachable),
                answer("r3", Reachability::Unknown),
            ],
            last_failover_at: chrono::DateTime::from_timestamp(1_767_225_600, 0),
            plan: None,
            lease_only: true,
            pages_total: BTreeMap::from([("malformed-lease".to_owned(), 2)]),
            approvals_requested_total: 0,
            fences_total: 1,
            evidence_failures_total: 0,
            ticks_total: 7,
        };
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.update(&status);
        let text = sre_core::telemetry::render_metrics(&registry).unwrap_or_default();
        for line in [
            "failover_lease_status 1",
            "failover_witness_reachable 0",
            "failover_last_failover_time 1767225600",
            "sre_failover_role{role=\"active\"} 1",
            "sre_failover_role{role=\"standby\"} 0",
            "sre_failover_generation 42",
            "sre_failover_lease_age_seconds 3.5",
            "sre_failover_quorum_answers{region=\"eu\",answer=\"reachable\"} 2",
            "sre_failover_pages_total{reason=\"malformed-lease\"} 2",
            "sre_failover_ticks_total 7",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
    }
}
