//! DNS lookups against one named resolver, for the failover quorum.

use async_trait::async_trait;
use std::net::IpAddr;

/// Which address record to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// IPv4 `A` records.
    A,
    /// IPv6 `AAAA` records.
    Aaaa,
}

/// What one resolver said about one name.
///
/// The variants keep apart what a quorum must not confuse: `NxDomain` and `NoData` are
/// authoritative statements that the name has no address (the peer withdrew or is gone),
/// while `ServFail`, `Refused` and `Timeout` say nothing about the peer, only about the
/// path to it; callers count those as *unknown*.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupOutcome {
    /// The name resolved to these addresses.
    Answer(Vec<IpAddr>),
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no record of this kind.
    NoData,
    /// The resolver failed to resolve (SERVFAIL).
    ServFail,
    /// The resolver refused to answer (REFUSED).
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// Any other failure (connection refused, malformed response), with the reason.
    Error(String),
}

/// A single DNS resolver, addressed by name in config (`cloudflare`, `quad9`).
#[async_trait]
pub trait Resolver: Send + Sync {
    /// The configured name of this resolver, used in logs, metrics and quorum reports.
    fn name(&self) -> &str;

    /// Looks `name` up. Never returns an error: every failure is an outcome, because a
    /// quorum counts failures rather than aborting on them.
    async fn lookup(&self, name: &str, kind: RecordKind) -> LookupOutcome;
}
