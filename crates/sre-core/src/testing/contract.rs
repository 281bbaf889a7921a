//! Contract suites: the behaviour every implementation of a port must show.
//!
//! Each suite is an async function that panics with a message naming the broken rule.
//! The fakes in [`super::fakes`] run them in this crate's tests; each adapter crate runs
//! the same functions against its real backend (S3 server, OpenBao, DNS) in
//! `cargo xtask test`. Suites take a `scope` (a unique key prefix or path) so that runs
//! against a shared server never see each other's data.

use crate::ports::{
    CasOutcome, LeaseFormat, LeaseRecord, LookupOutcome, ObjectStore, PutCondition, RecordKind,
    Resolver, SecretData, SecretStore, Witness, WitnessRead,
};
use crate::{Generation, PortError, RegionId};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn is_precondition(r: &Result<impl std::fmt::Debug, PortError>) -> bool {
    matches!(r, Err(PortError::PreconditionFailed { .. }))
}

/// Basic object-store behaviour: reads, conditional writes, listing and deletes.
pub async fn object_store(store: &dyn ObjectStore, scope: &str) {
    let k1 = format!("{scope}/a/one");
    let k2 = format!("{scope}/a/two");
    let k3 = format!("{scope}/b/three");

    assert_eq!(
        store.get(&k1).await.expect("get missing"),
        None,
        "missing key reads as None"
    );

    let m1 = store
        .put(&k1, b"v1".to_vec(), PutCondition::IfAbsent)
        .await
        .expect("create");
    assert!(!m1.etag.is_empty(), "put returns an etag");
    let again = store
        .put(&k1, b"other".to_vec(), PutCondition::IfAbsent)
        .await;
    assert!(
        is_precondition(&again),
        "IfAbsent on an existing key must fail: {again:?}"
    );
    let got = store.get(&k1).await.expect("get").expect("present");
    assert_eq!(
        got.body, b"v1",
        "a failed conditional write must not change the object"
    );
    assert_eq!(
        got.meta.etag, m1.etag,
        "get returns the etag that put returned"
    );

    let stale = store
        .put(
            &k1,
            b"x".to_vec(),
            PutCondition::IfMatch("\"not-the-etag\"".into()),
        )
        .await;
    assert!(
        is_precondition(&stale),
        "IfMatch with a wrong etag must fail: {stale:?}"
    );
    let m2 = store
        .put(&k1, b"v2".to_vec(), PutCondition::IfMatch(m1.etag.clone()))
        .await
        .expect("if-match");
    assert_ne!(m2.etag, m1.etag, "new content gets a new etag");
    let replay = store
        .put(&k1, b"v3".to_vec(), PutCondition::IfMatch(m1.etag.clone()))
        .await;
    assert!(
        is_precondition(&replay),
        "IfMatch with the previous etag must fail: {replay:?}"
    );
    let absent = store
        .put(&k2, b"x".to_vec(), PutCondition::IfMatch(m1.etag.clone()))
        .await;
    assert!(
        is_precondition(&absent),
        "IfMatch on a missing key must fail: {absent:?}"
    );

    store
        .put(&k2, b"two".to_vec(), PutCondition::Always)
        .await
        .expect("put always");
    store
        .put(&k3, b"three".to_vec(), PutCondition::Always)
        .await
        .expect("put always");
    let listed: Vec<String> = store
        .list(&format!("{scope}/a/"))
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(
        listed,
        vec![k1.clone(), k2.clone()],
        "list returns keys under the prefix, in order"
    );

    store.delete(&k2).await.expect("delete");
    assert_eq!(
        store.get(&k2).await.expect("get"),
        None,
        "deleted key reads as None"
    );
    store
        .delete(&k2)
        .await
        .expect("deleting a missing key succeeds");
    let listed = store.list(&format!("{scope}/")).await.expect("list");
    assert_eq!(listed.len(), 2, "deleted keys are not listed: {listed:?}");
}

/// Versioned-bucket behaviour: versions, delete markers and permanent version deletes.
pub async fn object_store_versions(store: &dyn ObjectStore, scope: &str) {
    let k = format!("{scope}/versioned");
    store
        .put(&k, b"1".to_vec(), PutCondition::Always)
        .await
        .expect("put 1");
    store
        .put(&k, b"2".to_vec(), PutCondition::Always)
        .await
        .expect("put 2");
    let vs = store.list_versions(&k).await.expect("list versions");
    assert_eq!(vs.len(), 2, "two writes keep two versions: {vs:?}");
    assert!(vs[0].is_latest && !vs[1].is_latest, "newest first: {vs:?}");

    store.delete(&k).await.expect("delete");
    let vs = store.list_versions(&k).await.expect("list versions");
    assert_eq!(vs.len(), 3, "delete adds a marker: {vs:?}");
    assert!(
        vs[0].is_delete_marker && vs[0].is_latest,
        "marker is latest: {vs:?}"
    );
    assert_eq!(store.get(&k).await.expect("get"), None);

    for v in &vs {
        store
            .delete_version(&k, &v.version_id)
            .await
            .expect("delete version");
    }
    let vs = store.list_versions(&k).await.expect("list versions");
    assert!(vs.is_empty(), "erasure leaves no version behind: {vs:?}");
}

