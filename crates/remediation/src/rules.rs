//! Alert-to-action rules as data: which alert (name plus label matchers) leads to which
//! action on which target, how to verify it worked, what to undo and whom to escalate to.
//!
//! The handbook's three tables (control plane, AI hub, open banking) ship as the built-in
//! rule set (`default_rules.yaml`, embedded at compile time); an operator replaces it with
//! a file of the same shape. Rules are checked in two stages like every config here:
//! strict deserialisation (unknown keys fail), then validation that reports every problem
//! with its path, so a broken rule file is fixed in one pass.

use crate::payload::{Alert, Labels};
use serde::{Deserialize, Serialize};
use sre_core::config::{self, ConfigError, ConfigErrors, EnvOverrides, Format, Source, Validate};
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;
use thiserror::Error;

/// The handbook's alert tables, compiled in so the webhook works without a rule file.
pub const DEFAULT_RULES_YAML: &str = include_str!("default_rules.yaml");

/// A string with `${label}` placeholders filled from an alert's labels.
///
/// `${...}` rather than `{...}` because `PromQL` uses braces for its own label matchers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Template(String);

/// A placeholder names a label the alert does not carry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("alert has no label {label:?}")]
pub struct MissingLabel {
    /// The label the template asked for.
    pub label: String,
}

impl Template {
    /// A template from its source text (checked by rule-set validation).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The source text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks that every `${` is closed and names a label.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("unclosed \"${{\" in {:?}", self.0));
            };
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {name:?} in {:?}", self.0));
            }
            rest = &after[end + 1..];
        }
        Ok(())
    }

    /// Fills the placeholders; a missing label is an error rather than an empty string,
    /// because an empty name would widen a `PromQL` selector or target the wrong object.
    pub fn render(&self, labels: &Labels) -> Result<String, MissingLabel> {
        let mut out = String::with_capacity(self.0.len());
        let mut rest = self.0.as_str();
        while let Some(start) = find_placeholder(rest) {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let name = &after[..end];
            let value = labels
                .get(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| MissingLabel {
                    label: name.to_owned(),
                })?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Where the first `${` in `s` starts. Rendering runs for every alert; a byte scan for
/// `$` (short templates, few dollars) is cheaper than a general substring search.
fn find_placeholder(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(i) = bytes.get(from..)?.iter().position(|&b| b == b'$') {
        let at = from + i;
        if bytes.get(at + 1) == Some(&b'{') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// How a label matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MatchOp {
    /// The label equals the value (a missing label equals `""`, as in Alertmanager).
    Eq,
    /// The label differs from the value.
    Ne,
}

/// One `label=value` or `label!=value` condition, written as in Alertmanager routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// The label name.
    pub label: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value compared with.
    pub value: String,
}

impl Matcher {
    /// Parses `label=value` / `label!=value`; regex matchers are refused by name so that
    /// an operator does not believe `=~` works.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.contains("=~") || s.contains("!~") {
            return Err(format!(
                "{s:?}: regex matchers (=~, !~) are not supported; use = or !="
            ));
        }
        let (label, op, value) = if let Some((l, v)) = s.split_once("!=") {
            (l, MatchOp::Ne, v)
        } else if let Some((l, v)) = s.split_once('=') {
            (l, MatchOp::Eq, v)
        } else {
            return Err(format!("{s:?}: expected label=value or label!=value"));
        };
        let label = label.trim();
        if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{s:?}: bad label name {label:?}"));
        }
        let value = value.trim().trim_matches('"');
        Ok(Self {
            label: label.to_owned(),
            op,
            value: value.to_owned(),
        })
    }

    /// Whether `labels` satisfy the matcher.
    #[must_use]
    pub fn matches(&self, labels: &Labels) -> bool {
        let got = labels.get(&self.label).map_or("", String::as_str);
        match self.op {
            MatchOp::Eq => got == self.value,
            MatchOp::Ne => got != self.value,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
        };
        write!(f, "{}{op}{}", self.label, self.value)
    }
}

