//! The `Runbook` custom resource (`catalyst.openova.io/v1alpha1`, handbook section 14):
//! triggers, preconditions, steps, verify and rollback, as written by operators in their
//! `<org>/runbooks` repository.
//!
//! The spec types are plain serde + `schemars` (IO-free), so this crate renders the CRD
//! and validates Runbooks without kube; `sre-adapter-kube` puts the same spec under a
//! `kube::CustomResource` derive for the API. A Runbook is validated in one pass that
//! reports every problem with its path (an unknown step kind is `spec.steps[2].reboot`),
//! then converted to rules that go *ahead of* the built-in ones: for the alerts it
//! names, a Runbook overrides the handbook table; for others it extends it. What a
//! Runbook leaves out (target, verification, escalation) is inherited from the built-in
//! rule of the same alert, so the handbook's short example is a complete rule.
//!
//! Preconditions name checks (`spire.server.healthy`) that resolve to `PromQL` through
//! [`crate::checks::Checks`]; an unknown name is a validation error at its path. The
//! resolved checks travel next to the rules in a [`RuleBook`], and the webhook evaluates
//! them right before it acts: a failing one blocks the action and escalates.
//!
//! The webhook never runs shell commands: a `run` step is accepted only when it names a
//! command with a typed executor (`openbao operator unseal` is the `unseal` action);
//! anything else is a validation error that points at the typed `action` step instead.

use crate::checks::{Checks, NamedCheck};
use crate::execute::{planned_call, rollback_call};
use crate::payload::{Alert, AlertStatus, Labels};
use crate::plan::{self, BlastRadius, EngineState, Observations, Policy, Verdict};
use crate::rules::{
    ActionSpec, Expect, Matcher, RawRule, RawRuleSet, RuleSet, TargetSpec, Template, VerifySpec,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sre_core::MonoTime;
use sre_core::config::{ConfigError, ConfigErrors, Validate};
use sre_core::guard::{Backoff, Jitter};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

/// The API group Catalyst's custom resources live in.
pub const GROUP: &str = "catalyst.openova.io";
/// The served (and stored) version.
pub const VERSION: &str = "v1alpha1";
/// The resource kind.
pub const KIND: &str = "Runbook";
/// The plural resource name (the CRD is `runbooks.catalyst.openova.io`).
pub const PLURAL: &str = "runbooks";
/// The CRD's top-level description (the kube derive in `sre-adapter-kube` uses the same).
pub const RUNBOOK_DOC: &str =
    "An alert-triggered remediation with preconditions, verification and rollback.";
/// `apiVersion` of a Runbook document.
pub const API_VERSION: &str = "catalyst.openova.io/v1alpha1";

/// Verification timeout when neither the Runbook nor a built-in rule names one.
const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_mins(5);

/// The desired state of a Runbook: what fires it, what must hold first, what to do,
/// how to tell it worked, and what happens when it did not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunbookSpec {
    /// The alerts that start this Runbook (one rule per trigger).
    pub triggers: Vec<Trigger>,
    /// Named checks that must hold before acting: each name resolves to a `PromQL` check
    /// (`sre_remediation::checks`), evaluated by the webhook right before it acts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preconditions: Vec<Precondition>,
    /// The steps, in order: exactly one `run` or `action` step (the remediation), any
    /// number of `verify` steps.
    pub steps: Vec<RunbookStep>,
    /// The object acted on; inherited from the built-in rule of the alert when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RunbookTarget>,
    /// A `PromQL` verification; a `verify` step or the built-in rule's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<RunbookVerify>,
    /// When verification fails: `page-<channel>` (escalate to `<channel>`) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
}

/// One alert that starts the Runbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// The alert's `alertname`.
    pub alert_name: String,
    /// Further `label=value` / `label!=value` conditions, as in the rule file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<String>,
}

/// A named check that must hold before the Runbook acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Precondition {
    /// Dotted check name (`spire.server.healthy`).
    pub check: String,
}

/// One step; exactly one of its fields is set (the step's kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunbookStep {
    /// A command with a typed executor (`openbao operator unseal --auto-shamir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// A typed action, as in the rule file (`{kind: scale_up, step: 1, max_replicas: 5}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub action: Option<Value>,
    /// A named check that must hold afterwards (`openbao.status.sealed == false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
}

/// The object a Runbook acts on, with `${label}` templates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunbookTarget {
    /// Object kind (`deployment`, `pod`, `openbao`, ...).
    pub kind: String,
    /// Namespace template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name template.
    pub name: String,
    /// Workload a pod belongs to, for the replica-percentage limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

/// A `PromQL` verification, as in the rule file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunbookVerify {
    /// Instant query with `${label}` templates.
    pub query: String,
    /// `empty` (the problem expression no longer matches) or `non_empty`.
    pub expect: String,
    /// Give up after this long (`2m`).
    pub timeout: String,
}

