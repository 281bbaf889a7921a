//! Named checks: the `PromQL` behind a Runbook's `preconditions: [{check: name}]` and its
//! named `verify` steps, and the gate that decides whether a remediation may act.
//!
//! A check is a query with an expectation, the same shape as a rule's `verify`
//! (`{query, expect: empty | non_empty}`). [`Checks::builtin`] knows the names the
//! handbook's Runbooks use; the webhook config's `checks:` map adds names or replaces
//! them. A name no registry knows is a validation error when the Runbook is loaded, never
//! a check that is silently skipped.
//!
//! [`gate`] is the pure judgement: given each check's rendered query and the backend's
//! answer, [`Gate::Proceed`] or [`Gate::Blocked`] with the failing check and why.
//! [`evaluate`] is the shell that asks the [`MetricsQuery`] port once per check, in
//! order, and stops at the first that fails. Everything fails closed: a check without a
//! query, a label the alert lacks, an unreachable backend or an answer of the wrong type
//! blocks the action.

use crate::payload::Labels;
use crate::ports::{MetricsQuery, QueryValue};
use crate::rules::{Expect, Template};
use crate::verify::{self, Check};
use serde::{Deserialize, Serialize};
use sre_core::PortError;
use sre_core::config::ConfigError;
use std::collections::BTreeMap;

/// What a check asks: a query (with `${label}` templates) and what it must return.
///
/// `query: None` is a name the crate knows but cannot guess a metric for (the handbook's
/// `openbao.unseal.shamir.shares.available`): Runbooks naming it validate, and the check
/// blocks until the deployment configures a query for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// Instant query, templated from the alert's labels; `None` until configured.
    pub query: Option<Template>,
    /// What the query must return for the check to hold.
    pub expect: Expect,
}

/// A check as written in a config file's `checks:` map.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Instant query with `${label}` templates.
    pub query: String,
    /// `empty` or `non_empty`.
    pub expect: Expect,
}

/// A check with its name, as a Runbook's precondition resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedCheck {
    /// The dotted name (`spire.server.healthy`).
    pub name: String,
    /// What it asks.
    #[serde(flatten)]
    pub spec: CheckSpec,
}

