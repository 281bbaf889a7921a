//! Witness adapters: the `sre-core` [`Witness`](sre_core::ports::Witness) port as a local
//! lease file and over the HTTP witness protocol.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod file;
mod http;
mod token;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod witness_server;

pub use error::{Error, Result};
pub use file::FileWitness;
pub use http::HttpWitness;
pub use token::{BearerToken, LeaseName};
