//! The observing half of the shell: one witness read and one DNS lookup per resolver
//! and region, all at once, each under its own timeout, folded into the values that
//! [`crate::decide::decide`] understands.
//!
//! Nothing here decides: a witness that does not answer in time is
//! [`WitnessObservation::Unreachable`], a resolver that does not answer in time is
//! [`Reachability::Unknown`], and the core's rules say what those mean.

use crate::model::{FailoverConfig, Reachability, WitnessObservation};
use futures::future::join_all;
use serde::Serialize;
use sre_core::RegionId;
use sre_core::ports::{LookupOutcome, RecordKind, Resolver, Witness};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The DNS name whose presence at the public resolvers says "this region is reachable
/// from the internet", per region. Each region's GSLB DNS serves only its own name, so a
/// resolver that can no longer reach the region's DNS answers NXDOMAIN for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthNames(BTreeMap<RegionId, String>);

impl HealthNames {
    /// `<region>.health.<zone>` for every region, with per-region overrides where an
    /// existing deployment already publishes another name.
    #[must_use]
    pub fn for_zone(
        regions: &[RegionId],
        zone: &str,
        overrides: &BTreeMap<RegionId, String>,
    ) -> Self {
        let zone = zone.trim_matches('.');
        Self(
            regions
                .iter()
                .map(|r| {
                    let name = overrides
                        .get(r)
                        .cloned()
                        .unwrap_or_else(|| format!("{r}.health.{zone}"));
                    (r.clone(), name)
                })
                .collect(),
        )
    }

    /// The name asked for `region`.
    #[must_use]
    pub fn get(&self, region: &RegionId) -> Option<&str> {
        self.0.get(region).map(String::as_str)
    }

    /// Every region with its name, in region order.
    pub fn iter(&self) -> impl Iterator<Item = (&RegionId, &str)> {
        self.0.iter().map(|(r, n)| (r, n.as_str()))
    }
}

/// What the shell reads through: the witness and the quorum's resolvers, in the order
/// the quorum counts them.
#[derive(Clone)]
pub struct ObservePorts {
    /// The lease witness.
    pub witness: Arc<dyn Witness>,
    /// One entry per resolver of the quorum (`quorum.of` of them).
    pub resolvers: Vec<Arc<dyn Resolver>>,
    /// The health name asked per region.
    pub health: HealthNames,
}

impl std::fmt::Debug for ObservePorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.resolvers.iter().map(|r| r.name()).collect();
        f.debug_struct("ObservePorts")
            .field("resolvers", &names)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

/// One resolver's answer about one region, kept for metrics and the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolverAnswer {
    /// The resolver's configured name.
    pub resolver: String,
    /// The region asked about.
    pub region: RegionId,
    /// What the answer counts as.
    pub answer: Reachability,
}

/// One round of observations: the parts of [`crate::model::Observations`] that come
/// from ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The witness read (timeouts and errors are `Unreachable`).
    pub witness: WitnessObservation,
    /// Per region, one answer per resolver, in resolver order.
    pub dns: BTreeMap<RegionId, Vec<Reachability>>,
    /// The same answers with the resolver's name, for metrics.
    pub answers: Vec<ResolverAnswer>,
}

/// Reads the witness and asks every resolver about every region, concurrently.
///
/// The whole round takes at most `max(witness_timeout, dns_timeout)`: a slow resolver
/// cannot delay the witness read or another resolver, which is what lets the timing lint
/// bound a check by the renew interval.
#[tracing::instrument(skip_all, fields(region = %config.this_region))]
pub async fn observe(ports: &ObservePorts, config: &FailoverConfig) -> Observed {
    let t = &config.timings;
    let witness = async {
        match tokio::time::timeout(t.witness_timeout, ports.witness.read()).await {
            Ok(read) => WitnessObservation::from(read),
            Err(_) => WitnessObservation::Unreachable,
        }
    };
    let lookups = ports.health.iter().flat_map(|(region, name)| {
        ports.resolvers.iter().map(move |r| {
            let r = Arc::clone(r);
            async move {
                let answer = lookup(r.as_ref(), name, t.dns_timeout).await;
                ResolverAnswer {
                    resolver: r.name().to_owned(),
                    region: region.clone(),
                    answer,
                }
            }
        })
    });
    let (witness, answers) = tokio::join!(witness, join_all(lookups));
    if let WitnessObservation::Malformed { error, .. } = &witness {
        tracing::warn!(%error, "lease record at the witness does not parse: holding");
    }
    let mut dns: BTreeMap<RegionId, Vec<Reachability>> = BTreeMap::new();
    for a in &answers {
        dns.entry(a.region.clone()).or_default().push(a.answer);
    }
    Observed {
        witness,
        dns,
        answers,
    }
}

