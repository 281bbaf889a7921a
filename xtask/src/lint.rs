//! `cargo xtask lint`: rustfmt, clippy, the dependency-direction rule and tidy.
//!
//! The dependency rule keeps the domain crates sans-IO (STYLE.md section 1):
//! a domain crate may use `sre-core` and small IO-free crates, never an
//! adapter or an SDK. It is checked on the resolved graph from
//! `cargo metadata`, so renames and workspace inheritance cannot hide an edge.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::tidy::{self, Violation};
use crate::util::{Context, Result, cargo, run_inherit, workspace_root};

/// Crates that hold decisions and must stay free of IO.
pub const DOMAIN: &[&str] = &[
    "sre-core",
    "sre-failover",
    "sre-remediation",
    "sre-rotation",
    "sre-gdpr",
    "sre-airgap",
    "sre-gpu",
    "sre-vector-ops",
];

/// SDK and IO crates only adapters may use (exact names).
const BANNED_EXACT: &[&str] = &[
    "kube",
    "k8s-openapi",
    "vaultrs",
    "reqwest",
    "hyper",
    "axum",
    "tonic",
    "opentelemetry-otlp",
];

/// SDK families only adapters may use (name prefixes).
const BANNED_PREFIX: &[&str] = &["sre-adapter-", "aws-", "hickory-"];

/// Optional dependencies a domain crate may declare behind an opt-in feature that only
/// binaries enable: sre-core's `otlp` feature carries the trace exporter so that every
/// binary shares one telemetry set-up. Libraries never turn it on (their default
/// features are empty), so the domain logic still compiles without it.
const FEATURE_GATED: &[(&str, &str)] = &[("sre-core", "opentelemetry-otlp")];

fn is_banned(name: &str) -> bool {
    BANNED_EXACT.contains(&name) || BANNED_PREFIX.iter().any(|p| name.starts_with(p))
}

/// The line in a manifest that declares `dep`, so the report points at it.
fn manifest_line(manifest: &str, dep: &str) -> usize {
    manifest
        .lines()
        .position(|l| {
            let t = l.trim_start();
            t.strip_prefix(dep)
                .is_some_and(|rest| rest.trim_start().starts_with('=') || rest.starts_with('.'))
                || t.starts_with(&format!("[dependencies.{dep}]"))
        })
        .map_or(1, |i| i + 1)
}

/// A package as far as the rule is concerned.
struct Pkg<'a> {
    name: &'a str,
    manifest: &'a str,
}

