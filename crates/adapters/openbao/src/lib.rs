//! OpenBao adapter: the `sre-core` [`SecretStore`](sre_core::ports::SecretStore) port over
//! the KV v2 secrets engine, plus the database and transit engines that secret rotation
//! drives, through `vaultrs`.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod database;
mod envelope;
mod error;
mod keyring;
mod signing;
mod store;
mod transit;

pub use config::BaoConfig;
pub use database::{BaoDatabase, DbCredential, DynamicRole, Lease, PostgresConnection};
pub use envelope::{Envelope, progress as rewrap_progress, rewrap_step};
pub use error::Error;
pub use keyring::{BaoKeyring, DataKey, TransitKeyInfo, Verdict};
pub use signing::TransitSigningTarget;
pub use store::BaoSecretStore;
pub use transit::{BaoTransit, SignatureCheck, signature_version};
