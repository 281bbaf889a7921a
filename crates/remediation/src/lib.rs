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
/// capability from a complete one instead of guessing: `"partial"` while the payload
/// model, rules, engine, verification, executors and the webhook's remediate -> verify ->
/// rollback -> escalate loop, Runbook CRDs (with `PromQL` preconditions), the spend
/// source of the budget gate and Gitea dispatch work but some action kinds have no
/// executor.
pub const STATUS: &str = "partial";
