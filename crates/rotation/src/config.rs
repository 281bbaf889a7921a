//! The configuration shared by `rotation-controller` and `sre rotation`: where OpenBao
//! is, the inventory, and for each secret the target system that accepts its
//! credential. Read in two stages through `sre_core::config::load`
//! ([`RawRotationConfig`] as serde fills it, [`RotationConfig`] once every field has been
//! checked). The OpenBao token is never part of the file: it comes from
//! [`TOKEN_ENV`] or from `openbao.token_file`, so the file can be reviewed and logged.

mod engine;

pub use engine::{
    DEFAULT_CREATION_STATEMENTS, DEFAULT_REVOCATION_STATEMENTS, DbEngineSpec, RawDbEngine,
};

use crate::model::{Inventory, RawInventory, SecretClass};
use serde::Deserialize;
use sre_core::config::{ConfigError, Validate};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Prefix of the environment overrides (`SRE_ROTATION__OPENBAO__ADDRESS=...`).
pub const ENV_PREFIX: &str = "SRE_ROTATION";

/// The variable that holds the OpenBao token when `openbao.token_file` is not set.
pub const TOKEN_ENV: &str = "SRE_ROTATION_BAO_TOKEN";

/// The config file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRotationConfig {
    /// The OpenBao server.
    pub openbao: RawOpenBao,
    /// Where the controller serves `/metrics` and `/healthz` (default `127.0.0.1:9464`).
    #[serde(default)]
    pub listen: Option<String>,
    /// How often the controller looks at every secret (default `30s`); a secret due
    /// earlier is still handled at its due time.
    #[serde(default)]
    pub tick: Option<String>,
    /// The managed secrets.
    pub inventory: RawInventory,
    /// Target system per secret name.
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    /// Expiry of observe-only secrets (`svid`, `tls`) per secret name.
    #[serde(default)]
    pub certificates: BTreeMap<String, RawCertificate>,
    /// How the controller moves consumers (ESO refresh, Reloader-compatible restarts).
    #[serde(default)]
    pub kubernetes: Option<RawKubernetes>,
    /// The JWKS documents the controller serves.
    #[serde(default)]
    pub jwks: Option<RawJwks>,
}

/// Where the controller reads a certificate that SPIRE or cert-manager rotates, as
/// written: exactly one of `pem_file`, `cert_manager` or `not_after`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// A PEM file the rotating system rewrites (SPIRE's `svid.pem` written by
    /// spiffe-helper, a mounted `tls.crt`): re-read every tick, the first certificate
    /// (the leaf) counts.
    #[serde(default)]
    pub pem_file: Option<String>,
    /// A cert-manager `Certificate` as `namespace/name`: its `status.notBefore` /
    /// `status.notAfter`, read every tick through the Kubernetes API (`get` on
    /// `certificates.cert-manager.io`, never the private key's Secret).
    #[serde(default)]
    pub cert_manager: Option<String>,
    /// A declared `notAfter`, RFC 3339, for a certificate nothing here can read (it
    /// does not move when the certificate is renewed: prefer the two sources above).
    #[serde(default)]
    pub not_after: Option<String>,
    /// With `not_after`: the declared `notBefore` (issue time), RFC 3339; gives the age.
    #[serde(default)]
    pub not_before: Option<String>,
    /// How long before `notAfter` to alert (default `7d`).
    #[serde(default)]
    pub alert_before: Option<String>,
}

/// Where an observed certificate's validity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// Re-read and parsed ([`crate::x509::parse_pem`]) every tick.
    PemFile(std::path::PathBuf),
    /// A cert-manager `Certificate`'s status, read every tick.
    CertManager {
        /// Namespace of the `Certificate`.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Fixed in the config.
    Declared(crate::expiry::Validity),
}

/// A validated certificate entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    /// Where its validity is read.
    pub source: CertSource,
    /// Alert lead time.
    pub alert_before: Duration,
}

/// The OpenBao section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenBao {
    /// `http(s)://host:port`.
    pub address: String,
    /// KV v2 mount (default `secret`).
    #[serde(default)]
    pub kv_mount: Option<String>,
    /// A file holding the token; without it the token is read from [`TOKEN_ENV`].
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// A target system as written, by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawTarget {
    /// PostgreSQL users minted by the OpenBao database engine.
    PostgresDynamic {
        /// Mount of the database engine (e.g. `database`).
        database_mount: String,
        /// The engine role that mints users.
        role: String,
        /// PostgreSQL host for the login test.
        host: String,
        /// PostgreSQL port.
        port: u16,
        /// Database to log in to (default `postgres`).
        #[serde(default)]
        dbname: Option<String>,
        /// How much longer each renewal asks a live credential's lease to last
        /// (default `1h`; OpenBao caps it at the role's `max_ttl`).
        #[serde(default)]
        lease_increment: Option<String>,
        /// At most one renewal per credential this often (default: a third of
        /// `lease_increment`, so two renewals can fail before the lease runs out).
        #[serde(default)]
        renew_every: Option<String>,
        /// The engine's connection and role, configured by the controller ([`RawDbEngine`]);
        /// absent: an operator configured them. Kept as a plain value until `validate`
        /// reads it, so that its errors are reported at `targets.<name>.engine` rather
        /// than at the target (serde loses the path inside a tagged enum).
        #[serde(default)]
        engine: Option<serde_json::Value>,
    },
    /// An Ed25519 signing or JWT key in the OpenBao transit engine.
    TransitSigning {
        /// Mount of the transit engine (default `transit`).
        #[serde(default)]
        transit_mount: Option<String>,
        /// The transit key name.
        key: String,
    },
    /// A PostgreSQL service account whose password the OpenBao database engine rotates
    /// in place (a static role).
    PostgresStatic {
        /// Mount of the database engine (e.g. `database`).
        database_mount: String,
        /// The engine's static role (`<mount>/static-roles/<role>`).
        role: String,
        /// PostgreSQL host for the login test.
        host: String,
        /// PostgreSQL port.
        port: u16,
        /// Database to log in to (default `postgres`).
        #[serde(default)]
        dbname: Option<String>,
    },
    /// An API token or OAuth client secret generated here from OS randomness.
    Generated {
        /// Random bytes per token (default 32; at least 16).
        #[serde(default)]
        length: Option<usize>,
        /// `base64url` (default, unpadded) or `hex`.
        #[serde(default)]
        encoding: Option<String>,
        /// An HTTP(S) endpoint that answers 2xx to `Authorization: Bearer <token>` once
        /// it accepts the token; without it the test step is a structural check only.
        #[serde(default)]
        verify_url: Option<String>,
    },
    /// An envelope-encryption master key in transit, with its wrapped data keys in KV.
    KmsRewrap {
        /// Mount of the transit engine (default `transit`).
        #[serde(default)]
        transit_mount: Option<String>,
        /// The master key's name.
        key: String,
        /// KV v2 folder whose entries (one level) hold the wrapped data keys in the field
        /// `ciphertext`; the re-wrap progress lives in that path's own custom metadata.
        data_keys_path: String,
    },
}

/// How a generated token is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEncoding {
    /// RFC 4648 URL-safe base64 without padding: safe in headers, URLs and env files.
    Base64Url,
    /// Lower-case hex: for consumers that accept only `[0-9a-f]`.
    Hex,
}

