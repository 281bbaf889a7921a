//! `cargo xtask test`: real servers up, nextest, doctests, servers down, always.
//!
//! Teardown must happen on failure and on Ctrl-C/SIGTERM too, or a CI runner
//! accumulates orphan servers. Children stay in the terminal's process group
//! (so Ctrl-C reaches nextest directly); our handler only records the interrupt
//! and, if the child is still running a few seconds later (e.g. a CI runner sent
//! SIGTERM to us alone), forwards a SIGTERM to it.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use crate::services::{self, Layout, Up};
use crate::util::{Context, Result, cargo, describe, exit_code, signal};

/// Shared between the signal handler thread and the main flow.
#[derive(Clone, Default)]
struct Interrupt {
    hit: Arc<AtomicBool>,
    child: Arc<AtomicU32>,
}

impl Interrupt {
    fn install(&self) -> Result<()> {
        let me = self.clone();
        ctrlc::set_handler(move || {
            if me.hit.swap(true, Ordering::SeqCst) {
                return; // second signal: the main flow is already on its way out
            }
            eprintln!("xtask: interrupted; stopping tests, then services");
            std::thread::sleep(Duration::from_secs(3));
            let pid = me.child.load(Ordering::SeqCst);
            if pid != 0 {
                signal(&pid.to_string(), "TERM");
            }
        })
        .ctx("installing the Ctrl-C handler")
    }

    fn hit(&self) -> bool {
        self.hit.load(Ordering::SeqCst)
    }

    /// Runs a child, remembering its pid for the handler.
    fn run(&self, cmd: &mut Command) -> Result<i32> {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        println!("test: cargo {}", args.join(" "));
        let mut child = cmd.spawn().ctx(format!("starting {}", describe(cmd)))?;
        self.child.store(child.id(), Ordering::SeqCst);
        let status = child.wait();
        self.child.store(0, Ordering::SeqCst);
        Ok(exit_code(status.ctx("waiting for tests")?))
    }
}

/// Package-selection arguments among the nextest arguments, which also apply
/// to the doctest run (`-p X`, `--package X`, `--package=X`, `-pX`, `--exclude X`, `--workspace`).
pub fn package_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-p" | "--package" | "--exclude" => {
                out.push(a.clone());
                if let Some(v) = it.next() {
                    out.push(v.clone());
                }
            }
            "--workspace" | "--all" => out.push(a.clone()),
            "--" => break,
            s if s.starts_with("--package=") || s.starts_with("--exclude=") => out.push(a.clone()),
            s if s.starts_with("-p") && s.len() > 2 => out.push(a.clone()),
            _ => {}
        }
    }
    out
}

/// True when the user chose packages (then `--workspace` must not be added).
fn selects_packages(args: &[String]) -> bool {
    package_args(args).iter().any(|a| {
        matches!(a.as_str(), "-p" | "--package" | "--workspace" | "--all")
            || a.starts_with("--package=")
            || (a.starts_with("-p") && a.len() > 2)
    })
}

/// True unless the user chose features: every feature is additive, and code behind an
/// optional feature (`sre --features rotation`, `sre-failover/runtime`) must be tested
/// too, not only what the default features compile.
fn wants_all_features(args: &[String]) -> bool {
    !args.iter().any(|a| {
        a == "--features"
            || a.starts_with("--features=")
            || a == "-F"
            || a == "--no-default-features"
            || a == "--all-features"
    })
}

/// The nextest command line for `extra` user arguments.
pub fn nextest_args(extra: &[String], ci: bool) -> Vec<String> {
    let mut args: Vec<String> = vec!["nextest".into(), "run".into()];
    if !selects_packages(extra) {
        args.push("--workspace".into());
    }
    if wants_all_features(extra) {
        args.push("--all-features".into());
    }
    let has_profile = extra
        .iter()
        .any(|a| a == "--profile" || a.starts_with("--profile=") || a == "-P");
    if ci && !has_profile {
        args.extend(["--profile".into(), "ci".into()]);
    }
    args.extend(extra.iter().cloned());
    args
}

