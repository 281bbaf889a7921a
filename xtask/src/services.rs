//! `cargo xtask services up|down|status`: the real servers behind the contract tests.
//!
//! Each server binds 127.0.0.1 on a port found by binding port 0, keeps its
//! data and log under `target/test-servers/<name>/`, and runs in its own process
//! group. `target/test-servers/state.json` records pid + start time of every
//! process `up` started, so `down` stops exactly those (never a reused pid) and
//! `status` can tell whether they still run. Endpoints go to
//! `target/test-servers.env` as `KEY=VALUE` lines read by the tests.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::configs;
use crate::install::{self, Tools};
use crate::probe;
use crate::util::{
    Context, Result, euid, group_members, is_alive, lookup_user, proc_stat, random_hex, rel,
    run_logged, signal, tail, workspace_root,
};

/// How long a server may take to answer its readiness check (2 busy cores, cold caches).
const READY_TIMEOUT: Duration = Duration::from_mins(2);
/// How long `down` waits for a graceful exit before `SIGKILL`.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Environment variables handed to the tests, in file order.
type Env = Vec<(&'static str, String)>;

/// Where `services` keeps its files; fixed relative to the workspace so tests
/// can find the env file without being told.
pub struct Layout {
    /// `target/test-servers`: one subdirectory per server.
    pub root: PathBuf,
    /// `target/test-servers/state.json`: what `up` started.
    pub state: PathBuf,
    /// `target/test-servers.env`: endpoints for the tests.
    pub env: PathBuf,
}

impl Layout {
    /// The layout under this workspace's `target/`.
    pub fn new() -> Self {
        let target = workspace_root().join("target");
        let root = target.join("test-servers");
        Self {
            state: root.join("state.json"),
            env: target.join("test-servers.env"),
            root,
        }
    }
}

/// What `up` did, so `test` only stops services it started itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Up {
    /// Servers were started by this call.
    Started,
    /// Servers were already running; nothing was done.
    AlreadyUp,
}

/// How a server is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `SIGTERM` to the whole process group (wrappers and their children).
    TermGroup,
    /// `SIGINT` to the leader only: postgres' "fast shutdown" of its own children.
    IntLeader,
}

impl Stop {
    fn as_str(self) -> &'static str {
        match self {
            Self::TermGroup => "term-group",
            Self::IntLeader => "int-leader",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "term-group" => Some(Self::TermGroup),
            "int-leader" => Some(Self::IntLeader),
            _ => None,
        }
    }
}

/// One process started by `up`, as recorded in the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Running {
    name: String,
    pid: u32,
    /// With the pid, identifies the process across pid reuse.
    starttime: u64,
    stop: Stop,
    addr: String,
    log: PathBuf,
}

impl Running {
    fn alive(&self) -> bool {
        is_alive(self.pid, self.starttime)
    }

    /// True when our pid now belongs to some other process: never signal it.
    fn pid_reused(&self) -> bool {
        proc_stat(self.pid).is_some_and(|s| s.starttime != self.starttime)
    }

    /// Our process or any member of its group still runs.
    fn anything_left(&self) -> bool {
        self.alive() || (!self.pid_reused() && !group_members(self.pid).is_empty())
    }

    fn request_stop(&self) {
        if self.stop == Stop::IntLeader && self.alive() {
            signal(&self.pid.to_string(), "INT");
        } else if self.anything_left() {
            signal(&format!("-{}", self.pid), "TERM");
        }
    }

    fn kill(&self) {
        if !self.pid_reused() {
            signal(&format!("-{}", self.pid), "KILL");
        }
    }
}

fn to_json(list: &[Running]) -> Value {
    let servers: Vec<Value> = list
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "pid": r.pid,
                "starttime": r.starttime,
                "stop": r.stop.as_str(),
                "addr": r.addr,
                "log": r.log.display().to_string(),
            })
        })
        .collect();
    json!({ "version": 1, "servers": servers })
}

fn from_json(value: &Value) -> Option<Vec<Running>> {
    value
        .get("servers")?
        .as_array()?
        .iter()
        .map(|s| {
            Some(Running {
                name: s.get("name")?.as_str()?.to_owned(),
                pid: u32::try_from(s.get("pid")?.as_u64()?).ok()?,
                starttime: s.get("starttime")?.as_u64()?,
                stop: Stop::parse(s.get("stop")?.as_str()?)?,
                addr: s.get("addr")?.as_str()?.to_owned(),
                log: PathBuf::from(s.get("log")?.as_str()?),
            })
        })
        .collect()
}