/// What a rule does, with its parameters. Executors (kube, OpenBao, Gitea, webhook) are
/// chosen by [`ActionSpec::kind`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ActionSpec {
    /// Add replicas (`Deployment`, `StatefulSet`, `InferenceService` `minReplicas`). Costs money,
    /// so it passes the budget gate.
    ScaleUp {
        /// Replicas added per action.
        step: u32,
        /// Never scale beyond this.
        max_replicas: u32,
        /// Added spend per replica in the budget period, for the budget gate.
        #[serde(default)]
        cost_per_replica_cents: u64,
    },
    /// Remove replicas (idle GPU pods).
    ScaleDown {
        /// Replicas removed per action.
        step: u32,
        /// Never scale below this.
        min_replicas: u32,
    },
    /// Rollout restart (the `kubectl.kubernetes.io/restartedAt` annotation).
    RolloutRestart {},
    /// Delete one pod so its controller recreates it.
    DeletePod {},
    /// Roll back to the previous `ReplicaSet` revision.
    Rollback {},
    /// Ask cert-manager to renew a Certificate now.
    RenewCertificate {},
    /// Unseal OpenBao with the SPIRE-attested unseal keys.
    Unseal {},
    /// Read k8gb's Gslb status and record it; changes nothing.
    CheckGslb {},
    /// Add one replica to a JetStream consumer.
    AddConsumerReplica {
        /// Never beyond this.
        max_replicas: u32,
    },
    /// Cut vLLM's max batch size to `percent` of its current value.
    ReduceBatchSize {
        /// New size in percent of the old one (1-99).
        percent: u32,
    },
    /// Evict pods below a `PriorityClass` value from the node.
    EvictLowPriority {
        /// Pods with a priority below this are evicted.
        below_priority: i32,
    },
    /// Rebuild a Milvus collection's index.
    RebuildIndex {},
    /// Switch traffic to a backup instance.
    FailoverToBackup {
        /// The backup's name (templated from labels).
        backup: Template,
    },
    /// Undo a [`ActionSpec::FailoverToBackup`]: the Service selects its own pods again
    /// (the selector saved at failover), the rollback of a failover that did not help.
    FailbackFromBackup {},
    /// Re-deliver failed webhooks with exponential backoff.
    RetryWithBackoff {
        /// Give up (and escalate) after this many attempts.
        max_attempts: u32,
    },
    /// Start a Gitea Actions workflow (`workflow_dispatch`) with the alert's labels as
    /// its inputs: remediation that lives in a repository (`GitOps`) rather than here.
    /// Boxed: the parameters are several times larger than any other action's.
    DispatchWorkflow(Box<DispatchSpec>),
    /// Tell people; changes nothing in the cluster.
    Notify {
        /// Channel or team (templated from labels).
        channel: Template,
    },
}

/// The parameters of [`ActionSpec::DispatchWorkflow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSpec {
    /// `owner/name` of the repository (templated from labels).
    pub repo: Template,
    /// The workflow file (`remediate.yml`), templated from labels.
    pub workflow: Template,
    /// Branch or tag the workflow runs on.
    #[serde(rename = "ref")]
    pub git_ref: Template,
    /// The alert's labels, filled in when the rule is applied to an alert; a rule file
    /// cannot set them (they are not a rule parameter).
    #[serde(default, skip_deserializing, skip_serializing_if = "Labels::is_empty")]
    pub inputs: Labels,
}

/// Whether an action changes workloads (counted by the blast-radius limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Changes the cluster or a service.
    Mutating,
    /// Reads or notifies only.
    Observing,
}

