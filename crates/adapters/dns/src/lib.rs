//! DNS adapter: the `sre-core` [`Resolver`](sre_core::ports::Resolver) port over
//! `hickory-resolver`, one uncached resolver per DNS server.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod outcome;
mod resolver;

pub use resolver::{DnsServer, Error, HickoryResolver};
