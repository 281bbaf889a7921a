//! Library half of the `remediation-webhook` binary: config and HTTP server, kept out of
//! `main.rs` so that the integration test can start the real server in-process.
#![deny(missing_docs)]

pub mod config;
pub mod server;