/// Kubernetes' marker for an object whose fields the API server keeps as written: the
/// action's parameters depend on its `kind` and are validated here, not by the server.
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Commands a `run` step may name, with the typed action that carries each out.
const RUN_COMMANDS: &[(&str, &str)] = &[
    ("openbao operator unseal", "unseal"),
    ("kubectl rollout restart", "rollout_restart"),
    ("kubectl rollout undo", "rollback"),
    ("cmctl renew", "renew_certificate"),
];

/// A validated Runbook and the rules it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Runbook {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when set.
    pub namespace: Option<String>,
    /// The spec as written.
    pub spec: RunbookSpec,
    rules: RuleSet,
    preconditions: Vec<NamedCheck>,
}

impl Runbook {
    /// Parses and validates a Runbook document (YAML or JSON) against the built-in
    /// rules it may inherit from and the built-in named checks; every problem is reported
    /// with its path.
    pub fn parse(source_name: &str, text: &str, builtin: &RuleSet) -> Result<Self, ConfigErrors> {
        Self::parse_with(source_name, text, builtin, &Checks::builtin())
    }

    /// [`Runbook::parse`] with the deployment's named checks (built-ins plus the config's
    /// `checks:`): a precondition or `verify` step naming a check `checks` does not know
    /// is an error at its path.
    pub fn parse_with(
        source_name: &str,
        text: &str,
        builtin: &RuleSet,
        checks: &Checks,
    ) -> Result<Self, ConfigErrors> {
        let fail = |errors| ConfigErrors {
            source_name: source_name.to_owned(),
            errors,
        };
        let doc: Value = serde_norway::from_str(text)
            .map_err(|e| fail(vec![ConfigError::new(".", e.to_string())]))?;
        from_value(&doc, builtin, checks).map_err(fail)
    }

    /// Validates a Runbook that is already a JSON value (an object listed from the API
    /// server), exactly as [`Runbook::parse_with`] validates a file: the same checks,
    /// paths and conversion to rules.
    pub fn from_json(
        source_name: &str,
        doc: &Value,
        builtin: &RuleSet,
        checks: &Checks,
    ) -> Result<Self, ConfigErrors> {
        from_value(doc, builtin, checks).map_err(|errors| ConfigErrors {
            source_name: source_name.to_owned(),
            errors,
        })
    }

    /// The preconditions, resolved to their checks, in the order written.
    #[must_use]
    pub fn preconditions(&self) -> &[NamedCheck] {
        &self.preconditions
    }

    /// The rules this Runbook stands for (one per trigger), to put ahead of the built-in
    /// ones with [`RuleSet::overridden_by`].
    #[must_use]
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// What the Runbook would do for each trigger, planned offline by the real engine:
    /// a synthetic firing alert per trigger (labels from `labels`, the Runbook's namespace
    /// as `namespace`, and `<label>` placeholders for labels the templates need but
    /// nobody gave), decided with an empty history, mapped to executor calls. Nothing is
    /// called: this is `sre runbook run --dry-run`.
    #[must_use]
    pub fn dry_run(&self, builtin: &RuleSet, labels: &Labels) -> Vec<DryRunStep> {
        let rules = builtin.overridden_by(&self.rules);
        let policy = dry_run_policy();
        let mut out = Vec::new();
        for (i, trigger) in self.spec.triggers.iter().enumerate() {
            let mut l = labels.clone();
            l.insert("alertname".into(), trigger.alert_name.clone());
            if let Some(ns) = &self.namespace {
                l.entry("namespace".into()).or_insert_with(|| ns.clone());
            }
            for m in trigger
                .matchers
                .iter()
                .filter_map(|m| Matcher::parse(m).ok())
            {
                if m.op == crate::rules::MatchOp::Eq {
                    l.entry(m.label.clone()).or_insert(m.value);
                }
            }
            fill_placeholders(&rules, &mut l);
            let alert = Alert {
                status: AlertStatus::Firing,
                labels: l,
                annotations: Labels::new(),
                starts_at: chrono::DateTime::UNIX_EPOCH,
                ends_at: chrono::DateTime::UNIX_EPOCH,
                generator_url: String::new(),
                fingerprint: format!("dry-run-{i}"),
                extra: BTreeMap::new(),
            };
            let mut state = EngineState::new(&policy);
            let plan = plan::decide(
                &mut state,
                &rules,
                &policy,
                &Observations::default(),
                std::slice::from_ref(&alert),
                MonoTime::ZERO,
            );
            out.extend(plan.iter().flat_map(|e| self.describe(e, &alert.labels)));
        }
        out
    }

