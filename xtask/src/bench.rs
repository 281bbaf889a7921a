//! `cargo xtask bench remediation`: webhook throughput and tail latency under a real load
//! generator (wrk, installed with apt when missing), against the real remediation webhook
//! and against a bare axum handler in the same run on loopback, so the printed ratio is
//! the cost of the webhook's own request path (auth, size limit, payload validation,
//! queueing) on this machine. Bounded: `--duration` per server (default 10 s).
//!
//! Numbers, never assertions: a benchmark reports, tests do not time anything.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::util::{Context, Result, cargo, euid, run_inherit, run_logged, which, workspace_root};

const USAGE: &str = "usage: cargo xtask bench remediation [--duration SECS] [--connections N]";

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

fn start_server(bin: &Path, mode: &str, token: &str) -> Result<Server> {
    let mut child = Command::new(bin)
        .args([mode, token])
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

/// `cargo xtask bench remediation [--duration SECS] [--connections N]`.
pub fn remediation(args: &[String]) -> Result<i32> {
    let secs = flag(args, "--duration", 10)?;
    let conns = flag(args, "--connections", 32)?;
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
        "wrk: 2 threads, {conns} connections, {secs} s per server, POST /alerts ({} bytes, \
         Alertmanager 0.25 payload), loopback",
        body.len()
    );
    let mut results = Vec::new();
    for mode in ["bare", "webhook"] {
        let server = start_server(&bin, mode, &token)?;
        let r = run_wrk(
            &wrk,
            &script,
            &format!("http://{}/alerts", server.addr),
            secs,
            conns,
        )?;
        drop(server);
        println!(
            "{mode:<8} {:>10.0} req/s   p99 {:>8.3} ms   non-2xx {}",
            r.requests_per_sec, r.p99_ms, r.non_2xx
        );
        results.push(r);
    }
    if let [bare, hook] = results.as_slice() {
        println!(
            "ratio    webhook/bare throughput {:.2}x, p99 {:.2}x",
            hook.requests_per_sec / bare.requests_per_sec,
            hook.p99_ms / bare.p99_ms.max(f64::EPSILON)
        );
        if hook.non_2xx > 0 {
            println!(
                "note: {} webhook answers were not 2xx (503: queue full)",
                hook.non_2xx
            );
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
Running 10s test @ http://127.0.0.1:40000/alerts
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