/// Built-in checks: name, query (`None`: must be configured) and expectation.
const BUILTIN: &[(&str, Option<&str>, Expect)] = &[
    // At least one SPIRE server target is up: attested unseal keys need the server.
    (
        "spire.server.healthy",
        Some(r#"up{job="spire-server"} == 1"#),
        Expect::NonEmpty,
    ),
    // No standard exporter reports how many Shamir shares can be fetched; a deployment
    // names its own signal (for example kube-state-metrics' `kube_secret_info` of the
    // secret that holds them) under `checks:`.
    (
        "openbao.unseal.shamir.shares.available",
        None,
        Expect::NonEmpty,
    ),
    // The verify step of the handbook's Runbook: no unsealed == 0 series left.
    (
        "openbao.status.sealed == false",
        Some(r#"vault_core_unsealed{namespace="${namespace}",pod="${pod}"} == 0"#),
        Expect::Empty,
    ),
];

/// The registry of named checks a Runbook may refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    by_name: BTreeMap<String, CheckSpec>,
}

impl Default for Checks {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Checks {
    /// The names the handbook uses, with the queries this crate knows for them.
    #[must_use]
    pub fn builtin() -> Self {
        let by_name = BUILTIN
            .iter()
            .map(|(name, query, expect)| {
                (
                    (*name).to_owned(),
                    CheckSpec {
                        query: query.map(Template::new),
                        expect: *expect,
                    },
                )
            })
            .collect();
        Self { by_name }
    }

    /// These checks with `raw` added or replacing built-ins of the same name; every bad
    /// entry is reported at `<at>.<name>[.field]`.
    pub fn with_overrides(
        mut self,
        at: &str,
        raw: &BTreeMap<String, RawCheck>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errs = Vec::new();
        for (name, c) in raw {
            let path = format!("{at}.{name}");
            let norm = normalise(name);
            if norm.is_empty() {
                errs.push(ConfigError::new(path, "a check name must not be empty"));
                continue;
            }
            if c.query.trim().is_empty() {
                errs.push(ConfigError::new(
                    format!("{path}.query"),
                    "required, must not be empty",
                ));
                continue;
            }
            let query = Template::new(c.query.clone());
            if let Err(e) = query.check() {
                errs.push(ConfigError::new(format!("{path}.query"), e));
                continue;
            }
            self.by_name.insert(
                norm,
                CheckSpec {
                    query: Some(query),
                    expect: c.expect,
                },
            );
        }
        if errs.is_empty() { Ok(self) } else { Err(errs) }
    }

    /// The check named `name` (whitespace-normalised), if any.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&CheckSpec> {
        self.by_name.get(&normalise(name))
    }

    /// The check `name` resolved for a precondition list, if known.
    #[must_use]
    pub fn resolve(&self, name: &str) -> Option<NamedCheck> {
        self.get(name).map(|spec| NamedCheck {
            name: normalise(name),
            spec: spec.clone(),
        })
    }

    /// Every known name, sorted (for "known: ..." messages).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// Names compare with runs of whitespace collapsed (`a == b` and `a  ==  b` are one).
fn normalise(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a remediation may act, after its preconditions were asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "gate", rename_all = "snake_case")]
pub enum Gate {
    /// Every precondition holds (or there were none).
    Proceed {
        /// The checks that held, in order.
        checked: Vec<String>,
    },
    /// A precondition does not hold: do not act, escalate.
    Blocked {
        /// The first check that failed.
        check: String,
        /// Its rendered query, when it got that far.
        #[serde(skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        /// Why, in words.
        reason: String,
    },
}

impl Gate {
    /// True for [`Gate::Proceed`].
    #[must_use]
    pub fn proceeds(&self) -> bool {
        matches!(self, Self::Proceed { .. })
    }
}

/// The rendered query of one check, or why it has none.
///
/// # Errors
/// A reason in words: no query configured, or a label the alert lacks.
pub fn render(check: &NamedCheck, labels: &Labels) -> Result<String, String> {
    let Some(q) = &check.spec.query else {
        return Err(format!(
            "check {:?} has no query: configure checks.{} in the webhook config",
            check.name, check.name
        ));
    };
    q.render(labels)
        .map_err(|e| format!("query {:?}: {e}", q.as_str()))
}

/// Judges one backend answer against the check's expectation (pure).
///
/// # Errors
/// Why the check does not hold, in words.
pub fn judge(expect: Expect, answer: &Result<QueryValue, PortError>) -> Result<(), String> {
    match answer {
        Ok(value) => match verify::evaluate(expect, value) {
            Check::Holds => Ok(()),
            Check::NotYet => Err(match (expect, value) {
                (Expect::Empty, QueryValue::Vector(s)) => {
                    format!("expected no series, got {}", s.len())
                }
                _ => "expected at least one series, got none".to_owned(),
            }),
            Check::WrongType { got } => Err(format!(
                "the query returns a {got}; a check must return an instant vector"
            )),
        },
        Err(e) => Err(format!("metrics backend: {e}")),
    }
}

/// One check as asked: the check, its rendered query (or why it has none) and the
/// backend's answer (`None`: not asked).
pub type Asked<'a> = (
    &'a NamedCheck,
    Result<String, String>,
    Option<Result<QueryValue, PortError>>,
);