/// Checks the dependency rule on `cargo metadata --format-version 1` output.
/// `read` returns a manifest's text (for line numbers); `rel` shortens paths.
pub fn check_deps(
    meta: &Value,
    read: &dyn Fn(&str) -> String,
    rel: &dyn Fn(&str) -> String,
) -> Result<Vec<Violation>> {
    let bad = || "unexpected `cargo metadata` output".to_owned();
    let mut pkgs: HashMap<&str, Pkg> = HashMap::new();
    for p in meta
        .get("packages")
        .and_then(Value::as_array)
        .ok_or_else(bad)?
    {
        let id = p.get("id").and_then(Value::as_str).ok_or_else(bad)?;
        let name = p.get("name").and_then(Value::as_str).ok_or_else(bad)?;
        let manifest = p.get("manifest_path").and_then(Value::as_str).unwrap_or("");
        pkgs.insert(id, Pkg { name, manifest });
    }
    let members: HashSet<&str> = meta
        .get("workspace_members")
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Non-dev edges of the resolved graph: id -> dependency ids.
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    let nodes = meta
        .pointer("/resolve/nodes")
        .and_then(Value::as_array)
        .ok_or_else(bad)?;
    for node in nodes {
        let id = node.get("id").and_then(Value::as_str).ok_or_else(bad)?;
        let deps = node
            .get("deps")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let normal = deps.iter().filter(|d| {
            d.get("dep_kinds")
                .and_then(Value::as_array)
                .is_some_and(|ks| {
                    ks.iter()
                        .any(|k| k.get("kind").and_then(Value::as_str) != Some("dev"))
                })
        });
        edges.insert(
            id,
            normal
                .filter_map(|d| d.get("pkg").and_then(Value::as_str))
                .collect(),
        );
    }

    let name_of = |id: &str| pkgs.get(id).map_or("?", |p| p.name);
    let mut out = Vec::new();
    let mut domain_ids: Vec<&str> = members
        .iter()
        .copied()
        .filter(|id| DOMAIN.contains(&name_of(id)))
        .collect();
    domain_ids.sort_by_key(|id| name_of(id));
    for id in domain_ids {
        let pkg = &pkgs[id];
        let text = read(pkg.manifest);
        let mut report = |direct: &str, message: String| {
            out.push(Violation {
                path: rel(pkg.manifest),
                line: manifest_line(&text, direct),
                message,
            });
        };
        for dep in edges.get(id).map_or(&[][..], Vec::as_slice) {
            let dep_name = name_of(dep);
            if FEATURE_GATED.contains(&(pkg.name, dep_name)) {
                continue;
            }
            if is_banned(dep_name) {
                report(
                    dep_name,
                    format!(
                        "domain crate {} depends on {dep_name}: only adapters may (use a port trait)",
                        pkg.name
                    ),
                );
            } else if DOMAIN.contains(&dep_name) && dep_name != "sre-core" {
                report(
                    dep_name,
                    format!(
                        "domain crate {} depends on domain crate {dep_name}: only sre-core is shared",
                        pkg.name
                    ),
                );
            } else if members.contains(dep) && !DOMAIN.contains(&dep_name) {
                // A workspace helper crate must not smuggle an SDK in.
                if let Some(path) = banned_path(dep, &edges, &members, &name_of) {
                    report(
                        dep_name,
                        format!(
                            "domain crate {} reaches {} through {}",
                            pkg.name,
                            path.last().map_or("?", |s| s.as_str()),
                            path.join(" -> ")
                        ),
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Breadth-first search from a workspace crate through workspace crates to a
/// banned crate; returns the path of names if one exists.
fn banned_path<'a>(
    start: &'a str,
    edges: &HashMap<&'a str, Vec<&'a str>>,
    members: &HashSet<&str>,
    name_of: &dyn Fn(&str) -> &'a str,
) -> Option<Vec<String>> {
    let mut seen = HashSet::from([start]);
    let mut queue = VecDeque::from([(start, vec![name_of(start).to_owned()])]);
    while let Some((id, path)) = queue.pop_front() {
        for dep in edges.get(id).map_or(&[][..], Vec::as_slice) {
            let name = name_of(dep);
            let mut next = path.clone();
            next.push(name.to_owned());
            if is_banned(name) {
                return Some(next);
            }
            // Domain crates are checked on their own: do not report their edges twice.
            if members.contains(dep) && !DOMAIN.contains(&name) && seen.insert(dep) {
                queue.push_back((dep, next));
            }
        }
    }
    None
}

fn run_deps_check(root: &Path) -> Result<Vec<Violation>> {
    let out = cargo()
        // The graph as resolved for the workspace (features unified), as the brief
        // asks; optional deps behind features no member enables are not edges.
        .args(["metadata", "--format-version", "1"])
        .output()
        .ctx("running cargo metadata")?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: Value = serde_json::from_slice(&out.stdout).ctx("parsing cargo metadata")?;
    let root = root.to_path_buf();
    check_deps(
        &meta,
        &|p| fs::read_to_string(p).unwrap_or_default(),
        &|p| {
            Path::new(p)
                .strip_prefix(&root)
                .map_or_else(|_| p.to_owned(), |r| r.display().to_string())
        },
    )
}

/// Runs every lint; prints each violation and returns 1 if any check failed.
pub fn main(args: &[String]) -> Result<i32> {
    if !args.is_empty() {
        eprintln!("usage: cargo xtask lint");
        return Ok(64);
    }
    let root = workspace_root();
    let mut failed = Vec::new();

    println!("lint: cargo fmt --all -- --check");
    if !run_inherit(cargo().args(["fmt", "--all", "--", "--check"]))?.success() {
        failed.push("rustfmt");
    }
    // All features: optional code (`sre --features rotation`, sre-core `otlp`) is
    // checked too; every feature is additive, so this is one build, not a matrix.
    println!("lint: cargo clippy --workspace --all-targets --all-features -- -D warnings");
    if !run_inherit(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?
    .success()
    {
        failed.push("clippy");
    }
    println!("lint: cargo doc --workspace --all-features --no-deps (warnings are errors)");
    if !run_inherit(
        cargo()
            .args([
                "doc",
                "--workspace",
                "--all-features",
                "--no-deps",
                "--quiet",
            ])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?
    .success()
    {
        failed.push("rustdoc");
    }
    println!("lint: dependency direction (domain crates stay sans-IO)");
    let deps = run_deps_check(&root)?;
    for v in &deps {
        println!("{v}");
    }
    if !deps.is_empty() {
        failed.push("dependency direction");
    }
    println!("lint: tidy (module docs, thin main.rs, no placeholders, no bare ignore)");
    let tidy = tidy::check_workspace(&root);
    for v in &tidy {
        println!("{v}");
    }
    if !tidy.is_empty() {
        failed.push("tidy");
    }

    if failed.is_empty() {
        println!("lint: all checks passed");
        Ok(0)
    } else {
        eprintln!("lint failed: {}", failed.join(", "));
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tiny resolved graph: `(id, kind)` edges with kind `null` (normal) or "dev".
    fn meta(members: &[&str], edges: &[(&str, &str, Option<&str>)], extra: &[&str]) -> Value {
        let all: Vec<&str> = members.iter().chain(extra).copied().collect();
        let packages: Vec<Value> = all
            .iter()
            .map(|n| json!({"id": format!("{n} 0.1.0"), "name": n, "manifest_path": format!("/ws/{n}/Cargo.toml")}))
            .collect();
        let nodes: Vec<Value> = all
            .iter()
            .map(|n| {
                let deps: Vec<Value> = edges
                    .iter()
                    .filter(|(from, _, _)| from == n)
                    .map(|(_, to, kind)| json!({"name": to, "pkg": format!("{to} 0.1.0"), "dep_kinds": [{"kind": kind, "target": null}]}))
                    .collect();
                json!({"id": format!("{n} 0.1.0"), "deps": deps})
            })
            .collect();
        let ids: Vec<String> = members.iter().map(|n| format!("{n} 0.1.0")).collect();
        json!({"packages": packages, "workspace_members": ids, "resolve": {"nodes": nodes}})
    }

    fn check(meta: &Value) -> Vec<String> {
        let manifest = |p: &str| {
            if p.contains("sre-failover") {
                "[package]\nname = \"sre-failover\"\n[dependencies]\nsre-core.workspace = true\nreqwest = \"0.12\"\nsre-rotation = { workspace = true }\nhelper.workspace = true\n".to_owned()
            } else {
                String::new()
            }
        };
        let rel = |p: &str| p.trim_start_matches("/ws/").to_owned();
        check_deps(meta, &manifest, &rel)
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn clean_graph_passes() {
        let m = meta(
            &["sre-core", "sre-failover", "sre-adapter-dns", "sre"],
            &[
                ("sre-failover", "sre-core", None),
                ("sre-failover", "serde", None),
                ("sre-failover", "tokio", Some("dev")),
                // Dev-dependencies on adapters are allowed (contract tests).
                ("sre-failover", "sre-adapter-dns", Some("dev")),
                ("sre-adapter-dns", "hickory-resolver", None),
                ("sre", "sre-adapter-dns", None),
            ],
            &["serde", "tokio", "hickory-resolver"],
        );
        assert_eq!(check(&m), Vec::<String>::new());
    }

    #[test]
    fn sdk_and_cross_domain_edges_are_reported_with_lines() {
        let m = meta(
            &["sre-core", "sre-failover", "sre-rotation"],
            &[
                ("sre-failover", "sre-core", None),
                ("sre-failover", "reqwest", None),
                ("sre-failover", "sre-rotation", None),
            ],
            &["reqwest"],
        );
        let got = check(&m);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with(
                "sre-failover/Cargo.toml:5: domain crate sre-failover depends on reqwest"
            ),
            "{got:?}"
        );
        assert!(got[1].starts_with("sre-failover/Cargo.toml:6: domain crate sre-failover depends on domain crate sre-rotation"), "{got:?}");
    }

    #[test]
    fn sdk_through_a_workspace_helper_is_reported() {
        let m = meta(
            &["sre-core", "sre-failover", "helper", "sre-adapter-s3"],
            &[
                ("sre-failover", "helper", None),
                ("helper", "sre-adapter-s3", None),
                ("sre-adapter-s3", "aws-sdk-s3", None),
            ],
            &["aws-sdk-s3"],
        );
        let got = check(&m);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("Cargo.toml:7: domain crate sre-failover reaches sre-adapter-s3 through helper -> sre-adapter-s3"), "{got:?}");
    }

    #[test]
    fn sdk_in_sre_core_is_reported_once_not_per_dependent() {
        let m = meta(
            &["sre-core", "sre-failover", "sre-gdpr"],
            &[
                ("sre-failover", "sre-core", None),
                ("sre-gdpr", "sre-core", None),
                ("sre-core", "kube", None),
            ],
            &["kube"],
        );
        let got = check(&m);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("domain crate sre-core depends on kube"),
            "{got:?}"
        );
    }

    #[test]
    fn the_feature_gated_otlp_exporter_in_sre_core_is_allowed_but_not_elsewhere() {
        let m = meta(
            &["sre-core", "sre-gdpr"],
            &[
                ("sre-core", "opentelemetry-otlp", None),
                ("sre-gdpr", "opentelemetry-otlp", None),
            ],
            &["opentelemetry-otlp"],
        );
        let got = check(&m);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("domain crate sre-gdpr depends on opentelemetry-otlp"),
            "{got:?}"
        );
    }

    #[test]
    fn banned_names() {
        for name in [
            "kube",
            "aws-config",
            "hickory-proto",
            "sre-adapter-s3",
            "opentelemetry-otlp",
            "hyper",
        ] {
            assert!(is_banned(name), "{name}");
        }
        for name in [
            "sre-core",
            "opentelemetry",
            "hyperlocal-ish",
            "serde",
            "tokio",
        ] {
            assert!(!is_banned(name), "{name}");
        }
    }
}
