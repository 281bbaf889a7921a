//! The webhook's configuration: a YAML/TOML file plus `SRE_REMEDIATION__...` environment
//! overrides, deserialised strictly and validated with every problem reported at once.
//!
//! The bearer token is deliberately not a config key: it comes from `token_file` (a path)
//! or the `SRE_REMEDIATION_TOKEN` variable, so that it never sits in a config file that
//! is committed, printed or logged.

use crate::notify::HttpNotifier;
use crate::platform::{
    JetStreamSettings, MilvusSettings, RawJetStream, RawMilvus, RawRedeliver, RawUnseal,
    RedeliverSettings, UnsealSettings, check_jetstream, check_milvus, check_redeliver,
    check_unseal,
};
use serde::Deserialize;
use sre_adapter_prometheus::PrometheusClient;
use sre_core::config::{ConfigError, Validate};
use sre_core::guard::{Backoff, Budget, Cents, Jitter};
use sre_remediation::checks::{Checks, RawCheck};
use sre_remediation::plan::{BlastRadius, Policy};
use sre_remediation::spend::{SpendSource, SpendUnit};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

/// Environment prefix for config overrides (`SRE_REMEDIATION__ENGINE__COOLDOWN=10m`).
pub const ENV_PREFIX: &str = "SRE_REMEDIATION";
/// Environment variable holding the Gitea access token when `gitea.token_file` is not set.
pub const GITEA_TOKEN_ENV: &str = "SRE_REMEDIATION_GITEA_TOKEN";
/// Environment variable holding the bearer token when `token_file` is not set.
pub const TOKEN_ENV: &str = "SRE_REMEDIATION_TOKEN";

/// The config file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_true")]
    dry_run: bool,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    rules_file: Option<PathBuf>,
    #[serde(default = "default_body")]
    max_body_bytes: usize,
    #[serde(default = "d_queue")]
    queue_capacity: usize,
    #[serde(default = "d_runs_kept")]
    runs_kept: usize,
    #[serde(default)]
    engine: Option<RawEngine>,
    #[serde(default)]
    verify: Option<RawVerify>,
    #[serde(default)]
    executors: ExecutorKind,
    #[serde(default)]
    evidence_file: Option<PathBuf>,
    #[serde(default)]
    notify: Option<RawNotify>,
    #[serde(default)]
    gitea: Option<RawGitea>,
    #[serde(default)]
    runbook_files: Vec<PathBuf>,
    #[serde(default)]
    runbooks: Option<RawRunbooks>,
    #[serde(default)]
    checks: BTreeMap<String, RawCheck>,
    #[serde(default)]
    budget: Option<RawBudget>,
    #[serde(default)]
    unseal: Option<RawUnseal>,
    #[serde(default)]
    jetstream: Option<RawJetStream>,
    #[serde(default)]
    milvus: Option<RawMilvus>,
    #[serde(default)]
    redeliver: Option<RawRedeliver>,
}

/// Where Runbooks come from besides `runbook_files`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunbooks {
    #[serde(default)]
    from_cluster: bool,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default = "d_runbook_interval", with = "humantime_serde")]
    interval: Duration,
}

/// Runbook objects in the cluster: listed every `interval` and put ahead of the file
/// rules (and of `runbook_files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRunbooksConfig {
    /// Only this namespace; every namespace when `None`.
    pub namespace: Option<String>,
    /// Time between two list calls.
    pub interval: Duration,
}

/// The spend budget for scale-ups, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    limit_cents: u64,
    #[serde(default, with = "humantime_serde")]
    period: Option<Duration>,
    #[serde(default)]
    spend_query: Option<String>,
    #[serde(default)]
    unit: Option<SpendUnit>,
    #[serde(default)]
    spend_cents: Option<u64>,
}

/// Where the spend the budget gate compares against comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetConfig {
    /// The source, read before every plan.
    pub spend: SpendSource,
    /// The period the spend query covers (documentation for the run record; the query
    /// itself computes the spend of that period).
    pub period: Option<Duration>,
}