/// The gate over each check's rendered query (or why it could not be rendered) and the
/// backend's answer (`None`: not asked). Pure; the first failure blocks.
#[must_use]
pub fn gate(results: &[Asked<'_>]) -> Gate {
    let mut checked = Vec::new();
    for (check, query, answer) in results {
        let blocked = |query: Option<String>, reason: String| Gate::Blocked {
            check: check.name.clone(),
            query,
            reason,
        };
        let q = match query {
            Ok(q) => q.clone(),
            Err(reason) => return blocked(None, reason.clone()),
        };
        let Some(answer) = answer else {
            return blocked(
                Some(q),
                "not evaluated: no metrics backend configured (verify.prometheus_url)".into(),
            );
        };
        if let Err(reason) = judge(check.spec.expect, answer) {
            return blocked(Some(q), reason);
        }
        checked.push(check.name.clone());
    }
    Gate::Proceed { checked }
}

/// Asks `query` once per check, in order, stopping at the first that fails; without a
/// backend every precondition blocks (fail closed). No retries: a precondition is a
/// snapshot taken right before acting, and an outage is a reason not to act.
pub async fn evaluate(
    query: Option<&dyn MetricsQuery>,
    checks: &[NamedCheck],
    labels: &Labels,
) -> Gate {
    let mut results = Vec::with_capacity(checks.len());
    for c in checks {
        let rendered = render(c, labels);
        let answer = match (&rendered, query) {
            (Ok(q), Some(backend)) => Some(backend.instant(q).await),
            _ => None,
        };
        let failed = match &answer {
            Some(a) => judge(c.spec.expect, a).is_err(),
            None => true,
        };
        results.push((c, rendered, answer));
        if failed {
            break;
        }
    }
    gate(&results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Sample;
    use async_trait::async_trait;
    use std::sync::Mutex;

    fn vector(n: usize) -> QueryValue {
        QueryValue::Vector(
            (0..n)
                .map(|_| Sample {
                    labels: BTreeMap::new(),
                    value: 1.0,
                })
                .collect(),
        )
    }

    fn check(name: &str, query: Option<&str>, expect: Expect) -> NamedCheck {
        NamedCheck {
            name: name.into(),
            spec: CheckSpec {
                query: query.map(Template::new),
                expect,
            },
        }
    }

    #[test]
    fn builtins_know_the_handbook_names_and_overrides_replace_them() {
        let b = Checks::builtin();
        let spire = b.get("spire.server.healthy").expect("built-in");
        assert_eq!(
            spire.query.as_ref().map(Template::as_str),
            Some(r#"up{job="spire-server"} == 1"#)
        );
        assert_eq!(spire.expect, Expect::NonEmpty);
        assert_eq!(
            b.get("openbao.unseal.shamir.shares.available")
                .map(|c| c.query.is_none()),
            Some(true),
            "no guessed metric: must be configured"
        );
        assert!(b.get("openbao.status.sealed   ==  false").is_some());
        assert!(b.get("moon.full").is_none());

        let raw = BTreeMap::from([
            (
                "openbao.unseal.shamir.shares.available".to_owned(),
                RawCheck {
                    query: r#"kube_secret_info{namespace="${namespace}",secret="openbao-unseal"}"#
                        .into(),
                    expect: Expect::NonEmpty,
                },
            ),
            (
                "bad".to_owned(),
                RawCheck {
                    query: "up{x=\"${}\"}".into(),
                    expect: Expect::Empty,
                },
            ),
            (
                "blank".to_owned(),
                RawCheck {
                    query: "  ".into(),
                    expect: Expect::Empty,
                },
            ),
        ]);
        let errs = b
            .clone()
            .with_overrides("checks", &raw)
            .expect_err("invalid");
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["checks.bad.query", "checks.blank.query"]);
        let good: BTreeMap<_, _> = raw
            .into_iter()
            .filter(|(k, _)| k.starts_with("openbao"))
            .collect();
        let c = b.with_overrides("checks", &good).expect("valid");
        assert!(
            c.get("openbao.unseal.shamir.shares.available")
                .is_some_and(|s| s.query.is_some())
        );
    }

    #[test]
    fn judge_follows_the_expectation_and_fails_closed() {
        assert_eq!(judge(Expect::NonEmpty, &Ok(vector(1))), Ok(()));
        assert_eq!(judge(Expect::Empty, &Ok(vector(0))), Ok(()));
        assert_eq!(
            judge(Expect::Empty, &Ok(vector(2))),
            Err("expected no series, got 2".into())
        );
        assert_eq!(
            judge(Expect::NonEmpty, &Ok(vector(0))),
            Err("expected at least one series, got none".into())
        );
        assert!(
            judge(Expect::NonEmpty, &Ok(QueryValue::Scalar(1.0)))
                .is_err_and(|e| e.contains("scalar"))
        );
        let down = PortError::Unavailable {
            backend: "prometheus",
            message: "connection refused".into(),
        };
        assert!(judge(Expect::Empty, &Err(down)).is_err_and(|e| e.contains("connection refused")));
    }

    #[test]
    fn gate_proceeds_only_when_every_check_holds() {
        let a = check("a", Some("up"), Expect::NonEmpty);
        let b = check("b", Some(r#"x{pod="${pod}"}"#), Expect::Empty);
        assert_eq!(gate(&[]), Gate::Proceed { checked: vec![] });
        assert_eq!(
            gate(&[
                (&a, Ok("up".into()), Some(Ok(vector(1)))),
                (&b, Ok("x".into()), Some(Ok(vector(0)))),
            ]),
            Gate::Proceed {
                checked: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            gate(&[
                (&a, Ok("up".into()), Some(Ok(vector(1)))),
                (&b, Ok("x".into()), Some(Ok(vector(3)))),
            ]),
            Gate::Blocked {
                check: "b".into(),
                query: Some("x".into()),
                reason: "expected no series, got 3".into()
            }
        );
        let Gate::Blocked { check, reason, .. } = gate(&[(&a, Ok("up".into()), None)]) else {
            panic!("no backend must block");
        };
        assert_eq!(check, "a");
        assert!(reason.contains("no metrics backend"), "{reason}");
    }

    struct Scripted {
        answers: Mutex<Vec<Result<QueryValue, PortError>>>,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl MetricsQuery for Scripted {
        async fn instant(&self, promql: &str) -> Result<QueryValue, PortError> {
            self.asked.lock().expect("lock").push(promql.to_owned());
            self.answers.lock().expect("lock").remove(0)
        }
    }

    #[tokio::test]
    async fn evaluate_renders_asks_in_order_and_stops_at_the_first_failure() {
        let a = check("a", Some(r#"up{ns="${namespace}"}"#), Expect::NonEmpty);
        let b = check("b", Some("b"), Expect::NonEmpty);
        let c = check("c", Some("c"), Expect::NonEmpty);
        let backend = Scripted {
            answers: Mutex::new(vec![Ok(vector(1)), Ok(vector(0))]),
            asked: Mutex::new(Vec::new()),
        };
        let labels = Labels::from([("namespace".to_owned(), "openbao".to_owned())]);
        let g = evaluate(Some(&backend), &[a.clone(), b, c], &labels).await;
        assert_eq!(
            g,
            Gate::Blocked {
                check: "b".into(),
                query: Some("b".into()),
                reason: "expected at least one series, got none".into()
            }
        );
        assert_eq!(
            *backend.asked.lock().expect("lock"),
            [r#"up{ns="openbao"}"#, "b"],
            "c is never asked"
        );

        // A label the alert lacks and an unconfigured check block without a query.
        let g = evaluate(Some(&backend), &[a], &Labels::new()).await;
        assert!(
            matches!(&g, Gate::Blocked { query: None, reason, .. } if reason.contains("namespace")),
            "{g:?}"
        );
        let shares = Checks::builtin()
            .resolve("openbao.unseal.shamir.shares.available")
            .expect("built-in");
        let g = evaluate(Some(&backend), &[shares], &Labels::new()).await;
        assert!(
            matches!(&g, Gate::Blocked { reason, .. } if reason.contains("configure checks.openbao.unseal.shamir.shares.available")),
            "{g:?}"
        );
        assert_eq!(
            backend.asked.lock().expect("lock").len(),
            2,
            "nothing more asked"
        );
    }
}
