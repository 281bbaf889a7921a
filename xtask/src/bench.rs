//! `cargo xtask bench remediation`: webhook throughput and tail latency under a real load
//! generator (wrk, installed with apt when missing), against the real remediation webhook
//! and against a bare axum handler in the same run on loopback, so the printed ratio is
//! the cost of the webhook's own request path (auth, size limit, payload validation,
//! queueing) on this machine. `--pairs` pairs (default 3) of one run per server, the order
//! alternating, so that load from elsewhere on the machine hits both sides alike; the
//! headline is the median pair's ratio, with the range. Bounded: `--duration` per run
//! (default 6 s).
//!
//! Then the alerting path, timed the way an operator sees it: a Prometheus and an
//! Alertmanager of the bench's own (1 s scrape and evaluation, `group_wait: 1s`) scrape a
//! metric the bench serves; each of `--rounds` rounds raises it for a new deployment, so
//! every round is a new alert, and waits until the webhook's `/runs` shows the scale-up
//! executed. Printed: flip -> action recorded, and the alert's `startsAt` (when Prometheus
//! fired it) -> action recorded, min/median/max.
//!
//! Numbers, never assertions: a benchmark reports, tests do not time anything.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::probe;
use crate::util::{Context, Result, cargo, euid, run_inherit, run_logged, which, workspace_root};

const USAGE: &str = "usage: cargo xtask bench remediation [--duration SECS] [--connections N] [--pairs N] [--rounds N]";

/// The alert the bench's Prometheus rule raises (the `firing` bench server acts on it).
const FLIP_ALERT: &str = "SreBenchFlip";

/// One wrk run's headline numbers.
#[derive(Debug, Clone, PartialEq)]
struct WrkResult {
    requests_per_sec: f64,
    p99_ms: f64,
    non_2xx: u64,
}

/// Parses a wrk latency such as `1.23ms`, `850.00us` or `1.02s` into milliseconds.
fn parse_latency_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * factor)
}

/// Reads requests/s, the 99th percentile (`--latency` distribution) and the count of
/// non-2xx answers from wrk's report.
fn parse_wrk(out: &str) -> Option<WrkResult> {
    let mut rps = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_latency_ms(v);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    Some(WrkResult {
        requests_per_sec: rps?,
        p99_ms: p99?,
        non_2xx,
    })
}

/// The wrk Lua script that posts `body` with the webhook's bearer token.
fn lua_script(body: &str, token: &str) -> String {
    format!(
        "wrk.method = \"POST\"\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n\
         wrk.body = [==[{body}]==]\n"
    )
}

/// `wrk` on `PATH`, installed with apt when missing (idempotent: nothing when present).
fn ensure_wrk(log: &Path) -> Result<PathBuf> {
    if let Some(p) = which("wrk", &[]) {
        return Ok(p);
    }
    println!("installing (apt): wrk ...");
    let apt = |args: &[&str]| {
        let mut cmd = if euid() == Some(0) {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-q", "-o", "DPkg::Lock::Timeout=300"])
            .args(args);
        cmd
    };
    run_logged(&mut apt(&["update"]), log)?;
    run_logged(
        &mut apt(&["install", "-y", "--no-install-recommends", "wrk"]),
        log,
    )?;
    which("wrk", &[]).ok_or_else(|| "wrk is still not on PATH after apt-get install".into())
}

/// A bench server child that is killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(bin: &Path, mode: &str, args: &[&str]) -> Result<Server> {
    let mut child = Command::new(bin)
        .arg(mode)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ctx(format!("starting {} {mode}", bin.display()))?;
    let line = child
        .stdout
        .take()
        .map(|out| {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            line
        })
        .unwrap_or_default();
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("bench_server {mode} did not start: {line:?}"));
    };
    Ok(Server {
        addr: addr.to_owned(),
        child,
    })
}

fn run_wrk(wrk: &Path, script: &Path, url: &str, secs: u64, conns: u64) -> Result<WrkResult> {
    let out = Command::new(wrk)
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
        ])
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .ctx("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_wrk(&text).ok_or_else(|| format!("could not read wrk's report:\n{text}"))
}

