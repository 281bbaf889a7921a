//! End to end: two `failover-controller` processes (regions `eu` and `us`) against the
//! real S3 server that `cargo xtask services up` starts, three loopback DNS servers whose
//! answers the test controls, and a fault-injecting TCP proxy between `eu` and S3.
//!
//! `eu` bootstraps the lease. The test then cuts `eu` off the witness (the proxy drops
//! every connection) and makes two of the three resolvers say `eu` is gone (the third
//! keeps answering for it, a stale resolver the 2-of-3 quorum must outvote). Sampling
//! both processes' `/metrics` every 250 ms, it asserts that at most one of them reports
//! `failover_lease_status 1` at every sample and that `us` becomes active within
//! TTL + renew interval + skew margin + slack. Finally `us` gets SIGTERM, exits 0, and
//! the lease at S3 is marked released.

use sre_adapter_s3::{S3Config, S3ObjectStore, S3Witness, Versioning};
use sre_core::ports::{Witness, WitnessRead};
use sre_core::testing::test_env;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// Short timings the timing lint accepts: 2s x (1 + 1) + 1s < 6s.
const RENEW: Duration = Duration::from_secs(2);
const TTL: Duration = Duration::from_secs(6);
const SKEW: Duration = Duration::from_secs(1);
/// Process start-up, a tick (500 ms), a sample (250 ms) and a loaded 2-core machine
/// running other test binaries: generous, since the property under test is "promotes
/// within about one lease period", not a latency figure (nextest runs this test alone in
/// its group, see .config/nextest.toml).
const SLACK: Duration = Duration::from_secs(15);
const SAMPLE: Duration = Duration::from_millis(250);

type Names = Arc<Mutex<BTreeSet<String>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A UDP DNS server answering `A 127.0.0.1` for the names in `live` and NXDOMAIN for
/// every other name.
fn dns_server(live: Names) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
    let addr = sock.local_addr().expect("dns addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if let Some(reply) = answer(&buf[..n], &live) {
                let _ = sock.send_to(&reply, peer);
            }
        }
    });
    addr
}

fn answer(q: &[u8], live: &Names) -> Option<Vec<u8>> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let end = i + 4;
    let name = labels.join(".");
    let is_live = lock(live).contains(&name);
    let mut r = q.get(..end)?.to_vec();
    r[2] = 0x84 | (q[2] & 0x01); // QR + AA, RD copied
    r[3] = if is_live { 0x80 } else { 0x83 }; // RA + NOERROR / NXDOMAIN
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if is_live && qtype == 1 {
        r[7] = 1;
        // name = pointer to the question, A, IN, TTL 1, 4 bytes: 127.0.0.1
        r.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 0, 1]);
    }
    Some(r)
}

/// A TCP proxy to `upstream` that the test can cut: existing connections are shut
/// down and new ones are closed at once.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(1))
                else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                lock(&o).extend([c2, s2]);
                pipe(client.try_clone(), server.try_clone());
                pipe(server.try_clone(), client.try_clone());
            }
        });
        Self { addr, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in lock(&self.open).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(from: std::io::Result<TcpStream>, to: std::io::Result<TcpStream>) {
    if let (Ok(mut from), Ok(mut to)) = (from, to) {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
        });
    }
}

/// Kills the controllers even when an assertion fails.
struct Controllers(Vec<(String, Child)>);