async fn lookup(r: &dyn Resolver, name: &str, timeout: Duration) -> Reachability {
    let outcome = tokio::time::timeout(timeout, r.lookup(name, RecordKind::A))
        .await
        .unwrap_or(LookupOutcome::Timeout);
    let answer = Reachability::from(&outcome);
    if answer == Reachability::Unknown {
        tracing::debug!(resolver = r.name(), name, ?outcome, "no usable dns answer");
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RawFailoverConfig;
    use async_trait::async_trait;
    use sre_core::ports::{LeaseRecord, WitnessRead};
    use sre_core::testing::{MemResolver, MemWitness};
    use sre_core::{PortError, ports::CasOutcome, ports::Revision};

    fn config() -> FailoverConfig {
        let raw: RawFailoverConfig =
            serde_json::from_str(r#"{"regions":["eu","us"],"this_region":"eu"}"#)
                .unwrap_or_else(|e| panic!("fixture: {e}"));
        raw.validate().unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// A resolver that never answers, and a witness that never answers.
    struct Silent;
    #[async_trait]
    impl Resolver for Silent {
        fn name(&self) -> &'static str {
            "silent"
        }
        async fn lookup(&self, _: &str, _: RecordKind) -> LookupOutcome {
            std::future::pending().await
        }
    }
    #[async_trait]
    impl Witness for Silent {
        async fn read(&self) -> Result<WitnessRead, PortError> {
            std::future::pending().await
        }
        async fn compare_and_swap(
            &self,
            _: Option<&Revision>,
            _: &LeaseRecord,
        ) -> Result<CasOutcome, PortError> {
            std::future::pending().await
        }
    }

    fn ports(witness: Arc<dyn Witness>, resolvers: Vec<Arc<dyn Resolver>>) -> ObservePorts {
        let cfg = config();
        ObservePorts {
            witness,
            resolvers,
            health: HealthNames::for_zone(&cfg.regions, "example.com.", &BTreeMap::new()),
        }
    }

    #[test]
    fn health_names_default_to_region_health_zone_with_overrides() {
        let regions = [RegionId::new("eu"), RegionId::new("us")];
        let mut o = BTreeMap::new();
        o.insert(RegionId::new("us"), "up.us.example.net".to_owned());
        let h = HealthNames::for_zone(&regions, ".example.com.", &o);
        assert_eq!(h.get(&regions[0]), Some("eu.health.example.com"));
        assert_eq!(h.get(&regions[1]), Some("up.us.example.net"));
        assert_eq!(h.get(&RegionId::new("ap")), None);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_counted_per_region_in_resolver_order() {
        use Reachability::{Reachable, Unknown, Unreachable};
        let (r1, r2) = (MemResolver::new("a"), MemResolver::new("b"));
        r1.set_addr("eu.health.example.com", [192, 0, 2, 1].into());
        r2.set_addr("eu.health.example.com", [192, 0, 2, 1].into());
        r2.set_failure(None);
        let wired = ports(
            Arc::new(MemWitness::new()),
            vec![Arc::new(r1), Arc::new(r2), Arc::new(Silent)],
        );
        let o = observe(&wired, &config()).await;
        assert_eq!(o.witness, WitnessObservation::Absent);
        assert_eq!(
            o.dns.get(&RegionId::new("eu")),
            Some(&vec![Reachable, Reachable, Unknown])
        );
        assert_eq!(
            o.dns.get(&RegionId::new("us")),
            Some(&vec![Unreachable, Unreachable, Unknown])
        );
        assert_eq!(o.answers.len(), 6);
        assert_eq!(o.answers[2].resolver, "silent");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_or_failing_witness_is_unreachable() {
        let p = ports(Arc::new(Silent), vec![]);
        assert_eq!(
            observe(&p, &config()).await.witness,
            WitnessObservation::Unreachable
        );
        let w = MemWitness::new();
        w.set_unavailable(true);
        let p = ports(Arc::new(w.clone()), vec![]);
        assert_eq!(
            observe(&p, &config()).await.witness,
            WitnessObservation::Unreachable
        );
        w.set_unavailable(false);
        w.put_raw(b"not a lease".to_vec());
        assert!(matches!(
            observe(&p, &config()).await.witness,
            WitnessObservation::Malformed { .. }
        ));
    }
}