fn flag(args: &[String], name: &str, default: u64) -> Result<u64> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("{name} needs a positive number\n{USAGE}")),
    }
}

/// `cargo xtask bench remediation [--duration SECS] [--connections N] [--pairs N] [--rounds N]`.
pub fn remediation(args: &[String]) -> Result<i32> {
    let secs = flag(args, "--duration", 6)?;
    let conns = flag(args, "--connections", 32)?;
    let pairs = flag(args, "--pairs", 3)?;
    let rounds = flag(args, "--rounds", 5)?;
    let root = workspace_root();
    let dir = root.join("target/bench");
    fs::create_dir_all(&dir).ctx("creating target/bench")?;
    let wrk = ensure_wrk(&dir.join("install.log"))?;
    let status = run_inherit(cargo().args([
        "build",
        "--release",
        "-p",
        "remediation-webhook",
        "--example",
        "bench_server",
    ]))?;
    if !status.success() {
        return Err("building the bench server failed".into());
    }
    let bin = root.join("target/release/examples/bench_server");
    let fixture = root.join("../shared/fixtures/alertmanager/firing-high-memory.json");
    let body = fs::read_to_string(&fixture).ctx(format!("reading {}", fixture.display()))?;
    let token = crate::util::random_hex(16)?;
    let script = dir.join("post-alert.lua");
    fs::write(&script, lua_script(&body, &token)).ctx("writing the wrk script")?;

    println!(
        "wrk: 2 threads, {conns} connections, {secs} s per server, POST /webhook/alertmanager ({} bytes, \
         Alertmanager 0.25 payload), loopback",
        body.len()
    );
    // Pairs, alternating which server goes first, so that a burst of load from elsewhere
    // on the machine hits both sides alike; the median pair is the headline.
    let mut ratios = Vec::new();
    let mut p99_ratios = Vec::new();
    for pair in 1..=pairs {
        let order = if pair % 2 == 1 {
            ["bare", "webhook"]
        } else {
            ["webhook", "bare"]
        };
        let mut got: Vec<(&str, WrkResult)> = Vec::new();
        for mode in order {
            let server = start_server(&bin, mode, &[&token])?;
            let r = run_wrk(
                &wrk,
                &script,
                &format!("http://{}/webhook/alertmanager", server.addr),
                secs,
                conns,
            )?;
            drop(server);
            println!(
                "pair {pair} {mode:<8} {:>10.0} req/s   p99 {:>8.3} ms   non-2xx {}",
                r.requests_per_sec, r.p99_ms, r.non_2xx
            );
            if mode == "webhook" && r.non_2xx > 0 {
                println!(
                    "note: {} webhook answers were not 2xx (503: queue full)",
                    r.non_2xx
                );
            }
            got.push((mode, r));
        }
        let find = |m: &str| got.iter().find(|(k, _)| *k == m).map(|(_, r)| r.clone());
        if let (Some(bare), Some(hook)) = (find("bare"), find("webhook")) {
            ratios.push(hook.requests_per_sec / bare.requests_per_sec.max(f64::EPSILON));
            p99_ratios.push(hook.p99_ms / bare.p99_ms.max(f64::EPSILON));
        }
    }
    if let (Some(t), Some(p)) = (median(&mut ratios), median(&mut p99_ratios)) {
        println!(
            "ratio    webhook/bare throughput {t:.2}x (median of {pairs} pairs, range {:.2}-{:.2}), p99 {p:.2}x",
            ratios.first().copied().unwrap_or(t),
            ratios.last().copied().unwrap_or(t),
        );
    }
    firing_to_action(&bin, &token, rounds, &dir.join("alerting"))?;
    Ok(0)
}

/// The middle value of `xs` (sorted in place; the mean of the two middle ones for an even
/// count), `None` when empty.
fn median(xs: &mut [f64]) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some(f64::midpoint(xs[n / 2 - 1], xs[n / 2])),
    }
}

/// A child process (Prometheus, Alertmanager) killed and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago (the child binds it next).
fn free_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ctx("finding a free port")
}

