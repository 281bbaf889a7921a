//! Shared foundation of the sre workspace: the ports every domain crate talks through,
//! the injected clock, guards, approvals, the evidence chain, schedules, config loading
//! and telemetry.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod approval;
pub mod clock;
pub mod config;
pub mod error;
pub mod evidence;
pub mod guard;
pub mod ids;
pub mod ports;
pub mod schedule;
#[cfg(feature = "telemetry")]
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;

pub use clock::{Clock, ManualClock, MonoTime, SystemClock};
pub use error::PortError;
pub use ids::{Generation, RegionId};
