//! The controller's configuration: one YAML or TOML file plus environment variables,
//! deserialised strictly and validated all at once (every problem reported, exit 64).
//!
//! Environment: `FAILOVER__<KEY>__<SUBKEY>=value` sets any key; the upstream deployment's
//! variable names are accepted as aliases: `REGION`, `PEER_REGION`, `DNS_WITNESSES`
//! (comma-separated resolver addresses) and `QUORUM` (answers needed), plus the usual
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` for the S3 witness.

use crate::layers::{KubeLayers, RawKube};
use serde::{Deserialize, Serialize};
use sre_core::RegionId;
use sre_core::config::{ConfigError, EnvOverrides, Validate};
use sre_core::telemetry::LogFormat;
use sre_failover::FailoverConfig;
use sre_failover::model::{Mode, RawFailoverConfig, RawQuorum, RawTimings, WitnessLossPolicy};
use sre_failover::observe::HealthNames;
use sre_failover::run::RunSettings;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The environment overrides the controller reads.
pub fn env_overrides() -> EnvOverrides {
    EnvOverrides::with_prefix("FAILOVER")
        .alias("REGION", "region")
        .alias("PEER_REGION", "peer_region")
        .alias("DNS_WITNESSES", "resolvers")
        .alias("QUORUM", "quorum")
        .alias("AWS_ACCESS_KEY_ID", "witness.access_key")
        .alias("AWS_SECRET_ACCESS_KEY", "witness.secret_key")
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControllerConfig {
    region: Option<String>,
    peer_region: Option<String>,
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default)]
    timings: RawTimings,
    #[serde(default = "automatic")]
    mode: Mode,
    #[serde(default = "dns_quorum")]
    witness_loss: WitnessLossPolicy,
    quorum: Option<RawQuorumSpec>,
    resolvers: Option<RawResolvers>,
    health: Option<RawHealth>,
    witness: Option<RawWitness>,
    #[serde(default = "no_layers")]
    layers: String,
    #[serde(default = "listen")]
    listen: String,
    #[serde(default = "tick", with = "humantime_serde")]
    tick: Duration,
    #[serde(default = "step_timeout", with = "humantime_serde")]
    step_timeout: Duration,
    #[serde(default = "json")]
    log_format: String,
    evidence: Option<RawEvidence>,
    kube: Option<RawKube>,
    control: Option<RawControl>,
}

fn automatic() -> Mode {
    Mode::Automatic
}
fn dns_quorum() -> WitnessLossPolicy {
    WitnessLossPolicy::DnsQuorum
}
fn no_layers() -> String {
    "none".into()
}
fn listen() -> String {
    "0.0.0.0:9090".into()
}
fn tick() -> Duration {
    RunSettings::standard().tick
}
fn step_timeout() -> Duration {
    RunSettings::standard().step_timeout
}
fn json() -> String {
    "json".into()
}

/// `QUORUM=2` (answers needed, of = the number of resolvers) or `{needed, of}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawQuorumSpec {
    Needed(u8),
    Full(RawQuorum),
}

/// `"1.1.1.1,9.9.9.9:53"` or a list of addresses or `{name, addr}` tables.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawResolvers {
    Csv(String),
    List(Vec<RawResolver>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawResolver {
    Addr(String),
    Named { name: String, addr: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    zone: Option<String>,
    #[serde(default)]
    names: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitness {
    kind: String,
    // s3
    endpoint: Option<String>,
    bucket: Option<String>,
    #[serde(default = "lease_key")]
    key: String,
    #[serde(default = "s3_region")]
    s3_region: String,
    access_key: Option<String>,
    secret_key: Option<String>,
    #[serde(default)]
    force_path_style: bool,
    // file
    path: Option<PathBuf>,
    // http
    url: Option<String>,
    lease: Option<String>,
    token: Option<String>,
    // kube
    namespace: Option<String>,
    name: Option<String>,
}

fn lease_key() -> String {
    "failover/lease.json".into()
}
fn s3_region() -> String {
    "us-east-1".into()
}

/// `evidence: {path: F}` (a local hash-chained file) or `evidence: {s3: {...}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvidence {
    path: Option<PathBuf>,
    s3: Option<RawS3Evidence>,
}

/// The S3 evidence chain; unset connection fields are taken from an S3 witness.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3Evidence {
    bucket: Option<String>,
    prefix: Option<String>,
    endpoint: Option<String>,
    s3_region: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    force_path_style: Option<bool>,
}

/// Where the audit chain goes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum EvidenceChoice {
    /// A local hash-chained JSON-lines file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// Create-only objects under a prefix in an S3 bucket (sre-core `ObjectStoreEvidenceLog`).
    S3 {
        /// Custom endpoint for S3-compatible stores.
        endpoint: Option<String>,
        /// Bucket.
        bucket: String,
        /// Key prefix of the chain (no trailing slash).
        prefix: String,
        /// Signing region.
        s3_region: String,
        /// Access key id.
        access_key: String,
        /// Secret key.
        secret_key: Secret,
        /// Path-style addressing.
        force_path_style: bool,
    },
}