impl TokenEncoding {
    /// The config name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base64Url => "base64url",
            Self::Hex => "hex",
        }
    }

    /// Encodes random `bytes` as the token text.
    #[must_use]
    pub fn encode(self, bytes: &[u8]) -> String {
        const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const HEX: &[u8; 16] = b"0123456789abcdef";
        match self {
            Self::Hex => bytes
                .iter()
                .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
                .map(char::from)
                .collect(),
            Self::Base64Url => {
                let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
                for chunk in bytes.chunks(3) {
                    let b = [
                        chunk[0],
                        chunk.get(1).copied().unwrap_or(0),
                        chunk.get(2).copied().unwrap_or(0),
                    ];
                    let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                    for i in 0..=chunk.len() {
                        out.push(char::from(URL[((n >> (18 - 6 * i)) & 63) as usize]));
                    }
                }
                out
            }
        }
    }

    /// The length of the text [`Self::encode`] makes from `bytes` random bytes.
    #[must_use]
    pub fn encoded_len(self, bytes: usize) -> usize {
        match self {
            Self::Hex => bytes * 2,
            Self::Base64Url => (bytes * 4).div_ceil(3),
        }
    }

    /// Whether `token` could have come from [`Self::encode`] of `bytes` random bytes:
    /// the structural test step when no endpoint can check the token for real.
    #[must_use]
    pub fn is_well_formed(self, token: &str, bytes: usize) -> bool {
        token.len() == self.encoded_len(bytes)
            && token.bytes().all(|c| match self {
                Self::Hex => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
                Self::Base64Url => c.is_ascii_alphanumeric() || c == b'-' || c == b'_',
            })
    }
}

/// Where OpenBao is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBaoSettings {
    /// `http(s)://host:port`.
    pub address: String,
    /// KV v2 mount.
    pub kv_mount: String,
    /// Token file; `None`: [`TOKEN_ENV`].
    pub token_file: Option<PathBuf>,
}

/// How the leases of a target's live credentials (current, and previous during the
/// overlap) are kept alive: minted credentials die with their lease, whatever the
/// rotation schedule says, so the controller renews them on its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRenewal {
    /// The extension asked for on each renewal.
    pub increment: Duration,
    /// The shortest time between two renewals of the same credential; shorter than
    /// `increment`, or the lease would run out between renewals.
    pub every: Duration,
}

impl LeaseRenewal {
    /// The increment when none is configured: the usual role TTL.
    pub const DEFAULT_INCREMENT: Duration = Duration::from_hours(1);

    /// Renews by `increment` every third of it: two renewals in a row can fail (an
    /// OpenBao restart, a network blip) before the lease runs out.
    #[must_use]
    pub fn with_increment(increment: Duration) -> Self {
        Self {
            increment,
            every: increment / 3,
        }
    }
}

/// A validated target system.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetSpec {
    /// PostgreSQL users minted by the OpenBao database engine.
    PostgresDynamic {
        /// Mount of the database engine.
        database_mount: String,
        /// The engine role.
        role: String,
        /// PostgreSQL host.
        host: String,
        /// PostgreSQL port.
        port: u16,
        /// Database to log in to.
        dbname: String,
        /// How the leases of the live credentials are renewed.
        lease: LeaseRenewal,
    },
    /// An Ed25519 signing or JWT key in the OpenBao transit engine: a rotation adds a key
    /// version, tests it with a real sign + verify, and retires the old version by
    /// raising `min_decryption_version` after the overlap.
    TransitSigning {
        /// Mount of the transit engine.
        transit_mount: String,
        /// The transit key name.
        key: String,
    },
    /// A PostgreSQL service account behind an OpenBao database-engine static role: a
    /// rotation asks the engine to change the password now and tests it with a real
    /// login. There is one live password, so there is no overlap: the old one stops
    /// working at the rotation and consumers must re-read (ESO refresh).
    PostgresStatic {
        /// Mount of the database engine.
        database_mount: String,
        /// The static role.
        role: String,
        /// PostgreSQL host.
        host: String,
        /// PostgreSQL port.
        port: u16,
        /// Database to log in to.
        dbname: String,
    },
    /// An API token or OAuth client secret generated from OS randomness and stored as
    /// the new KV version; consumers and the issuer read it from there.
    Generated {
        /// Random bytes per token.
        length: usize,
        /// How the bytes are written out.
        encoding: TokenEncoding,
        /// Endpoint for a real bearer check; `None`: structural check only.
        verify_url: Option<String>,
    },
    /// An envelope-encryption master key: a rotation adds a transit key version,
    /// re-wraps every data key under it (resumably), and after the overlap refuses the
    /// old version.
    KmsRewrap {
        /// Mount of the transit engine.
        transit_mount: String,
        /// The master key's name.
        key: String,
        /// KV v2 folder of the wrapped data keys.
        data_keys_path: String,
    },
}

