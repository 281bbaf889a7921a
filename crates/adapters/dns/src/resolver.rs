//! [`HickoryResolver`]: one DNS server as one [`Resolver`] of the failover quorum.

use crate::outcome;
use async_trait::async_trait;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RecordType};
use sre_core::ports::{LookupOutcome, RecordKind, Resolver};
use std::net::SocketAddr;
use std::time::Duration;

/// One DNS server the quorum asks, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServer {
    /// Name used in logs, metrics and quorum reports (`cloudflare`, `quad9`, `ns-eu`).
    pub name: String,
    /// Address and port of the server (port 53 in production, any port in tests).
    pub addr: SocketAddr,
    /// Limit for one lookup. A server slower than this counts as *unknown* in the quorum,
    /// so the limit bounds how long a failover decision can wait on DNS.
    pub timeout: Duration,
}

impl DnsServer {
    /// A server with a 2 s lookup timeout.
    #[must_use]
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            timeout: Duration::from_secs(2),
        }
    }
}

/// Why a resolver could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// hickory refused the configuration.
    #[error("cannot build the resolver {name} for {addr}")]
    Build {
        /// The configured name.
        name: String,
        /// The server address.
        addr: SocketAddr,
        /// What hickory reported (boxed: hickory's error is large and this path is cold).
        #[source]
        source: Box<NetError>,
    },
}

impl Error {
    /// A stable label for metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Build { .. } => "build",
        }
    }
}

/// The [`Resolver`] port over exactly one DNS server.
///
/// Each server gets its own hickory resolver, so that one server's answer is never mixed
/// with another's: a quorum of three needs three independent opinions, not a pool that
/// fails over internally. Nothing is cached (a quorum must see fresh answers), nothing is
/// read from `/etc/resolv.conf` or `/etc/hosts`, there are no search domains, and each
/// lookup is one attempt over UDP, switching to TCP when the answer is truncated.
#[derive(Clone)]
pub struct HickoryResolver {
    name: String,
    addr: SocketAddr,
    inner: TokioResolver,
}

impl std::fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryResolver")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HickoryResolver {
    /// Builds the resolver; no packet is sent until the first lookup. Needs a Tokio
    /// runtime when lookups run, not here.
    pub fn new(server: &DnsServer) -> Result<Self, Error> {
        let mut ns = NameServerConfig::udp_and_tcp(server.addr.ip());
        for c in &mut ns.connections {
            c.port = server.addr.port();
        }
        // No domain, no search list: the name asked is the name sent.
        let config = ResolverConfig::from_parts(None, Vec::new(), vec![ns]);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = options(server.timeout);
        let inner = builder.build().map_err(|source| Error::Build {
            name: server.name.clone(),
            addr: server.addr,
            source: Box::new(source),
        })?;
        Ok(Self {
            name: server.name.clone(),
            addr: server.addr,
            inner,
        })
    }

    /// One resolver per server, in the given order.
    pub fn for_servers(servers: &[DnsServer]) -> Result<Vec<Self>, Error> {
        servers.iter().map(Self::new).collect()
    }

    /// The server this resolver asks.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn options(timeout: Duration) -> ResolverOpts {
    let mut o = ResolverOpts::default();
    o.timeout = timeout;
    // hickory counts *retries*: 0 means exactly one attempt, so one lookup never takes
    // longer than `timeout`. The quorum asks again on its next round anyway.
    o.attempts = 0;
    // A cached answer is an old opinion: a withdrawn record must be seen as withdrawn.
    o.cache_size = 0;
    o.positive_max_ttl = Some(Duration::ZERO);
    o.negative_max_ttl = Some(Duration::ZERO);
    o.use_hosts_file = ResolveHosts::Never;
    o.ndots = 0;
    o.num_concurrent_reqs = 1;
    o.try_tcp_on_error = true;
    o.preserve_intermediates = false;
    o
}

/// The fully qualified form of `name`; a trailing dot is accepted and means the same.
fn fqdn(name: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(name).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

#[async_trait]
impl Resolver for HickoryResolver {
    fn name(&self) -> &str {
        &self.name
    }

    #[tracing::instrument(skip_all, fields(resolver = %self.name, server = %self.addr, name = %name, kind = ?kind, outcome))]
    async fn lookup(&self, name: &str, kind: RecordKind) -> LookupOutcome {
        let out = match fqdn(name) {
            Err(reason) => LookupOutcome::Error(reason),
            Ok(fq) => {
                let rtype = match kind {
                    RecordKind::A => RecordType::A,
                    RecordKind::Aaaa => RecordType::AAAA,
                };
                match self.inner.lookup(fq, rtype).await {
                    Ok(lookup) => outcome::from_addresses(outcome::addresses(&lookup, kind)),
                    Err(e) => outcome::from_error(&e),
                }
            }
        };
        tracing::Span::current().record("outcome", tracing::field::debug(&out));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_fully_qualified() {
        let a = fqdn("region-a.health.sre.test").expect("valid");
        let b = fqdn("region-a.health.sre.test.").expect("valid");
        assert!(a.is_fqdn());
        assert_eq!(a, b);
        assert!(fqdn("bad..name").is_err());
    }

    #[test]
    fn options_make_every_lookup_fresh_and_local_config_free() {
        let o = options(Duration::from_millis(700));
        assert_eq!(
            (o.timeout, o.attempts, o.cache_size),
            (Duration::from_millis(700), 0, 0)
        );
        assert!(matches!(o.use_hosts_file, ResolveHosts::Never));
    }
}
