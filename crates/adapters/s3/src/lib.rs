//! S3 adapter: the `sre-core` [`ObjectStore`](sre_core::ports::ObjectStore) and
//! [`Witness`](sre_core::ports::Witness) ports over `aws-sdk-s3`.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod store;
mod witness;

pub use config::S3Config;
pub use store::{S3ObjectStore, Versioning};
pub use witness::S3Witness;