impl TargetSpec {
    /// The `kind` as written in the config, for messages.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PostgresDynamic { .. } => "postgres_dynamic",
            Self::TransitSigning { .. } => "transit_signing",
            Self::PostgresStatic { .. } => "postgres_static",
            Self::Generated { .. } => "generated",
            Self::KmsRewrap { .. } => "kms_rewrap",
        }
    }

    /// The secret classes this kind can rotate: a target of the wrong kind would run
    /// the wrong rotation (an overlap the target cannot keep, a missing approval), so
    /// validation refuses the pair instead of guessing.
    #[must_use]
    pub fn classes(&self) -> &'static [SecretClass] {
        match self {
            Self::PostgresDynamic { .. } => &[SecretClass::DynamicDb],
            Self::TransitSigning { .. } => &[SecretClass::SigningKey, SecretClass::JwtKey],
            Self::PostgresStatic { .. } => &[SecretClass::StaticDb],
            Self::Generated { .. } => &[SecretClass::ApiToken],
            Self::KmsRewrap { .. } => &[SecretClass::KmsMasterKey],
        }
    }

    /// How this target's leases are renewed; `None` for kinds whose credentials have no
    /// lease (nothing expires on its own, so nothing is renewed).
    #[must_use]
    pub fn lease_renewal(&self) -> Option<LeaseRenewal> {
        match self {
            Self::PostgresDynamic { lease, .. } => Some(*lease),
            _ => None,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationConfig {
    /// Where OpenBao is.
    pub openbao: OpenBaoSettings,
    /// Where the controller listens.
    pub listen: SocketAddr,
    /// How often every secret is looked at.
    pub tick: Duration,
    /// The managed secrets (and their warnings).
    pub inventory: Inventory,
    /// Target per secret name. A secret that acts (not observe-only) without a target
    /// is shown in the status but not rotated; validation warns about it.
    pub targets: BTreeMap<String, TargetSpec>,
    /// The database engine to configure per secret name, for the `postgres_dynamic`
    /// targets with an `engine:` block.
    pub engines: BTreeMap<String, DbEngineSpec>,
    /// Expiry of observe-only secrets, per secret name.
    pub certificates: BTreeMap<String, CertificateSpec>,
    /// Consumer refresh through the Kubernetes API.
    pub kubernetes: KubernetesSettings,
    /// The JWKS endpoints.
    pub jwks: JwksSettings,
}

impl RotationConfig {
    /// The target of the secret called `name`, if one is configured.
    #[must_use]
    pub fn target(&self, name: &str) -> Option<&TargetSpec> {
        self.targets.get(name)
    }

    /// The database engine the controller configures for the secret called `name`
    /// (`None`: none, or configured by an operator).
    #[must_use]
    pub fn engine(&self, name: &str) -> Option<&DbEngineSpec> {
        self.engines.get(name)
    }

    /// Lease renewal per secret name, for the secrets whose target mints leased
    /// credentials: the controller keeps those alive between rotations.
    #[must_use]
    pub fn lease_renewals(&self) -> BTreeMap<String, LeaseRenewal> {
        self.targets
            .iter()
            .filter_map(|(name, spec)| spec.lease_renewal().map(|l| (name.clone(), l)))
            .collect()
    }
}

fn nonempty(errs: &mut Vec<ConfigError>, path: &str, value: &str) {
    if value.trim().is_empty() {
        errs.push(ConfigError::new(path, "must not be empty"));
    }
}

fn target_spec(
    raw: RawTarget,
    at: &dyn Fn(&str) -> String,
    errs: &mut Vec<ConfigError>,
) -> TargetSpec {
    match raw {
        RawTarget::PostgresDynamic {
            database_mount,
            role,
            host,
            port,
            dbname,
            lease_increment,
            renew_every,
            engine: _,
        } => {
            nonempty(errs, &at("database_mount"), &database_mount);
            nonempty(errs, &at("role"), &role);
            nonempty(errs, &at("host"), &host);
            if port == 0 {
                errs.push(ConfigError::new(at("port"), "must not be 0"));
            }
            TargetSpec::PostgresDynamic {
                database_mount,
                role,
                host,
                port,
                dbname: dbname.unwrap_or_else(|| "postgres".to_owned()),
                lease: lease_renewal(lease_increment.as_deref(), renew_every.as_deref(), at, errs),
            }
        }
        RawTarget::TransitSigning { transit_mount, key } => {
            nonempty(errs, &at("key"), &key);
            TargetSpec::TransitSigning {
                transit_mount: transit_mount.unwrap_or_else(|| "transit".to_owned()),
                key,
            }
        }
        RawTarget::PostgresStatic {
            database_mount,
            role,
            host,
            port,
            dbname,
        } => {
            nonempty(errs, &at("database_mount"), &database_mount);
            nonempty(errs, &at("role"), &role);
            nonempty(errs, &at("host"), &host);
            if port == 0 {
                errs.push(ConfigError::new(at("port"), "must not be 0"));
            }
            TargetSpec::PostgresStatic {
                database_mount,
                role,
                host,
                port,
                dbname: dbname.unwrap_or_else(|| "postgres".to_owned()),
            }
        }
        RawTarget::Generated {
            length,
            encoding,
            verify_url,
        } => generated(length, encoding.as_deref(), verify_url, at, errs),
        RawTarget::KmsRewrap {
            transit_mount,
            key,
            data_keys_path,
        } => {
            nonempty(errs, &at("key"), &key);
            let data_keys_path = data_keys_path.trim_matches('/').to_owned();
            nonempty(errs, &at("data_keys_path"), &data_keys_path);
            TargetSpec::KmsRewrap {
                transit_mount: transit_mount.unwrap_or_else(|| "transit".to_owned()),
                key,
                data_keys_path,
            }
        }
    }
}

fn lease_renewal(
    increment: Option<&str>,
    every: Option<&str>,
    at: &dyn Fn(&str) -> String,
    errs: &mut Vec<ConfigError>,
) -> LeaseRenewal {
    let parse = |field: &str, text: &str, errs: &mut Vec<ConfigError>| {
        humantime::parse_duration(text)
            .map_err(|e| {
                errs.push(ConfigError::new(
                    at(field),
                    format!("{text:?} is not a duration: {e}"),
                ));
            })
            .ok()
    };
    let increment = match increment {
        None => LeaseRenewal::DEFAULT_INCREMENT,
        Some(text) => match parse("lease_increment", text, errs) {
            // OpenBao counts lease time in whole seconds; 0 would mean "the role's default".
            Some(d) if d < Duration::from_secs(1) => {
                errs.push(ConfigError::new(
                    at("lease_increment"),
                    "must be at least 1s",
                ));
                return LeaseRenewal::with_increment(LeaseRenewal::DEFAULT_INCREMENT);
            }
            Some(d) => d,
            None => return LeaseRenewal::with_increment(LeaseRenewal::DEFAULT_INCREMENT),
        },
    };
    let mut lease = LeaseRenewal::with_increment(increment);
    if let Some(every) = every.and_then(|text| parse("renew_every", text, errs)) {
        if every.is_zero() || every >= increment {
            errs.push(ConfigError::new(
                at("renew_every"),
                format!(
                    "must be longer than zero and shorter than lease_increment ({}), or the \
                     lease runs out between renewals",
                    humantime::format_duration(increment)
                ),
            ));
        }
        lease.every = every;
    }
    lease
}

/// Bounds of a generated token's random bytes: below 16 (128 bits) a token can be
/// guessed offline; above 1024 it no longer fits a header comfortably.
const TOKEN_BYTES: std::ops::RangeInclusive<usize> = 16..=1024;

fn generated(
    length: Option<usize>,
    encoding: Option<&str>,
    verify_url: Option<String>,
    at: &dyn Fn(&str) -> String,
    errs: &mut Vec<ConfigError>,
) -> TargetSpec {
    let length = length.unwrap_or(32);
    if !TOKEN_BYTES.contains(&length) {
        errs.push(ConfigError::new(
            at("length"),
            format!(
                "{length} random bytes: must be {}..={}",
                TOKEN_BYTES.start(),
                TOKEN_BYTES.end()
            ),
        ));
    }
    let encoding = match encoding.unwrap_or("base64url") {
        "base64url" => TokenEncoding::Base64Url,
        "hex" => TokenEncoding::Hex,
        other => {
            errs.push(ConfigError::new(
                at("encoding"),
                format!("unknown encoding {other:?}; one of base64url, hex"),
            ));
            TokenEncoding::Base64Url
        }
    };
    if let Some(url) = &verify_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        errs.push(ConfigError::new(
            at("verify_url"),
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    TargetSpec::Generated {
        length,
        encoding,
        verify_url,
    }
}

fn certificates(
    raw: BTreeMap<String, RawCertificate>,
    inventory: &Inventory,
    errs: &mut Vec<ConfigError>,
) -> BTreeMap<String, CertificateSpec> {
    let time = |errs: &mut Vec<ConfigError>, at: String, text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| {
                errs.push(ConfigError::new(
                    at,
                    format!("{text:?} is not RFC 3339: {e}"),
                ));
            })
            .ok()
    };
    let mut out = BTreeMap::new();
    for (name, c) in raw {
        let at = |f: &str| format!("certificates.{name}.{f}");
        if !inventory
            .secrets
            .iter()
            .any(|s| s.name == name && s.class.is_observe_only())
        {
            errs.push(ConfigError::new(
                format!("certificates.{name}"),
                "no svid or tls secret of that name in the inventory",
            ));
        }
        if c.not_before.is_some() && c.not_after.is_none() {
            errs.push(ConfigError::new(
                at("not_before"),
                "only with not_after (a file or cert-manager source says it itself)",
            ));
        }
        let source = match (c.pem_file, c.cert_manager, c.not_after) {
            (Some(file), None, None) if file.trim().is_empty() => {
                errs.push(ConfigError::new(at("pem_file"), "empty path"));
                None
            }
            (Some(file), None, None) => Some(CertSource::PemFile(file.into())),
            (None, Some(cm), None) => match cm.split_once('/') {
                Some((ns, n)) if !ns.is_empty() && !n.is_empty() && !n.contains('/') => {
                    Some(CertSource::CertManager {
                        namespace: ns.into(),
                        name: n.into(),
                    })
                }
                _ => {
                    errs.push(ConfigError::new(
                        at("cert_manager"),
                        format!("{cm:?}: expected namespace/name"),
                    ));
                    None
                }
            },
            (None, None, Some(not_after)) => {
                let not_after = time(errs, at("not_after"), &not_after);
                let not_before = match c.not_before.as_deref() {
                    None => Some(None),
                    Some(t) => time(errs, at("not_before"), t).map(Some),
                };
                not_after.zip(not_before).map(|(not_after, not_before)| {
                    CertSource::Declared(crate::expiry::Validity {
                        not_before,
                        not_after,
                    })
                })
            }
            _ => {
                errs.push(ConfigError::new(
                    format!("certificates.{name}"),
                    "give exactly one of pem_file, cert_manager or not_after",
                ));
                None
            }
        };
        let lead = c.alert_before.as_deref().unwrap_or("7d");
        let alert_before = humantime::parse_duration(lead)
            .map_err(|e| {
                errs.push(ConfigError::new(
                    at("alert_before"),
                    format!("{lead:?}: {e}"),
                ));
            })
            .ok();
        if let (Some(source), Some(alert_before)) = (source, alert_before) {
            out.insert(
                name,
                CertificateSpec {
                    source,
                    alert_before,
                },
            );
        }
    }
    out
}

/// Every target names a secret of the inventory whose class it can rotate.
fn check_targets(
    targets: &BTreeMap<String, TargetSpec>,
    inventory: &Inventory,
    errs: &mut Vec<ConfigError>,
) {
    for (name, spec) in targets {
        match inventory.secrets.iter().find(|s| &s.name == name) {
            None => errs.push(ConfigError::new(
                format!("targets.{name}"),
                "no secret of that name in the inventory",
            )),
            Some(s) if !spec.classes().contains(&s.class) => {
                let fits: Vec<&str> = spec.classes().iter().map(|c| c.as_str()).collect();
                errs.push(ConfigError::new(
                    format!("targets.{name}"),
                    format!(
                        "kind {} does not fit class {} of secret {name}: it rotates {}",
                        spec.kind(),
                        s.class,
                        fits.join(", ")
                    ),
                ));
            }
            Some(s) => {
                if let TargetSpec::KmsRewrap { data_keys_path, .. } = spec
                    && s.path.starts_with(&format!("{data_keys_path}/"))
                {
                    errs.push(ConfigError::new(
                        format!("targets.{name}.data_keys_path"),
                        format!(
                            "{data_keys_path:?} contains the secret's own path {:?}: it \
                             would be re-wrapped as a data key",
                            s.path
                        ),
                    ));
                }
            }
        }
    }
}

/// Every target, and the `engine:` blocks of the `postgres_dynamic` ones.
fn targets_and_engines(
    raw: BTreeMap<String, RawTarget>,
    errs: &mut Vec<ConfigError>,
) -> (BTreeMap<String, TargetSpec>, BTreeMap<String, DbEngineSpec>) {
    let mut targets = BTreeMap::new();
    let mut engines = BTreeMap::new();
    for (name, mut raw) in raw {
        let at = |f: &str| format!("targets.{name}.{f}");
        let engine = match &mut raw {
            RawTarget::PostgresDynamic { engine, .. } => engine.take(),
            _ => None,
        };
        let spec = target_spec(raw, &at, errs);
        if let (
            Some(value),
            TargetSpec::PostgresDynamic {
                database_mount,
                role,
                ..
            },
        ) = (engine, &spec)
        {
            let at = |f: &str| match f {
                "" => format!("targets.{name}.engine"),
                f => format!("targets.{name}.engine.{f}"),
            };
            if let Some(e) = engine::parse(value, database_mount, role, &at, errs) {
                engines.insert(name.clone(), e);
            }
        }
        targets.insert(name, spec);
    }
    (targets, engines)
}

impl Validate for RawRotationConfig {
    type Valid = RotationConfig;

    fn validate(self) -> Result<RotationConfig, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let address = self.openbao.address.trim_end_matches('/').to_owned();
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            errs.push(ConfigError::new(
                "openbao.address",
                format!("{address:?} is not an http:// or https:// URL"),
            ));
        }
        let kv_mount = self.openbao.kv_mount.unwrap_or_else(|| "secret".to_owned());
        nonempty(&mut errs, "openbao.kv_mount", &kv_mount);
        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:9464".to_owned());
        let listen = listen_text.parse::<SocketAddr>().map_err(|e| {
            errs.push(ConfigError::new(
                "listen",
                format!("{listen_text:?} is not host:port: {e}"),
            ));
        });
        let tick_text = self.tick.unwrap_or_else(|| "30s".to_owned());
        let tick = match humantime::parse_duration(&tick_text) {
            Ok(d) if d.is_zero() => {
                errs.push(ConfigError::new("tick", "must be longer than zero"));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(ConfigError::new(
                    "tick",
                    format!("{tick_text:?} is not a duration: {e}"),
                ));
                None
            }
        };
        let inventory = self.inventory.validate().map_err(|inv| {
            errs.extend(
                inv.into_iter()
                    .map(|e| ConfigError::new(format!("inventory.{}", e.path), e.message)),
            );
        });
        let (targets, mut engines) = targets_and_engines(self.targets, &mut errs);
        let (Ok(listen), Some(tick), Ok(mut inventory)) = (listen, tick, inventory) else {
            return Err(errs);
        };
        check_targets(&targets, &inventory, &mut errs);
        engine::check(&mut engines, &targets, &inventory, tick, &mut errs);
        for (i, s) in inventory.secrets.iter().enumerate() {
            if !s.class.is_observe_only() && !targets.contains_key(&s.name) {
                inventory.warnings.push(ConfigError::new(
                    format!("inventory.secrets[{i}]"),
                    format!("{} has no target: it is reported but not rotated", s.name),
                ));
            }
        }
        let certificates = certificates(self.certificates, &inventory, &mut errs);
        let (kubernetes, jwks) = consumer_sections(
            self.kubernetes,
            self.jwks,
            &mut inventory,
            &targets,
            &mut errs,
        );
        if !kubernetes.enabled {
            for (name, c) in &certificates {
                if matches!(c.source, CertSource::CertManager { .. }) {
                    errs.push(ConfigError::new(
                        format!("certificates.{name}.cert_manager"),
                        "needs kubernetes.enabled: true (cert-manager is read through the Kubernetes API)",
                    ));
                }
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(RotationConfig {
            openbao: OpenBaoSettings {
                address,
                kv_mount,
                token_file: self.openbao.token_file,
            },
            listen,
            tick,
            inventory,
            targets,
            engines,
            certificates,
            kubernetes,
            jwks,
        })
    }
}

// ---- consumers and JWKS: the sections only rotation-controller acts on ----------------

/// The `kubernetes` section as written: whether the controller moves consumers itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKubernetes {
    /// Refresh ESO `ExternalSecret`s and restart Deployments through the API (default
    /// `false`): in-cluster credentials or `KUBECONFIG`.
    #[serde(default)]
    pub enabled: bool,
    /// One rollout per workload per window, however many of its secrets change in it
    /// (default `1m`).
    #[serde(default)]
    pub restart_window: Option<String>,
}

/// Validated `kubernetes` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// Whether the controller builds a Kubernetes client at all.
    pub enabled: bool,
    /// The restart coalescing window.
    pub restart_window: Duration,
}

