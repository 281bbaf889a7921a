//! The `sre-core` resolver contract against each real DNS server started by
//! `cargo xtask services up`, plus the failures a quorum must count as *unknown*: a
//! server that never answers, a closed port, SERVFAIL and REFUSED.

use sre_adapter_dns::{DnsServer, HickoryResolver};
use sre_core::ports::{LookupOutcome, RecordKind, Resolver};
use sre_core::testing::contract::{self, ResolverFixture};
use sre_core::testing::test_env;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

fn resolver(name: &str, addr: SocketAddr, timeout: Duration) -> HickoryResolver {
    let mut s = DnsServer::new(name, addr);
    s.timeout = timeout;
    HickoryResolver::new(&s).expect("build resolver")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_contract_against_each_server() {
    let list = test_env("SRE_TEST_DNS_RESOLVERS");
    let addrs: Vec<SocketAddr> = list
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|e| panic!("bad address {s:?}: {e}"))
        })
        .collect();
    assert!(addrs.len() >= 3, "a quorum needs three servers: {list}");
    let fixture = ResolverFixture::sre_test();
    for (i, addr) in addrs.iter().enumerate() {
        let r = resolver(&format!("test-{i}"), *addr, Duration::from_secs(2));
        assert_eq!(r.addr(), *addr);
        contract::resolver(&r, &fixture).await;
        // Asked twice, a name still gets a fresh, identical answer (nothing cached wrongly).
        assert_eq!(
            r.lookup(&fixture.nxdomain_name, RecordKind::A).await,
            LookupOutcome::NxDomain
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_a_timeout() {
    // Bound but never read: queries vanish like packets into a partition.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let r = resolver("silent", addr, Duration::from_millis(500));
    assert_eq!(
        r.lookup("region-b.health.sre.test", RecordKind::A).await,
        LookupOutcome::Timeout
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_never_an_answer() {
    let addr = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind");
    let r = resolver("closed", addr, Duration::from_millis(500));
    let got = r.lookup("region-b.health.sre.test", RecordKind::A).await;
    assert!(
        matches!(got, LookupOutcome::Timeout | LookupOutcome::Error(_)),
        "{got:?}"
    );
}

/// A one-socket DNS server that answers every query with `rcode` and no records.
fn scripted_server(rcode: u8) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = sock.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // QR: this is a response
            reply[3] = 0x80 | (rcode & 0x0f); // RA + response code
            // No OPT record in the reply: keep the question only.
            reply[10] = 0;
            reply[11] = 0;
            let question_end = question_end(&reply).unwrap_or(n);
            reply.truncate(question_end);
            let _ = sock.send_to(&reply, peer);
        }
    });
    addr
}

/// End of the (single) question section of a DNS message.
fn question_end(msg: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let len = usize::from(*msg.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        i += len;
    }
    Some(i + 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_and_refused_are_reported_as_such() {
    let servfail = resolver("servfail", scripted_server(2), Duration::from_secs(2));
    assert_eq!(
        servfail
            .lookup("region-b.health.sre.test", RecordKind::A)
            .await,
        LookupOutcome::ServFail
    );
    let refused = resolver("refused", scripted_server(5), Duration::from_secs(2));
    assert_eq!(
        refused
            .lookup("region-b.health.sre.test", RecordKind::A)
            .await,
        LookupOutcome::Refused
    );
}

/// Asks each server for region-b's health name and classifies the answers as the
/// failover quorum does.
async fn ask_about_region_b(
    servers: Vec<(&'static str, SocketAddr)>,
) -> Vec<sre_failover::model::Reachability> {
    let mut answers = Vec::new();
    for (name, addr) in servers {
        let r = resolver(name, addr, Duration::from_millis(500));
        answers.push(sre_failover::model::Reachability::from(
            &r.lookup("region-b.health.sre.test", RecordKind::A).await,
        ));
    }
    answers
}

/// The failover quorum over real servers: one honest unbound, one lying unbound (it says
/// region-b is gone), one that never answers and one that is down. No 2-of-3 decision
/// comes out either way, which is what keeps a single liar from causing a promotion;
/// with two honest servers and the liar, the honest answer wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_liar_one_timeout_one_down_cannot_make_a_quorum() {
    use sre_failover::model::Reachability;
    let honest: Vec<SocketAddr> = test_env("SRE_TEST_DNS_RESOLVERS")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let liar: SocketAddr = test_env("SRE_TEST_DNS_LIAR").parse().expect("liar address");
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let down = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind");
    let count = |v: &[Reachability], want: Reachability| v.iter().filter(|a| **a == want).count();

    let answers = ask_about_region_b(vec![
        ("honest", honest[0]),
        ("liar", liar),
        ("silent", silent.local_addr().expect("addr")),
    ])
    .await;
    assert_eq!(
        answers,
        vec![
            Reachability::Reachable,
            Reachability::Unreachable,
            Reachability::Unknown
        ],
        "the liar really lies and the silent server is unknown, not unreachable"
    );
    assert!(
        count(&answers, Reachability::Unreachable) < 2,
        "no quorum says region-b is gone"
    );
    assert!(
        count(&answers, Reachability::Reachable) < 2,
        "no quorum says it is there either"
    );

    let answers =
        ask_about_region_b(vec![("honest", honest[0]), ("liar", liar), ("down", down)]).await;
    assert_eq!(count(&answers, Reachability::Unreachable), 1, "{answers:?}");

    let answers = ask_about_region_b(vec![
        ("honest-1", honest[0]),
        ("honest-2", honest[1]),
        ("liar", liar),
    ])
    .await;
    assert_eq!(
        count(&answers, Reachability::Reachable),
        2,
        "two honest answers outvote the liar: {answers:?}"
    );
    drop(silent);
}