fn load_state(layout: &Layout) -> Result<Option<Vec<Running>>> {
    let text = match fs::read_to_string(&layout.state) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", rel(&layout.state))),
    };
    let value: Value =
        serde_json::from_str(&text).ctx(format!("parsing {}", rel(&layout.state)))?;
    from_json(&value).map(Some).ok_or_else(|| {
        format!(
            "{} is not a state file written by xtask",
            rel(&layout.state)
        )
    })
}

/// Processes started so far in this `up`, written to the state file after
/// each start so that `down` can clean up even if `up` is interrupted.
struct Registry<'a> {
    state: &'a Path,
    list: Mutex<Vec<Running>>,
}

impl Registry<'_> {
    fn add(&self, running: Running) -> Result<()> {
        let mut list = self
            .list
            .lock()
            .map_err(|_| "state lock poisoned".to_owned())?;
        list.push(running);
        let text = serde_json::to_string_pretty(&to_json(&list)).ctx("encoding state")?;
        fs::write(self.state, text).ctx(format!("writing {}", rel(self.state)))
    }

    fn take(&self) -> Vec<Running> {
        self.list
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// Ports for one run, all reserved before any server starts so that no two
/// servers are handed the same port.
#[derive(Debug, Clone, Copy)]
struct Ports {
    bao: u16,
    pg: u16,
    s3: u16,
    prometheus: u16,
    alertmanager: u16,
    webhook: u16,
    registry: u16,
    /// Three honest resolvers and one liar (last).
    dns: [u16; 4],
}

fn allocate_ports() -> Result<Ports> {
    let mut tcp: Vec<TcpListener> = Vec::new();
    let mut udp: Vec<UdpSocket> = Vec::new();
    let free_tcp = |tcp: &mut Vec<TcpListener>| -> Result<u16> {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ctx("binding a free port")?;
        let port = l.local_addr().ctx("reading bound port")?.port();
        tcp.push(l);
        Ok(port)
    };
    let mut ports = Ports {
        bao: free_tcp(&mut tcp)?,
        pg: free_tcp(&mut tcp)?,
        s3: free_tcp(&mut tcp)?,
        prometheus: free_tcp(&mut tcp)?,
        alertmanager: free_tcp(&mut tcp)?,
        webhook: free_tcp(&mut tcp)?,
        registry: free_tcp(&mut tcp)?,
        dns: [0; 4],
    };
    // DNS needs the same port free for both UDP and TCP.
    for slot in &mut ports.dns {
        for _ in 0..100 {
            let port = free_tcp(&mut tcp)?;
            if let Ok(u) = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)) {
                udp.push(u);
                *slot = port;
                break;
            }
        }
        if *slot == 0 {
            return Err("no port free for both UDP and TCP".into());
        }
    }
    drop((tcp, udp));
    Ok(ports)
}

/// What every starter needs.
struct Ctx<'a> {
    root: &'a Path,
    tools: &'a Tools,
    reg: &'a Registry<'a>,
}

impl Ctx<'_> {
    /// A fresh, empty directory for one server (the previous run's is removed).
    fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).ctx(format!("removing old {}", rel(&dir)))?;
        }
        fs::create_dir_all(&dir).ctx(format!("creating {}", rel(&dir)))?;
        Ok(dir)
    }

    /// Spawns a server in its own process group with output to `dir/server.log`
    /// and records it in the state file.
    fn launch(
        &self,
        name: &str,
        dir: &Path,
        cmd: &mut Command,
        stop: Stop,
        addr: &str,
    ) -> Result<(Child, PathBuf)> {
        let log = dir.join("server.log");
        let out = fs::File::create(&log).ctx(format!("creating {}", rel(&log)))?;
        let err = out.try_clone().ctx("duplicating log handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .ctx(format!(
                "{name}: starting {}",
                cmd.get_program().to_string_lossy()
            ))?;
        let starttime = proc_stat(child.id()).map_or(0, |s| s.starttime);
        self.reg.add(Running {
            name: name.to_owned(),
            pid: child.id(),
            starttime,
            stop,
            addr: addr.to_owned(),
            log: log.clone(),
        })?;
        Ok((child, log))
    }
}