/// The Gitea server for `dispatch_workflow` actions, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGitea {
    url: String,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default = "d_notify_timeout", with = "humantime_serde")]
    timeout: Duration,
}

/// Where `dispatch_workflow` actions go. The token comes from `token_file` or
/// `SRE_REMEDIATION_GITEA_TOKEN`, never from the config file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiteaConfig {
    /// Gitea's base URL (`https://gitea.example`).
    pub url: String,
    /// File holding the access token.
    pub token_file: Option<PathBuf>,
    /// Time limit of one dispatch.
    pub timeout: Duration,
}

/// Which executors carry planned actions out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// None: every action is reported as not executed (plan-only deployments, tests).
    #[default]
    None,
    /// The kube executors (`sre-adapter-kube`) on the in-cluster or `KUBECONFIG` cluster.
    Kube,
}

/// The escalation/notification webhook as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    url: String,
    #[serde(default = "d_notify_timeout", with = "humantime_serde")]
    timeout: Duration,
}

/// Where notifications and escalations are `POST`ed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// The receiver's URL (may carry a secret in its path: never logged whole).
    pub url: String,
    /// Time limit of one `POST`.
    pub timeout: Duration,
}

/// Verification settings as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    #[serde(default)]
    prometheus_url: Option<String>,
    #[serde(default = "d_interval", with = "humantime_serde")]
    interval: Duration,
    #[serde(default = "d_query_timeout", with = "humantime_serde")]
    query_timeout: Duration,
}

/// Engine tuning as written; every key has a conservative default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    #[serde(default = "d_cooldown", with = "humantime_serde")]
    cooldown: Duration,
    #[serde(default = "d_backoff_max", with = "humantime_serde")]
    backoff_max: Duration,
    #[serde(default = "d_escalate_after")]
    escalate_after: u32,
    #[serde(default = "d_cool_off", with = "humantime_serde")]
    escalation_cool_off: Duration,
    #[serde(default = "d_dedupe", with = "humantime_serde")]
    dedupe_window: Duration,
    #[serde(default = "d_max_targets")]
    max_targets_per_window: u32,
    #[serde(default = "d_window", with = "humantime_serde")]
    blast_window: Duration,
    #[serde(default = "d_pct")]
    max_replica_pct: u32,
    #[serde(default)]
    budget_limit_cents: Option<u64>,
    #[serde(default = "d_retention", with = "humantime_serde")]
    retention: Duration,
}

fn default_listen() -> String {
    "127.0.0.1:9095".into()
}
fn default_true() -> bool {
    true
}
fn default_body() -> usize {
    1024 * 1024
}
fn d_queue() -> usize {
    1024
}
fn d_runs_kept() -> usize {
    500
}
fn d_interval() -> Duration {
    Duration::from_secs(10)
}
fn d_notify_timeout() -> Duration {
    Duration::from_secs(10)
}
fn d_query_timeout() -> Duration {
    Duration::from_secs(10)
}
fn d_cooldown() -> Duration {
    Duration::from_mins(5)
}
fn d_backoff_max() -> Duration {
    Duration::from_hours(1)
}
fn d_escalate_after() -> u32 {
    3
}
fn d_cool_off() -> Duration {
    Duration::from_hours(1)
}
fn d_dedupe() -> Duration {
    Duration::from_mins(10)
}
fn d_max_targets() -> u32 {
    5
}
fn d_window() -> Duration {
    Duration::from_mins(10)
}
fn d_pct() -> u32 {
    25
}
fn d_retention() -> Duration {
    Duration::from_hours(24)
}
fn d_runbook_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_engine() -> RawEngine {
    RawEngine {
        cooldown: d_cooldown(),
        backoff_max: d_backoff_max(),
        escalate_after: d_escalate_after(),
        escalation_cool_off: d_cool_off(),
        dedupe_window: d_dedupe(),
        max_targets_per_window: d_max_targets(),
        blast_window: d_window(),
        max_replica_pct: d_pct(),
        budget_limit_cents: None,
        retention: d_retention(),
    }
}

