//! Development automation for the `sre` workspace (matklad's cargo-xtask
//! pattern): `cargo xtask <command>`, plain Rust instead of shell scripts, so it
//! runs the same on a laptop and in CI.

mod bench;
mod configs;
mod install;
mod lint;
mod probe;
mod services;
mod testing;
mod tidy;
mod util;

use std::process::ExitCode;

use util::{Result, cargo, exit_code, run_inherit};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  services up|down|status   real test servers on 127.0.0.1 (OpenBao, PostgreSQL, S3/moto,
                            Prometheus, Alertmanager, OCI registry, 3 DNS resolvers);
                            endpoints in target/test-servers.env, logs in target/test-servers/
  test [nextest args]       services up, cargo nextest run --workspace, cargo test --doc,
                            services down (always). CI=1 uses the `ci` nextest profile;
                            SRE_KEEP_SERVICES=1 leaves the services running
  lint                      rustfmt, clippy -D warnings, dependency direction, tidy
  soak failover [N]         failover split-brain soak over N random schedules (default 100000)
  bench                     cargo bench --workspace, if any bench targets exist
  bench remediation [--duration S] [--connections N]
                            wrk against the remediation webhook and a bare axum handler
  help                      this text
";

/// Exit code for a usage error (BSD `EX_USAGE`).
const EX_USAGE: u8 = 64;

fn soak(args: &[String]) -> Result<i32> {
    let (Some("failover"), n) = (args.first().map(String::as_str), args.get(1)) else {
        eprintln!("usage: cargo xtask soak failover [N]");
        return Ok(i32::from(EX_USAGE));
    };
    let n = n.map_or("100000", String::as_str);
    if args.len() > 2 || n.parse::<u64>().is_err() {
        eprintln!("usage: cargo xtask soak failover [N]   (N: number of schedules, e.g. 100000)");
        return Ok(i32::from(EX_USAGE));
    }
    let status = run_inherit(cargo().args([
        "run",
        "--release",
        "-p",
        "sre-failover",
        "--features",
        "sim",
        "--example",
        "soak",
        "--",
        n,
    ]))?;
    Ok(exit_code(status))
}

/// True when any workspace member declares a bench target.
fn has_bench_targets() -> Result<bool> {
    use util::Context;
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .ctx("running cargo metadata")?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).ctx("parsing cargo metadata")?;
    let packages = meta.get("packages").and_then(serde_json::Value::as_array);
    Ok(packages.into_iter().flatten().any(|p| {
        p.get("targets")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("kind").and_then(serde_json::Value::as_array))
            .flatten()
            .any(|k| k.as_str() == Some("bench"))
    }))
}

fn bench(args: &[String]) -> Result<i32> {
    if args.first().map(String::as_str) == Some("remediation") {
        return bench::remediation(&args[1..]);
    }
    if !has_bench_targets()? {
        println!("no benchmarks yet");
        return Ok(0);
    }
    Ok(exit_code(run_inherit(
        cargo().args(["bench", "--workspace"]).args(args),
    )?))
}

fn run(args: &[String]) -> Result<i32> {
    let (cmd, rest) = match args.split_first() {
        Some((cmd, rest)) => (cmd.as_str(), rest),
        None => ("", args),
    };
    match cmd {
        "services" => services::main(rest),
        "test" => testing::main(rest),
        "lint" => lint::main(rest),
        "soak" => soak(rest),
        "bench" => bench(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(0)
        }
        other => {
            if !other.is_empty() {
                eprintln!("xtask: unknown command `{other}`\n");
            }
            eprint!("{USAGE}");
            Ok(i32::from(EX_USAGE))
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
