//! Library half of the `rotation-controller` binary: the schedule loop, its metrics, the
//! HTTP server and the wiring from config to adapters, kept out of `main.rs` so that
//! tests can run them in-process.
#![deny(missing_docs)]

pub mod certs;
pub mod consumers;
pub mod controller;
pub mod engines;
pub mod jwks;
pub mod leases;
pub mod metrics;
pub mod ports;
pub mod server;