/// The validated configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Run executors in dry-run mode (the API server validates, nothing is persisted).
    pub dry_run: bool,
    /// Where the bearer token is read from, when not from the environment.
    pub token_file: Option<PathBuf>,
    /// Rule file replacing the built-in rules.
    pub rules_file: Option<PathBuf>,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Deliveries waiting for the planner before the handler answers 503.
    pub queue_capacity: usize,
    /// Runs kept for `GET /runs`.
    pub runs_kept: usize,
    /// Engine limits.
    pub policy: Policy,
    /// How executed actions are verified.
    pub verify: VerifyConfig,
    /// Who carries actions out.
    pub executors: ExecutorKind,
    /// The hash-chained evidence log of every step (plan, execution, verification,
    /// rollback, escalation): the record for analysis. Required when acting for real.
    pub evidence_file: Option<PathBuf>,
    /// The notification/escalation webhook; without it, escalations are a log line and
    /// a counter only.
    pub notify: Option<NotifyConfig>,
    /// The Gitea server `dispatch_workflow` actions are sent to.
    pub gitea: Option<GiteaConfig>,
    /// `Runbook` documents (`catalyst.openova.io/v1alpha1`) whose rules go ahead of the
    /// rule set: they override the rules for the alerts they name.
    pub runbook_files: Vec<PathBuf>,
    /// Runbook objects listed from the cluster (`runbooks.from_cluster: true`).
    pub cluster_runbooks: Option<ClusterRunbooksConfig>,
    /// Named checks for Runbook preconditions and `verify` steps: the built-ins plus
    /// the config's `checks:`.
    pub checks: Checks,
    /// The spend source of the budget gate (`budget:`); `None` without a budget.
    pub budget: Option<BudgetConfig>,
    /// OpenBao unseal executor (`unseal:`); without it `unseal` is not executed.
    pub unseal: Option<UnsealSettings>,
    /// JetStream consumer executor (`jetstream:`); without it `add_consumer_replica` is
    /// not executed.
    pub jetstream: Option<JetStreamSettings>,
    /// Milvus index rebuilds (`milvus:`); without it `rebuild_index` is not executed.
    pub milvus: Option<MilvusSettings>,
    /// Webhook redelivery requests (`redeliver:`); without it `retry_with_backoff` is
    /// not executed.
    pub redeliver: Option<RedeliverSettings>,
}

/// Where and how often verification asks Prometheus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyConfig {
    /// The Prometheus (or compatible) server; required unless `dry_run`, because an
    /// action that cannot be verified counts as not having helped.
    pub prometheus_url: Option<String>,
    /// Time between verification queries.
    pub interval: Duration,
    /// Time limit of one query.
    pub query_timeout: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("dry_run", &self.dry_run)
            .field("rules_file", &self.rules_file)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("queue_capacity", &self.queue_capacity)
            .field("runs_kept", &self.runs_kept)
            .field("verify", &self.verify)
            .field("executors", &self.executors)
            .field("evidence_file", &self.evidence_file)
            .field("notify", &self.notify.as_ref().map(|_| "<configured>"))
            .field("gitea", &self.gitea)
            .field("runbook_files", &self.runbook_files)
            .field("cluster_runbooks", &self.cluster_runbooks)
            .field("budget", &self.budget)
            .field("unseal", &self.unseal)
            .field("jetstream", &self.jetstream)
            .field("milvus", &self.milvus)
            .field("redeliver", &self.redeliver)
            .finish_non_exhaustive()
    }
}

impl Validate for RawConfig {
    type Valid = Config;