/// `control:` the authenticated endpoint for approvals and operator commands.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    /// The bearer token (prefer `token_file`, or `FAILOVER__CONTROL__TOKEN`).
    token: Option<String>,
    /// A file holding the bearer token (a mounted Secret).
    token_file: Option<PathBuf>,
    /// Who may approve a promotion (empty: anyone but the controller itself).
    #[serde(default)]
    approvers: Vec<String>,
    /// How long an approval request (and a `promote` command) stays valid.
    #[serde(default = "approval_ttl", with = "humantime_serde")]
    approval_ttl: Duration,
}

fn approval_ttl() -> Duration {
    Duration::from_mins(10)
}

/// The validated `control:` section.
#[derive(Debug, Clone, Serialize)]
pub struct ControlConfig {
    /// The bearer token every `/v1` request must carry.
    pub token: Secret,
    /// Allowed approvers (empty: anyone but the requester).
    pub approvers: Vec<String>,
    /// Validity of an approval request or a `promote` command.
    #[serde(with = "humantime_serde")]
    pub approval_ttl: Duration,
}

/// A secret that never reaches a log line or `--check-config` output.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Where the lease lives.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum WitnessChoice {
    /// An S3 object written with conditional PUTs.
    S3 {
        /// Custom endpoint for S3-compatible stores.
        endpoint: Option<String>,
        /// Bucket.
        bucket: String,
        /// Object key of the lease.
        key: String,
        /// Signing region.
        s3_region: String,
        /// Access key id.
        access_key: String,
        /// Secret key.
        secret_key: Secret,
        /// Path-style addressing (most S3-compatible servers).
        force_path_style: bool,
    },
    /// A local lease file (drills, single host).
    File {
        /// The file.
        path: PathBuf,
    },
    /// The HTTP witness protocol.
    Http {
        /// Base URL of the witness server.
        url: String,
        /// Lease name.
        lease: String,
        /// Bearer token.
        token: Secret,
    },
    /// A `coordination.k8s.io/v1` `Lease`, replaced only at the `resourceVersion` read
    /// (the API server's client config: in-cluster service account or `KUBECONFIG`).
    Kube {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
    },
}

/// One resolver of the quorum.
#[derive(Debug, Clone, Serialize)]
pub struct ResolverSpec {
    /// Name in logs and metrics.
    pub name: String,
    /// Address and port.
    pub addr: SocketAddr,
}

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct ControllerConfig {
    /// The failover core's config.
    pub failover: FailoverConfig,
    /// The quorum's resolvers, in order.
    pub resolvers: Vec<ResolverSpec>,
    /// Health name per region.
    pub health: HealthNames,
    /// The witness.
    pub witness: WitnessChoice,
    /// True for lease-only mode (`layers: none`).
    pub lease_only: bool,
    /// The Kubernetes objects the layers move (`layers: kube`).
    pub kube: Option<KubeLayers>,
    /// The control endpoint (`/v1/...`), when a token is configured.
    pub control: Option<ControlConfig>,
    /// `/metrics` and `/healthz` listen here.
    pub listen: SocketAddr,
    /// Loop pacing.
    pub settings: RunSettings,
    /// `json` or `text`.
    #[serde(skip)]
    pub log_format: LogFormat,
    /// The audit chain, if any.
    pub evidence: Option<EvidenceChoice>,
}

fn parse_resolver(name: Option<String>, addr: &str) -> Result<ResolverSpec, String> {
    let with_port = if addr.parse::<std::net::IpAddr>().is_ok() {
        format!("{addr}:53")
    } else {
        addr.to_owned()
    };
    let sock = with_port
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| with_port.to_socket_addrs().ok().and_then(|mut a| a.next()))
        .ok_or_else(|| format!("{addr:?} is not an address[:port]"))?;
    Ok(ResolverSpec {
        name: name.unwrap_or_else(|| addr.to_owned()),
        addr: sock,
    })
}

