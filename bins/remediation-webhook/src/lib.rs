//! Library half of the `remediation-webhook` binary: config, HTTP server, the HTTP
//! notifier and the Gitea, Milvus and webhook-redelivery clients, kept out of `main.rs`
//! so that the integration test can start the real server in-process with fake ports.
#![deny(missing_docs)]

pub mod config;
pub mod gitea;
pub mod milvus;
pub mod notify;
pub mod platform;
pub mod redeliver;
pub mod server;
pub mod wiring;
