//! Test support for the shell (feature `test-util`): in-memory fakes of the three layer
//! ports and a witness wrapper that cuts one region off a shared witness.
//!
//! The fakes enforce the same generation rule the real adapters do: a write carrying a
//! lower generation than the highest one seen is refused with [`LayerError::Stale`], so
//! a test in which a stale controller keeps writing fails the way production would.

use crate::execute::Layers;
use crate::ports::{
    ExternalTraffic, InternalTraffic, LayerError, LayerStatus, StatefulService, StatefulServices,
};
use async_trait::async_trait;
use sre_core::ports::{CasOutcome, LeaseRecord, Revision, Witness, WitnessRead};
use sre_core::{Generation, PortError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread leaves valid data behind: every write is a single assignment.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One switchable object that carries a generation: the shared core of the three fakes.
#[derive(Debug, Default)]
struct Stamped {
    serving: BTreeMap<String, bool>,
    generation: Option<Generation>,
    writes: Vec<(String, bool, Generation)>,
    unreachable: bool,
}

impl Stamped {
    fn write(&mut self, what: &str, on: bool, g: Generation) -> Result<LayerStatus, LayerError> {
        if self.unreachable {
            return Err(LayerError::Unreachable(format!("{what}: injected outage")));
        }
        // Invariant: the generation only grows; a lower one is a stale controller.
        if let Some(seen) = self.generation.filter(|s| *s > g) {
            return Err(LayerError::Stale { ours: g, seen });
        }
        self.generation = Some(g);
        self.serving.insert(what.to_owned(), on);
        self.writes.push((what.to_owned(), on, g));
        Ok(self.status(what))
    }

    fn status(&self, what: &str) -> LayerStatus {
        LayerStatus {
            serving: self.serving.get(what).copied().unwrap_or(false),
            generation: self.generation,
            detail: format!("mem {what}"),
        }
    }
}

/// A fake of one layer port (or all three: the struct implements each trait), sharing
/// state between clones so that a test keeps a handle to inspect it.
#[derive(Debug, Clone, Default)]
pub struct MemLayer {
    state: Arc<Mutex<Stamped>>,
}

impl MemLayer {
    /// A layer that serves nothing and has seen no generation.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail as [`LayerError::Unreachable`] (or work again).
    pub fn set_unreachable(&self, down: bool) {
        lock(&self.state).unreachable = down;
    }

    /// Whether `what` (`routes`, `mesh`, `cnpg`, ...) is switched on.
    #[must_use]
    pub fn serving(&self, what: &str) -> bool {
        lock(&self.state).status(what).serving
    }

    /// The highest generation this layer accepted.
    #[must_use]
    pub fn generation(&self) -> Option<Generation> {
        lock(&self.state).generation
    }

    /// Every accepted write, in order: (object, on, generation).
    #[must_use]
    pub fn writes(&self) -> Vec<(String, bool, Generation)> {
        lock(&self.state).writes.clone()
    }
}

fn service_key(s: StatefulService) -> &'static str {
    match s {
        StatefulService::Cnpg => "cnpg",
        StatefulService::FerretDb => "ferretdb",
        StatefulService::Strimzi => "strimzi",
    }
}

#[async_trait]
impl ExternalTraffic for MemLayer {
    async fn set_routes_ready(
        &self,
        ready: bool,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        lock(&self.state).write("routes", ready, generation)
    }
    async fn routes_status(&self) -> Result<LayerStatus, LayerError> {
        Ok(lock(&self.state).status("routes"))
    }
}

#[async_trait]
impl InternalTraffic for MemLayer {
    async fn set_mesh_endpoints(
        &self,
        shared: bool,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        lock(&self.state).write("mesh", shared, generation)
    }
    async fn mesh_status(&self) -> Result<LayerStatus, LayerError> {
        Ok(lock(&self.state).status("mesh"))
    }
}