    fn describe(&self, entry: &plan::PlanEntry, labels: &Labels) -> Vec<DryRunStep> {
        let step = |step: &'static str, detail: String| DryRunStep {
            step,
            detail,
            check: None,
        };
        let mut out = vec![step(
            "match",
            format!(
                "{} -> rule {}",
                entry.alertname,
                entry.rule.as_deref().unwrap_or("(none)")
            ),
        )];
        out.extend(self.preconditions.iter().map(|c| {
            let rendered = crate::checks::render(c, labels);
            let query = rendered.clone().unwrap_or_else(|e| format!("<{e}>"));
            DryRunStep {
                step: "precondition",
                detail: format!(
                    "{}: {query} expect {:?} (not evaluated: offline)",
                    c.name, c.spec.expect
                ),
                check: Some(DryRunCheck {
                    check: c.clone(),
                    query: rendered,
                }),
            }
        }));
        let Verdict::Act {
            verify,
            escalate_to,
            ..
        } = &entry.verdict
        else {
            out.push(step("skip", format!("{:?}", entry.verdict)));
            return out;
        };
        let target = entry
            .target
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        if let Some(call) = planned_call(entry) {
            let how = match &call.call {
                Ok(c) => format!("would call {c:?}"),
                Err(e) => format!("no executor: {e}"),
            };
            out.push(step("act", format!("{} on {target}: {how}", call.action)));
        }
        match verify {
            Some(v) => out.push(step(
                "verify",
                format!(
                    "{} expect {:?} within {}",
                    v.query.as_str(),
                    v.expect,
                    humantime::format_duration(v.timeout)
                ),
            )),
            None => out.push(step("verify", "none: counts as helped".into())),
        }
        match rollback_call(entry) {
            Some(rb) => out.push(step(
                "rollback",
                match &rb.call {
                    Ok(c) => format!("on failure: {} ({c:?})", rb.action),
                    Err(e) => format!("on failure: {}: no executor: {e}", rb.action),
                },
            )),
            None => out.push(step("rollback", "on failure: nothing to undo".into())),
        }
        out.push(step("escalate", format!("on failure: page {escalate_to}")));
        out
    }
}

/// One line of a dry-run plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DryRunStep {
    /// `match`, `precondition`, `act`, `verify`, `rollback`, `escalate` or `skip`.
    pub step: &'static str,
    /// What would happen.
    pub detail: String,
    /// For `precondition` steps: the check and its query rendered from the synthetic
    /// alert, so that a caller with a metrics backend (`sre runbook run --prometheus`)
    /// can evaluate it.
    #[serde(skip)]
    pub check: Option<DryRunCheck>,
}

/// A precondition of a dry run, ready to be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunCheck {
    /// The check.
    pub check: NamedCheck,
    /// Its query for the synthetic alert, or why there is none.
    pub query: Result<String, String>,
}

/// Gives every label a template asks for a `<label>` placeholder, so that the dry run
/// shows which labels a real alert must carry instead of stopping at the first.
fn fill_placeholders(rules: &RuleSet, labels: &mut Labels) {
    let probe = Alert {
        status: AlertStatus::Firing,
        labels: labels.clone(),
        annotations: Labels::new(),
        starts_at: chrono::DateTime::UNIX_EPOCH,
        ends_at: chrono::DateTime::UNIX_EPOCH,
        generator_url: String::new(),
        fingerprint: String::new(),
        extra: BTreeMap::new(),
    };
    let Some(rule) = rules.find(&probe) else {
        return;
    };
    for _ in 0..32 {
        match rule.resolve(labels) {
            Ok(_) => return,
            Err(m) => {
                labels.insert(m.label.clone(), format!("<{}>", m.label));
            }
        }
    }
}

fn dry_run_policy() -> Policy {
    let two = NonZeroU32::MIN.saturating_add(1);
    Policy {
        cooldown: Duration::from_mins(5),
        backoff: Backoff::new(
            Duration::from_mins(5),
            two,
            Duration::from_hours(1),
            Jitter::None,
        ),
        escalate_after: two.saturating_add(1),
        escalation_cool_off: Duration::from_hours(1),
        dedupe_window: Duration::from_mins(10),
        blast_radius: BlastRadius {
            max_targets: two.saturating_add(3),
            window: Duration::from_mins(10),
            max_replica_pct: 100,
        },
        budget: None,
        retention: Duration::from_hours(24),
    }
}

/// Collects errors with their paths while walking the raw document.
struct Walk {
    errs: Vec<ConfigError>,
}

impl Walk {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errs.push(ConfigError::new(path, msg));
    }

    fn unknown_keys(&mut self, at: &str, obj: &Map<String, Value>, known: &[&str]) {
        for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            self.err(
                join(at, k),
                format!("unknown field; expected one of {}", known.join(", ")),
            );
        }
    }

    fn string<'a>(&mut self, at: &str, v: Option<&'a Value>) -> Option<&'a str> {
        match v {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
            Some(Value::String(_)) | None => {
                self.err(at, "required, must not be empty");
                None
            }
            Some(other) => {
                self.err(at, format!("must be a string, got {}", type_name(other)));
                None
            }
        }
    }

    fn list<'a>(&mut self, at: &str, v: Option<&'a Value>) -> &'a [Value] {
        match v {
            None => &[],
            Some(Value::Array(a)) => a,
            Some(other) => {
                self.err(at, format!("must be a list, got {}", type_name(other)));
                &[]
            }
        }
    }

    fn object<'a>(&mut self, at: &str, v: &'a Value) -> Option<&'a Map<String, Value>> {
        if let Value::Object(o) = v {
            Some(o)
        } else {
            self.err(at, format!("must be a mapping, got {}", type_name(v)));
            None
        }
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The remediation a step stands for, with the step's path for later errors.
struct ActionStep {
    action: ActionSpec,
}

