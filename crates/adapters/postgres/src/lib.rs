//! Dynamic PostgreSQL credentials as a rotation target: minted by the OpenBao database
//! engine, tested by a real scram login, revoked through the lease.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod target;

pub use target::{PgDynamicTarget, PgEndpoint, login};