    #[allow(
        clippy::too_many_lines,
        reason = "one linear pass over the config, section by section, in field order"
    )]
    fn validate(self) -> Result<Config, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let listen = self
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| errs.push(ConfigError::new("listen", format!("not host:port: {e}"))))
            .ok();
        if self.max_body_bytes == 0 {
            errs.push(ConfigError::new("max_body_bytes", "must be above zero"));
        }
        if self.queue_capacity == 0 {
            errs.push(ConfigError::new("queue_capacity", "must be above zero"));
        }
        if self.runs_kept == 0 {
            errs.push(ConfigError::new("runs_kept", "must be above zero"));
        }
        let verify = check_verify(self.verify, self.dry_run, &mut errs);
        let notify = check_actuation(
            self.executors,
            self.dry_run,
            self.evidence_file.as_ref(),
            self.notify,
            &mut errs,
        );
        let gitea = self.gitea.map(|g| check_gitea(g, &mut errs));
        let unseal = self.unseal.map(|u| check_unseal(u, &mut errs));
        let jetstream = self.jetstream.map(|j| check_jetstream(j, &mut errs));
        let milvus = self.milvus.map(|m| check_milvus(m, &mut errs));
        let redeliver = self.redeliver.map(|r| check_redeliver(r, &mut errs));
        let checks = Checks::builtin()
            .with_overrides("checks", &self.checks)
            .unwrap_or_else(|e| {
                errs.extend(e);
                Checks::builtin()
            });
        let cluster_runbooks = check_runbooks(self.runbooks, &mut errs);
        let e = self.engine.unwrap_or_else(default_engine);
        let (budget_limit, budget) = check_budget(
            self.budget,
            e.budget_limit_cents,
            verify.prometheus_url.is_some(),
            &mut errs,
        );
        let nz = |v: u32, path: &str, errs: &mut Vec<ConfigError>| {
            NonZeroU32::new(v).or_else(|| {
                errs.push(ConfigError::new(path, "must be at least 1"));
                None
            })
        };
        let escalate_after = nz(e.escalate_after, "engine.escalate_after", &mut errs);
        let max_targets = nz(
            e.max_targets_per_window,
            "engine.max_targets_per_window",
            &mut errs,
        );
        if !(1..=100).contains(&e.max_replica_pct) {
            errs.push(ConfigError::new("engine.max_replica_pct", "must be 1-100"));
        }
        if e.cooldown.is_zero() {
            errs.push(ConfigError::new("engine.cooldown", "must be above zero"));
        }
        if e.escalation_cool_off < e.cooldown {
            // A trial after escalation is spaced by the cool-off, not the cooldown.
            errs.push(ConfigError::new(
                "engine.escalation_cool_off",
                "must be at least engine.cooldown",
            ));
        }
        if e.backoff_max < e.cooldown {
            errs.push(ConfigError::new(
                "engine.backoff_max",
                "must be at least engine.cooldown",
            ));
        }
        if e.blast_window.is_zero() {
            errs.push(ConfigError::new(
                "engine.blast_window",
                "must be above zero",
            ));
        }
        let (Some(listen), Some(escalate_after), Some(max_targets), true) =
            (listen, escalate_after, max_targets, errs.is_empty())
        else {
            return Err(errs);
        };
        Ok(Config {
            listen,
            dry_run: self.dry_run,
            token_file: self.token_file,
            rules_file: self.rules_file,
            max_body_bytes: self.max_body_bytes,
            queue_capacity: self.queue_capacity,
            runs_kept: self.runs_kept,
            verify,
            executors: self.executors,
            evidence_file: self.evidence_file,
            notify,
            gitea,
            runbook_files: self.runbook_files,
            cluster_runbooks,
            checks,
            budget,
            unseal,
            jetstream,
            milvus,
            redeliver,
            policy: Policy {
                cooldown: e.cooldown,
                backoff: Backoff::new(
                    e.cooldown,
                    NonZeroU32::MIN.saturating_add(1),
                    e.backoff_max,
                    Jitter::None,
                ),
                escalate_after,
                escalation_cool_off: e.escalation_cool_off,
                dedupe_window: e.dedupe_window,
                blast_radius: BlastRadius {
                    max_targets,
                    window: e.blast_window,
                    max_replica_pct: e.max_replica_pct,
                },
                budget: budget_limit.map(|c| Budget::new(Cents(c))),
                retention: e.retention,
            },
        })
    }
}