fn run_command(cmd: &str) -> Option<ActionSpec> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let kind = RUN_COMMANDS.iter().find_map(|(prefix, kind)| {
        let p: Vec<&str> = prefix.split_whitespace().collect();
        words.starts_with(&p).then_some(*kind)
    })?;
    serde_json::from_value(serde_json::json!({ "kind": kind })).ok()
}

fn step(
    w: &mut Walk,
    at: &str,
    v: &Value,
    actions: &mut Vec<(String, ActionStep)>,
    checks: &Checks,
) -> Option<VerifySpec> {
    let obj = w.object(at, v)?;
    if obj.is_empty() {
        w.err(at, "empty step; expected one of run, action, verify");
        return None;
    }
    if obj.len() > 1 {
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        w.err(
            at,
            format!("a step has exactly one kind, got {}", keys.join(", ")),
        );
    }
    let mut verify = None;
    for (k, val) in obj {
        let p = join(at, k);
        match k.as_str() {
            "run" => {
                let Some(cmd) = w.string(&p, Some(val)) else {
                    continue;
                };
                if let Some(action) = run_command(cmd) {
                    actions.push((p, ActionStep { action }));
                } else {
                    let known: Vec<&str> = RUN_COMMANDS.iter().map(|(c, _)| *c).collect();
                    w.err(
                        p,
                        format!(
                            "{cmd:?} has no typed executor (the webhook never runs shell \
                                 commands); known commands: {}; otherwise use an `action` step",
                            known.join(", ")
                        ),
                    );
                }
            }
            "action" => match serde_json::from_value::<ActionSpec>(val.clone()) {
                Ok(action) => {
                    action.check(&p, &mut w.errs);
                    actions.push((p, ActionStep { action }));
                }
                Err(e) => w.err(p, e.to_string()),
            },
            "verify" => {
                let Some(cond) = w.string(&p, Some(val)) else {
                    continue;
                };
                match checks.get(cond) {
                    Some(crate::checks::CheckSpec {
                        query: Some(query),
                        expect,
                    }) => {
                        verify = Some(VerifySpec {
                            query: query.clone(),
                            expect: *expect,
                            timeout: DEFAULT_VERIFY_TIMEOUT,
                        });
                    }
                    Some(_) => w.err(
                        p,
                        format!(
                            "check {cond:?} has no query: configure it under `checks:` \
                             in the webhook config, or give `spec.verify`"
                        ),
                    ),
                    None => {
                        let known: Vec<&str> = checks.names().collect();
                        w.err(
                            p,
                            format!(
                                "unknown condition {cond:?}; known: {}; or give `spec.verify` \
                                 with a PromQL query",
                                known.join(", ")
                            ),
                        );
                    }
                }
            }
            other => w.err(
                p,
                format!("unknown step kind `{other}`; expected one of run, action, verify"),
            ),
        }
    }
    verify
}