/// Checks a Kubernetes object name at start-up, so that a typo is exit 64 with the field
/// named rather than a 422 from the API server on the first lease write: a namespace is
/// an RFC 1123 label (`dots: false`, 63 characters), a Lease name an RFC 1123 subdomain.
fn kube_name(name: &str, max: usize, dots: bool) -> Result<(), String> {
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > max || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?}: lower-case letters, digits{} and '-', at most {max} characters",
            if dots { ", '.'" } else { "" }
        ));
    }
    if !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        return Err(format!(
            "{name:?}: must start and end with a letter or digit"
        ));
    }
    Ok(())
}

impl RawControllerConfig {
    fn regions(&self, errs: &mut Vec<ConfigError>) -> (Vec<String>, String) {
        let this = self.region.clone().unwrap_or_default();
        if this.is_empty() {
            errs.push(ConfigError::new("region", "required (or REGION)"));
        }
        let regions = match (&self.peer_region, self.regions.is_empty()) {
            (Some(peer), true) => {
                // Both controllers must agree on the promotion order: sort the pair.
                let mut v = vec![this.clone(), peer.clone()];
                v.sort();
                v
            }
            (None, false) => self.regions.clone(),
            (Some(_), false) => {
                errs.push(ConfigError::new(
                    "peer_region",
                    "set regions or peer_region, not both",
                ));
                self.regions.clone()
            }
            (None, true) => {
                errs.push(ConfigError::new("regions", "required (or PEER_REGION)"));
                Vec::new()
            }
        };
        (regions, this)
    }