/// The `jwks` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    /// How long a rendered JWKS is cached and `Cache-Control: max-age` (default `30s`).
    #[serde(default)]
    pub ttl: Option<String>,
    /// The secret served at `/.well-known/jwks.json` (default: the only `jwt_key` secret
    /// with a `transit_signing` target, if there is exactly one).
    #[serde(default)]
    pub well_known: Option<String>,
}

/// Validated `jwks` section. Every secret with a `transit_signing` target is served at
/// `/jwks/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// Cache lifetime and `max-age`.
    pub ttl: Duration,
    /// The secret behind `/.well-known/jwks.json`, if any.
    pub well_known: Option<String>,
}

fn duration_or(
    text: Option<&str>,
    default: &str,
    at: &str,
    errs: &mut Vec<ConfigError>,
) -> Duration {
    let text = text.unwrap_or(default);
    humantime::parse_duration(text).unwrap_or_else(|e| {
        errs.push(ConfigError::new(
            at,
            format!("{text:?} is not a duration: {e}"),
        ));
        Duration::ZERO
    })
}

fn consumer_sections(
    kubernetes: Option<RawKubernetes>,
    jwks: Option<RawJwks>,
    inventory: &mut Inventory,
    targets: &BTreeMap<String, TargetSpec>,
    errs: &mut Vec<ConfigError>,
) -> (KubernetesSettings, JwksSettings) {
    let k = kubernetes.unwrap_or(RawKubernetes {
        enabled: false,
        restart_window: None,
    });
    let kubernetes = KubernetesSettings {
        enabled: k.enabled,
        restart_window: duration_or(
            k.restart_window.as_deref(),
            "1m",
            "kubernetes.restart_window",
            errs,
        ),
    };
    if kubernetes.enabled {
        for (i, s) in inventory.secrets.iter().enumerate() {
            let restarts = s
                .consumers
                .iter()
                .any(|c| c.kind == crate::model::ConsumerKind::Deployment);
            if restarts && s.overlap <= kubernetes.restart_window {
                inventory.warnings.push(ConfigError::new(
                    format!("inventory.secrets[{i}].overlap"),
                    format!(
                        "{}: overlap is not longer than kubernetes.restart_window; the previous \
                         version is retired only after its consumers were restarted",
                        s.name
                    ),
                ));
            }
        }
    }
    let j = jwks.unwrap_or(RawJwks {
        ttl: None,
        well_known: None,
    });
    let ttl = duration_or(j.ttl.as_deref(), "30s", "jwks.ttl", errs);
    let transit = |name: &str| matches!(targets.get(name), Some(TargetSpec::TransitSigning { .. }));
    let well_known = match j.well_known {
        Some(name) if transit(&name) => Some(name),
        Some(name) => {
            errs.push(ConfigError::new(
                "jwks.well_known",
                format!("{name:?} has no transit_signing target"),
            ));
            None
        }
        None => {
            let jwt: Vec<&str> = inventory
                .secrets
                .iter()
                .filter(|s| s.class == crate::model::SecretClass::JwtKey && transit(&s.name))
                .map(|s| s.name.as_str())
                .collect();
            match jwt.as_slice() {
                [only] => Some((*only).to_owned()),
                _ => None,
            }
        }
    };
    (kubernetes, JwksSettings { ttl, well_known })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<RotationConfig, Vec<ConfigError>> {
        let raw: RawRotationConfig = serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        raw.validate()
    }

    #[test]
    fn a_good_config_gets_defaults_and_warns_about_secrets_without_target() {
        let cfg = load(
            "
openbao: { address: 'http://127.0.0.1:8200/' }
inventory:
  secrets:
    - { name: db, class: dynamic_db, path: apps/db, max_age: 1h, overlap: 5m, owner: o, consumers: [deployment/a/b] }
    - { name: tok, class: api_token, path: apps/tok, max_age: 90d, overlap: 1d, owner: o, consumers: [deployment/a/b] }
targets:
  db: { kind: postgres_dynamic, database_mount: database, role: app, host: 127.0.0.1, port: 5432 }
",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.openbao.address, "http://127.0.0.1:8200");
        assert_eq!(cfg.openbao.kv_mount, "secret");
        assert_eq!(cfg.tick, Duration::from_secs(30));
        assert_eq!(cfg.listen.port(), 9464);
        assert!(matches!(
            cfg.target("db"),
            Some(TargetSpec::PostgresDynamic { dbname, .. }) if dbname == "postgres"
        ));
        let hour = LeaseRenewal {
            increment: Duration::from_hours(1),
            every: Duration::from_mins(20),
        };
        assert_eq!(
            cfg.lease_renewals(),
            BTreeMap::from([("db".to_owned(), hour)])
        );
        let warned: Vec<&str> = cfg
            .inventory
            .warnings
            .iter()
            .map(|w| w.path.as_str())
            .collect();
        assert_eq!(warned, ["inventory.secrets[1]"]);
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let err = load(
            "
openbao: { address: 'bao:8200' }
listen: nowhere
tick: 0s
inventory:
  secrets:
    - { name: db, class: password_of_the_day, path: apps/db, max_age: 1h, overlap: 5m, owner: o }
targets:
  ghost: { kind: postgres_dynamic, database_mount: '', role: app, host: h, port: 0 }
",
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "openbao.address",
                "listen",
                "tick",
                "inventory.secrets[0].class",
                "targets.ghost.database_mount",
                "targets.ghost.port",
            ],
            "{err:#?}"
        );
    }

    #[test]
    fn lease_renewal_settings_validate_and_only_dynamic_targets_have_them() {
        let yaml = |extra: &str| {
            format!(
                "
openbao: {{ address: 'http://x' }}
inventory:
  secrets:
    - {{ name: db, class: dynamic_db, path: apps/db, max_age: 1h, overlap: 5m, owner: o, consumers: [deployment/a/b] }}
    - {{ name: jwt, class: jwt_key, path: keys/jwt, max_age: 30d, overlap: 1d, owner: sec,
        consumers: [deployment/a/b], approval: {{ approvers: [so], expires_after: 1d }} }}
targets:
  db: {{ kind: postgres_dynamic, database_mount: database, role: app, host: h, port: 5432{extra} }}
  jwt: {{ kind: transit_signing, key: jwt }}
"
            )
        };
        let cfg = load(&yaml(", lease_increment: 2h")).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            cfg.lease_renewals(),
            BTreeMap::from([(
                "db".to_owned(),
                LeaseRenewal {
                    increment: Duration::from_hours(2),
                    every: Duration::from_mins(40)
                }
            )]),
            "a third of the increment by default; no entry for the transit key"
        );
        let cfg = load(&yaml(", lease_increment: 30m, renew_every: 5m"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            cfg.target("db").and_then(TargetSpec::lease_renewal),
            Some(LeaseRenewal {
                increment: Duration::from_mins(30),
                every: Duration::from_mins(5)
            })
        );
        for (extra, path) in [
            (", lease_increment: soon", "targets.db.lease_increment"),
            (", lease_increment: 0s", "targets.db.lease_increment"),
            (
                ", lease_increment: 1h, renew_every: 1h",
                "targets.db.renew_every",
            ),
            (", renew_every: 0s", "targets.db.renew_every"),
            (", renew_every: often", "targets.db.renew_every"),
        ] {
            let err = load(&yaml(extra)).expect_err(extra);
            let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(paths, [path], "{extra}: {err:?}");
        }
    }

    #[test]
    fn an_unknown_target_kind_or_field_fails_to_parse() {
        for yaml in [
            "openbao: { address: 'http://x' }\ninventory: { secrets: [] }\ntargets: { a: { kind: mysql } }",
            "openbao: { address: 'http://x', token: t }\ninventory: { secrets: [] }",
        ] {
            assert!(
                serde_norway::from_str::<RawRotationConfig>(yaml).is_err(),
                "{yaml}"
            );
        }
    }

    #[test]
    fn a_target_for_a_secret_not_in_the_inventory_is_an_error() {
        let err = load(
            "
openbao: { address: 'http://x' }
inventory: { secrets: [] }
targets:
  ghost: { kind: postgres_dynamic, database_mount: database, role: app, host: h, port: 5432 }
",
        )
        .expect_err("invalid");
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].path, "targets.ghost");
    }

    #[test]
    fn transit_targets_and_certificate_expiries_validate() {
        let cfg = load(
            "
openbao: { address: 'http://bao:8200' }
inventory:
  secrets:
    - { name: jwt, class: jwt_key, path: keys/jwt, max_age: 30d, overlap: 1d, owner: sec,
        consumers: [deployment/a/b], approval: { approvers: [so], expires_after: 1d } }
    - { name: ingress, class: tls, path: tls/ingress, overlap: 0s, owner: platform }
targets:
  jwt: { kind: transit_signing, key: jwt }
certificates:
  ingress: { not_after: '2027-01-01T00:00:00Z', alert_before: 14d }
",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            cfg.target("jwt"),
            Some(&TargetSpec::TransitSigning {
                transit_mount: "transit".into(),
                key: "jwt".into()
            })
        );
        let c = &cfg.certificates["ingress"];
        assert_eq!(c.alert_before, Duration::from_hours(14 * 24));
        assert!(
            matches!(&c.source, CertSource::Declared(v)
                if v.not_after.to_rfc3339() == "2027-01-01T00:00:00+00:00" && v.not_before.is_none()),
            "{c:?}"
        );

        let err = load(
            "
openbao: { address: 'http://bao:8200' }
inventory:
  secrets:
    - { name: db, class: api_token, path: t/db, max_age: 30d, overlap: 1d, owner: o, consumers: [deployment/a/b] }
targets:
  db: { kind: transit_signing, key: '' }
certificates:
  db: { not_after: 'tomorrow', alert_before: soon }
",
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "targets.db.key",
                "targets.db",
                "certificates.db",
                "certificates.db.not_after",
                "certificates.db.alert_before"
            ]
        );
    }

    const HEAD: &str = "
