//! A real Prometheus alerting rule, end to end: the test runs its own Prometheus and
//! Alertmanager (the binaries `cargo xtask services up` installs) on free loopback ports
//! with configs it writes into a temp dir, and serves the metric they scrape itself.
//! `sre_e2e_queue_depth > 100` fires `SreE2eQueueDepthHigh`; the real Alertmanager posts
//! it with its bearer token to our webhook, which scales the fake workload up and verifies
//! with `PromQL` against the same Prometheus. `recovers`: the test lowers the metric once
//! the action is recorded and the verification holds. `stuck`: the metric stays high, the
//! verification times out, the scale-up is rolled back and humans are told.
//!
//! Own processes rather than the shared servers: the rule, the scrape target and the
//! webhook URL are this test's, so nothing another test does can fire or swallow it.

use super::{Posts, TOKEN, escalation_receiver, get, policy};
use remediation_webhook::config::BearerToken;
use remediation_webhook::notify::HttpNotifier;
use remediation_webhook::server::{AppState, Ports, Settings, TokioSleeper, Verifier, start};
use serde_json::Value;
use sre_core::SystemClock;
use sre_core::config::{Format, Source};
use sre_remediation::actions::{WorkloadKind, WorkloadRef};
use sre_remediation::execute::Executors;
use sre_remediation::rules::RuleSet;
use sre_remediation::testing::FakeWorkloads;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The alert the test's Prometheus rule raises.
const ALERT: &str = "SreE2eQueueDepthHigh";
/// Above this the rule fires.
const THRESHOLD: f64 = 100.0;
const NAMESPACE: &str = "sre-e2e";

/// The webhook's rules for the test alert: scale up by one, verify that the queue drained
/// (`recovers` gets a generous minute, `stuck` gives up after 4 s), scale back down and
/// page `sre-e2e` when it did not help.
fn rules() -> RuleSet {
    let rule = |name: &str, timeout: &str| {
        format!(
            r#"  - name: e2e/{name}
    alert: {ALERT}
    matchers: [deployment={name}]
    action: {{kind: scale_up, step: 1, max_replicas: 10, cost_per_replica_cents: 0}}
    target: {{kind: deployment, namespace: "${{namespace}}", name: "${{deployment}}"}}
    verify:
      query: 'sre_e2e_queue_depth{{namespace="${{namespace}}",deployment="${{deployment}}"}} > {THRESHOLD}'
      expect: empty
      timeout: {timeout}
    rollback: {{kind: scale_down, step: 1, min_replicas: 1}}
    escalate_to: sre-e2e
"#
        )
    };
    let text = format!("rules:\n{}{}", rule("recovers", "60s"), rule("stuck", "4s"));
    RuleSet::load(&Source::Text {
        name: "e2e-rules.yaml".into(),
        text,
        format: Format::Yaml,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The Prometheus rule file: one alert on the exporter's metric, firing at once.
fn prometheus_rules() -> String {
    format!(
        "groups:
  - name: sre-e2e
    rules:
      - alert: {ALERT}
        expr: sre_e2e_queue_depth > {THRESHOLD}
        for: 0s
        labels: {{severity: page}}
        annotations: {{summary: queue depth above {THRESHOLD}}}
"
    )
}

/// Prometheus scraping the test's exporter and evaluating the rule every second.
fn prometheus_yml(exporter: &str, alertmanager_port: u16, rules: &Path) -> String {
    format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ['{rules}']
alerting:
  alertmanagers:
    - static_configs: [{{targets: ['127.0.0.1:{alertmanager_port}']}}]
scrape_configs:
  - job_name: sre-e2e
    honor_labels: true
    static_configs: [{{targets: ['{exporter}']}}]
",
        rules = rules.display()
    )
}

/// Alertmanager posting every group (one per deployment) to our webhook with its token,
/// after a second; `repeat_interval` is long so that what arrives is one delivery per
/// change (duplicates would be deduplicated anyway).
fn alertmanager_yml(webhook: &str) -> String {
    format!(
        "route:
  receiver: webhook
  group_by: [alertname, deployment]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: {webhook}/webhook/alertmanager
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials: {TOKEN}}}
"
    )
}

/// The metric the test controls: `sre_e2e_queue_depth` per deployment, served as
/// Prometheus text on `/metrics` of an ephemeral loopback port.
#[derive(Clone, Default)]
struct Exporter(Arc<Mutex<BTreeMap<String, f64>>>);

impl Exporter {
    fn set(&self, deployment: &str, value: f64) {
        self.0
            .lock()
            .expect("lock")
            .insert(deployment.to_owned(), value);
    }

    fn text(&self) -> String {
        let mut out = String::from("# TYPE sre_e2e_queue_depth gauge\n");
        for (deployment, value) in self.0.lock().expect("lock").iter() {
            let _ = writeln!(
                out,
                "sre_e2e_queue_depth{{namespace=\"{NAMESPACE}\",deployment=\"{deployment}\"}} {value}"
            );
        }
        out
    }