/// Polls `ready` until it holds, the server exits, or the timeout passes.
fn wait_ready(
    name: &str,
    child: &mut Child,
    log: &Path,
    started: Instant,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{name} exited ({status}) before it was ready; log: {}\n{}",
                rel(log),
                tail(log, 20)
            ));
        }
        if ready() {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "{name} not ready after {}s; log: {}\n{}",
                READY_TIMEOUT.as_secs(),
                rel(log),
                tail(log, 20)
            ));
        }
        thread::sleep(Duration::from_millis(150));
    }
}

fn report_ready(name: &str, addr: &str, started: Instant) {
    println!(
        "ready  {name:<13} {addr:<26} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
}

fn quiet_success(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start_openbao(ctx: &Ctx, port: u16) -> Result<Env> {
    let t0 = Instant::now();
    let dir = ctx.fresh_dir("openbao")?;
    let addr = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(&ctx.tools.bao);
    cmd.args(["server", "-dev", "-dev-root-token-id=root"])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        // The dev server stores its token under $HOME: keep it in the run's dir.
        .env("HOME", &dir)
        .current_dir(&dir);
    let (mut child, log) = ctx.launch("openbao", &dir, &mut cmd, Stop::TermGroup, &addr)?;
    wait_ready("openbao", &mut child, &log, t0, || {
        quiet_success(
            Command::new(&ctx.tools.bao)
                .arg("status")
                .env("BAO_ADDR", &addr)
                .env("HOME", &dir),
        )
    })?;
    report_ready("openbao", &addr, t0);
    Ok(vec![
        ("SRE_TEST_BAO_ADDR", addr),
        ("SRE_TEST_BAO_TOKEN", "root".into()),
    ])
}

fn start_postgres(ctx: &Ctx, port: u16, password: &str) -> Result<Env> {
    use std::os::unix::fs::PermissionsExt;
    let t0 = Instant::now();
    let dir = ctx.fresh_dir("postgres")?;
    let data = dir.join("data");
    let pwfile = dir.join("pwfile");
    fs::write(&pwfile, format!("{password}\n")).ctx("writing postgres pwfile")?;
    fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600)).ctx("chmod pwfile")?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).ctx("chmod postgres dir")?;
    // initdb and postgres refuse to run as root: run them as the `postgres` user.
    let owner = if euid() == Some(0) {
        let ids = lookup_user("postgres")
            .ok_or("postgres: no `postgres` user (the apt package creates it)")?;
        for path in [&dir, &pwfile] {
            std::os::unix::fs::chown(path, Some(ids.0), Some(ids.1))
                .ctx(format!("chown postgres {}", rel(path)))?;
        }
        Some(ids)
    } else {
        None
    };
    let as_postgres = |cmd: &mut Command| {
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(&dir).env("HOME", &dir);
    };
    let mut initdb = Command::new(ctx.tools.pg_bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
    as_postgres(&mut initdb);
    run_logged(&mut initdb, &dir.join("initdb.log")).map_err(|e| format!("postgres: {e}"))?;

    let mut cmd = Command::new(ctx.tools.pg_bin.join("postgres"));
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string()])
        .arg("-k")
        .arg(&data)
        .args(["-c", "listen_addresses=127.0.0.1"])
        // A throwaway test database: durability only costs time on 2 cores.
        .args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
    as_postgres(&mut cmd);
    let addr = format!("127.0.0.1:{port}");
    let (mut child, log) = ctx.launch("postgres", &dir, &mut cmd, Stop::IntLeader, &addr)?;
    let isready = ctx.tools.pg_bin.join("pg_isready");
    wait_ready("postgres", &mut child, &log, t0, || {
        quiet_success(Command::new(&isready).args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]))
    })?;
    report_ready("postgres", &addr, t0);
    Ok(vec![
        ("SRE_TEST_PG_HOST", "127.0.0.1".into()),
        ("SRE_TEST_PG_PORT", port.to_string()),
        ("SRE_TEST_PG_USER", "postgres".into()),
        ("SRE_TEST_PG_PASSWORD", password.to_owned()),
        (
            "SRE_TEST_PG_URL",
            format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres"),
        ),
    ])
}