impl ActionSpec {
    /// Stable name for metrics, executor lookup and plans.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ScaleUp { .. } => "scale_up",
            Self::ScaleDown { .. } => "scale_down",
            Self::RolloutRestart {} => "rollout_restart",
            Self::DeletePod {} => "delete_pod",
            Self::Rollback {} => "rollback",
            Self::RenewCertificate {} => "renew_certificate",
            Self::Unseal {} => "unseal",
            Self::CheckGslb {} => "check_gslb",
            Self::AddConsumerReplica { .. } => "add_consumer_replica",
            Self::ReduceBatchSize { .. } => "reduce_batch_size",
            Self::EvictLowPriority { .. } => "evict_low_priority",
            Self::RebuildIndex {} => "rebuild_index",
            Self::FailoverToBackup { .. } => "failover_to_backup",
            Self::FailbackFromBackup {} => "failback_from_backup",
            Self::RetryWithBackoff { .. } => "retry_with_backoff",
            Self::DispatchWorkflow(_) => "dispatch_workflow",
            Self::Notify { .. } => "notify",
        }
    }

    /// Whether the action changes something.
    #[must_use]
    pub fn effect(&self) -> Effect {
        match self {
            Self::CheckGslb {} | Self::Notify { .. } => Effect::Observing,
            _ => Effect::Mutating,
        }
    }

    /// Spend the action adds, when it adds any (only scale-ups pass the budget gate).
    #[must_use]
    pub fn added_spend_cents(&self) -> Option<u64> {
        match self {
            Self::ScaleUp {
                step,
                cost_per_replica_cents,
                ..
            } => Some(cost_per_replica_cents.saturating_mul(u64::from(*step))),
            _ => None,
        }
    }

    /// Whether the action takes down individual pods of a workload, which the
    /// replica-percentage limit bounds.
    #[must_use]
    pub fn is_pod_level(&self) -> bool {
        matches!(self, Self::DeletePod {})
    }

    pub(crate) fn check(&self, path: &str, errs: &mut Vec<ConfigError>) {
        let mut need = |ok: bool, field: &str, msg: &str| {
            if !ok {
                errs.push(ConfigError::new(format!("{path}.{field}"), msg));
            }
        };
        match self {
            Self::ScaleUp {
                step, max_replicas, ..
            } => {
                need(*step > 0, "step", "must be at least 1");
                need(*max_replicas > 0, "max_replicas", "must be at least 1");
            }
            Self::ScaleDown { step, .. } => need(*step > 0, "step", "must be at least 1"),
            Self::AddConsumerReplica { max_replicas } => {
                need(*max_replicas > 0, "max_replicas", "must be at least 1");
            }
            Self::ReduceBatchSize { percent } => {
                need((1..=99).contains(percent), "percent", "must be 1-99");
            }
            Self::RetryWithBackoff { max_attempts } => {
                need(*max_attempts > 0, "max_attempts", "must be at least 1");
            }
            Self::FailoverToBackup { backup } => {
                if let Err(m) = backup.check() {
                    errs.push(ConfigError::new(format!("{path}.backup"), m));
                }
            }
            Self::Notify { channel } => {
                if let Err(m) = channel.check() {
                    errs.push(ConfigError::new(format!("{path}.channel"), m));
                }
            }
            Self::DispatchWorkflow(d) => {
                let DispatchSpec {
                    repo,
                    workflow,
                    git_ref,
                    ..
                } = &**d;
                for (field, t) in [("repo", repo), ("workflow", workflow), ("ref", git_ref)] {
                    if let Err(m) = t.check() {
                        errs.push(ConfigError::new(format!("{path}.{field}"), m));
                    } else if t.as_str().trim().is_empty() {
                        errs.push(ConfigError::new(
                            format!("{path}.{field}"),
                            "must not be empty",
                        ));
                    }
                }
                let parts: Vec<&str> = repo.as_str().split('/').collect();
                if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                    errs.push(ConfigError::new(
                        format!("{path}.repo"),
                        format!("{:?}: expected owner/name", repo.as_str()),
                    ));
                }
            }
            _ => {}
        }
    }

    /// The same action with its templates filled from `labels`.
    fn render(&self, labels: &Labels) -> Result<Self, MissingLabel> {
        Ok(match self {
            Self::FailoverToBackup { backup } => Self::FailoverToBackup {
                backup: Template(backup.render(labels)?),
            },
            Self::Notify { channel } => Self::Notify {
                channel: Template(channel.render(labels)?),
            },
            Self::DispatchWorkflow(d) => Self::DispatchWorkflow(Box::new(DispatchSpec {
                repo: Template(d.repo.render(labels)?),
                workflow: Template(d.workflow.render(labels)?),
                git_ref: Template(d.git_ref.render(labels)?),
                inputs: labels.clone(),
            })),
            other => other.clone(),
        })
    }
}