/// Two writers racing to create and then to replace the same key: exactly one wins
/// each round. `a` and `b` must be two independent handles on the same backend.
pub async fn object_store_race(a: &dyn ObjectStore, b: &dyn ObjectStore, scope: &str) {
    let k = format!("{scope}/race");
    for round in 0..10u8 {
        let base = a.get(&k).await.expect("get");
        let cond = base.as_ref().map_or(PutCondition::IfAbsent, |o| {
            PutCondition::IfMatch(o.meta.etag.clone())
        });
        let (ra, rb) = futures_join(
            a.put(&k, vec![b'a', round], cond.clone()),
            b.put(&k, vec![b'b', round], cond),
        )
        .await;
        let wins = usize::from(ra.is_ok()) + usize::from(rb.is_ok());
        assert_eq!(
            wins, 1,
            "round {round}: exactly one writer wins: {ra:?} {rb:?}"
        );
        let loser = if ra.is_ok() { &rb } else { &ra };
        assert!(
            is_precondition(loser),
            "the loser sees PreconditionFailed: {loser:?}"
        );
        let stored = a.get(&k).await.expect("get").expect("present");
        let winner = if ra.is_ok() { b'a' } else { b'b' };
        assert_eq!(
            stored.body,
            vec![winner, round],
            "the stored body is the winner's"
        );
    }
}

async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

/// KV v2 behaviour: versions, check-and-set, custom metadata, destroy.
pub async fn secret_store(store: &dyn SecretStore, scope: &str) {
    let p = format!("{scope}/api-token");
    assert_eq!(store.read(&p, None).await.expect("read missing"), None);
    assert_eq!(store.metadata(&p).await.expect("metadata missing"), None);

    let d1 = SecretData::from_pairs([("token", "one")]);
    let d2 = SecretData::from_pairs([("token", "two")]);
    assert_eq!(
        store
            .write(&p, &d1, Some(0))
            .await
            .expect("create with cas 0"),
        1
    );
    let dup = store.write(&p, &d2, Some(0)).await;
    assert!(
        is_precondition(&dup),
        "cas 0 on an existing path fails: {dup:?}"
    );
    let stale = store.write(&p, &d2, Some(7)).await;
    assert!(
        is_precondition(&stale),
        "cas with a wrong version fails: {stale:?}"
    );
    assert_eq!(store.write(&p, &d2, Some(1)).await.expect("cas 1"), 2);

    let latest = store.read(&p, None).await.expect("read").expect("present");
    assert_eq!((latest.version, latest.data.get("token")), (2, Some("two")));
    let v1 = store
        .read(&p, Some(1))
        .await
        .expect("read v1")
        .expect("v1 present");
    assert_eq!(
        v1.data.get("token"),
        Some("one"),
        "old versions stay readable"
    );

    let meta = store
        .metadata(&p)
        .await
        .expect("metadata")
        .expect("present");
    assert_eq!(meta.current_version, 2);
    let nums: Vec<u64> = meta.versions.iter().map(|v| v.version).collect();
    assert_eq!(nums, vec![1, 2], "versions listed oldest first");

    let custom = BTreeMap::from([("sre.rotation/current".to_owned(), "2".to_owned())]);
    store
        .set_custom_metadata(&p, &custom)
        .await
        .expect("set custom");
    let meta = store
        .metadata(&p)
        .await
        .expect("metadata")
        .expect("present");
    assert_eq!(meta.custom, custom, "custom metadata round-trips");

    store.destroy_versions(&p, &[1]).await.expect("destroy");
    assert_eq!(
        store.read(&p, Some(1)).await.expect("read destroyed"),
        None,
        "destroyed versions are gone"
    );
    let meta = store
        .metadata(&p)
        .await
        .expect("metadata")
        .expect("present");
    assert!(
        meta.versions.iter().any(|v| v.version == 1 && v.destroyed),
        "metadata says v1 is destroyed"
    );
    assert_eq!(
        store
            .write(&p, &d1, None)
            .await
            .expect("unconditional write"),
        3
    );
}

/// The names and addresses of the `sre.test.` zone served by the fake and by the DNS
/// servers that `cargo xtask services up` starts.
#[derive(Debug, Clone)]
pub struct ResolverFixture {
    /// A name with one A record.
    pub a_name: String,
    /// Its address.
    pub a_addr: IpAddr,
    /// A name with an A record and no AAAA record (asked for AAAA: NODATA).
    pub nodata_name: String,
    /// Its A address.
    pub nodata_a_addr: IpAddr,
    /// A name with both A and AAAA.
    pub dual_name: String,
    /// Its A address.
    pub dual_a_addr: IpAddr,
    /// Its AAAA address.
    pub dual_aaaa_addr: IpAddr,
    /// A name that does not exist.
    pub nxdomain_name: String,
}