    fn resolvers(&self, errs: &mut Vec<ConfigError>) -> Vec<ResolverSpec> {
        let items: Vec<(Option<String>, String)> = match &self.resolvers {
            None => {
                errs.push(ConfigError::new("resolvers", "required (or DNS_WITNESSES)"));
                Vec::new()
            }
            Some(RawResolvers::Csv(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| (None, s.to_owned()))
                .collect(),
            Some(RawResolvers::List(l)) => l
                .iter()
                .map(|r| match r {
                    RawResolver::Addr(a) => (None, a.clone()),
                    RawResolver::Named { name, addr } => (Some(name.clone()), addr.clone()),
                })
                .collect(),
        };
        let mut out = Vec::new();
        for (i, (name, addr)) in items.into_iter().enumerate() {
            match parse_resolver(name, &addr) {
                Ok(r) => out.push(r),
                Err(e) => errs.push(ConfigError::new(format!("resolvers[{i}]"), e)),
            }
        }
        out
    }

    fn witness(&self, errs: &mut Vec<ConfigError>) -> Option<WitnessChoice> {
        let Some(w) = &self.witness else {
            errs.push(ConfigError::new("witness", "required"));
            return None;
        };
        let mut need = |field: &str, v: &Option<String>| {
            if v.is_none() {
                errs.push(ConfigError::new(
                    format!("witness.{field}"),
                    format!("required for kind {}", w.kind),
                ));
            }
            v.clone().unwrap_or_default()
        };
        let choice = match w.kind.as_str() {
            "s3" => WitnessChoice::S3 {
                endpoint: w.endpoint.clone(),
                bucket: need("bucket", &w.bucket),
                key: w.key.clone(),
                s3_region: w.s3_region.clone(),
                access_key: need("access_key", &w.access_key),
                secret_key: Secret(need("secret_key", &w.secret_key)),
                force_path_style: w.force_path_style,
            },
            "http" => WitnessChoice::Http {
                url: need("url", &w.url),
                lease: need("lease", &w.lease),
                token: Secret(need("token", &w.token)),
            },
            "kube" => {
                let namespace = need("namespace", &w.namespace);
                let name = need("name", &w.name);
                if let Some(Err(e)) = w.namespace.as_deref().map(|n| kube_name(n, 63, false)) {
                    errs.push(ConfigError::new("witness.namespace", e));
                }
                if let Some(Err(e)) = w.name.as_deref().map(|n| kube_name(n, 253, true)) {
                    errs.push(ConfigError::new("witness.name", e));
                }
                WitnessChoice::Kube { namespace, name }
            }
            "file" => {
                let Some(path) = &w.path else {
                    errs.push(ConfigError::new("witness.path", "required for kind file"));
                    return None;
                };
                WitnessChoice::File { path: path.clone() }
            }
            other => {
                errs.push(ConfigError::new(
                    "witness.kind",
                    format!("{other:?}: use s3, file, http or kube"),
                ));
                return None;
            }
        };
        Some(choice)
    }

    fn health(
        &self,
        failover: Option<&FailoverConfig>,
        errs: &mut Vec<ConfigError>,
    ) -> Option<HealthNames> {
        match (failover, &self.health) {
            (Some(f), Some(h)) => {
                let names: BTreeMap<RegionId, String> = h
                    .names
                    .iter()
                    .map(|(k, v)| (RegionId::new(k.clone()), v.clone()))
                    .collect();
                for k in names.keys().filter(|k| !f.regions.contains(k)) {
                    errs.push(ConfigError::new(
                        format!("health.names.{k}"),
                        "not a configured region",
                    ));
                }
                let missing = f.regions.iter().any(|r| !names.contains_key(r));
                if missing && h.zone.is_none() {
                    errs.push(ConfigError::new(
                        "health.zone",
                        "required unless every region has a name",
                    ));
                }
                Some(HealthNames::for_zone(
                    &f.regions,
                    h.zone.as_deref().unwrap_or(""),
                    &names,
                ))
            }
            (_, None) => {
                errs.push(ConfigError::new(
                    "health.zone",
                    "required: names are <region>.health.<zone>",
                ));
                None
            }
            (None, Some(_)) => None,
        }
    }

    fn layers(&self, errs: &mut Vec<ConfigError>) -> Option<KubeLayers> {
        match (self.layers.as_str(), &self.kube) {
            ("none", None) => None,
            ("none", Some(_)) => {
                errs.push(ConfigError::new(
                    "kube",
                    "only read with layers: kube (layers is none)",
                ));
                None
            }
            ("kube", Some(k)) => Some(k.validate(errs)),
            ("kube", None) => {
                errs.push(ConfigError::new(
                    "kube",
                    "required with layers: kube (namespace, routes, mesh, cnpg, ferretdb, strimzi)",
                ));
                None
            }
            (other, _) => {
                errs.push(ConfigError::new(
                    "layers",
                    format!("{other:?}: use none (lease-only) or kube"),
                ));
                None
            }
        }
    }

    fn control(&self, errs: &mut Vec<ConfigError>) -> Option<ControlConfig> {
        let Some(c) = &self.control else {
            if self.mode != Mode::Automatic {
                errs.push(ConfigError::new(
                    "control.token_file",
                    format!("required in mode {:?}: approvals and promote/demote come through the control endpoint", self.mode),
                ));
            }
            return None;
        };
        let token = match (&c.token, &c.token_file) {
            (Some(t), None) => Some(t.trim().to_owned()),
            (None, Some(f)) => match std::fs::read_to_string(f) {
                Ok(t) => Some(t.trim().to_owned()),
                Err(e) => {
                    errs.push(ConfigError::new(
                        "control.token_file",
                        format!("{}: {e}", f.display()),
                    ));
                    None
                }
            },
            (Some(_), Some(_)) => {
                errs.push(ConfigError::new(
                    "control.token",
                    "set token or token_file, not both",
                ));
                None
            }
            (None, None) => {
                errs.push(ConfigError::new(
                    "control.token_file",
                    "required (or control.token)",
                ));
                None
            }
        };
        // A short token is guessable whatever the comparison does.
        let token = token.filter(|t| {
            let ok = t.len() >= 16;
            if !ok {
                errs.push(ConfigError::new("control.token", "at least 16 characters"));
            }
            ok
        })?;
        if c.approval_ttl < Duration::from_secs(10) {
            errs.push(ConfigError::new(
                "control.approval_ttl",
                "at least 10s: a human must be able to answer",
            ));
        }
        Some(ControlConfig {
            token: Secret(token),
            approvers: c.approvers.clone(),
            approval_ttl: c.approval_ttl,
        })
    }

    fn evidence(
        &self,
        witness: Option<&WitnessChoice>,
        errs: &mut Vec<ConfigError>,
    ) -> Option<EvidenceChoice> {
        let e = self.evidence.as_ref()?;
        let s3 = match (&e.path, &e.s3) {
            (Some(path), None) => return Some(EvidenceChoice::File { path: path.clone() }),
            (None, Some(s3)) => s3,
            _ => {
                errs.push(ConfigError::new(
                    "evidence",
                    "set exactly one of path or s3",
                ));
                return None;
            }
        };
        let from_witness = match witness {
            Some(WitnessChoice::S3 {
                endpoint,
                s3_region,
                access_key,
                secret_key,
                force_path_style,
                ..
            }) => Some((
                endpoint,
                s3_region,
                access_key,
                secret_key,
                *force_path_style,
            )),
            _ => None,
        };
        let mut need = |field: &str, own: &Option<String>, dflt: Option<&String>| {
            let v = own.clone().or_else(|| dflt.cloned());
            if v.is_none() {
                errs.push(ConfigError::new(
                    format!("evidence.s3.{field}"),
                    "required (or an S3 witness to take it from)",
                ));
            }
            v.unwrap_or_default()
        };
        let region = self.region.clone().unwrap_or_default();
        Some(EvidenceChoice::S3 {
            endpoint: s3
                .endpoint
                .clone()
                .or_else(|| from_witness.and_then(|w| w.0.clone())),
            bucket: need("bucket", &s3.bucket, None),
            prefix: s3
                .prefix
                .clone()
                .unwrap_or_else(|| format!("failover/evidence/{region}")),
            s3_region: need("s3_region", &s3.s3_region, from_witness.map(|w| w.1)),
            access_key: need("access_key", &s3.access_key, from_witness.map(|w| w.2)),
            secret_key: Secret(need(
                "secret_key",
                &s3.secret_key,
                from_witness.map(|w| &w.3.0),
            )),
            force_path_style: s3
                .force_path_style
                .or(from_witness.map(|w| w.4))
                .unwrap_or(false),
        })
    }

    fn misc(&self, errs: &mut Vec<ConfigError>) -> (Result<SocketAddr, ()>, LogFormat) {
        let listen = self.listen.parse::<SocketAddr>().map_err(|e| {
            errs.push(ConfigError::new(
                "listen",
                format!("{:?}: {e}", self.listen),
            ));
        });
        let log_format = match self.log_format.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                errs.push(ConfigError::new(
                    "log_format",
                    format!("{other:?}: use json or text"),
                ));
                LogFormat::Json
            }
        };
        (listen, log_format)
    }
}