/// Checks the `runbooks:` section; `None` unless `from_cluster` is on.
fn check_runbooks(
    raw: Option<RawRunbooks>,
    errs: &mut Vec<ConfigError>,
) -> Option<ClusterRunbooksConfig> {
    let r = raw?;
    if r.interval.is_zero() {
        errs.push(ConfigError::new("runbooks.interval", "must be above zero"));
    }
    if r.namespace.as_deref().is_some_and(|n| n.trim().is_empty()) {
        errs.push(ConfigError::new(
            "runbooks.namespace",
            "must not be empty; leave it out for every namespace",
        ));
    }
    r.from_cluster.then_some(ClusterRunbooksConfig {
        namespace: r.namespace,
        interval: r.interval,
    })
}

/// Checks the `budget:` section: one spend source at most, a unit for the query, a
/// metrics backend to ask it; returns the limit (from `budget.limit_cents` or the older
/// `engine.budget_limit_cents`) and the spend source.
fn check_budget(
    raw: Option<RawBudget>,
    engine_limit: Option<u64>,
    have_backend: bool,
    errs: &mut Vec<ConfigError>,
) -> (Option<u64>, Option<BudgetConfig>) {
    let Some(b) = raw else {
        // The older key alone: a budget without a spend source blocks scale-ups.
        return (
            engine_limit,
            engine_limit.map(|_| BudgetConfig {
                spend: SpendSource::None,
                period: None,
            }),
        );
    };
    if engine_limit.is_some() {
        errs.push(ConfigError::new(
            "engine.budget_limit_cents",
            "give the limit once: budget.limit_cents replaces this key",
        ));
    }
    let spend = match (b.spend_query, b.spend_cents) {
        (Some(_), Some(_)) => {
            errs.push(ConfigError::new(
                "budget.spend_cents",
                "give spend_query or spend_cents, not both",
            ));
            SpendSource::None
        }
        (Some(q), None) => {
            if q.trim().is_empty() {
                errs.push(ConfigError::new("budget.spend_query", "must not be empty"));
            }
            if !have_backend {
                errs.push(ConfigError::new(
                    "budget.spend_query",
                    "needs verify.prometheus_url to be asked",
                ));
            }
            if let Some(unit) = b.unit {
                SpendSource::Query { query: q, unit }
            } else {
                errs.push(ConfigError::new(
                    "budget.unit",
                    "required with spend_query: cents or currency (x100)",
                ));
                SpendSource::None
            }
        }
        (None, Some(c)) => SpendSource::Static { cents: Cents(c) },
        (None, None) => SpendSource::None,
    };
    if b.period.is_some_and(|p| p.is_zero()) {
        errs.push(ConfigError::new("budget.period", "must be above zero"));
    }
    (
        Some(b.limit_cents),
        Some(BudgetConfig {
            spend,
            period: b.period,
        }),
    )
}

/// Checks the Gitea section: an http(s) URL and a non-zero timeout.
fn check_gitea(g: RawGitea, errs: &mut Vec<ConfigError>) -> GiteaConfig {
    if let Err(e) = crate::notify::http_url(&g.url) {
        errs.push(ConfigError::new("gitea.url", e));
    }
    if g.timeout.is_zero() {
        errs.push(ConfigError::new("gitea.timeout", "must be above zero"));
    }
    GiteaConfig {
        url: g.url,
        token_file: g.token_file,
        timeout: g.timeout,
    }
}

