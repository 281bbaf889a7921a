//! Secret rotation on OpenBao with staged versions and approvals.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod approvals;
pub mod config;
pub mod drive;
mod error;
pub mod expiry;
pub mod jwks;
pub mod model;
pub mod plan;
pub mod ports;
pub mod restart;
pub mod rewrap;
pub mod run;
pub mod state;
pub mod status;

pub use error::Error;
pub use model::{Inventory, ManagedSecret, RawInventory, SecretClass};
pub use plan::{Observed, Outcome, Step, apply, decide};
pub use ports::{CredentialTarget, Verification};
pub use state::{Phase, RotationState, Stage};

/// Where this crate stands, so that a caller (and `sre doctor`) can tell a placeholder
/// from a working capability instead of guessing.
pub const STATUS: &str = "partial: inventory config, staged state machine (pure, resumable), \
     KV-metadata persistence, approvals in OpenBao, rotation-controller (schedules, /metrics) and \
     `sre rotation` work for dynamic DB credentials (real OpenBao + PostgreSQL); signing/JWT keys \
     through OpenBao transit with approval and JWKS rendering (controller, real OpenBao); KMS \
     re-wrap resumable (adapter shell, real OpenBao; not in the controller); restart coalescing \
     and ESO/Reloader patches (pure + mock API; not wired in the controller); svid/tls expiry \
     metrics from config; no static-role class";