impl Validate for RawControllerConfig {
    type Valid = ControllerConfig;

    fn validate(self) -> Result<ControllerConfig, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let (regions, this_region) = self.regions(&mut errs);
        let resolvers = self.resolvers(&mut errs);
        let of = u8::try_from(resolvers.len()).unwrap_or(u8::MAX);
        let quorum = match self.quorum {
            Some(RawQuorumSpec::Full(q)) => q,
            Some(RawQuorumSpec::Needed(needed)) => RawQuorum { needed, of },
            None => RawQuorum {
                needed: of / 2 + 1,
                of,
            },
        };
        if usize::from(quorum.of) != resolvers.len() && self.resolvers.is_some() {
            errs.push(ConfigError::new(
                "quorum.of",
                format!(
                    "{} but {} resolvers are configured",
                    quorum.of,
                    resolvers.len()
                ),
            ));
        }
        let raw = RawFailoverConfig {
            regions,
            this_region,
            timings: self.timings.clone(),
            mode: self.mode,
            witness_loss: self.witness_loss,
            quorum,
        };
        let failover = Validate::validate(raw).map_err(|e| errs.extend(e)).ok();
        let witness = self.witness(&mut errs);
        let (listen, log_format) = self.misc(&mut errs);
        let evidence = self.evidence(witness.as_ref(), &mut errs);
        let kube = self.layers(&mut errs);
        let control = self.control(&mut errs);
        let health = self.health(failover.as_ref(), &mut errs);
        if self.tick.is_zero() {
            errs.push(ConfigError::new("tick", "must be greater than zero"));
        }
        if let Some(f) = failover
            .as_ref()
            .filter(|f| self.tick >= f.timings.renew_interval)
        {
            errs.push(ConfigError::new(
                "tick",
                format!(
                    "must be below the renew interval ({})",
                    humantime::format_duration(f.timings.renew_interval)
                ),
            ));
        }
        match (failover, health, witness, listen) {
            (Some(failover), Some(health), Some(witness), Ok(listen)) if errs.is_empty() => {
                Ok(ControllerConfig {
                    failover,
                    resolvers,
                    health,
                    witness,
                    lease_only: kube.is_none(),
                    kube,
                    control,
                    listen,
                    settings: RunSettings {
                        tick: self.tick,
                        step_timeout: self.step_timeout,
                    },
                    log_format,
                    evidence,
                })
            }
            _ => Err(errs),
        }
    }
}