impl Drop for Controllers {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Scrapes `/metrics` and returns the value of the unlabelled metric `name`.
fn metric(port: u16, name: &str) -> Option<f64> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn active(port: u16) -> bool {
    metric(port, "failover_lease_status") == Some(1.0)
}

struct Env {
    s3_endpoint: String,
    bucket: String,
    dns: Vec<SocketAddr>,
    logs: std::path::PathBuf,
}

fn spawn(env: &Env, region: &str, s3_endpoint: &str, port: u16) -> Child {
    let dns: Vec<String> = env.dns.iter().map(ToString::to_string).collect();
    let log = std::fs::File::create(env.logs.join(format!("{region}.log"))).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_failover-controller"))
        .env_clear()
        .envs([
            ("REGION", region),
            ("PEER_REGION", if region == "eu" { "us" } else { "eu" }),
            ("DNS_WITNESSES", &dns.join(",")),
            ("QUORUM", "2"),
            ("AWS_ACCESS_KEY_ID", &test_env("SRE_TEST_S3_ACCESS_KEY")),
            ("AWS_SECRET_ACCESS_KEY", &test_env("SRE_TEST_S3_SECRET_KEY")),
            ("FAILOVER__WITNESS__KIND", "s3"),
            ("FAILOVER__WITNESS__ENDPOINT", s3_endpoint),
            ("FAILOVER__WITNESS__BUCKET", &env.bucket),
            (
                "FAILOVER__WITNESS__S3_REGION",
                &test_env("SRE_TEST_S3_REGION"),
            ),
            ("FAILOVER__WITNESS__FORCE_PATH_STYLE", "true"),
            ("FAILOVER__HEALTH__ZONE", "e2e.test"),
            ("FAILOVER__TIMINGS__RENEW_INTERVAL", "2s"),
            ("FAILOVER__TIMINGS__LEASE_TTL", "6s"),
            ("FAILOVER__TIMINGS__SKEW_MARGIN", "1s"),
            ("FAILOVER__TIMINGS__WITNESS_TIMEOUT", "1s"),
            ("FAILOVER__TIMINGS__DNS_TIMEOUT", "500ms"),
            ("FAILOVER__TICK", "500ms"),
            ("FAILOVER__LISTEN", &format!("127.0.0.1:{port}")),
            ("FAILOVER__LOG_FORMAT", "text"),
            ("RUST_LOG", "info"),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start failover-controller")
}

fn s3_store(endpoint: &str, bucket: &str) -> S3ObjectStore {
    let mut c = S3Config::new(
        test_env("SRE_TEST_S3_REGION"),
        bucket,
        test_env("SRE_TEST_S3_ACCESS_KEY"),
        test_env("SRE_TEST_S3_SECRET_KEY"),
    );
    c.endpoint = Some(endpoint.to_owned());
    c.force_path_style = true;
    S3ObjectStore::new(&c)
}

fn logs_of(env: &Env) -> String {
    ["eu", "us"]
        .iter()
        .map(|r| {
            let text =
                std::fs::read_to_string(env.logs.join(format!("{r}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            format!("--- {r} (last lines, newest first)\n{}", tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_peer_takes_over_when_the_active_loses_the_witness_and_the_quorum() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let s3_endpoint = test_env("SRE_TEST_S3_ENDPOINT");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let bucket = format!("sre-failover-e2e-{}-{nanos}", std::process::id());
    let store = s3_store(&s3_endpoint, &bucket);
    rt.block_on(store.ensure_bucket(Versioning::Unchanged))
        .expect("create bucket");
    let upstream: SocketAddr = s3_endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("SRE_TEST_S3_ENDPOINT is http://ip:port");
    let proxy = Proxy::start(upstream);

    let names: Vec<Names> = (0..3).map(|_| Names::default()).collect();
    for n in &names {
        lock(n).extend([
            "eu.health.e2e.test".to_owned(),
            "us.health.e2e.test".to_owned(),
        ]);
    }
    // Removed when the test ends (also on a failed assertion: the logs are printed in
    // the failure message first).
    let logs_dir = tempfile::Builder::new()
        .prefix("sre-failover-e2e-")
        .tempdir()
        .expect("log dir");
    let logs = logs_dir.path().to_path_buf();
    let env = Env {
        s3_endpoint: s3_endpoint.clone(),
        bucket,
        dns: names.iter().map(|n| dns_server(n.clone())).collect(),
        logs,
    };
    let (eu_port, us_port) = (free_port(), free_port());
    let mut procs = Controllers(vec![
        (
            "eu".into(),
            spawn(&env, "eu", &format!("http://{}", proxy.addr), eu_port),
        ),
        ("us".into(), spawn(&env, "us", &env.s3_endpoint, us_port)),
    ]);

    bootstrap(&env, eu_port, us_port);
    takeover(&env, &proxy, &names, eu_port, us_port);
    let us = &mut procs.0[1].1;
    shutdown_releases_the_lease(&env, us, &rt, store);
}

/// Phase 1: eu (first in promotion order) takes the lease and keeps it.
fn bootstrap(env: &Env, eu_port: u16, us_port: u16) {
    let start = Instant::now();
    let mut eu_active = false;
    while start.elapsed() < Duration::from_secs(30) {
        let (a, b) = (active(eu_port), active(us_port));
        assert!(!(a && b), "both active before any fault\n{}", logs_of(env));
        assert!(
            !b,
            "us must not take the lease from a healthy eu\n{}",
            logs_of(env)
        );
        if a {
            eu_active = true;
            break;
        }
        std::thread::sleep(SAMPLE);
    }
    assert!(eu_active, "eu never became active\n{}", logs_of(env));
    // Let eu renew a few times with us watching.
    let settle = Instant::now();
    while settle.elapsed() < RENEW * 2 {
        assert!(
            active(eu_port) && !active(us_port),
            "eu lost the lease\n{}",
            logs_of(env)
        );
        std::thread::sleep(SAMPLE);
    }
}

/// Phase 2: eu loses the witness and two of three resolvers say it is gone; us takes
/// over within the bound and never while eu is active.
fn takeover(env: &Env, proxy: &Proxy, names: &[Names], eu_port: u16, us_port: u16) {
    proxy.cut();
    lock(&names[0]).remove("eu.health.e2e.test");
    lock(&names[1]).remove("eu.health.e2e.test");
    let cut_at = Instant::now();
    let bound = TTL + RENEW + SKEW + SLACK;
    let mut us_active_after = None;
    let mut samples = 0;
    while cut_at.elapsed() < bound + Duration::from_secs(10) {
        let (a, b) = (active(eu_port), active(us_port));
        samples += 1;
        assert!(
            !(a && b),
            "split brain {:?} after the cut\n{}",
            cut_at.elapsed(),
            logs_of(env)
        );
        if b {
            us_active_after = Some(cut_at.elapsed());
            break;
        }
        std::thread::sleep(SAMPLE);
    }
    let Some(took) = us_active_after else {
        panic!(
            "us never became active ({samples} samples)\n{}",
            logs_of(env)
        );
    };
    assert!(
        took <= bound,
        "us became active after {took:?}, bound {bound:?}\n{}",
        logs_of(env)
    );
    // A few more samples: still exactly one active, and eu knows it lost the witness.
    for _ in 0..8 {
        assert!(
            active(us_port) && !active(eu_port),
            "after takeover\n{}",
            logs_of(env)
        );
        std::thread::sleep(SAMPLE);
    }
    assert_eq!(metric(eu_port, "failover_witness_reachable"), Some(0.0));
    assert!(metric(us_port, "failover_last_failover_time").is_some_and(|t| t > 0.0));
}

/// Phase 3: SIGTERM releases the lease and exits 0.
fn shutdown_releases_the_lease(
    env: &Env,
    us: &mut Child,
    rt: &tokio::runtime::Runtime,
    store: S3ObjectStore,
) {
    let killed = Command::new("kill")
        .args(["-TERM", &us.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(killed, "could not send SIGTERM");
    let stop = Instant::now();
    let mut exit = None;
    while exit.is_none() && stop.elapsed() < Duration::from_secs(15) {
        exit = us.try_wait().ok().flatten();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(0),
        "us exit\n{}",
        logs_of(env)
    );
    let witness = S3Witness::new(store, "failover/lease.json");
    match rt.block_on(witness.read()) {
        Ok(WitnessRead::Present { record, .. }) => {
            assert_eq!(record.holder.as_str(), "us");
            assert!(
                record.released,
                "lease not released on shutdown: {record:?}"
            );
        }
        other => panic!("unexpected witness state {other:?}"),
    }
}
