//! OpenBao adapter: the `sre-core` [`SecretStore`](sre_core::ports::SecretStore) port over
//! the KV v2 secrets engine, plus the database and transit engines that secret rotation
//! drives, and remediation's unseal executor over the seal API, through `vaultrs`.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod database;
mod envelope;
mod error;
mod keyring;
mod kms;
mod signing;
mod store;
#[cfg(feature = "test-util")]
pub mod testing;
mod token;
mod transit;
mod unseal;

pub use config::BaoConfig;
pub use database::{
    BaoDatabase, Change, DbCredential, DynamicRole, EngineChanges, Lease, PostgresConnection,
    StaticCredential, StaticRole,
};
pub use envelope::{Envelope, progress as rewrap_progress, rewrap_step};
pub use error::Error;
pub use keyring::{BaoKeyring, DataKey, TransitKeyInfo, Verdict};
pub use kms::KmsRewrapTarget;
pub use signing::TransitSigningTarget;
pub use store::BaoSecretStore;
pub use token::GeneratedTokenTarget;
pub use transit::{BaoTransit, SignatureCheck, signature_version};
pub use unseal::{BaoUnsealer, SealStatus, UnsealConfig, UnsealError};
