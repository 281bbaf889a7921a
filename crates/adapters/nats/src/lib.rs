//! NATS adapter: remediation's [`JetStreamConsumers`](sre_remediation::actions::JetStreamConsumers)
//! port over the JetStream API, through a minimal NATS client of its own on tokio TCP.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod consumers;
mod error;
mod jetstream;
mod proto;

pub use client::{NatsClient, NatsConfig};
pub use consumers::NatsConsumers;
pub use error::{ERR_CONSUMER_NOT_FOUND, ERR_STREAM_NOT_FOUND, NatsError};
pub use jetstream::{ConsumerInfo, JetStream, StreamInfo};
pub use proto::ServerInfo;