#[allow(clippy::too_many_lines)] // one linear walk over the document, in field order
fn from_value(
    doc: &Value,
    builtin: &RuleSet,
    checks: &Checks,
) -> Result<Runbook, Vec<ConfigError>> {
    let mut w = Walk { errs: Vec::new() };
    let Some(top) = w.object(".", doc) else {
        return Err(w.errs);
    };
    w.unknown_keys(
        "",
        top,
        &["apiVersion", "kind", "metadata", "spec", "status"],
    );
    if let Some(v) = w.string("apiVersion", top.get("apiVersion"))
        && v != API_VERSION
    {
        w.err("apiVersion", format!("must be {API_VERSION}, got {v:?}"));
    }
    if let Some(k) = w.string("kind", top.get("kind"))
        && k != KIND
    {
        w.err("kind", format!("must be {KIND}, got {k:?}"));
    }
    let empty = Map::new();
    let meta = if let Some(m) = top.get("metadata") {
        w.object("metadata", m).unwrap_or(&empty)
    } else {
        w.err("metadata", "required");
        &empty
    };
    let name = w
        .string("metadata.name", meta.get("name"))
        .unwrap_or_default()
        .to_owned();
    if !name.is_empty()
        && !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        w.err("metadata.name", "must be a DNS-1123 name (a-z, 0-9, -, .)");
    }
    let namespace = meta
        .get("namespace")
        .and_then(|n| w.string("metadata.namespace", Some(n)))
        .map(str::to_owned);
    let spec_v = top.get("spec").unwrap_or(&Value::Null);
    let Some(spec) = (if spec_v.is_null() {
        w.err("spec", "required");
        None
    } else {
        w.object("spec", spec_v)
    }) else {
        return Err(w.errs);
    };
    w.unknown_keys(
        "spec",
        spec,
        &[
            "triggers",
            "preconditions",
            "steps",
            "target",
            "verify",
            "rollback",
        ],
    );

    // triggers
    let triggers_v = w.list("spec.triggers", spec.get("triggers"));
    if triggers_v.is_empty() {
        w.err("spec.triggers", "must hold at least one trigger");
    }
    for (i, t) in triggers_v.iter().enumerate() {
        let at = format!("spec.triggers[{i}]");
        let Some(o) = w.object(&at, t) else { continue };
        w.unknown_keys(&at, o, &["alertName", "matchers"]);
        w.string(&join(&at, "alertName"), o.get("alertName"));
        let mat_at = join(&at, "matchers");
        for (j, m) in w.list(&mat_at, o.get("matchers")).iter().enumerate() {
            let p = format!("{mat_at}[{j}]");
            if let Some(s) = w.string(&p, Some(m))
                && let Err(e) = Matcher::parse(s)
            {
                w.err(p, e);
            }
        }
    }

    // preconditions
    let mut preconditions = Vec::new();
    for (i, p) in w
        .list("spec.preconditions", spec.get("preconditions"))
        .iter()
        .enumerate()
    {
        let at = format!("spec.preconditions[{i}]");
        let Some(o) = w.object(&at, p) else { continue };
        w.unknown_keys(&at, o, &["check"]);
        let p = join(&at, "check");
        let Some(c) = w.string(&p, o.get("check")) else {
            continue;
        };
        if !c
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        {
            w.err(
                p,
                "a check name is dotted lower_snake_case (spire.server.healthy)",
            );
        } else if let Some(check) = checks.resolve(c) {
            preconditions.push(check);
        } else {
            let known: Vec<&str> = checks.names().collect();
            w.err(
                p,
                format!(
                    "unknown check {c:?}: never skipped, so it must be defined; known: {}; \
                     add it under `checks:` in the webhook config",
                    known.join(", ")
                ),
            );
        }
    }

    // steps
    let steps_v = w.list("spec.steps", spec.get("steps"));
    if steps_v.is_empty() && spec.get("steps").is_some_and(Value::is_array) {
        w.err("spec.steps", "must hold at least one step");
    } else if spec.get("steps").is_none() {
        w.err("spec.steps", "required");
    }
    let mut actions = Vec::new();
    let mut step_verify = None;
    for (i, s) in steps_v.iter().enumerate() {
        if let Some(v) = step(&mut w, &format!("spec.steps[{i}]"), s, &mut actions, checks) {
            step_verify = Some(v);
        }
    }
    if !steps_v.is_empty() && actions.is_empty() && w.errs.is_empty() {
        w.err(
            "spec.steps",
            "needs one `run` or `action` step: the remediation",
        );
    }
    for (p, _) in actions.iter().skip(1) {
        w.err(
            p.clone(),
            "a Runbook drives exactly one remediation per alert (the engine's unit of \
             cooldown, verification and rollback); split it into two Runbooks",
        );
    }

    // target
    let target =
        spec.get("target")
            .and_then(|t| match serde_json::from_value::<TargetSpec>(t.clone()) {
                Ok(t) => Some(t),
                Err(e) => {
                    w.err("spec.target", e.to_string());
                    None
                }
            });

    // verify
    let verify = spec.get("verify").and_then(|v| {
        let o = w.object("spec.verify", v)?;
        w.unknown_keys("spec.verify", o, &["query", "expect", "timeout"]);
        let query = w.string("spec.verify.query", o.get("query"));
        let expect = match w.string("spec.verify.expect", o.get("expect")) {
            Some("empty") => Some(Expect::Empty),
            Some("non_empty") => Some(Expect::NonEmpty),
            Some(other) => {
                w.err(
                    "spec.verify.expect",
                    format!("must be empty or non_empty, got {other:?}"),
                );
                None
            }
            None => None,
        };
        let timeout = w
            .string("spec.verify.timeout", o.get("timeout"))
            .and_then(|t| match humantime::parse_duration(t) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    w.err("spec.verify.timeout", "must be above zero");
                    None
                }
                Err(e) => {
                    w.err("spec.verify.timeout", format!("{t:?}: {e}"));
                    None
                }
            });
        Some(VerifySpec {
            query: Template::new(query?),
            expect: expect?,
            timeout: timeout?,
        })
    });

    // rollback
    let escalate_to = match spec.get("rollback") {
        None => None,
        Some(v) => match w.string("spec.rollback", Some(v)) {
            Some("none") | None => None,
            Some(r) => match r.strip_prefix("page-") {
                Some(channel) if !channel.is_empty() => Some(Template::new(channel)),
                _ => {
                    w.err(
                        "spec.rollback",
                        format!("{r:?}: expected page-<channel> (escalate) or none"),
                    );
                    None
                }
            },
        },
    };

    let spec_typed: Option<RunbookSpec> = match serde_json::from_value(spec_v.clone()) {
        Ok(s) => Some(s),
        Err(e) if w.errs.is_empty() => {
            w.err("spec", e.to_string());
            None
        }
        Err(_) => None,
    };
    if !w.errs.is_empty() {
        return Err(w.errs);
    }
    let (Some(spec_typed), Some((_, action))) = (spec_typed, actions.into_iter().next()) else {
        return Err(w.errs);
    };
    let action = action.action;

    // conversion: one rule per trigger, gaps filled from the built-in rule of the alert
    let base = format!(
        "runbook/{}{name}",
        namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default()
    );
    let mut raw = Vec::new();
    for (i, t) in spec_typed.triggers.iter().enumerate() {
        let inherited = builtin.rules().iter().find(|r| r.alert == t.alert_name);
        let Some(target) = target
            .clone()
            .or_else(|| inherited.map(|r| r.target.clone()))
        else {
            w.err(
                "spec.target",
                format!(
                    "required: no built-in rule for {:?} to inherit the target from",
                    t.alert_name
                ),
            );
            continue;
        };
        let inherited_verify = inherited.and_then(|r| r.verify.clone());
        // A named `verify` step keeps the built-in rule's timeout for the same alert.
        let from_step = step_verify.clone().map(|mut v| {
            if let Some(iv) = &inherited_verify {
                v.timeout = iv.timeout;
            }
            v
        });
        let verify = verify.clone().or(from_step).or(inherited_verify);
        let rollback = inherited
            .filter(|r| r.action.kind() == action.kind())
            .and_then(|r| r.rollback.clone());
        raw.push(RawRule {
            name: if spec_typed.triggers.len() > 1 {
                format!("{base}#{i}")
            } else {
                base.clone()
            },
            alert: t.alert_name.clone(),
            matchers: t.matchers.clone(),
            action: action.clone(),
            target,
            verify,
            rollback,
            escalate_to: escalate_to
                .clone()
                .or_else(|| inherited.and_then(|r| r.escalate_to.clone())),
        });
    }
    if !w.errs.is_empty() {
        return Err(w.errs);
    }
    let rules = RawRuleSet { rules: raw }.validate().map_err(|errs| {
        errs.into_iter()
            .map(|e| ConfigError::new("spec", format!("derived rule {}: {}", e.path, e.message)))
            .collect::<Vec<_>>()
    })?;
    Ok(Runbook {
        name,
        namespace,
        spec: spec_typed,
        rules,
        preconditions,
    })
}

