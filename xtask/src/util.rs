//! Small process, `/proc` and filesystem helpers shared by the subcommands.
//!
//! xtask stays on plain std (no libc, no nix): signals go through the `kill`
//! binary and process identity comes from `/proc/PID/stat`, which is enough on
//! the Linux machines the real test servers run on.

use std::fmt::{Display, Write as _};
use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Errors in xtask are messages for a human at a terminal, so a `String` with
/// context is all we need.
pub type Result<T, E = String> = std::result::Result<T, E>;

/// Adds "what we were doing" to an error so that failures name the server,
/// file or command involved instead of a bare `No such file or directory`.
pub trait Context<T> {
    /// Prefixes the error with `what`.
    fn ctx(self, what: impl Display) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl Display) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// The workspace root, found from xtask's own manifest so that xtask works from
/// any current directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo that launched us (`cargo run` sets `CARGO`), so a pinned toolchain
/// is used for the nested builds too.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs a command to completion with inherited stdio and returns its status.
pub fn run_inherit(cmd: &mut Command) -> Result<ExitStatus> {
    cmd.status().ctx(format!("running {}", describe(cmd)))
}

/// Runs a command quietly, appending its output to `log`; on failure the error
/// names the log so the user knows where to look.
pub fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .ctx(format!("opening {}", log.display()))?;
    let err = file.try_clone().ctx("duplicating log handle")?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .ctx(format!("running {}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed ({status}); log: {}\n{}",
            describe(cmd),
            log.display(),
            tail(log, 15)
        ))
    }
}

/// A shell-like rendering of a command for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

/// Maps an exit status to a shell-style exit code (128 + signal when killed).
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// The last `n` lines of a log file, indented, for inclusion in error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Path relative to the workspace root when possible: shorter messages.
pub fn rel(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// What `/proc/PID/stat` tells us about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state; `Z`/`X` mean the process is gone but not reaped.
    pub state: char,
    /// Process group id: servers run in their own group so we can stop children too.
    pub pgid: u32,
    /// Start time in clock ticks since boot: with the pid, identifies a process
    /// across pid reuse.
    pub starttime: u64,
}

/// Parses the content of `/proc/PID/stat`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgid: fields.get(2)?.parse().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

/// Reads `/proc/PID/stat`; `None` when the process does not exist.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// True when `pid` is a running (not zombie) process that started at `starttime`.
pub fn is_alive(pid: u32, starttime: u64) -> bool {
    proc_stat(pid).is_some_and(|s| s.starttime == starttime && !matches!(s.state, 'Z' | 'X'))
}

/// Live (non-zombie) members of a process group.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            proc_stat(*pid).is_some_and(|s| s.pgid == pgid && !matches!(s.state, 'Z' | 'X'))
        })
        .collect()
}

/// Sends a signal through the `kill` binary; `target` is a pid or `-PGID`.
/// Errors are ignored: the process may have exited in between.
pub fn signal(target: &str, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The effective uid, from `/proc/self/status` (no libc).
pub fn euid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Looks a user up in `/etc/passwd`; returns (uid, gid).
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

/// A random lowercase hex string from `/dev/urandom`, for per-run passwords.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0_u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .ctx("reading /dev/urandom")?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Finds an executable by name in `PATH` and then in `extra` directories.
pub fn which(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// True for a regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_stat(text);
        assert_eq!(
            stat,
            Some(ProcStat {
                state: 'S',
                pgid: 4242,
                starttime: 987_654
            })
        );
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_identified() {
        let pid = std::process::id();
        let stat = proc_stat(pid);
        assert!(stat.is_some());
        let starttime = stat.map_or(0, |s| s.starttime);
        assert!(is_alive(pid, starttime));
        assert!(!is_alive(pid, starttime + 1));
    }

    #[test]
    fn random_hex_has_requested_length() {
        let hex = random_hex(8).unwrap_or_default();
        assert_eq!(hex.len(), 16);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