/// How the target object is derived from the alert's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Object kind (`deployment`, `pod`, `inference_service`, ...).
    pub kind: String,
    /// Namespace template; absent for cluster-scoped objects (nodes, users).
    #[serde(default)]
    pub namespace: Option<Template>,
    /// Name template.
    pub name: Template,
    /// The workload a pod belongs to, for the replica-percentage limit.
    #[serde(default)]
    pub workload: Option<Template>,
}

/// The object an action changes: the unit of cooldown, backoff and escalation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Target {
    /// Object kind.
    pub kind: String,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// What a verification query must return for the remediation to count as having helped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// No series: the problem expression no longer matches (the usual case).
    Empty,
    /// At least one series: a health expression holds.
    NonEmpty,
}

/// A `PromQL` check run after the action until it holds or `timeout` passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// Instant query, templated from the alert's labels.
    pub query: Template,
    /// What the query must return.
    pub expect: Expect,
    /// Give up (roll back, escalate) after this long.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// A rule as written in the rule file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) name: String,
    pub(crate) alert: String,
    #[serde(default)]
    pub(crate) matchers: Vec<String>,
    pub(crate) action: ActionSpec,
    pub(crate) target: TargetSpec,
    #[serde(default)]
    pub(crate) verify: Option<VerifySpec>,
    #[serde(default)]
    pub(crate) rollback: Option<ActionSpec>,
    #[serde(default)]
    pub(crate) escalate_to: Option<Template>,
}

/// A rule file as written (`rules: [...]`), before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleSet {
    pub(crate) rules: Vec<RawRule>,
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Unique name, shown in plans and logs.
    pub name: String,
    /// The `alertname` it handles.
    pub alert: String,
    /// Further label conditions, all of which must hold.
    pub matchers: Vec<String>,
    #[serde(skip)]
    parsed_matchers: Vec<Matcher>,
    /// What to do.
    pub action: ActionSpec,
    /// On what.
    pub target: TargetSpec,
    /// How to tell it helped.
    pub verify: Option<VerifySpec>,
    /// What to undo when verification fails.
    pub rollback: Option<ActionSpec>,
    /// Who hears about it when remediation does not help.
    pub escalate_to: Option<Template>,
}

/// A rule applied to one alert: everything templated is filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedRule {
    /// The rule's name.
    pub rule: String,
    /// The action with its parameters.
    pub action: ActionSpec,
    /// The object acted on.
    pub target: Target,
    /// The workload the target belongs to, when the rule names one.
    pub workload: Option<String>,
    /// The verification, with its query filled in.
    pub verify: Option<VerifySpec>,
    /// What to undo when verification fails.
    pub rollback: Option<ActionSpec>,
    /// Who to escalate to.
    pub escalate_to: Option<String>,
}

impl Rule {
    /// Whether the rule handles `alert`.
    #[must_use]
    pub fn matches(&self, alert: &Alert) -> bool {
        self.matches_named(alert.alertname(), &alert.labels)
    }

    /// [`Rule::matches`] with the `alertname` looked up once by the caller, so that
    /// [`RuleSet::find`] does not repeat the label lookup for every rule it tries.
    fn matches_named(&self, alertname: &str, labels: &Labels) -> bool {
        self.alert == alertname && self.parsed_matchers.iter().all(|m| m.matches(labels))
    }

    /// Fills the rule's templates from the alert's labels.
    pub fn resolve(&self, labels: &Labels) -> Result<ResolvedRule, MissingLabel> {
        let target = Target {
            kind: self.target.kind.clone(),
            namespace: self
                .target
                .namespace
                .as_ref()
                .map(|t| t.render(labels))
                .transpose()?,
            name: self.target.name.render(labels)?,
        };
        let verify = match &self.verify {
            Some(v) => Some(VerifySpec {
                query: Template(v.query.render(labels)?),
                expect: v.expect,
                timeout: v.timeout,
            }),
            None => None,
        };
        Ok(ResolvedRule {
            rule: self.name.clone(),
            action: self.action.render(labels)?,
            workload: self
                .target
                .workload
                .as_ref()
                .map(|t| t.render(labels))
                .transpose()?,
            target,
            verify,
            rollback: self
                .rollback
                .as_ref()
                .map(|r| r.render(labels))
                .transpose()?,
            escalate_to: self
                .escalate_to
                .as_ref()
                .map(|t| t.render(labels))
                .transpose()?,
        })
    }
}