/// Starts `bin` with its output in `dir/name.log` and waits (up to 60 s) for `/-/ready`.
fn start_ready(name: &str, bin: &Path, args: &[String], dir: &Path, port: u16) -> Result<Guard> {
    let log = dir.join(format!("{name}.log"));
    let out = fs::File::create(&log).ctx(format!("creating {}", log.display()))?;
    let err = out.try_clone().ctx("log file")?;
    let mut guard = Guard(
        Command::new(bin)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .ctx(format!("starting {}", bin.display()))?,
    );
    let deadline = Instant::now() + Duration::from_mins(1);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = guard.0.try_wait() {
            return Err(format!(
                "{name} exited ({status}):\n{}",
                crate::util::tail(&log, 20)
            ));
        }
        if probe::http_status(port, "/-/ready") == Some(200) {
            return Ok(guard);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(guard);
    Err(format!(
        "{name} not ready within 60 s:\n{}",
        crate::util::tail(&log, 20)
    ))
}

/// The body of `GET path` on 127.0.0.1:port when it answers 200 (HTTP/1.0: the server
/// closes after the response, so the body is everything after the head).
fn http_get(port: u16, path: &str, token: Option<&str>) -> Option<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (probe::parse_status_line(head.as_bytes()) == Some(200)).then(|| body.to_owned())
}

/// Serves `text` as `/metrics` (any path, in fact) on an ephemeral loopback port from a
/// thread that lives as long as the bench; returns the port.
fn serve_metrics(text: Arc<Mutex<String>>) -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ctx("binding the exporter")?;
    let port = listener.local_addr().ctx("exporter address")?.port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = Vec::new();
            let mut chunk = [0_u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let body = text.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

/// The exporter's text: `sre_bench_flip` per round deployment, 1 for `high`, else 0.
fn flip_metrics(rounds: u64, high: Option<u64>) -> String {
    let mut out = String::from("# TYPE sre_bench_flip gauge\n");
    for r in 1..=rounds {
        let v = u8::from(high == Some(r));
        let _ = writeln!(
            out,
            "sre_bench_flip{{namespace=\"bench\",deployment=\"round-{r}\"}} {v}"
        );
    }
    out
}

/// Prometheus: 1 s scrape and evaluation of the exporter, one rule, our Alertmanager.
fn bench_prometheus_yml(exporter_port: u16, am_port: u16, rules: &Path) -> String {
    format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ['{rules}']
alerting:
  alertmanagers:
    - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]
scrape_configs:
  - job_name: bench
    honor_labels: true
    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]
",
        rules = rules.display()
    )
}

/// The rule: `sre_bench_flip == 1` fires at once.
fn bench_rules() -> String {
    format!(
        "groups:
  - name: bench
    rules:
      - alert: {FLIP_ALERT}
        expr: sre_bench_flip == 1
        for: 0s
"
    )
}

/// Alertmanager: one group per deployment (a new alert each round), posted after 1 s.
fn bench_alertmanager_yml(webhook: &str, token: &str) -> String {
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
      - url: http://{webhook}/webhook/alertmanager
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials: {token}}}
"
    )
}