impl ResolverFixture {
    /// The fixture zone.
    #[must_use]
    pub fn sre_test() -> Self {
        Self {
            a_name: "region-b.health.sre.test".into(),
            a_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            nodata_name: "region-a.health.sre.test".into(),
            nodata_a_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            dual_name: "dual.sre.test".into(),
            dual_a_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
            dual_aaaa_addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3)),
            nxdomain_name: "no-such-region.health.sre.test".into(),
        }
    }
}

/// Resolver behaviour against the fixture zone: answers, NXDOMAIN and NODATA are told apart.
pub async fn resolver(r: &dyn Resolver, z: &ResolverFixture) {
    assert!(
        !r.name().is_empty(),
        "a resolver has a name for quorum reports"
    );
    let got = r.lookup(&z.a_name, RecordKind::A).await;
    assert_eq!(
        got,
        LookupOutcome::Answer(vec![z.a_addr]),
        "A lookup of {}",
        z.a_name
    );
    let got = r.lookup(&format!("{}.", z.a_name), RecordKind::A).await;
    assert_eq!(
        got,
        LookupOutcome::Answer(vec![z.a_addr]),
        "a trailing dot names the same FQDN"
    );
    let got = r.lookup(&z.dual_name, RecordKind::Aaaa).await;
    assert_eq!(
        got,
        LookupOutcome::Answer(vec![z.dual_aaaa_addr]),
        "AAAA lookup of {}",
        z.dual_name
    );
    let got = r.lookup(&z.nodata_name, RecordKind::Aaaa).await;
    assert_eq!(
        got,
        LookupOutcome::NoData,
        "AAAA of an A-only name is NODATA, not NXDOMAIN"
    );
    let got = r.lookup(&z.nxdomain_name, RecordKind::A).await;
    assert_eq!(got, LookupOutcome::NxDomain, "a missing name is NXDOMAIN");
}

fn lease(holder: &str, generation: u64, at: DateTime<Utc>) -> LeaseRecord {
    LeaseRecord {
        format: LeaseFormat::V1,
        holder: RegionId::new(holder),
        generation: Generation(generation),
        acquired_at: at,
        renewed_at: at,
        ttl_ms: 30_000,
        released: false,
    }
}

/// Witness behaviour: create-once, compare-and-swap, and one winner per race.
/// `w` and `w2` must be two independent handles on the same, fresh (empty) witness.
pub async fn witness(w: &dyn Witness, w2: &dyn Witness) {
    let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    assert_eq!(
        w.read().await.expect("read"),
        WitnessRead::Absent,
        "a fresh witness holds no lease"
    );

    let a1 = lease("region-a", 1, t0);
    let CasOutcome::Swapped(rev1) = w.compare_and_swap(None, &a1).await.expect("create") else {
        panic!("creating the first lease must succeed");
    };
    assert_eq!(
        w.compare_and_swap(None, &lease("region-b", 1, t0))
            .await
            .expect("cas"),
        CasOutcome::Conflict,
        "creating when a lease exists is a conflict, not an error"
    );
    match w2.read().await.expect("read") {
        WitnessRead::Present { record, revision } => {
            assert_eq!(record, a1, "the stored record reads back unchanged");
            assert_eq!(revision, rev1, "the read revision is the one CAS returned");
        }
        other => panic!("expected the lease, read {other:?}"),
    }

    let mut a1r = a1.clone();
    a1r.renewed_at = t0 + chrono::Duration::seconds(10);
    let CasOutcome::Swapped(rev2) = w.compare_and_swap(Some(&rev1), &a1r).await.expect("renew")
    else {
        panic!("renewing at the current revision must succeed");
    };
    assert_ne!(rev2, rev1, "a write changes the revision");
    assert_eq!(
        w2.compare_and_swap(Some(&rev1), &lease("region-b", 2, t0))
            .await
            .expect("cas"),
        CasOutcome::Conflict,
        "a stale revision loses"
    );

    // Two regions race to take over from the same revision: exactly one may win.
    let mut rev = rev2;
    for round in 0..10u64 {
        let b = lease("region-b", 2 + round, t0);
        let c = lease("region-c", 2 + round, t0);
        let (rb, rc) = futures_join(
            w.compare_and_swap(Some(&rev), &b),
            w2.compare_and_swap(Some(&rev), &c),
        )
        .await;
        let (rb, rc) = (rb.expect("cas b"), rc.expect("cas c"));
        let winners: Vec<&CasOutcome> = [&rb, &rc]
            .into_iter()
            .filter(|o| matches!(o, CasOutcome::Swapped(_)))
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one takeover wins: {rb:?} {rc:?}"
        );
        let (r, expect) = match (&rb, &rc) {
            (CasOutcome::Swapped(r), _) => (r, &b),
            (_, CasOutcome::Swapped(r)) => (r, &c),
            _ => panic!("round {round}: no takeover won"),
        };
        match w.read().await.expect("read") {
            WitnessRead::Present { record, revision } => {
                assert_eq!(&record, expect, "the stored lease is the winner's");
                assert_eq!(&revision, r);
            }
            other => panic!("expected the winner's lease, read {other:?}"),
        }
        rev = r.clone();
    }
}