openbao: { address: 'http://bao:8200' }
inventory:
  secrets:
    - { name: svc, class: static_db, path: db/svc, max_age: 30d, overlap: 0s, owner: o, consumers: [deployment/a/b] }
    - { name: tok, class: api_token, path: t/tok, max_age: 90d, overlap: 1d, owner: o, consumers: [deployment/a/b] }
    - { name: kms, class: kms_master_key, path: kms/master, max_age: 365d, overlap: 7d, owner: sec,
        consumers: [deployment/a/b], approval: { approvers: [so], expires_after: 1d } }
    - { name: jwt, class: jwt_key, path: keys/jwt, max_age: 30d, overlap: 1d, owner: sec,
        consumers: [deployment/a/b], approval: { approvers: [so], expires_after: 1d } }
";

    #[test]
    fn certificate_sources_are_files_cert_manager_or_declared_and_exactly_one() {
        let cfg = load(
            "
openbao: { address: 'http://bao:8200' }
inventory:
  secrets:
    - { name: svid, class: svid, path: spire/console, overlap: 0s, owner: platform }
    - { name: ingress, class: tls, path: tls/ingress, overlap: 0s, owner: platform }
certificates:
  svid: { pem_file: /run/spire/svid.pem, alert_before: 10m }
  ingress: { cert_manager: catalyst-system/ingress-tls }
kubernetes: { enabled: true }
",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            cfg.certificates["svid"].source,
            CertSource::PemFile("/run/spire/svid.pem".into())
        );
        assert_eq!(
            cfg.certificates["svid"].alert_before,
            Duration::from_mins(10)
        );
        assert_eq!(
            cfg.certificates["ingress"].source,
            CertSource::CertManager {
                namespace: "catalyst-system".into(),
                name: "ingress-tls".into()
            }
        );
        assert_eq!(
            cfg.certificates["ingress"].alert_before,
            Duration::from_hours(7 * 24)
        );

        let err = load(
            "
openbao: { address: 'http://bao:8200' }
inventory:
  secrets:
    - { name: a, class: tls, path: tls/a, overlap: 0s, owner: o }
    - { name: b, class: tls, path: tls/b, overlap: 0s, owner: o }
    - { name: c, class: tls, path: tls/c, overlap: 0s, owner: o }
    - { name: d, class: svid, path: tls/d, overlap: 0s, owner: o }
certificates:
  a: { pem_file: /x.pem, cert_manager: ns/x }
  b: { cert_manager: just-a-name }
  c: { alert_before: 1d }
  d: { pem_file: /d.pem, not_before: '2026-01-01T00:00:00Z' }
",
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "certificates.a",
                "certificates.b.cert_manager",
                "certificates.c",
                "certificates.d.not_before",
            ]
        );
        let err = load(
            "
openbao: { address: 'http://bao:8200' }
inventory:
  secrets:
    - { name: a, class: tls, path: tls/a, overlap: 0s, owner: o }
certificates:
  a: { cert_manager: ns/a }
",
        )
        .expect_err("no kube client to read it with");
        assert_eq!(err[0].path, "certificates.a.cert_manager");
    }

    #[test]
    fn static_generated_and_kms_targets_validate_with_defaults() {
        let cfg = load(&format!(
            "{HEAD}targets:
  svc: {{ kind: postgres_static, database_mount: database, role: svc, host: pg, port: 5432 }}
  tok: {{ kind: generated, verify_url: 'https://api.internal/whoami' }}
  kms: {{ kind: kms_rewrap, key: master, data_keys_path: /kms/data-keys/ }}
  jwt: {{ kind: transit_signing, key: jwt }}
"
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            cfg.target("svc"),
            Some(&TargetSpec::PostgresStatic {
                database_mount: "database".into(),
                role: "svc".into(),
                host: "pg".into(),
                port: 5432,
                dbname: "postgres".into()
            })
        );
        assert_eq!(
            cfg.target("tok"),
            Some(&TargetSpec::Generated {
                length: 32,
                encoding: TokenEncoding::Base64Url,
                verify_url: Some("https://api.internal/whoami".into())
            })
        );
        assert_eq!(
            cfg.target("kms"),
            Some(&TargetSpec::KmsRewrap {
                transit_mount: "transit".into(),
                key: "master".into(),
                data_keys_path: "kms/data-keys".into()
            })
        );
        assert!(
            cfg.inventory.warnings.is_empty(),
            "{:?}",
            cfg.inventory.warnings
        );
    }

    #[test]
    fn a_kind_that_does_not_fit_the_class_names_both() {
        let err = load(&format!(
            "{HEAD}targets:
  jwt: {{ kind: postgres_static, database_mount: database, role: svc, host: pg, port: 5432 }}
  svc: {{ kind: generated }}
  tok: {{ kind: kms_rewrap, key: k, data_keys_path: d }}
  kms: {{ kind: postgres_dynamic, database_mount: database, role: app, host: pg, port: 5432 }}
"
        ))
        .expect_err("invalid");
        let got: Vec<(&str, &str)> = err
            .iter()
            .map(|e| (e.path.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(got.contains(&(
            "targets.jwt",
            "kind postgres_static does not fit class jwt_key of secret jwt: it rotates static_db"
        )));
        assert!(got.iter().any(|(p, m)| *p == "targets.svc"
            && m.contains("generated")
            && m.contains("static_db")));
        assert!(
            got.iter()
                .any(|(p, m)| *p == "targets.tok" && m.contains("kms_rewrap"))
        );
        assert!(
            got.iter()
                .any(|(p, m)| *p == "targets.kms" && m.contains("kms_master_key"))
        );
    }

    #[test]
    fn a_kms_secret_inside_its_own_data_key_folder_is_an_error() {
        let err = load(&format!(
            "{HEAD}targets:\n  kms: {{ kind: kms_rewrap, key: master, data_keys_path: kms }}\n"
        ))
        .expect_err("invalid");
        assert_eq!(err.len(), 1, "{err:?}");
        assert_eq!(err[0].path, "targets.kms.data_keys_path");
    }

    #[test]
    fn bad_values_of_the_new_kinds_are_reported_with_their_paths() {
        let err = load(&format!(
            "{HEAD}targets:
  svc: {{ kind: postgres_static, database_mount: '', role: '', host: pg, port: 0 }}
  tok: {{ kind: generated, length: 8, encoding: base32, verify_url: 'ftp://x' }}
  kms: {{ kind: kms_rewrap, key: '', data_keys_path: '/' }}
"
        ))
        .expect_err("invalid");
        let mut paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "targets.kms.data_keys_path",
                "targets.kms.key",
                "targets.svc.database_mount",
                "targets.svc.port",
                "targets.svc.role",
                "targets.tok.encoding",
                "targets.tok.length",
                "targets.tok.verify_url",
            ],
            "{err:#?}"
        );
    }

    #[test]
    fn an_unknown_field_of_a_new_kind_is_an_error_with_its_path() {
        for (target, field) in [
            (
                "{ kind: postgres_static, database_mount: d, role: r, host: h, port: 1, ttl: 1h }",
                "ttl",
            ),
            ("{ kind: generated, alphabet: abc }", "alphabet"),
            (
                "{ kind: kms_rewrap, key: k, data_keys_path: d, min_version: 2 }",
                "min_version",
            ),
        ] {
            let yaml = format!("{HEAD}targets:\n  svc: {target}\n");
            let source = sre_core::config::Source::Text {
                name: "rotation.yaml".into(),
                text: yaml,
                format: sre_core::config::Format::Yaml,
            };
            let err = sre_core::config::load::<RawRotationConfig>(
                &source,
                &sre_core::config::EnvOverrides::with_prefix(ENV_PREFIX),
                std::iter::empty(),
            )
            .expect_err("unknown field");
            assert_eq!(err.errors.len(), 1, "{err:?}");
            assert_eq!(err.errors[0].path, "targets.svc", "{target}");
            assert!(err.errors[0].message.contains(field), "{err:?}");
        }
    }

    /// Two dynamic secrets on one engine mount: `db` and `report` share connection
    /// `billing-pg`; `{db}` and `{report}` are the extra fields of their engine blocks.
    fn engines_yaml(db: &str, report: &str) -> String {
        format!(
            "
openbao: {{ address: 'http://bao:8200' }}
inventory:
  secrets:
    - {{ name: db, class: dynamic_db, path: apps/db, max_age: 1h, overlap: 5m, owner: o, consumers: [deployment/a/b] }}
    - {{ name: report, class: dynamic_db, path: apps/report, schedule: '0 */6 * * *', overlap: 1h, owner: o, consumers: [deployment/a/c] }}
targets:
  db: {{ kind: postgres_dynamic, database_mount: database, role: app, host: pg, port: 5432,
        engine: {{ connection: billing-pg, connection_url: 'postgresql://{{{{username}}}}:{{{{password}}}}@pg:5432/billing',
                  username: vault_admin, password_file: /var/run/secrets/pg-admin{db} }} }}
  report: {{ kind: postgres_dynamic, database_mount: database, role: report, host: pg, port: 5432,
            engine: {{ connection: billing-pg, connection_url: 'postgresql://{{{{username}}}}:{{{{password}}}}@pg:5432/billing',
                      username: vault_admin, password_file: /var/run/secrets/pg-admin{report} }} }}
"
        )
    }

    #[test]
    fn an_engine_block_gets_postgres_defaults_and_every_role_of_its_connection() {
        let cfg = load(&engines_yaml("", ", default_ttl: 2h, max_ttl: 3d"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let db = cfg
            .engine("db")
            .unwrap_or_else(|| panic!("{:?}", cfg.engines));
        assert_eq!(db.database_mount, "database");
        assert_eq!(db.connection, "billing-pg");
        assert_eq!(
            db.connection_url,
            "postgresql://{{username}}:{{password}}@pg:5432/billing"
        );
        assert_eq!(db.username, "vault_admin");
        assert_eq!(db.password_file, PathBuf::from("/var/run/secrets/pg-admin"));
        assert_eq!(db.role, "app");
        assert_eq!(
            (db.default_ttl, db.max_ttl),
            (Duration::from_hours(1), Duration::from_hours(24))
        );
        assert_eq!(db.creation_statements, DEFAULT_CREATION_STATEMENTS);
        assert_eq!(db.revocation_statements, DEFAULT_REVOCATION_STATEMENTS);
        assert!(
            db.creation_statements[0].contains("VALID UNTIL '{{expiration}}'")
                && db.creation_statements[0].contains("LOGIN PASSWORD '{{password}}'"),
            "{:?}",
            db.creation_statements
        );
        assert_eq!(
            db.allowed_roles,
            ["app", "report"],
            "the shared connection allows both roles"
        );
        let report = cfg
            .engine("report")
            .unwrap_or_else(|| panic!("no report engine"));
        assert_eq!(report.allowed_roles, db.allowed_roles);
        assert_eq!(
            (report.default_ttl, report.max_ttl),
            (Duration::from_hours(2), Duration::from_hours(72))
        );
        // The target itself is what it was without the block.
        assert!(matches!(
            cfg.target("db"),
            Some(TargetSpec::PostgresDynamic { role, .. }) if role == "app"
        ));
        let plain = load(
            "
openbao: { address: 'http://x' }
inventory:
  secrets:
    - { name: db, class: dynamic_db, path: apps/db, max_age: 1h, overlap: 5m, owner: o, consumers: [deployment/a/b] }
targets:
  db: { kind: postgres_dynamic, database_mount: database, role: app, host: h, port: 5432 }
",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(
            plain.engines.is_empty(),
            "no block: configured by an operator"
        );
    }

    #[test]
    fn bad_engine_values_are_reported_with_their_paths() {
        let err = load(
            "
openbao: { address: 'http://x' }
inventory:
  secrets:
    - { name: db, class: dynamic_db, path: apps/db, max_age: 1h, overlap: 5m, owner: o, consumers: [deployment/a/b] }
targets:
  db: { kind: postgres_dynamic, database_mount: database, role: app, host: h, port: 5432,
        engine: { connection: 'a/b', connection_url: 'postgresql://admin:hunter2@pg/billing', username: '',
                  creation_statements: ['CREATE ROLE app LOGIN;'], revocation_statements: ['DROP ROLE x;'],
                  default_ttl: 2h, max_ttl: 1h } }
",
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "targets.db.engine.connection",
                "targets.db.engine.connection_url",
                "targets.db.engine.username",
                "targets.db.engine.password_file",
                "targets.db.engine.creation_statements[0]",
                "targets.db.engine.creation_statements",
                "targets.db.engine.revocation_statements[0]",
                "targets.db.engine.max_ttl",
            ],
            "{err:#?}"
        );
        assert!(
            err.iter().all(|e| !e.message.contains("hunter2")),
            "the message never quotes the URL: {err:?}"
        );
        let err = load(&engines_yaml(", default_ttl: 0s, max_ttl: soon", ""))
            .expect_err("invalid durations");
        let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["targets.db.engine.default_ttl", "targets.db.engine.max_ttl"]
        );
    }

    #[test]
    fn a_max_ttl_that_ends_before_rotation_is_an_error_that_says_so() {
        // db: max_age 1h + overlap 5m + tick 30s; report: every 6 h + overlap 1h.
        let err = load(&engines_yaml(", max_ttl: 1h", ", max_ttl: 7h")).expect_err("too short");
        let got: Vec<(&str, &str)> = err
            .iter()
            .map(|e| (e.path.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0].0, "targets.db.engine.max_ttl");
        assert!(
            got[0].1.contains("1h 5m 30s") && got[0].1.contains("expire before rotation"),
            "{got:?}"
        );
        assert_eq!(got[1].0, "targets.report.engine.max_ttl");
        assert!(
            got[1].1.contains("(6h + 1h + 30s = 7h 30s)"),
            "6 h between cron ticks: {got:?}"
        );
        load(&engines_yaml(", max_ttl: 1h 6m", ", max_ttl: 7h 1m"))
            .unwrap_or_else(|e| panic!("just long enough: {e:?}"));

        let err = load(&engines_yaml(", max_ttl: 90m", "").replace(
            "host: pg, port: 5432,
        engine",
            "host: pg, port: 5432, lease_increment: 2h,
        engine",
        ))
        .expect_err("renewal past max_ttl");
        let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["targets.db.lease_increment"], "{err:?}");
    }

    #[test]
    fn blocks_that_share_a_connection_or_role_must_agree() {
        let err = load(&engines_yaml("", "-other")).expect_err("two password files");
        let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["targets.report.engine.connection"], "{err:?}");
        let same_role = engines_yaml("", ", max_ttl: 48h").replace("role: report", "role: app");
        let err = load(&same_role).expect_err("one role, two definitions");
        let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["targets.report.engine"], "{err:?}");
    }

    #[test]
    fn an_unknown_engine_field_or_an_engine_on_another_kind_is_an_error_with_its_path() {
        for (yaml, path, word) in [
            (
                engines_yaml(", password: hunter2", ""),
                "targets.db.engine",
                "password",
            ),
            (
                format!(
                    "{HEAD}targets:\n  tok: {{ kind: generated, engine: {{ connection: c }} }}\n"
                ),
                "targets.tok",
                "engine",
            ),
        ] {
            let source = sre_core::config::Source::Text {
                name: "rotation.yaml".into(),
                text: yaml,
                format: sre_core::config::Format::Yaml,
            };
            let err = sre_core::config::load::<RawRotationConfig>(
                &source,
                &sre_core::config::EnvOverrides::with_prefix(ENV_PREFIX),
                std::iter::empty(),
            )
            .expect_err("unknown field");
            assert_eq!(err.errors.len(), 1, "{err:?}");
            assert_eq!(err.errors[0].path, path, "{err:?}");
            assert!(err.errors[0].message.contains(word), "{err:?}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn token_encodings_match_rfc4648_and_their_structural_check() {
        let e = TokenEncoding::Base64Url;
        for (plain, enc) in [
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(e.encode(plain.as_bytes()), enc);
            assert_eq!(e.encoded_len(plain.len()), enc.len());
        }
        assert_eq!(e.encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(TokenEncoding::Hex.encode(&[0x00, 0xab, 0x7f]), "00ab7f");
        let tok = e.encode(&[7; 32]);
        assert!(e.is_well_formed(&tok, 32));
        assert!(!e.is_well_formed(&tok, 33), "wrong length");
        assert!(!e.is_well_formed(&tok.replace('H', "+"), 32) || !tok.contains('H'));
        assert!(
            !TokenEncoding::Hex.is_well_formed("00AB7F", 3),
            "upper case is not ours"
        );
        assert!(TokenEncoding::Hex.is_well_formed("00ab7f", 3));
    }

    #[test]
    fn kubernetes_and_jwks_sections_default_validate_and_warn() {
        let base = "
openbao: { address: 'http://bao:8200' }
inventory:
  secrets:
    - { name: jwt, class: jwt_key, path: keys/jwt, max_age: 30d, overlap: 30s, owner: sec,
        consumers: [deployment/a/b], approval: { approvers: [so], expires_after: 1d } }
targets:
  jwt: { kind: transit_signing, key: jwt }
";
        let cfg = load(base).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!cfg.kubernetes.enabled);
        assert_eq!(cfg.kubernetes.restart_window, Duration::from_mins(1));
        assert_eq!(cfg.jwks.ttl, Duration::from_secs(30));
        assert_eq!(
            cfg.jwks.well_known.as_deref(),
            Some("jwt"),
            "the only JWT key"
        );
        let cfg = load(&format!(
            "{base}kubernetes: {{ enabled: true, restart_window: 45s }}\njwks: {{ ttl: 5s }}\n"
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(cfg.kubernetes.enabled);
        assert_eq!(cfg.jwks.ttl, Duration::from_secs(5));
        assert!(
            cfg.inventory
                .warnings
                .iter()
                .any(|w| w.path == "inventory.secrets[0].overlap"),
            "{:?}",
            cfg.inventory.warnings
        );
        let err = load(&format!(
            "{base}kubernetes: {{ restart_window: soon }}\njwks: {{ well_known: db }}\n"
        ))
        .expect_err("invalid");
        let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["kubernetes.restart_window", "jwks.well_known"]);
    }
}