fn start_s3(ctx: &Ctx, port: u16) -> Result<Env> {
    let t0 = Instant::now();
    let dir = ctx.fresh_dir("s3")?;
    let addr = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(&ctx.tools.moto_server);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .current_dir(&dir);
    let (mut child, log) = ctx.launch("s3 (moto)", &dir, &mut cmd, Stop::TermGroup, &addr)?;
    wait_ready("s3 (moto)", &mut child, &log, t0, || {
        probe::http_status(port, "/") == Some(200)
    })?;
    report_ready("s3 (moto)", &addr, t0);
    Ok(vec![
        ("SRE_TEST_S3_ENDPOINT", addr),
        ("SRE_TEST_S3_REGION", "us-east-1".into()),
        ("SRE_TEST_S3_ACCESS_KEY", "test".into()),
        ("SRE_TEST_S3_SECRET_KEY", "test".into()),
    ])
}

/// Alertmanager first, then Prometheus pointed at it.
fn start_alerting(ctx: &Ctx, ports: Ports) -> Result<Env> {
    let t0 = Instant::now();
    let dir = ctx.fresh_dir("alertmanager")?;
    let conf = dir.join("alertmanager.yml");
    let webhook_token = random_hex(16)?;
    fs::write(
        &conf,
        configs::alertmanager_yml(ports.webhook, &webhook_token),
    )
    .ctx("writing alertmanager.yml")?;
    let am_addr = format!("http://127.0.0.1:{}", ports.alertmanager);
    let mut cmd = Command::new(&ctx.tools.alertmanager);
    cmd.arg(format!("--config.file={}", conf.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!(
            "--web.listen-address=127.0.0.1:{}",
            ports.alertmanager
        ))
        .arg("--cluster.listen-address=")
        .current_dir(&dir);
    let (mut child, log) = ctx.launch("alertmanager", &dir, &mut cmd, Stop::TermGroup, &am_addr)?;
    wait_ready("alertmanager", &mut child, &log, t0, || {
        probe::http_status(ports.alertmanager, "/-/ready") == Some(200)
    })?;
    report_ready("alertmanager", &am_addr, t0);

    let t0 = Instant::now();
    let dir = ctx.fresh_dir("prometheus")?;
    let rules = dir.join("rules.yml");
    fs::write(&rules, configs::prometheus_rules()).ctx("writing prometheus rules.yml")?;
    let conf = dir.join("prometheus.yml");
    fs::write(
        &conf,
        configs::prometheus_yml(ports.prometheus, ports.alertmanager, &rules),
    )
    .ctx("writing prometheus.yml")?;
    let prom_addr = format!("http://127.0.0.1:{}", ports.prometheus);
    let mut cmd = Command::new(&ctx.tools.prometheus);
    cmd.arg(format!("--config.file={}", conf.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!(
            "--web.listen-address=127.0.0.1:{}",
            ports.prometheus
        ))
        // Re-send firing alerts every second (default 1m): the first evaluation can
        // run before the notifier knows our Alertmanager, and tests wait in seconds.
        .arg("--rules.alert.resend-delay=1s")
        .current_dir(&dir);
    let (mut child, log) = ctx.launch("prometheus", &dir, &mut cmd, Stop::TermGroup, &prom_addr)?;
    wait_ready("prometheus", &mut child, &log, t0, || {
        probe::http_status(ports.prometheus, "/-/ready") == Some(200)
    })?;
    report_ready("prometheus", &prom_addr, t0);
    Ok(vec![
        ("SRE_TEST_PROMETHEUS_URL", prom_addr),
        ("SRE_TEST_ALERTMANAGER_URL", am_addr),
        ("SRE_TEST_WEBHOOK_PORT", ports.webhook.to_string()),
        ("SRE_TEST_WEBHOOK_TOKEN", webhook_token),
    ])
}

fn start_registry(ctx: &Ctx, port: u16) -> Result<Env> {
    let t0 = Instant::now();
    let dir = ctx.fresh_dir("registry")?;
    let conf = dir.join("config.yml");
    fs::write(&conf, configs::registry_yml(port, &dir.join("storage")))
        .ctx("writing registry config.yml")?;
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(&ctx.tools.registry);
    cmd.arg("serve").arg(&conf).current_dir(&dir);
    let (mut child, log) = ctx.launch("registry", &dir, &mut cmd, Stop::TermGroup, &addr)?;
    wait_ready("registry", &mut child, &log, t0, || {
        probe::http_status(port, "/v2/") == Some(200)
    })?;
    report_ready("registry", &addr, t0);
    Ok(vec![("SRE_TEST_REGISTRY_ADDR", addr)])
}

/// Four unbound processes (three honest, one lying), started together, each checked
/// with a real query.
fn start_dns(ctx: &Ctx, ports: [u16; 4]) -> Result<Env> {
    let t0 = Instant::now();
    let mut started = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let liar = i == 3;
        let name = if liar {
            "dns-liar".to_owned()
        } else {
            format!("dns-{}", i + 1)
        };
        let dir = ctx.fresh_dir(&name)?;
        let conf = dir.join("unbound.conf");
        let records = if liar {
            configs::LIAR_DNS_RECORDS
        } else {
            configs::DNS_RECORDS
        };
        fs::write(&conf, configs::unbound_conf_with(&dir, *port, records))
            .ctx(format!("writing {name} conf"))?;
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&ctx.tools.unbound);
        cmd.arg("-c").arg(&conf).current_dir(&dir);
        let (child, log) = ctx.launch(&name, &dir, &mut cmd, Stop::TermGroup, &addr)?;
        started.push((name, *port, addr, child, log));
    }
    let expect = [Ipv4Addr::new(192, 0, 2, 1)];
    for (name, port, addr, mut child, log) in started {
        wait_ready(&name, &mut child, &log, t0, || {
            probe::dns_query(port, "region-a.health.sre.test.", probe::TYPE_A)
                .is_some_and(|a| a.rcode == 0 && a.a == expect)
        })?;
        report_ready(&name, &addr, t0);
    }
    let list: Vec<String> = ports[..3]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    Ok(vec![
        ("SRE_TEST_DNS_RESOLVERS", list.join(",")),
        ("SRE_TEST_DNS_LIAR", format!("127.0.0.1:{}", ports[3])),
    ])
}