/// Whether `/runs` shows the scale-up of `deployment` executed.
fn action_recorded(runs: &serde_json::Value, deployment: &str) -> bool {
    runs["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["plan"].as_array().into_iter().flatten())
        .any(|e| {
            e["alertname"] == FLIP_ALERT
                && e["target"]["name"] == deployment
                && e["execution"]["result"] == "executed"
        })
}

/// `startsAt` (RFC 3339, as Alertmanager's v2 API gives it) of the alert for `deployment`,
/// in seconds since the epoch.
fn starts_at(alerts: &serde_json::Value, deployment: &str) -> Option<f64> {
    let a = alerts
        .as_array()?
        .iter()
        .find(|a| a["labels"]["deployment"] == deployment)?;
    parse_rfc3339(a["startsAt"].as_str()?)
}

/// `2024-05-01T12:00:00.123456789Z` (UTC only, as Alertmanager writes it) to seconds since
/// the epoch; days from the civil date (Howard Hinnant's algorithm).
fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let mut hms = time.splitn(3, ':');
    let hour = hms.next()?.parse::<i64>().ok()?;
    let minute = hms.next()?.parse::<i64>().ok()?;
    let second = hms.next()?.parse::<f64>().ok()?;
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    #[allow(clippy::cast_precision_loss)]
    let whole = (days * 86_400 + hour * 3600 + minute * 60) as f64;
    Some(whole + second)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `min / median / max` of `xs` in milliseconds.
fn summary(xs: &mut [f64]) -> String {
    xs.sort_by(f64::total_cmp);
    match (xs.first(), xs.get(xs.len() / 2), xs.last()) {
        (Some(lo), Some(mid), Some(hi)) => {
            format!("min {lo:>7.0} ms   median {mid:>7.0} ms   max {hi:>7.0} ms")
        }
        _ => "no samples".into(),
    }
}

/// Alertmanager posting to `webhook` (`host:port`), then Prometheus scraping the
/// exporter on `exporter`; returns Alertmanager's port and both guards.
fn start_alerting(
    exporter: u16,
    webhook: &str,
    token: &str,
    dir: &Path,
) -> Result<(u16, [Guard; 2])> {
    let prometheus = which("prometheus", &[])
        .ok_or("prometheus not on PATH: `cargo xtask services up` installs it")?;
    let alertmanager = which("prometheus-alertmanager", &[])
        .or_else(|| which("alertmanager", &[]))
        .ok_or("alertmanager not on PATH: `cargo xtask services up` installs it")?;
    let am_port = free_port()?;
    let am_conf = dir.join("alertmanager.yml");
    fs::write(&am_conf, bench_alertmanager_yml(webhook, token)).ctx("alertmanager.yml")?;
    let am = start_ready(
        "alertmanager",
        &alertmanager,
        &[
            format!("--config.file={}", am_conf.display()),
            format!("--storage.path={}", dir.join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        dir,
        am_port,
    )?;
    let prom_port = free_port()?;
    let rules = dir.join("rules.yml");
    fs::write(&rules, bench_rules()).ctx("rules.yml")?;
    let prom_conf = dir.join("prometheus.yml");
    fs::write(&prom_conf, bench_prometheus_yml(exporter, am_port, &rules)).ctx("prometheus.yml")?;
    let prom = start_ready(
        "prometheus",
        &prometheus,
        &[
            format!("--config.file={}", prom_conf.display()),
            format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--rules.alert.resend-delay=1s".into(),
        ],
        dir,
        prom_port,
    )?;
    Ok((am_port, [am, prom]))
}

/// Rule firing -> action recorded, over `rounds` new alerts (see the module doc).
fn firing_to_action(bin: &Path, token: &str, rounds: u64, dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).ctx(format!("clearing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).ctx(format!("creating {}", dir.display()))?;
    let text = Arc::new(Mutex::new(flip_metrics(rounds, None)));
    let exporter = serve_metrics(text.clone())?;
    let rounds_arg = rounds.to_string();
    let hook = start_server(bin, "firing", &[token, &rounds_arg])?;
    let hook_port: u16 = hook
        .addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("bench server address {:?}", hook.addr))?;

    let (am_port, _stack) = start_alerting(exporter, &hook.addr, token, dir)?;
    // Let the first scrape see every series low, so that round 1 is a flip too.
    std::thread::sleep(Duration::from_secs(2));

    println!(
        "alerting: Prometheus (1 s scrape/eval, `for: 0s`) -> Alertmanager (group_wait 1s) -> \
         webhook, {rounds} rounds, a new alert each"
    );
    let (mut from_flip, mut from_start) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let deployment = format!("round-{r}");
        *text.lock().unwrap_or_else(PoisonError::into_inner) = flip_metrics(rounds, Some(r));
        let flipped = now_secs();
        let deadline = Instant::now() + Duration::from_mins(1);
        let recorded = loop {
            let runs = http_get(hook_port, "/runs", Some(token))
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
            if runs.is_some_and(|v| action_recorded(&v, &deployment)) {
                break now_secs();
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "round {r}: no action recorded within 60 s (logs in {})",
                    dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let fired = http_get(am_port, "/api/v2/alerts", None)
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| starts_at(&v, &deployment));
        from_flip.push((recorded - flipped) * 1000.0);
        if let Some(f) = fired {
            from_start.push((recorded - f) * 1000.0);
        }
        println!(
            "round {r}: flip -> recorded {:>6.0} ms, startsAt -> recorded {}",
            (recorded - flipped) * 1000.0,
            fired.map_or_else(
                || "?".into(),
                |f| format!("{:.0} ms", (recorded - f) * 1000.0)
            )
        );
    }
    *text.lock().unwrap_or_else(PoisonError::into_inner) = flip_metrics(rounds, None);
    println!(
        "metric flip      -> action recorded: {}",
        summary(&mut from_flip)
    );
    println!(
        "alert startsAt   -> action recorded: {}",
        summary(&mut from_start)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
Running 10s test @ http://127.0.0.1:40000/webhook/alertmanager
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   410.12us  300.01us  12.00ms   90.00%
    Req/Sec    40.10k     2.00k   45.00k    70.00%
  Latency Distribution
     50%  350.00us
     75%  450.00us
     90%  600.00us
     99%    1.25ms
  798000 requests in 10.00s, 100.00MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  79800.12
Transfer/sec:     10.00MB
";

    #[test]
    fn median_is_the_middle_pair() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [0.5, 0.3, 0.4]), Some(0.4));
        assert_eq!(median(&mut [0.6, 0.2]), Some(0.4));
    }

    #[test]
    fn reads_wrk_reports() {
        assert_eq!(
            parse_wrk(REPORT),
            Some(WrkResult {
                requests_per_sec: 79800.12,
                p99_ms: 1.25,
                non_2xx: 12
            })
        );
        assert_eq!(parse_latency_ms("850.00us"), Some(0.85));
        assert_eq!(parse_latency_ms("1.50s"), Some(1500.0));
        assert_eq!(parse_latency_ms("7"), None);
        assert_eq!(parse_wrk("garbage"), None);
    }

    #[test]
    fn alerting_timings_read_runs_and_alertmanager_alerts() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1.5));
        assert_eq!(
            parse_rfc3339("2024-03-01T12:00:00Z"),
            Some(1_709_294_400.0),
            "after a leap day"
        );
        assert_eq!(parse_rfc3339("2024-03-01T12:00:00+02:00"), None);
        let alerts = serde_json::json!([
            {"labels": {"deployment": "round-2"}, "startsAt": "1970-01-01T00:00:10Z"},
            {"labels": {"deployment": "round-1"}, "startsAt": "1970-01-01T00:00:05.25Z"}
        ]);
        assert_eq!(starts_at(&alerts, "round-1"), Some(5.25));
        assert_eq!(starts_at(&alerts, "round-3"), None);
        let runs = serde_json::json!({"runs": [{"plan": [
            {"alertname": FLIP_ALERT, "target": {"name": "round-1"},
             "execution": {"result": "executed"}},
            {"alertname": FLIP_ALERT, "target": {"name": "round-2"}}
        ]}]});
        assert!(action_recorded(&runs, "round-1"));
        assert!(
            !action_recorded(&runs, "round-2"),
            "planned, not yet executed"
        );
        let text = flip_metrics(2, Some(2));
        assert!(text.contains(r#"sre_bench_flip{namespace="bench",deployment="round-1"} 0"#));
        assert!(text.contains(r#"sre_bench_flip{namespace="bench",deployment="round-2"} 1"#));
        let mut xs = [3.0, 1.0, 2.0];
        assert_eq!(
            summary(&mut xs),
            "min       1 ms   median       2 ms   max       3 ms"
        );
        assert!(bench_alertmanager_yml("127.0.0.1:9", "t0k").contains("credentials: t0k"));
        assert!(bench_prometheus_yml(7, 8, Path::new("/r.yml")).contains("'127.0.0.1:7'"));
    }

    #[test]
    fn script_posts_the_body_with_the_token() {
        let s = lua_script("{\"a\":1}", "t0k");
        assert!(s.contains("wrk.method = \"POST\""));
        assert!(s.contains("\"Bearer t0k\""));
        assert!(s.contains("[==[{\"a\":1}]==]"));
        assert_eq!(
            flag(&["--duration".into(), "3".into()], "--duration", 10),
            Ok(3)
        );
        assert!(flag(&["--duration".into(), "0".into()], "--duration", 10).is_err());
    }
}
