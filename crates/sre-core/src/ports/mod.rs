//! Ports: the async traits through which domain crates reach the outside world.
//!
//! Each port is small, named by intent, and free of SDK types, so that the same domain
//! logic runs against a real backend (the `sre-adapter-*` crates), an in-memory fake
//! (`sre_core::testing`, feature `test-util`) or a user's own implementation. Every port
//! has a contract suite in `sre_core::testing::contract` that all implementations pass.

mod object_store;
mod resolver;
mod secret_store;
mod witness;

pub use object_store::{ObjectMeta, ObjectStore, ObjectVersion, PutCondition, StoredObject};
pub use resolver::{LookupOutcome, RecordKind, Resolver};
pub use secret_store::{SecretData, SecretMetadata, SecretStore, SecretValue, SecretVersionInfo};
pub use witness::{
    CasOutcome, LeaseFormat, LeaseParseError, LeaseRecord, Revision, Witness, WitnessRead,
};
