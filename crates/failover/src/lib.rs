//! Multi-region failover: a witness lease with fencing tokens, a DNS quorum for when the
//! witness is gone, an ordered layer plan, a timing lint and (feature `sim`) a
//! deterministic simulator with the `sre drill` game day on top.
//!
//! Everything outside `sim` is pure: [`decide::decide`] and [`plan`] take the state, the
//! observations and `now` and return the next state and the actions to carry out; the
//! controller binary owns the IO. The rules and the safety argument are in the README.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod decide;
pub mod lint;
pub mod model;
pub mod plan;
pub mod ports;
pub mod state;

#[cfg(feature = "runtime")]
pub mod control;
#[cfg(feature = "runtime")]
pub mod execute;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
pub mod observe;
#[cfg(feature = "runtime")]
pub mod run;
#[cfg(feature = "test-util")]
pub mod testing;

#[cfg(feature = "sim")]
pub mod drill;
#[cfg(feature = "sim")]
pub mod sim;

pub use decide::{Action, decide};
pub use model::{
    FailoverConfig, Mode, Observations, Quorum, RawFailoverConfig, Timings, WitnessLossPolicy,
};
pub use state::{Authority, FailoverState, Role};

/// Where this crate stands (printed by `sre doctor`).
pub const STATUS: &str = "core+sim+shell: decide, lint, layer plan, simulator, drill, observe/execute/run loop, approvals and operator commands (control), metrics; failover-controller with s3/file/http witness, kube layers (k8gb HTTPRoutes, Cilium, CNPG, Strimzi), /v1 control endpoint, file or S3 evidence; `sre failover status|approve|promote|demote`";