#[async_trait]
impl StatefulServices for MemLayer {
    async fn fence_old_primary(&self, generation: Generation) -> Result<LayerStatus, LayerError> {
        lock(&self.state).write("old-primary-fenced", true, generation)
    }
    async fn promote(
        &self,
        service: StatefulService,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        lock(&self.state).write(service_key(service), true, generation)
    }
    async fn demote(
        &self,
        service: StatefulService,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        lock(&self.state).write(service_key(service), false, generation)
    }
    async fn status(&self, service: StatefulService) -> Result<LayerStatus, LayerError> {
        Ok(lock(&self.state).status(service_key(service)))
    }
}

/// Three independent in-memory layers and the [`Layers`] bundle that drives them.
#[derive(Debug, Clone, Default)]
pub struct MemLayers {
    /// External traffic (`routes`).
    pub external: MemLayer,
    /// Internal traffic (`mesh`).
    pub internal: MemLayer,
    /// Stateful services (`cnpg`, `ferretdb`, `strimzi`, `old-primary-fenced`).
    pub stateful: MemLayer,
}

impl MemLayers {
    /// Fresh layers.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The bundle to hand to the shell.
    #[must_use]
    pub fn layers(&self) -> Layers {
        Layers {
            external: Arc::new(self.external.clone()),
            internal: Arc::new(self.internal.clone()),
            stateful: Arc::new(self.stateful.clone()),
        }
    }

    /// True when this region's routes and mesh endpoints are on and CNPG is primary.
    #[must_use]
    pub fn serving(&self) -> bool {
        self.external.serving("routes")
            && self.internal.serving("mesh")
            && self.stateful.serving("cnpg")
    }
}

/// A view of a shared witness that one region can be cut off from: the partition
/// between that region and the witness, while the witness stays up for the others.
#[derive(Clone)]
pub struct CutWitness {
    inner: Arc<dyn Witness>,
    cut: Arc<AtomicBool>,
}

impl CutWitness {
    /// A connected view of `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn Witness>) -> Self {
        Self {
            inner,
            cut: Arc::default(),
        }
    }

    /// Cuts (`true`) or restores (`false`) this view's link to the witness.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), PortError> {
        if self.cut.load(Ordering::SeqCst) {
            Err(PortError::Unavailable {
                backend: "cut-witness",
                message: "link cut by the test".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl std::fmt::Debug for CutWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CutWitness")
            .field("cut", &self.cut.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Witness for CutWitness {
    async fn read(&self) -> Result<WitnessRead, PortError> {
        self.check()?;
        self.inner.read().await
    }
    async fn compare_and_swap(
        &self,
        expected: Option<&Revision>,
        record: &LeaseRecord,
    ) -> Result<CasOutcome, PortError> {
        self.check()?;
        self.inner.compare_and_swap(expected, record).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn layers_refuse_a_lower_generation_and_accept_equal_or_higher() {
        let l = MemLayer::new();
        assert!(l.set_routes_ready(true, Generation(5)).await.is_ok());
        assert!(l.set_routes_ready(true, Generation(5)).await.is_ok());
        let stale = l.set_routes_ready(false, Generation(4)).await;
        assert_eq!(
            stale,
            Err(LayerError::Stale {
                ours: Generation(4),
                seen: Generation(5)
            })
        );
        assert!(l.serving("routes"));
        assert!(l.set_routes_ready(false, Generation(6)).await.is_ok());
        assert!(!l.serving("routes"));
        l.set_unreachable(true);
        assert!(matches!(
            l.fence_old_primary(Generation(7)).await,
            Err(LayerError::Unreachable(_))
        ));
        assert_eq!(l.writes().len(), 3);
    }

    #[tokio::test]
    async fn a_cut_witness_fails_while_the_shared_one_stays_up() {
        let shared = sre_core::testing::MemWitness::new();
        let a = CutWitness::new(Arc::new(shared.clone()));
        a.set_cut(true);
        assert!(a.read().await.is_err());
        assert!(shared.read().await.is_ok());
        a.set_cut(false);
        assert!(a.read().await.is_ok());
    }
}
