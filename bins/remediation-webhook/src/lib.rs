//! Library half of the `remediation-webhook` binary: config, HTTP server and the HTTP
//! notifier, kept out of `main.rs` so that the integration test can start the real server
//! in-process with fake ports.
#![deny(missing_docs)]

pub mod config;
pub mod gitea;
pub mod notify;
pub mod platform;
pub mod server;
pub mod wiring;
