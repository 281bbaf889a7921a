//! OpenBao adapter: the `sre-core` [`SecretStore`](sre_core::ports::SecretStore) port over
//! the KV v2 secrets engine, through `vaultrs`.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod store;

pub use config::BaoConfig;
pub use error::Error;
pub use store::BaoSecretStore;