/// The validated rules, in file order; the first rule that matches an alert wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// The built-in rules from the handbook's tables.
    pub fn builtin() -> Result<Self, ConfigErrors> {
        Self::load(&Source::Text {
            name: "built-in default_rules.yaml".into(),
            text: DEFAULT_RULES_YAML.into(),
            format: Format::Yaml,
        })
    }

    /// Rules from a file or text (YAML or TOML), every problem reported at once.
    pub fn load(source: &Source) -> Result<Self, ConfigErrors> {
        config::load::<RawRuleSet>(source, &EnvOverrides::default(), Vec::new())
    }

    /// The rules, in matching order.
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// `overrides` ahead of these rules: the first match wins, so a Runbook's rule for an
    /// alert replaces the built-in one wherever its matchers hold, and extends the set
    /// for alerts the built-ins do not know.
    #[must_use]
    pub fn overridden_by(&self, overrides: &RuleSet) -> RuleSet {
        let mut rules = overrides.rules.clone();
        rules.extend(self.rules.iter().cloned());
        RuleSet { rules }
    }

    /// The first rule that handles `alert`, if any.
    #[must_use]
    pub fn find(&self, alert: &Alert) -> Option<&Rule> {
        let name = alert.alertname();
        self.rules
            .iter()
            .find(|r| r.matches_named(name, &alert.labels))
    }
}

impl Validate for RawRuleSet {
    type Valid = RuleSet;

