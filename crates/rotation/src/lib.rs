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
pub const STATUS: &str = "partial: inventory config, staged state machine (pure, resumable), \
     KV-metadata persistence, approvals in OpenBao, rotation-controller (schedules, /metrics) with \
     a target kind per rotating class: dynamic DB credentials and static-role service accounts \
     (postgres_dynamic, postgres_static; real OpenBao + PostgreSQL; the controller renews the \
     leases of the current and, during the overlap, the previous dynamic credential \
     (keep_alive: capped at max_ttl and gone leases reported); a static role has one live \
     password, so no overlap: consumers must re-read at once), signing/JWT keys through transit \
     with approval and JWKS rendering (transit_signing), generated API tokens stored as KV \
     versions (generated; verified by a bearer check or only structurally; no issuer API sets \
     OAuth client secrets), KMS master keys with a resumable re-wrap of every data key and the \
     cut-over after the overlap (kms_rewrap; real OpenBao); JWKS served by the controller at \
     /jwks/<name> and /.well-known/jwks.json (real OpenBao); `sre rotation` builds every kind \
     through rotation_controller::ports; consumer refresh in the controller after every \
     promotion: ESO force-sync + Reloader-compatible rollouts coalesced per window, retirement \
     held until consumers moved (fake + kube mock API; no real-cluster test; without a kube \
     client the metrics say no_kube_client); svid/tls observed from PEM files (x509 validity) or cert-manager Certificate status every tick";
