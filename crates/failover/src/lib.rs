//! Multi-region failover.
#![deny(missing_docs)]

/// Where this crate stands.
pub const STATUS: &str = "planned";