    /// Serves `/metrics`; returns `host:port`.
    async fn serve(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let me = me.clone();
                async move { me.text() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr.to_string()
    }
}

/// A child process that is killed (and reaped) when the test ends, passing or not.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus and Alertmanager of one test, with their temp dir; dropping it stops both.
struct Alerting {
    /// Declared first: the processes stop before their directory goes.
    procs: Vec<Proc>,
    prom_url: String,
    _dir: tempfile::TempDir,
}

/// `$var` when set, else the first of `names` on `PATH`.
fn find_bin(var: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "none of {names:?} on PATH and {var} is not set: \
                 `cargo xtask services up` installs them"
            )
        })
}

/// A port that was free a moment ago (the child binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
        .port()
}

fn spawn(name: &'static str, bin: &Path, args: &[String], dir: &Path) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    Proc { name, child, log }
}

/// Waits (bounded) until `base/-/ready` answers 200, failing fast when the child exits.
async fn ready(proc: &mut Proc, base: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_mins(1);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("{} exited ({status}):\n{}", proc.name, proc.log_tail());
        }
        let ok = http
            .get(format!("{base}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} not ready within 60 s:\n{}", proc.name, proc.log_tail());
}

impl Alerting {
    /// Alertmanager posting to `webhook`, then Prometheus scraping `exporter`.
    async fn start(exporter: &str, webhook: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let am_port = free_port();
        let am_conf = dir.path().join("alertmanager.yml");
        std::fs::write(&am_conf, alertmanager_yml(webhook)).expect("alertmanager.yml");
        let am_bin = find_bin(
            "SRE_TEST_ALERTMANAGER_BIN",
            &["prometheus-alertmanager", "alertmanager"],
        );
        let mut am = spawn(
            "alertmanager",
            &am_bin,
            &[
                format!("--config.file={}", am_conf.display()),
                format!("--storage.path={}", dir.path().join("am-data").display()),
                format!("--web.listen-address=127.0.0.1:{am_port}"),
                "--cluster.listen-address=".into(),
            ],
            dir.path(),
        );
        ready(&mut am, &format!("http://127.0.0.1:{am_port}")).await;

        let prom_port = free_port();
        let rules = dir.path().join("rules.yml");
        std::fs::write(&rules, prometheus_rules()).expect("rules.yml");
        let prom_conf = dir.path().join("prometheus.yml");
        std::fs::write(&prom_conf, prometheus_yml(exporter, am_port, &rules))
            .expect("prometheus.yml");
        let prom_bin = find_bin("SRE_TEST_PROMETHEUS_BIN", &["prometheus"]);
        let mut prom = spawn(
            "prometheus",
            &prom_bin,
            &[
                format!("--config.file={}", prom_conf.display()),
                format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("prom-data").display()
                ),
                format!("--web.listen-address=127.0.0.1:{prom_port}"),
                // Re-send firing alerts every second (default 1m): the first evaluation
                // can run before the notifier has our Alertmanager.
                "--rules.alert.resend-delay=1s".into(),
            ],
            dir.path(),
        );
        let prom_url = format!("http://127.0.0.1:{prom_port}");
        ready(&mut prom, &prom_url).await;
        Self {
            procs: vec![am, prom],
            prom_url,
            _dir: dir,
        }
    }

    fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("--- {}:\n{}", p.name, p.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Serves our webhook (not a dry run) on `listener`, acting on `fake`, verified by
/// `prometheus`, escalating to `hook`.
fn webhook(
    listener: tokio::net::TcpListener,
    fake: Arc<FakeWorkloads>,
    prometheus: &str,
    hook: &str,
) {
    let ports = Ports {
        clock: Arc::new(SystemClock::new()),
        verifier: Some(Verifier {
            query: Arc::new(
                sre_adapter_prometheus::PrometheusClient::new(prometheus, Duration::from_secs(5))
                    .expect("prometheus client"),
            ),
            sleeper: Arc::new(TokioSleeper),
            interval: Duration::from_millis(250),
        }),
        executors: Executors {
            workloads: Some(fake),
            notifier: Some(Arc::new(
                HttpNotifier::new(hook, Duration::from_secs(5)).expect("notifier"),
            )),
            ..Executors::default()
        },
        evidence: None,
    };
    let settings = Settings {
        token: BearerToken::new(TOKEN).expect("non-empty"),
        policy: policy(),
        dry_run: false,
        max_body_bytes: 1024 * 1024,
        queue_capacity: 16,
        runs_kept: 100,
    };
    let state = AppState::new(
        settings,
        rules(),
        sre_core::telemetry::metrics_registry(),
        ports,
    );
    let app = start(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// The firing plan entry for `deployment` in `/runs` that satisfies `done`, if any yet.
async fn entry_for(base: &str, deployment: &str, done: impl Fn(&Value) -> bool) -> Option<Value> {
    let (status, runs) = get(base, "/runs", TOKEN).await;
    assert_eq!(status, 200, "{runs}");
    runs["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["status"] == "firing")
        .flat_map(|r| r["plan"].as_array().cloned().unwrap_or_default())
        .find(|e| e["alertname"] == ALERT && e["target"]["name"] == deployment && done(e))
}

/// Polls `/runs` until `done` holds for `deployment`'s entry; bounded (a liveness limit
/// with room for a loaded machine, not a latency assertion).
async fn wait_for(
    base: &str,
    stack: &Alerting,
    deployment: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Some(e) = entry_for(base, deployment, &done).await {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, runs) = get(base, "/runs", TOKEN).await;
    panic!(
        "{deployment}: {what} not seen within 90 s\nruns: {runs}\n{}",
        stack.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_rule_fires_through_alertmanager_and_the_action_is_verified_or_rolled_back() {
    let recovers = WorkloadRef::new(WorkloadKind::Deployment, NAMESPACE, "recovers");
    let stuck = WorkloadRef::new(WorkloadKind::Deployment, NAMESPACE, "stuck");
    let fake = Arc::new(
        FakeWorkloads::new()
            .with_replicas(&recovers, 3)
            .with_replicas(&stuck, 3),
    );
    let (hook, posts): (String, Posts) = escalation_receiver().await;
    let exporter = Exporter::default();
    exporter.set("recovers", 40.0);
    exporter.set("stuck", 40.0);
    let exporter_addr = exporter.serve().await;
    // Alertmanager needs the webhook's address and the webhook Prometheus': bind the
    // webhook's port first and serve on it once Prometheus is up (Alertmanager posts only
    // after the rule fires; until then nothing connects).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let servers = Alerting::start(&exporter_addr, &base).await;
    webhook(listener, fake.clone(), &servers.prom_url, &hook);

    // The queues start below the threshold (Prometheus scrapes them low); now both back up.
    exporter.set("recovers", 150.0);
    exporter.set("stuck", 150.0);

    // recovers: the rule fired, Alertmanager delivered, the webhook scaled up...
    let acted = wait_for(&base, &servers, "recovers", "the scale-up", |e| {
        e.get("execution").is_some()
    })
    .await;
    assert_eq!(acted["rule"], "e2e/recovers", "{acted}");
    assert_eq!(acted["verdict"], "act", "{acted}");
    assert_eq!(acted["action"]["kind"], "scale_up", "{acted}");
    assert_eq!(acted["target"]["namespace"], NAMESPACE, "{acted}");
    assert_eq!(acted["execution"]["result"], "executed", "{acted}");
    assert_eq!(
        acted["execution"]["outcome"]["after"], "replicas=4",
        "{acted}"
    );
    assert_eq!(fake.replicas(&recovers), Some(4));
    // ...and once the queue drains, the verification against Prometheus holds.
    exporter.set("recovers", 20.0);
    let verified = wait_for(&base, &servers, "recovers", "the verification", |e| {
        e.get("verification").is_some()
    })
    .await;
    assert_eq!(verified["verification"]["result"], "holds", "{verified}");
    assert!(verified.get("rollback_result").is_none(), "{verified}");
    assert!(verified.get("escalation").is_none(), "{verified}");
    assert_eq!(fake.replicas(&recovers), Some(4), "kept");

    // stuck: scaled up, the queue never drains, the 4 s verification times out: rolled
    // back to 3 replicas and escalated to the rule's channel.
    let escalated = wait_for(&base, &servers, "stuck", "the escalation", |e| {
        e.get("escalation").is_some()
    })
    .await;
    assert_eq!(escalated["rule"], "e2e/stuck", "{escalated}");
    assert_eq!(escalated["execution"]["result"], "executed", "{escalated}");
    assert_eq!(
        escalated["verification"]["result"], "timed_out",
        "{escalated}"
    );
    assert_eq!(
        escalated["rollback_result"]["result"], "done",
        "{escalated}"
    );
    assert_eq!(
        escalated["rollback_result"]["outcome"]["after"], "replicas=3",
        "{escalated}"
    );
    assert_eq!(escalated["escalation"]["to"], "sre-e2e", "{escalated}");
    assert_eq!(
        escalated["escalation"]["reason"], "not_helped",
        "{escalated}"
    );
    assert_eq!(fake.replicas(&stuck), Some(3), "rolled back");
    let sent = posts.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1, "only the stuck one escalates: {sent:?}");
    assert_eq!(sent[0]["channel"], "sre-e2e");
    let text = sent[0]["text"].as_str().unwrap_or_default();
    for part in [
        ALERT,
        "deployment/sre-e2e/stuck",
        "scale_up did not help (verification timed out)",
        "rollback done",
    ] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
    let mut writes = fake.writes();
    writes.sort();
    assert_eq!(
        writes,
        [
            "scale Deployment sre-e2e/recovers 4",
            "scale Deployment sre-e2e/stuck 3",
            "scale Deployment sre-e2e/stuck 4",
        ],
        "one scale-up each and one rollback, whatever Alertmanager re-sent"
    );
}
