//! Alertmanager webhooks to verified remediation actions.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod actions;
pub mod checks;
pub mod execute;
pub mod payload;
pub mod plan;
pub mod ports;
pub mod retry;
pub mod rules;
pub mod runbook;
pub mod spend;
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
pub mod verify;

/// Where this crate stands, so that a caller (and `sre doctor`) can tell a partial
/// capability from a complete one instead of guessing: `"working"` since every action
/// of the built-in rule set has an executor (Milvus index rebuilds and webhook
/// redelivery were the last) next to the payload model, rules, engine, verification,
/// Runbook CRDs with `PromQL` preconditions, the spend source of the budget gate and the
/// webhook's remediate -> verify -> rollback -> escalate loop.
pub const STATUS: &str = "working: Alertmanager v4 webhook, the handbook's 21 rules as data + \
     Runbook CRDs, engine (dedupe, cooldown, blast radius, budget gate, escalation), an executor \
     for every built-in action (kube workloads, OpenBao unseal, JetStream, Gitea dispatch, Milvus \
     index rebuild, webhook redelivery, notify), PromQL verify, rollback, evidence";