/// Renders the env file: one `KEY=VALUE` per line (values never need quoting:
/// addresses, ports and hex passwords).
fn render_env(env: &[(&str, String)]) -> String {
    let mut out =
        String::from("# written by `cargo xtask services up`, removed by `services down`\n");
    for (k, v) in env {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

/// Parses `KEY=VALUE` lines, skipping blanks and `#` comments.
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Stops every recorded process: polite signal first, `SIGKILL` after a grace period.
fn stop_all(list: &[Running]) {
    for r in list.iter().rev() {
        r.request_stop();
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline && list.iter().any(Running::anything_left) {
        thread::sleep(Duration::from_millis(100));
    }
    for r in list.iter().filter(|r| r.anything_left()) {
        eprintln!(
            "{} (pid {}) did not stop within {}s: killing",
            r.name,
            r.pid,
            STOP_TIMEOUT.as_secs()
        );
        r.kill();
    }
}

/// Starts every server unless they are all already up.
pub fn up() -> Result<Up> {
    let layout = Layout::new();
    if let Some(list) = load_state(&layout)? {
        let dead: Vec<&str> = list
            .iter()
            .filter(|r| !r.alive())
            .map(|r| r.name.as_str())
            .collect();
        if dead.is_empty() && layout.env.exists() {
            println!(
                "services already up ({} processes); endpoints in {}",
                list.len(),
                rel(&layout.env)
            );
            return Ok(Up::AlreadyUp);
        }
        println!("services partly down ({}): restarting all", dead.join(", "));
        stop_all(&list);
        remove_outputs(&layout);
    }
    let t0 = Instant::now();
    fs::create_dir_all(&layout.root).ctx(format!("creating {}", rel(&layout.root)))?;
    let tools = install::ensure(&layout.root.join("install.log"))?;
    let ports = allocate_ports()?;
    let password = random_hex(12)?;
    let reg = Registry {
        state: &layout.state,
        list: Mutex::new(Vec::new()),
    };
    let ctx = Ctx {
        root: &layout.root,
        tools: &tools,
        reg: &reg,
    };
    let results: Vec<Result<Env>> = thread::scope(|s| {
        let ctx = &ctx;
        let password = password.as_str();
        let handles = [
            s.spawn(move || start_openbao(ctx, ports.bao)),
            s.spawn(move || start_postgres(ctx, ports.pg, password)),
            s.spawn(move || start_s3(ctx, ports.s3)),
            s.spawn(move || start_alerting(ctx, ports)),
            s.spawn(move || start_registry(ctx, ports.registry)),
            s.spawn(move || start_dns(ctx, ports.dns)),
        ];
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a starter thread panicked".into()))
            })
            .collect()
    });
    let mut env = Env::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(vars) => env.extend(vars),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        stop_all(&reg.take());
        remove_outputs(&layout);
        return Err(format!("services up failed:\n{}", errors.join("\n")));
    }
    fs::write(&layout.env, render_env(&env)).ctx(format!("writing {}", rel(&layout.env)))?;
    println!(
        "services up in {:.1}s; endpoints in {}",
        t0.elapsed().as_secs_f64(),
        rel(&layout.env)
    );
    Ok(Up::Started)
}

