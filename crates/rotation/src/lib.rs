//! Secret rotation on OpenBao with staged versions and approvals.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod error;
pub mod model;
pub mod plan;
pub mod ports;
pub mod run;
pub mod state;

pub use error::Error;
pub use model::{Inventory, ManagedSecret, RawInventory, SecretClass};
pub use plan::{Observed, Outcome, Step, apply, decide};
pub use ports::{CredentialTarget, Verification};
pub use state::{Phase, RotationState, Stage};

/// Where this crate stands, so that a caller (and `sre doctor`) can tell a placeholder
/// from a working capability instead of guessing.
pub const STATUS: &str = "partial: inventory config, staged state machine (pure, resumable), \
     KV-metadata persistence and the step shell work (dynamic DB credentials tested against \
     real OpenBao + PostgreSQL); no controller binary, no ESO/Reloader restarts, no transit/KMS \
     classes in the shell yet";