/// Checks what acting needs: evidence when a cluster is changed for real, a notify URL
/// the HTTP notifier accepts.
fn check_actuation(
    executors: ExecutorKind,
    dry_run: bool,
    evidence_file: Option<&PathBuf>,
    notify: Option<RawNotify>,
    errs: &mut Vec<ConfigError>,
) -> Option<NotifyConfig> {
    if executors == ExecutorKind::Kube && !dry_run && evidence_file.is_none() {
        errs.push(ConfigError::new(
            "evidence_file",
            "required with executors: kube unless dry_run: changes to a cluster leave evidence",
        ));
    }
    notify.map(|n| {
        if let Err(e) = HttpNotifier::new(&n.url, n.timeout) {
            errs.push(ConfigError::new("notify.url", e.to_string()));
        }
        if n.timeout.is_zero() {
            errs.push(ConfigError::new("notify.timeout", "must be above zero"));
        }
        NotifyConfig {
            url: n.url,
            timeout: n.timeout,
        }
    })
}

/// Checks the verify section; the URL is checked by building the client the binary will
/// use, so that a URL the adapter refuses is a config error at its path, not a crash later.
fn check_verify(
    raw: Option<RawVerify>,
    dry_run: bool,
    errs: &mut Vec<ConfigError>,
) -> VerifyConfig {
    let v = raw.unwrap_or(RawVerify {
        prometheus_url: None,
        interval: d_interval(),
        query_timeout: d_query_timeout(),
    });
    match &v.prometheus_url {
        Some(url) => {
            if let Err(e) = PrometheusClient::new(url, v.query_timeout) {
                errs.push(ConfigError::new("verify.prometheus_url", e.to_string()));
            }
        }
        None if !dry_run => errs.push(ConfigError::new(
            "verify.prometheus_url",
            "required unless dry_run: executed actions must be verified",
        )),
        None => {}
    }
    if v.interval.is_zero() {
        errs.push(ConfigError::new("verify.interval", "must be above zero"));
    }
    if v.query_timeout.is_zero() {
        errs.push(ConfigError::new(
            "verify.query_timeout",
            "must be above zero",
        ));
    }
    VerifyConfig {
        prometheus_url: v.prometheus_url,
        interval: v.interval,
        query_timeout: v.query_timeout,
    }
}

/// The bearer token Alertmanager must send. `Debug` never shows it.
#[derive(Clone)]
pub struct BearerToken(Vec<u8>);

impl BearerToken {
    /// A token from its text; surrounding whitespace (a trailing newline in a file) is
    /// dropped. Empty tokens are refused: they would accept `Authorization: Bearer `.
    #[must_use]
    pub fn new(text: &str) -> Option<Self> {
        let t = text.trim();
        (!t.is_empty()).then(|| Self(t.as_bytes().to_vec()))
    }

    /// The token bytes, for the constant-time comparison.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sre_core::config::{EnvOverrides, Format, Source, load};

    fn yaml(text: &str, vars: &[(&str, &str)]) -> Result<Config, sre_core::config::ConfigErrors> {
        load::<RawConfig>(
            &Source::Text {
                name: "c.yaml".into(),
                text: text.into(),
                format: Format::Yaml,
            },
            &EnvOverrides::with_prefix(ENV_PREFIX),
            vars.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
        )
    }

