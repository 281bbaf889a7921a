//! Alertmanager webhooks to verified remediation actions.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod payload;
pub mod plan;
pub mod rules;

/// Where this crate stands, so that a caller (and `sre doctor`) can tell a partial
/// capability from a complete one instead of guessing: `"partial"` while the payload
/// model, rules and engine work but no executor, verification or Runbook CRD exists.
pub const STATUS: &str = "partial";