    fn validate(self) -> Result<RuleSet, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let mut names = BTreeSet::new();
        let mut rules = Vec::with_capacity(self.rules.len());
        if self.rules.is_empty() {
            errs.push(ConfigError::new("rules", "must hold at least one rule"));
        }
        for (i, r) in self.rules.into_iter().enumerate() {
            let at = format!("rules[{i}]");
            if r.name.trim().is_empty() {
                errs.push(ConfigError::new(format!("{at}.name"), "must not be empty"));
            } else if !names.insert(r.name.clone()) {
                errs.push(ConfigError::new(
                    format!("{at}.name"),
                    format!("duplicate rule name {:?}", r.name),
                ));
            }
            if r.alert.trim().is_empty() {
                errs.push(ConfigError::new(format!("{at}.alert"), "must not be empty"));
            }
            let mut parsed = Vec::new();
            for (j, m) in r.matchers.iter().enumerate() {
                match Matcher::parse(m) {
                    Ok(m) => parsed.push(m),
                    Err(e) => errs.push(ConfigError::new(format!("{at}.matchers[{j}]"), e)),
                }
            }
            r.action.check(&format!("{at}.action"), &mut errs);
            if let Some(rb) = &r.rollback {
                rb.check(&format!("{at}.rollback"), &mut errs);
            }
            if r.target.kind.is_empty()
                || !r
                    .target
                    .kind
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            {
                errs.push(ConfigError::new(
                    format!("{at}.target.kind"),
                    "must be a lower_snake_case object kind",
                ));
            }
            let templates = [
                ("target.namespace", r.target.namespace.as_ref()),
                ("target.name", Some(&r.target.name)),
                ("target.workload", r.target.workload.as_ref()),
                ("verify.query", r.verify.as_ref().map(|v| &v.query)),
                ("escalate_to", r.escalate_to.as_ref()),
            ];
            for (field, t) in templates {
                if let Some(Err(m)) = t.map(Template::check) {
                    errs.push(ConfigError::new(format!("{at}.{field}"), m));
                }
            }
            if r.target.name.as_str().is_empty() {
                errs.push(ConfigError::new(
                    format!("{at}.target.name"),
                    "must not be empty",
                ));
            }
            if let Some(v) = &r.verify {
                if v.query.as_str().trim().is_empty() {
                    errs.push(ConfigError::new(
                        format!("{at}.verify.query"),
                        "must not be empty",
                    ));
                }
                if v.timeout.is_zero() {
                    errs.push(ConfigError::new(
                        format!("{at}.verify.timeout"),
                        "must be above zero",
                    ));
                }
            }
            rules.push(Rule {
                name: r.name,
                alert: r.alert,
                matchers: r.matchers,
                parsed_matchers: parsed,
                action: r.action,
                target: r.target,
                verify: r.verify,
                rollback: r.rollback,
                escalate_to: r.escalate_to,
            });
        }
        if errs.is_empty() {
            Ok(RuleSet { rules })
        } else {
            Err(errs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::AlertStatus;
    use chrono::DateTime;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn alert(pairs: &[(&str, &str)]) -> Alert {
        Alert {
            status: AlertStatus::Firing,
            labels: labels(pairs),
            annotations: Labels::new(),
            starts_at: DateTime::UNIX_EPOCH,
            ends_at: DateTime::UNIX_EPOCH,
            generator_url: String::new(),
            fingerprint: "f".into(),
            extra: std::collections::BTreeMap::new(),
        }
    }

    fn yaml(text: &str) -> Result<RuleSet, ConfigErrors> {
        RuleSet::load(&Source::Text {
            name: "t.yaml".into(),
            text: text.into(),
            format: Format::Yaml,
        })
    }

    #[test]
    fn builtin_rules_cover_every_alert_of_the_handbook_tables() {
        let rules = RuleSet::builtin().unwrap_or_else(|e| panic!("{e}"));
        let want = [
            ("HighMemoryUsage", "scale_up"),
            ("PodCrashLoopBackOff", "delete_pod"),
            ("HighErrorRate", "rollback"),
            ("DatabaseConnectionExhausted", "rollout_restart"),
            ("CertificateExpiringSoon", "renew_certificate"),
            ("HighLatency", "scale_up"),
            ("GslbEndpointDown", "check_gslb"),
            ("OpenBaoSealed", "unseal"),
            ("JetstreamLagHigh", "add_consumer_replica"),
            ("VLLMHighLatency", "scale_up"),
            ("VLLMOOMKilled", "reduce_batch_size"),
            ("GPUUtilizationLow", "scale_down"),
            ("GPUMemoryExhausted", "evict_low_priority"),
            ("MilvusQuerySlow", "rebuild_index"),
            ("EmbeddingQueueBacklog", "scale_up"),
            ("RAGRetrievalEmpty", "notify"),
            ("LLMGatewayQuotaExhausted", "notify"),
            ("KeycloakHighLatency", "scale_up"),
            ("QuotaServiceDown", "failover_to_backup"),
            ("BillingWebhookFailed", "retry_with_backoff"),
            ("TPPCertExpiring", "notify"),
        ];
        let got: Vec<(&str, &str)> = rules
            .rules()
            .iter()
            .map(|r| (r.alert.as_str(), r.action.kind()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn fixture_alerts_resolve_to_concrete_targets() {
        let rules = RuleSet::builtin().expect("valid");
        let a = alert(&[
            ("alertname", "HighMemoryUsage"),
            ("deployment", "console"),
            ("namespace", "catalyst-system"),
        ]);
        let r = rules
            .find(&a)
            .expect("matched")
            .resolve(&a.labels)
            .expect("labels present");
        assert_eq!(r.target.to_string(), "deployment/catalyst-system/console");
        let q = r.verify.expect("verified").query;
        assert!(
            q.as_str().contains(r#"namespace="catalyst-system""#),
            "{q:?}"
        );
        assert!(!q.as_str().contains("${"), "{q:?}");
        let missing = alert(&[("alertname", "HighMemoryUsage"), ("namespace", "x")]);
        let err = rules
            .find(&missing)
            .expect("matched")
            .resolve(&missing.labels);
        assert_eq!(
            err,
            Err(MissingLabel {
                label: "deployment".into()
            })
        );
        assert!(rules.find(&alert(&[("alertname", "Nope")])).is_none());
    }

    #[test]
    fn templates_and_matchers() {
        let l = labels(&[("a", "1"), ("b", "two")]);
        let check = |t: &str, want: Result<&str, &str>| {
            let got = Template::new(t).render(&l);
            assert_eq!(
                got,
                want.map(str::to_owned)
                    .map_err(|m| MissingLabel { label: m.into() }),
                "{t}"
            );
        };
        check("x", Ok("x"));
        check("${a}-${b}", Ok("1-two"));
        check(r#"up{job="${b}"} == $1"#, Ok(r#"up{job="two"} == $1"#));
        check("${c}", Err("c"));
        check("$$${a}$ {b}$", Ok("$$1$ {b}$"));
        check("${a}${b}", Ok("1two"));
        check("${a", Ok("${a"));
        for t in [
            "",
            "x",
            "$",
            "$$",
            "a${",
            "${a}",
            "$${a}",
            "\u{e9}${b}$",
            "$x${",
        ] {
            assert_eq!(find_placeholder(t), t.find("${"), "{t:?}");
        }
        assert!(Template::new("${a").check().is_err());
        assert!(Template::new("${}").check().is_err());
        assert!(Template::new("${a-b}").check().is_err());
        let m = |s: &str| Matcher::parse(s).map(|m| m.matches(&l));
        assert_eq!(m("a=1"), Ok(true));
        assert_eq!(m("a!=1"), Ok(false));
        assert_eq!(m(r#"b="two""#), Ok(true));
        assert_eq!(m("c="), Ok(true), "missing label equals the empty string");
        assert_eq!(m("c!=x"), Ok(true));
        assert!(m("a=~1").is_err_and(|e| e.contains("regex")));
        assert!(m("nothing").is_err());
        assert!(m("=x").is_err());
    }

    #[test]
    fn matchers_select_between_rules_of_one_alert() {
        let rules = yaml(
            "rules:\n\
             - {name: crit, alert: A, matchers: [severity=critical], action: {kind: rollback}, target: {kind: deployment, name: x}}\n\
             - {name: other, alert: A, matchers: ['severity!=critical'], action: {kind: rollout_restart}, target: {kind: deployment, name: x}}\n",
        )
        .expect("valid");
        let pick = |sev| {
            rules
                .find(&alert(&[("alertname", "A"), ("severity", sev)]))
                .map(|r| r.name.as_str())
        };
        assert_eq!(pick("critical"), Some("crit"));
        assert_eq!(pick("warning"), Some("other"));
    }

    #[test]
    fn validation_reports_every_problem_with_its_path() {
        let err = yaml(
            "rules:\n\
             - {name: a, alert: '', matchers: ['x=~y'], action: {kind: scale_up, step: 0, max_replicas: 0}, target: {kind: Deployment, name: '${oops'}}\n\
             - {name: a, alert: B, action: {kind: reduce_batch_size, percent: 100}, target: {kind: pod, name: p}, verify: {query: '', expect: empty, timeout: 0s}}\n",
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "rules[0].alert",
                "rules[0].matchers[0]",
                "rules[0].action.step",
                "rules[0].action.max_replicas",
                "rules[0].target.kind",
                "rules[0].target.name",
                "rules[1].name",
                "rules[1].action.percent",
                "rules[1].verify.query",
                "rules[1].verify.timeout",
            ],
            "{err}"
        );
        let err = yaml("rules:\n- {name: a, alert: B, action: {kind: reboot_world}, target: {kind: pod, name: p}}\n")
            .expect_err("unknown kind");
        assert!(err.to_string().contains("reboot_world"), "{err}");
        let err = yaml("rules:\n- {name: a, alert: B, action: {kind: rollback, force: true}, target: {kind: pod, name: p}}\n")
            .expect_err("unknown field");
        assert!(err.to_string().contains("force"), "{err}");
        let err = yaml("rules:\n- {name: a, alert: B, action: {kind: reduce_batch_size, percent: 5, x: 1}, target: {kind: pod, name: p}}\n")
            .expect_err("unknown field in a variant with parameters");
        assert!(err.to_string().contains("`x`"), "{err}");
        let err = yaml("rules: []\n").expect_err("empty");
        assert_eq!(err.errors[0].path, "rules");
    }
}