/// The effective config for `--check-config`: secrets redacted, durations as
/// humantime strings (`30s`) rather than serde's `{secs, nanos}`.
pub fn effective(cfg: &ControllerConfig) -> serde_json::Value {
    fn humanise(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                let secs = m.get("secs").and_then(serde_json::Value::as_u64);
                let nanos = m.get("nanos").and_then(serde_json::Value::as_u64);
                if let (2, Some(s), Some(n)) = (m.len(), secs, nanos) {
                    let d = Duration::from_secs(s) + Duration::from_nanos(n);
                    *v = humantime::format_duration(d).to_string().into();
                } else {
                    m.values_mut().for_each(humanise);
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(humanise),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(cfg).unwrap_or_default();
    humanise(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use sre_core::config::{Format, Source, load};

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    const FILE: &str = "health: {zone: gslb.example.com}\nwitness: {kind: s3, bucket: lease, endpoint: 'http://127.0.0.1:9000', force_path_style: true}\n";

    fn yaml(text: &str) -> Source {
        Source::Text {
            name: "c.yaml".into(),
            text: text.into(),
            format: Format::Yaml,
        }
    }

    #[test]
    fn upstream_variable_names_configure_a_two_region_pair() {
        let c = load::<RawControllerConfig>(
            &yaml(FILE),
            &env_overrides(),
            vars(&[
                ("REGION", "us"),
                ("PEER_REGION", "eu"),
                ("DNS_WITNESSES", "8.8.8.8,1.1.1.1, 127.0.0.1:5353"),
                ("QUORUM", "2"),
                ("AWS_ACCESS_KEY_ID", "ak"),
                ("AWS_SECRET_ACCESS_KEY", "very-secret"),
                ("FAILOVER__TIMINGS__LEASE_TTL", "40s"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let regions: Vec<&str> = c.failover.regions.iter().map(RegionId::as_str).collect();
        assert_eq!(regions, ["eu", "us"], "both sides derive the same order");
        assert_eq!(c.failover.this_region.as_str(), "us");
        assert_eq!((c.failover.quorum.needed(), c.failover.quorum.of()), (2, 3));
        assert_eq!(
            c.resolvers[0].addr,
            "8.8.8.8:53".parse().unwrap_or(c.resolvers[1].addr)
        );
        assert_eq!(c.resolvers[2].addr.port(), 5353);
        assert_eq!(c.failover.timings.lease_ttl, Duration::from_secs(40));
        assert_eq!(
            c.health.get(&RegionId::new("eu")),
            Some("eu.health.gslb.example.com")
        );
        let shown = effective(&c).to_string();
        assert!(shown.contains(r#""lease_ttl":"40s""#), "{shown}");
        assert!(
            !shown.contains("very-secret") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let err = load::<RawControllerConfig>(
            &yaml("region: eu\nregions: [eu, us]\nresolvers: [1.1.1.1, 9.9.9.9, nonsense]\nquorum: 1\nwitness: {kind: s3}\nlayers: kube\ntick: 0s\n"),
            &env_overrides(),
            vec![],
        )
        .err()
        .map(|e| e.errors.into_iter().map(|e| e.path).collect::<Vec<_>>())
        .unwrap_or_default();
        for key in [
            "resolvers[2]",
            "quorum.needed",
            "witness.bucket",
            "kube",
            "health.zone",
            "tick",
        ] {
            assert!(err.iter().any(|p| p == key), "{key} missing from {err:?}");
        }
    }

    const BASE: &str = "region: eu\npeer_region: us\nresolvers: [1.1.1.1, 8.8.8.8, 9.9.9.9]\nhealth: {zone: gslb.example.com}\nwitness: {kind: file, path: /tmp/lease}\n";

    fn with(extra: &str) -> Result<ControllerConfig, Vec<String>> {
        load::<RawControllerConfig>(&yaml(&format!("{BASE}{extra}")), &env_overrides(), vec![])
            .map_err(|e| e.errors.into_iter().map(|e| e.path).collect())
    }

    #[test]
    fn kube_layers_map_onto_the_adapter_config() {
        let c = with(
            "layers: kube\nkube:\n  namespace: shop\n  peer_context: us-admin\n  routes: {names: [storefront], serving_backend: storefront, withdrawn_backend: storefront-withdrawn}\n  mesh: {services: [orders, carts]}\n  cnpg: {namespace: db, cluster: pg-eu, peer_name: pg-us}\n  ferretdb: {cluster: fdb-eu, self_name: eu, peer_name: us, peer_cluster: fdb-us, peer_namespace: docs}\n  strimzi: {mirror_maker: mm2-into-eu, local_alias: eu, standby_replicas: 2}\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!c.lease_only);
        let k = c.kube.unwrap_or_else(|| panic!("kube section"));
        let r = k.routes_config();
        assert_eq!(
            (
                r.namespace.as_str(),
                r.routes.as_slice(),
                r.serving_backend.as_str(),
                r.withdrawn_backend.as_str()
            ),
            (
                "shop",
                ["storefront".to_owned()].as_slice(),
                "storefront",
                "storefront-withdrawn"
            )
        );
        let m = k.mesh_config();
        assert_eq!((m.namespace.as_str(), m.services.len()), ("shop", 2));
        let st = k.stateful_config();
        let cnpg = st.cnpg.unwrap_or_else(|| panic!("cnpg"));
        assert_eq!(
            (cnpg.local.namespace.as_str(), cnpg.local.name.as_str()),
            ("db", "pg-eu")
        );
        assert_eq!(
            (cnpg.self_name.as_str(), cnpg.peer_name.as_str()),
            ("pg-eu", "pg-us")
        );
        let peer = cnpg
            .peer
            .unwrap_or_else(|| panic!("peer ref with peer_context"));
        assert_eq!(
            (peer.namespace.as_str(), peer.name.as_str()),
            ("db", "pg-us")
        );
        let fdb = st.ferretdb.unwrap_or_else(|| panic!("ferretdb"));
        assert_eq!(fdb.local.namespace, "shop");
        assert_eq!(
            fdb.peer.map(|p| (p.namespace, p.name)),
            Some(("docs".into(), "fdb-us".into()))
        );
        let mm2 = st.strimzi.unwrap_or_else(|| panic!("strimzi"));
        assert_eq!(
            (mm2.mirror_maker.as_str(), mm2.standby_replicas.get()),
            ("mm2-into-eu", 2)
        );
    }

    #[test]
    fn without_a_peer_context_no_peer_cluster_is_named() {
        let c = with("layers: kube\nkube: {namespace: shop, routes: {names: [a], serving_backend: s, withdrawn_backend: w}, mesh: {services: [m]}, cnpg: {cluster: pg-eu, peer_name: pg-us}}\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        let st = c.kube.map(|k| k.stateful_config());
        assert_eq!(st.and_then(|s| s.cnpg).map(|c| c.peer), Some(None));
    }

    #[test]
    fn kube_layer_problems_are_all_reported() {
        let errs = with("layers: kube\nkube:\n  routes: {names: [], serving_backend: s, withdrawn_backend: s}\n  cnpg: {cluster: pg, peer_name: pg}\n  strimzi: {namespace: k, standby_replicas: 0}\n  typo: 1\n")
            .err()
            .unwrap_or_default();
        assert!(
            errs.iter().any(|p| p.contains("typo") || p == "kube"),
            "unknown key refused: {errs:?}"
        );
        let errs = with("layers: kube\nkube:\n  routes: {names: [], serving_backend: s, withdrawn_backend: s}\n  cnpg: {cluster: pg, peer_name: pg}\n  strimzi: {namespace: k, standby_replicas: 0}\n")
            .err()
            .unwrap_or_default();
        for key in [
            "kube.routes.namespace",
            "kube.routes.names",
            "kube.routes.withdrawn_backend",
            "kube.mesh.namespace",
            "kube.mesh.services",
            "kube.cnpg.namespace",
            "kube.cnpg.peer_name",
            "kube.strimzi.mirror_maker",
            "kube.strimzi.local_alias",
            "kube.strimzi.standby_replicas",
        ] {
            assert!(errs.iter().any(|p| p == key), "{key} missing from {errs:?}");
        }
        assert_eq!(with("layers: kube\n").err(), Some(vec!["kube".to_owned()]));
        let e = with("kube: {namespace: x}\n").err();
        assert_eq!(
            e,
            Some(vec!["kube".to_owned()]),
            "a kube section needs layers: kube"
        );
    }

    #[test]
    fn non_automatic_modes_need_a_control_token() {
        assert_eq!(
            with("mode: semi-automatic\n").err(),
            Some(vec!["control.token_file".to_owned()])
        );
        assert_eq!(
            with("mode: manual\ncontrol: {token: short}\n").err(),
            Some(vec!["control.token".to_owned()])
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("token");
        std::fs::write(&f, "0123456789abcdef-long-enough\n").unwrap_or_else(|e| panic!("{e}"));
        let c = with(&format!(
            "mode: manual\ncontrol: {{token_file: {}, approvers: [ana], approval_ttl: 5m}}\n",
            f.display()
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let control = c.control.unwrap_or_else(|| panic!("control"));
        assert_eq!(control.token.0, "0123456789abcdef-long-enough");
        assert_eq!(control.approval_ttl, Duration::from_mins(5));
        assert!(!effective_contains_token(&c_effective(&f)));
    }

    fn c_effective(f: &std::path::Path) -> String {
        let c = with(&format!("control: {{token_file: {}}}\n", f.display()))
            .unwrap_or_else(|e| panic!("{e:?}"));
        effective(&c).to_string()
    }

    fn effective_contains_token(shown: &str) -> bool {
        shown.contains("long-enough")
    }

    #[test]
    fn s3_evidence_takes_the_connection_from_an_s3_witness() {
        let c = load::<RawControllerConfig>(
            &yaml("region: eu\npeer_region: us\nresolvers: [1.1.1.1, 8.8.8.8, 9.9.9.9]\nhealth: {zone: z}\nwitness: {kind: s3, bucket: lease, endpoint: 'http://127.0.0.1:9000', force_path_style: true, access_key: ak, secret_key: sk}\nevidence: {s3: {bucket: audit}}\n"),
            &env_overrides(),
            vec![],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let Some(EvidenceChoice::S3 {
            endpoint,
            bucket,
            prefix,
            access_key,
            force_path_style,
            ..
        }) = c.evidence
        else {
            panic!("s3 evidence: {:?}", c.evidence)
        };
        assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            (bucket.as_str(), prefix.as_str()),
            ("audit", "failover/evidence/eu")
        );
        assert_eq!((access_key.as_str(), force_path_style), ("ak", true));
        let errs = with("evidence: {s3: {prefix: x}}\n")
            .err()
            .unwrap_or_default();
        for key in [
            "evidence.s3.bucket",
            "evidence.s3.access_key",
            "evidence.s3.secret_key",
        ] {
            assert!(errs.iter().any(|p| p == key), "{key} missing from {errs:?}");
        }
        assert_eq!(
            with("evidence: {}\n").err(),
            Some(vec!["evidence".to_owned()])
        );
    }

    const NO_WITNESS: &str = "region: eu\npeer_region: us\nresolvers: [1.1.1.1, 8.8.8.8, 9.9.9.9]\nhealth: {zone: gslb.example.com}\n";

    fn witness_of(w: &str) -> Result<ControllerConfig, Vec<(String, String)>> {
        load::<RawControllerConfig>(&yaml(&format!("{NO_WITNESS}{w}")), &env_overrides(), vec![])
            .map_err(|e| e.errors.into_iter().map(|e| (e.path, e.message)).collect())
    }

    #[test]
    fn a_kube_lease_witness_names_its_namespace_and_lease() {
        let c = witness_of("witness: {kind: kube, namespace: failover, name: shop-lease.v1}\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        let WitnessChoice::Kube { namespace, name } = &c.witness else {
            panic!("kube witness: {:?}", c.witness)
        };
        assert_eq!(
            (namespace.as_str(), name.as_str()),
            ("failover", "shop-lease.v1")
        );
        assert_eq!(
            effective(&c)["witness"],
            serde_json::json!({"kind": "kube", "namespace": "failover", "name": "shop-lease.v1"})
        );
        // The names also come from the environment.
        let env = load::<RawControllerConfig>(
            &yaml(&format!("{NO_WITNESS}witness: {{kind: kube}}\n")),
            &env_overrides(),
            vec![
                ("FAILOVER__WITNESS__NAMESPACE".into(), "ops".into()),
                ("FAILOVER__WITNESS__NAME".into(), "lease".into()),
            ],
        );
        assert!(
            matches!(env.map(|c| c.witness), Ok(WitnessChoice::Kube { namespace, name }) if namespace == "ops" && name == "lease")
        );
    }

    #[test]
    fn a_kube_witness_without_names_or_with_bad_ones_is_refused_with_the_field() {
        let paths = |r: Result<ControllerConfig, Vec<(String, String)>>| {
            r.err()
                .unwrap_or_default()
                .into_iter()
                .map(|(p, _)| p)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(witness_of("witness: {kind: kube}\n")),
            vec!["witness.namespace".to_owned(), "witness.name".to_owned()]
        );
        let bad = witness_of("witness: {kind: kube, namespace: Fail.Over, name: -lease}\n")
            .err()
            .unwrap_or_default();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(bad[0].0, "witness.namespace");
        assert!(bad[0].1.contains("lower-case"), "{}", bad[0].1);
        assert_eq!(bad[1].0, "witness.name");
        assert!(bad[1].1.contains("start and end"), "{}", bad[1].1);
        let long = "a".repeat(64);
        assert_eq!(
            paths(witness_of(&format!(
                "witness: {{kind: kube, namespace: {long}, name: l}}\n"
            ))),
            vec!["witness.namespace".to_owned()]
        );
        assert!(
            witness_of("witness: {kind: etcd}\n")
                .err()
                .unwrap_or_default()
                .iter()
                .any(|(p, m)| p == "witness.kind" && m.contains("kube"))
        );
    }
}
