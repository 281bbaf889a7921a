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
pub mod x509;

pub use error::Error;
pub use model::{Inventory, ManagedSecret, RawInventory, SecretClass};
pub use plan::{Observed, Outcome, Step, apply, decide};
pub use ports::{CredentialTarget, KeepAlive, Verification};
pub use state::{Phase, RotationState, Stage};

/// Where this crate stands, so that a caller (and `sre doctor`) can tell a placeholder
/// from a working capability instead of guessing.
pub const STATUS: &str = "working: inventory, staged state machine in OpenBao KV metadata \
     (resumable, never revokes the only valid credential), approvals, target kinds postgres_dynamic \
     (engine configured from config, lease renewal), postgres_static, transit_signing (JWKS), \
     generated tokens, kms_rewrap; ESO force-sync + coalesced Reloader rollouts; svid/tls observed \
     from PEM files or cert-manager; rotation-controller metrics + shipped alert rules; \
     `sre rotation status|rotate|approve`";