/// The rules the webhook plans with, plus the preconditions of the Runbook rules among
/// them: rules only say what to do, so the checks that must hold first are kept next to
/// them, by rule name, for the run worker to evaluate right before it acts.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleBook {
    rules: RuleSet,
    preconditions: BTreeMap<String, Vec<NamedCheck>>,
}

impl RuleBook {
    /// Plain rules, no preconditions (the rule file, the built-ins).
    #[must_use]
    pub fn new(rules: RuleSet) -> Self {
        Self {
            rules,
            preconditions: BTreeMap::new(),
        }
    }

    /// These rules with `runbook`'s ahead of them ([`RuleSet::overridden_by`]) and its
    /// preconditions attached to each of its rules.
    #[must_use]
    pub fn with_runbook(mut self, runbook: &Runbook) -> Self {
        self.rules = self.rules.overridden_by(runbook.rules());
        if !runbook.preconditions.is_empty() {
            for r in runbook.rules.rules() {
                self.preconditions
                    .insert(r.name.clone(), runbook.preconditions.clone());
            }
        }
        self
    }

    /// The rules, in matching order.
    #[must_use]
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The checks that must hold before the rule named `rule` acts (empty for rules
    /// that are not from a Runbook or whose Runbook has none).
    #[must_use]
    pub fn preconditions(&self, rule: &str) -> &[NamedCheck] {
        self.preconditions.get(rule).map_or(&[], Vec::as_slice)
    }
}

/// The `CustomResourceDefinition` for Runbooks, rendered from the spec's `schemars`
/// schema alone, so that `sre runbook crd` needs no kube client in the default build.
/// `sre-adapter-kube` derives the same resource with `kube::CustomResource` and its tests
/// check that both agree.
#[must_use]
pub fn crd() -> Value {
    let schema = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator()
        .into_root_schema_for::<RunbookSpec>();
    let mut spec = schema.to_value();
    sort_required(&mut spec);
    if let Value::Object(o) = &mut spec {
        o.remove("title");
        o.remove("$schema");
        o.remove("components");
    }
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{PLURAL}.{GROUP}") },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": "runbook",
            },
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "schema": {
                    "openAPIV3Schema": {
                        "description": RUNBOOK_DOC,
                        "properties": { "spec": spec },
                        "required": ["spec"],
                        "title": KIND,
                        "type": "object",
                    }
                },
                "served": true,
                "storage": true,
            }],
        }
    })
}