    #[test]
    fn defaults_env_overrides_and_all_errors() {
        let c = yaml("{}", &[("SRE_REMEDIATION__ENGINE__COOLDOWN", "2m")]).expect("valid");
        assert!(c.dry_run);
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.policy.cooldown, Duration::from_mins(2));
        assert_eq!(c.policy.budget, None);
        assert_eq!(c.verify.prometheus_url, None, "dry run needs no Prometheus");
        assert_eq!(c.verify.interval, Duration::from_secs(10));
        let c = yaml(
            "dry_run: false\nverify: {prometheus_url: 'http://127.0.0.1:9090', interval: 2s}\n",
            &[],
        )
        .expect("valid");
        assert_eq!(
            c.verify.prometheus_url.as_deref(),
            Some("http://127.0.0.1:9090")
        );
        assert_eq!(c.verify.interval, Duration::from_secs(2));
        let err = yaml("dry_run: false\n", &[]).expect_err("acting without verification");
        assert_eq!(err.errors[0].path, "verify.prometheus_url", "{err}");
        let err = yaml(
            "queue_capacity: 0\nverify: {prometheus_url: 'ftp://x', interval: 0s}\n",
            &[],
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["queue_capacity", "verify.prometheus_url", "verify.interval"],
            "{err}"
        );
        let err = yaml(
            "listen: nowhere\nmax_body_bytes: 0\nengine: {escalate_after: 0, max_replica_pct: 101, cooldown: 2h}\n",
            &[],
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "listen",
                "max_body_bytes",
                "engine.escalate_after",
                "engine.max_replica_pct",
                "engine.escalation_cool_off",
                "engine.backoff_max"
            ],
            "{err}"
        );
        let err = yaml("token: hunter2\n", &[]).expect_err("unknown key");
        assert_eq!(err.errors[0].path, "token");
    }

    #[test]
    fn executors_evidence_and_notify() {
        let c = yaml("{}", &[]).expect("valid");
        assert_eq!(c.executors, ExecutorKind::None);
        assert_eq!((c.evidence_file, c.notify), (None, None));
        // Dry-run kube needs no evidence file: nothing is persisted in the cluster.
        let c = yaml(
            "executors: kube
",
            &[],
        )
        .expect("valid");
        assert_eq!(c.executors, ExecutorKind::Kube);
        let c = yaml(
            "executors: kube
dry_run: false
evidence_file: /var/lib/sre/ev.jsonl
verify: {prometheus_url: 'http://p:9090'}
notify: {url: 'https://hooks.example/x', timeout: 3s}
",
            &[],
        )
        .expect("valid");
        assert_eq!(
            c.notify,
            Some(NotifyConfig {
                url: "https://hooks.example/x".into(),
                timeout: Duration::from_secs(3)
            })
        );
        assert!(
            !format!("{c:?}").contains("hooks.example"),
            "the URL may hold a secret"
        );
        let err = yaml(
            "executors: kube
dry_run: false
verify: {prometheus_url: 'http://p:9090'}
notify: {url: 'ftp://x', timeout: 0s}
",
            &[],
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["evidence_file", "notify.url", "notify.timeout"],
            "{err}"
        );
        let c = yaml(
            "gitea: {url: 'https://git.example', token_file: /run/gitea-token}
runbook_files: [/etc/sre/runbooks/openbao-sealed.yaml]
",
            &[],
        )
        .expect("valid");
        assert_eq!(
            c.gitea.as_ref().map(|g| (g.url.as_str(), g.timeout)),
            Some(("https://git.example", Duration::from_secs(10)))
        );
        assert_eq!(c.runbook_files.len(), 1);
        let err = yaml("gitea: {url: 'ftp://g', timeout: 0s}\n", &[]).expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["gitea.url", "gitea.timeout"], "{err}");
        let err = yaml(
            "executors: docker
",
            &[],
        )
        .expect_err("unknown executor");
        assert_eq!(err.errors[0].path, "executors", "{err}");
    }

    #[test]
    fn checks_budget_and_cluster_runbooks() {
        let c = yaml("{}", &[]).expect("valid");
        assert_eq!(c.budget, None);
        assert_eq!(c.cluster_runbooks, None);
        assert!(c.checks.get("spire.server.healthy").is_some());
        let c = yaml(
            "checks:
  openbao.unseal.shamir.shares.available:
    query: 'kube_secret_info{namespace=\"${namespace}\",secret=\"openbao-unseal\"}'
    expect: non_empty
verify: {prometheus_url: 'http://p:9090'}
budget:
  limit_cents: 900
  period: 30d
  spend_query: 'sum(node_total_hourly_cost) * 730'
  unit: currency
runbooks: {from_cluster: true, namespace: catalyst-system}
",
            &[],
        )
        .expect("valid");
        assert!(
            c.checks
                .get("openbao.unseal.shamir.shares.available")
                .is_some_and(|s| s.query.is_some())
        );
        assert_eq!(c.policy.budget, Some(Budget::new(Cents(900))));
        assert_eq!(
            c.budget.as_ref().map(|b| &b.spend),
            Some(&SpendSource::Query {
                query: "sum(node_total_hourly_cost) * 730".into(),
                unit: SpendUnit::Currency
            })
        );
        assert_eq!(
            c.cluster_runbooks,
            Some(ClusterRunbooksConfig {
                namespace: Some("catalyst-system".into()),
                interval: Duration::from_secs(30)
            })
        );
        let c = yaml("budget: {limit_cents: 900, spend_cents: 750}\n", &[]).expect("valid");
        assert_eq!(
            c.budget.map(|b| b.spend),
            Some(SpendSource::Static { cents: Cents(750) })
        );
        let c = yaml("engine: {budget_limit_cents: 5}\n", &[]).expect("older key");
        assert_eq!(c.policy.budget, Some(Budget::new(Cents(5))));
        assert_eq!(c.budget.map(|b| b.spend), Some(SpendSource::None));
        let c = yaml("runbooks: {from_cluster: false}\n", &[]).expect("valid");
        assert_eq!(c.cluster_runbooks, None);

        let err = yaml(
            "engine: {budget_limit_cents: 5}
checks: {x: {query: 'up{a=\"${}\"}', expect: empty}}
budget: {limit_cents: 1, spend_query: 'sum(x)', period: 0s}
runbooks: {from_cluster: true, namespace: '', interval: 0s}
",
            &[],
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "checks.x.query",
                "runbooks.interval",
                "runbooks.namespace",
                "engine.budget_limit_cents",
                "budget.spend_query",
                "budget.unit",
                "budget.period"
            ],
            "{err}"
        );
        let err = yaml(
            "budget: {limit_cents: 1, spend_query: q, unit: cents, spend_cents: 1}\n",
            &[],
        )
        .expect_err("two sources");
        assert_eq!(err.errors[0].path, "budget.spend_cents", "{err}");
    }

    #[test]
    fn milvus_and_redeliver_sections_are_optional_and_checked_at_their_paths() {
        let c = yaml("{}", &[]).expect("valid");
        assert!(c.milvus.is_none() && c.redeliver.is_none());
        let c = yaml(
            "milvus: {url: 'http://milvus.ai-hub.svc:19530', token_file: /etc/sre/milvus-token}
redeliver:
  url_template: 'http://billing.${namespace}.svc:8080/internal/webhooks/${name}/redeliver'
  token_file: /etc/sre/billing-token
",
            &[],
        )
        .expect("valid");
        assert!(c.milvus.is_some());
        assert_eq!(
            c.redeliver.map(|r| r.backoff().cap(1)),
            Some(Duration::from_secs(2)),
            "default backoff: 1 s doubling"
        );
        let err = yaml(
            "milvus:
  url: 'milvus:19530'
  db_name: ''
  index_params: {docs: {vec: {index_type: HNSW, metric_type: L2, params: {M: 16}}}}
redeliver: {url_template: 'http://x/${hook}', backoff: {factor: 0}}
",
            &[],
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "milvus.url",
                "milvus.db_name",
                "milvus.index_params.docs.vec.params.efConstruction",
                "redeliver.url_template",
                "redeliver.backoff.factor"
            ],
            "{err}"
        );
        let err = yaml("milvus: {url: 'http://m', token: x}\n", &[]).expect_err("no inline token");
        assert!(err.to_string().contains("token"), "{err}");
    }

    #[test]
    fn token_is_never_debug_printed() {
        let t = BearerToken::new(" s3cret\n").expect("non-empty");
        assert_eq!(t.expose(), b"s3cret");
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(BearerToken::new("  \n").is_none());
    }
}
