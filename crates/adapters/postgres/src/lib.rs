//! PostgreSQL credentials as rotation targets: dynamic users minted by the OpenBao
//! database engine (revoked through their lease) and service accounts behind a static
//! role (password changed in place), both tested by a real scram login.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod static_role;
mod target;

pub use static_role::PgStaticTarget;
pub use target::{PgDynamicTarget, PgEndpoint, login};