/// Sorts every `required` list, as kube's derive does, so both renderings are equal.
fn sort_required(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                if let (true, Value::Array(a)) = (k == "required", &mut *child) {
                    a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
                } else {
                    sort_required(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(sort_required),
        _ => {}
    }
}

/// The CRD as YAML, ready for `kubectl apply -f -`.
pub fn crd_yaml() -> Result<String, serde_norway::Error> {
    serde_norway::to_string(&crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handbook's example (section 14), verbatim.
    pub(crate) const SEED: &str = "\
apiVersion: catalyst.openova.io/v1alpha1
kind: Runbook
metadata:
  name: openbao-sealed
  namespace: catalyst-system
spec:
  triggers:
    - alertName: OpenBaoSealed
  preconditions:
    - check: spire.server.healthy
    - check: openbao.unseal.shamir.shares.available
  steps:
    - run: openbao operator unseal --auto-shamir
    - verify: openbao.status.sealed == false
  rollback: page-oncall
";

    fn builtin() -> RuleSet {
        RuleSet::builtin().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn seed_example_validates_and_becomes_an_overriding_rule() {
        let rb = Runbook::parse("seed", SEED, &builtin()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rb.name, "openbao-sealed");
        let rules = rb.rules().rules();
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!(r.name, "runbook/catalyst-system/openbao-sealed");
        assert_eq!(r.action, ActionSpec::Unseal {});
        assert_eq!(r.target.kind, "openbao", "inherited from the built-in rule");
        assert_eq!(r.escalate_to.as_ref().map(Template::as_str), Some("oncall"));
        let v = r.verify.as_ref().expect("verify step");
        assert!(v.query.as_str().starts_with("vault_core_unsealed"));
        assert_eq!(
            v.timeout,
            Duration::from_mins(2),
            "the built-in rule's timeout"
        );

        let merged = builtin().overridden_by(rb.rules());
        let labels: Labels = [
            ("alertname", "OpenBaoSealed"),
            ("namespace", "openbao"),
            ("pod", "openbao-0"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let alert = Alert {
            status: AlertStatus::Firing,
            labels,
            annotations: Labels::new(),
            starts_at: chrono::DateTime::UNIX_EPOCH,
            ends_at: chrono::DateTime::UNIX_EPOCH,
            generator_url: String::new(),
            fingerprint: "f".into(),
            extra: BTreeMap::new(),
        };
        assert_eq!(
            merged.find(&alert).map(|r| r.name.as_str()),
            Some("runbook/catalyst-system/openbao-sealed"),
            "the Runbook wins over control-plane/openbao-sealed"
        );
    }

    #[test]
    fn seed_example_dry_runs_every_step() {
        let b = builtin();
        let rb = Runbook::parse("seed", SEED, &b).unwrap_or_else(|e| panic!("{e}"));
        let steps = rb.dry_run(&b, &Labels::new());
        let kinds: Vec<&str> = steps.iter().map(|s| s.step).collect();
        assert_eq!(
            kinds,
            [
                "match",
                "precondition",
                "precondition",
                "act",
                "verify",
                "rollback",
                "escalate"
            ],
            "{steps:#?}"
        );
        assert!(
            steps[0]
                .detail
                .contains("runbook/catalyst-system/openbao-sealed")
        );
        assert!(
            steps[3]
                .detail
                .starts_with("unseal on openbao/catalyst-system/<pod>"),
            "{steps:#?}"
        );
        assert!(
            steps[4]
                .detail
                .contains(r#"namespace="catalyst-system",pod="<pod>""#)
        );
        assert_eq!(steps[6].detail, "on failure: page oncall");
    }

    #[test]
    fn bad_runbook_reports_every_problem_with_its_path() {
        let text = "\
apiVersion: catalyst.openova.io/v1
kind: Runbook
metadata: {name: Bad_Name}
spec:
  triggers:
    - alertName: ''
      matchers: ['a=~b']
  preconditions:
    - check: Spire Healthy
  steps:
    - reboot: now
    - run: rm -rf /
    - action: {kind: scale_up, step: 0, max_replicas: 3}
    - action: {kind: rollback}
    - verify: the moon is full
  verify: {query: 'up == 0', expect: maybe, timeout: 0s}
  rollback: shrug
  extra: 1
";
        let err = Runbook::parse("bad.yaml", text, &builtin()).expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "apiVersion",
                "metadata.name",
                "spec.extra",
                "spec.triggers[0].alertName",
                "spec.triggers[0].matchers[0]",
                "spec.preconditions[0].check",
                "spec.steps[0].reboot",
                "spec.steps[1].run",
                "spec.steps[2].action.step",
                "spec.steps[4].verify",
                "spec.steps[3].action",
                "spec.verify.expect",
                "spec.verify.timeout",
                "spec.rollback",
            ],
            "{err}"
        );
        assert!(
            err.errors[6].message.contains("unknown step kind `reboot`"),
            "{err}"
        );
    }

    #[test]
    fn a_runbook_for_an_unknown_alert_needs_a_target() {
        let text = "\
apiVersion: catalyst.openova.io/v1alpha1
kind: Runbook
metadata: {name: x}
spec:
  triggers: [{alertName: SomethingNew}]
  steps: [{action: {kind: rollout_restart}}]
";
        let err = Runbook::parse("x", text, &builtin()).expect_err("no target");
        assert_eq!(err.errors[0].path, "spec.target");
        let ok = text.replace(
            "  steps:",
            "  target: {kind: deployment, namespace: '${namespace}', name: '${deployment}'}\n  steps:",
        );
        let rb = Runbook::parse("x", &ok, &builtin()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rb.rules().rules()[0].alert, "SomethingNew");
        assert!(rb.rules().rules()[0].verify.is_none());
    }

    #[test]
    fn preconditions_resolve_to_checks_and_unknown_names_are_errors() {
        let b = builtin();
        let rb = Runbook::parse("seed", SEED, &b).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = rb.preconditions().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "spire.server.healthy",
                "openbao.unseal.shamir.shares.available"
            ]
        );
        let steps = rb.dry_run(&b, &Labels::new());
        assert_eq!(
            steps[1].detail,
            r#"spire.server.healthy: up{job="spire-server"} == 1 expect NonEmpty (not evaluated: offline)"#
        );
        assert!(
            steps[2].detail.contains("configure checks.openbao.unseal"),
            "{steps:#?}"
        );

        let unknown = SEED.replace("spire.server.healthy", "spire.server.happy");
        let err = Runbook::parse("u", &unknown, &b).expect_err("unknown check");
        assert_eq!(err.errors.len(), 1, "{err}");
        assert_eq!(err.errors[0].path, "spec.preconditions[0].check");
        assert!(err.errors[0].message.contains("unknown check"), "{err}");

        // A configured check is known, and a named verify step may use any check.
        let raw = BTreeMap::from([(
            "spire.server.happy".to_owned(),
            crate::checks::RawCheck {
                query: "vector(1)".into(),
                expect: Expect::NonEmpty,
            },
        )]);
        let checks = Checks::builtin()
            .with_overrides("checks", &raw)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let rb = Runbook::parse_with("u", &unknown, &b, &checks).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rb.preconditions()[0]
                .spec
                .query
                .as_ref()
                .map(Template::as_str),
            Some("vector(1)")
        );
        let verify_step = SEED.replace("openbao.status.sealed == false", "spire.server.happy");
        let rb =
            Runbook::parse_with("v", &verify_step, &b, &checks).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rb.rules().rules()[0]
                .verify
                .as_ref()
                .map(|v| v.query.as_str()),
            Some("vector(1)")
        );
        // An unconfigured check cannot verify: there is no query to ask.
        let shares = SEED.replace(
            "openbao.status.sealed == false",
            "openbao.unseal.shamir.shares.available",
        );
        let err = Runbook::parse("s", &shares, &b).expect_err("no query");
        assert_eq!(err.errors[0].path, "spec.steps[1].verify", "{err}");

        let book = RuleBook::new(b.clone()).with_runbook(&rb);
        assert_eq!(
            book.preconditions("runbook/catalyst-system/openbao-sealed")
                .len(),
            2
        );
        assert!(
            book.preconditions("control-plane/openbao-sealed")
                .is_empty()
        );
        assert_eq!(book.rules().rules().len(), b.rules().len() + 1);
    }

    #[test]
    fn a_runbook_from_a_json_object_validates_like_a_file() {
        let doc: Value = serde_norway::from_str(SEED).unwrap_or_else(|e| panic!("{e}"));
        let mut doc = doc;
        doc["metadata"]["resourceVersion"] = "42".into();
        doc["metadata"]["uid"] = "u-1".into();
        let rb = Runbook::from_json("cluster", &doc, &builtin(), &Checks::builtin())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rb.rules().rules()[0].name,
            "runbook/catalyst-system/openbao-sealed"
        );
        doc["spec"]["steps"][0] = serde_json::json!({"reboot": "now"});
        let err = Runbook::from_json("cluster", &doc, &builtin(), &Checks::builtin())
            .expect_err("invalid");
        assert_eq!(err.errors[0].path, "spec.steps[0].reboot", "{err}");
    }

    #[test]
    fn crd_names_the_resource_and_carries_the_spec_schema() {
        let crd = crd();
        assert_eq!(crd["metadata"]["name"], "runbooks.catalyst.openova.io");
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["name"], "v1alpha1");
        let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["steps", "triggers"]));
        let step = &spec["properties"]["steps"]["items"]["properties"];
        assert_eq!(
            step["action"]["x-kubernetes-preserve-unknown-fields"], true,
            "{spec:#}"
        );
        assert!(crd_yaml().is_ok_and(|y| y.contains("kind: CustomResourceDefinition")));
        assert!(
            !serde_json::to_string(&crd)
                .unwrap_or_default()
                .contains("$ref")
        );
    }
}