/// The doctest command line: same package selection as nextest.
pub fn doctest_args(extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec!["test".into(), "--doc".into()];
    if !selects_packages(extra) {
        args.push("--workspace".into());
    }
    if wants_all_features(extra) {
        args.push("--all-features".into());
    }
    args.extend(package_args(extra));
    args
}

fn run_suites(extra: &[String], interrupt: &Interrupt) -> Result<i32> {
    let layout = Layout::new();
    let env_text = std::fs::read_to_string(&layout.env).ctx("reading the services env file")?;
    let env = services::parse_env(&env_text);
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());

    let mut nextest = cargo();
    nextest
        .args(nextest_args(extra, ci))
        .envs(env.iter().map(|(k, v)| (k, v)));
    let code = interrupt.run(&mut nextest)?;
    if interrupt.hit() {
        return Ok(code);
    }
    let mut doc = cargo();
    doc.args(doctest_args(extra))
        .envs(env.iter().map(|(k, v)| (k, v)));
    let doc_code = interrupt.run(&mut doc)?;
    Ok(if code == 0 { doc_code } else { code })
}

/// Entry point for `cargo xtask test [nextest args]`.
pub fn main(extra: &[String]) -> Result<i32> {
    let interrupt = Interrupt::default();
    interrupt.install()?;
    let started = match services::up() {
        Ok(up) => up == Up::Started,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    let result = if interrupt.hit() {
        Ok(130)
    } else {
        run_suites(extra, &interrupt)
    };
    let keep = std::env::var("SRE_KEEP_SERVICES").is_ok_and(|v| v == "1");
    if !started {
        println!("test: services were already up before this run: leaving them up");
    } else if keep {
        println!(
            "test: SRE_KEEP_SERVICES=1: leaving services up (stop them: cargo xtask services down)"
        );
    } else if let Err(e) = services::down() {
        eprintln!("services down failed: {e}");
    }
    let code = result?;
    Ok(if interrupt.hit() { 130 } else { code })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn package_selection_is_extracted() {
        let check = |input: &[&str], expect: &[&str]| {
            assert_eq!(package_args(&s(input)), s(expect), "{input:?}");
        };
        check(&["-p", "sre-core", "-E", "test(x)"], &["-p", "sre-core"]);
        check(
            &["--package=sre-core", "--no-fail-fast"],
            &["--package=sre-core"],
        );
        check(&["-psre-core"], &["-psre-core"]);
        check(
            &["--exclude", "xtask", "name_filter"],
            &["--exclude", "xtask"],
        );
        check(&["--", "-p", "not-a-package"], &[]);
        check(&[], &[]);
    }

    #[test]
    fn nextest_command_lines() {
        assert_eq!(
            nextest_args(&[], false),
            s(&["nextest", "run", "--workspace", "--all-features"])
        );
        assert_eq!(
            nextest_args(&s(&["-p", "sre-core"]), true),
            s(&[
                "nextest",
                "run",
                "--all-features",
                "--profile",
                "ci",
                "-p",
                "sre-core"
            ])
        );
        assert_eq!(
            nextest_args(&s(&["-p", "sre", "--features", "rotation"]), false),
            s(&["nextest", "run", "-p", "sre", "--features", "rotation"])
        );
        assert_eq!(
            nextest_args(&s(&["--exclude", "xtask", "--profile", "default"]), true),
            s(&[
                "nextest",
                "run",
                "--workspace",
                "--all-features",
                "--exclude",
                "xtask",
                "--profile",
                "default"
            ])
        );
    }

    #[test]
    fn doctest_command_lines() {
        assert_eq!(
            doctest_args(&[]),
            s(&["test", "--doc", "--workspace", "--all-features"])
        );
        assert_eq!(
            doctest_args(&s(&["-p", "sre-core", "some_filter"])),
            s(&["test", "--doc", "--all-features", "-p", "sre-core"])
        );
        assert_eq!(
            doctest_args(&s(&["--exclude", "xtask"])),
            s(&[
                "test",
                "--doc",
                "--workspace",
                "--all-features",
                "--exclude",
                "xtask"
            ])
        );
    }
}