fn remove_outputs(layout: &Layout) {
    let _ = fs::remove_file(&layout.state);
    let _ = fs::remove_file(&layout.env);
}

/// Stops exactly what `up` recorded; logs and data stay for post-mortems
/// until the next `up`.
pub fn down() -> Result<()> {
    let layout = Layout::new();
    let Some(list) = load_state(&layout)? else {
        let _ = fs::remove_file(&layout.env);
        println!("services are not running");
        return Ok(());
    };
    stop_all(&list);
    remove_outputs(&layout);
    println!(
        "stopped {} service processes (logs kept in {})",
        list.len(),
        rel(&layout.root)
    );
    Ok(())
}

/// Prints each recorded server; exit code 0 only when all of them run.
pub fn status() -> Result<i32> {
    let layout = Layout::new();
    let Some(list) = load_state(&layout)? else {
        println!("services are not running");
        return Ok(1);
    };
    let mut all = true;
    for r in &list {
        let alive = r.alive();
        all &= alive;
        println!(
            "{:<8} {:<13} pid {:<8} {:<26} log {}",
            if alive { "running" } else { "DEAD" },
            r.name,
            r.pid,
            r.addr,
            rel(&r.log)
        );
    }
    println!("endpoints: {}", rel(&layout.env));
    Ok(i32::from(!all))
}

/// Entry point for `cargo xtask services ...`.
pub fn main(args: &[String]) -> Result<i32> {
    match args.first().map(String::as_str) {
        Some("up") if args.len() == 1 => up().map(|_| 0),
        Some("down") if args.len() == 1 => down().map(|()| 0),
        Some("status") if args.len() == 1 => status(),
        _ => {
            eprintln!("usage: cargo xtask services up|down|status");
            Ok(64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let list = vec![
            Running {
                name: "postgres".into(),
                pid: 42,
                starttime: 1234,
                stop: Stop::IntLeader,
                addr: "127.0.0.1:5432".into(),
                log: PathBuf::from("/t/postgres/server.log"),
            },
            Running {
                name: "dns-1".into(),
                pid: 43,
                starttime: 1235,
                stop: Stop::TermGroup,
                addr: "127.0.0.1:5353".into(),
                log: PathBuf::from("/t/dns-1/server.log"),
            },
        ];
        assert_eq!(from_json(&to_json(&list)), Some(list));
    }

    #[test]
    fn malformed_state_is_rejected() {
        assert_eq!(from_json(&json!({"servers": [{"name": "x"}]})), None);
        assert_eq!(from_json(&json!({"nope": 1})), None);
    }

    #[test]
    fn env_file_round_trips() {
        let env: Env = vec![
            (
                "SRE_TEST_PG_URL",
                "postgres://postgres:ab12@127.0.0.1:5/postgres".into(),
            ),
            ("SRE_TEST_DNS_RESOLVERS", "127.0.0.1:1,127.0.0.1:2".into()),
        ];
        let parsed = parse_env(&render_env(&env));
        let expect: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        assert_eq!(parsed, expect);
    }

    #[test]
    fn ports_are_distinct() {
        let p = allocate_ports();
        assert!(p.is_ok(), "{p:?}");
        let Ok(p) = p else { return };
        let mut all = vec![
            p.bao,
            p.pg,
            p.s3,
            p.prometheus,
            p.alertmanager,
            p.webhook,
            p.registry,
        ];
        all.extend(p.dns);
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert!(all.iter().all(|p| *p != 0));
    }

    #[test]
    fn dead_process_is_not_alive() {
        let r = Running {
            name: "gone".into(),
            pid: std::process::id(),
            starttime: 1, // not our start time: treated as a reused pid
            stop: Stop::TermGroup,
            addr: String::new(),
            log: PathBuf::new(),
        };
        assert!(!r.alive());
        assert!(r.pid_reused());
        assert!(!r.anything_left());
    }
}
