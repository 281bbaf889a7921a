//! Alertmanager webhooks to verified remediation actions.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

/// Where this crate stands: `"planned"` until its issue lands, so that a caller (and
/// `sre doctor`) can tell a placeholder from a working capability instead of guessing.
pub const STATUS: &str = "planned";
