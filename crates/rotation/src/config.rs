//! The configuration shared by `rotation-controller` and `sre rotation`: where OpenBao
//! is, the inventory, and for each secret the target system that accepts its
//! credential. Read in two stages through `sre_core::config::load`
//! ([`RawRotationConfig`] as serde fills it, [`RotationConfig`] once every field has been
//! checked). The OpenBao token is never part of the file: it comes from
//! [`TOKEN_ENV`] or from `openbao.token_file`, so the file can be reviewed and logged.

use crate::model::{Inventory, RawInventory};
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
}

/// What is known about a certificate that SPIRE or cert-manager rotates, as written.
/// The times come from the config (or a later Kubernetes reader): no X.509 parser is in
/// the dependency tree, and adding one for two fields is not worth it yet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// `notAfter`, RFC 3339.
    pub not_after: String,
    /// `notBefore` (issue time), RFC 3339; gives the age metric.
    #[serde(default)]
    pub not_before: Option<String>,
    /// How long before `not_after` to alert (default `7d`).
    #[serde(default)]
    pub alert_before: Option<String>,
}

/// A validated certificate entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    /// End of validity.
    pub not_after: chrono::DateTime<chrono::Utc>,
    /// Start of validity, if known.
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
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
    },
    /// An Ed25519 signing or JWT key in the OpenBao transit engine.
    TransitSigning {
        /// Mount of the transit engine (default `transit`).
        #[serde(default)]
        transit_mount: Option<String>,
        /// The transit key name.
        key: String,
    },
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
    /// Expiry of observe-only secrets, per secret name.
    pub certificates: BTreeMap<String, CertificateSpec>,
}

impl RotationConfig {
    /// The target of the secret called `name`, if one is configured.
    #[must_use]
    pub fn target(&self, name: &str) -> Option<&TargetSpec> {
        self.targets.get(name)
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
            }
        }
        RawTarget::TransitSigning { transit_mount, key } => {
            nonempty(errs, &at("key"), &key);
            TargetSpec::TransitSigning {
                transit_mount: transit_mount.unwrap_or_else(|| "transit".to_owned()),
                key,
            }
        }
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
        let not_after = time(errs, at("not_after"), &c.not_after);
        let not_before = match c.not_before.as_deref() {
            None => Some(None),
            Some(t) => time(errs, at("not_before"), t).map(Some),
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
        if let (Some(not_after), Some(alert_before), Some(not_before)) =
            (not_after, alert_before, not_before)
        {
            out.insert(
                name,
                CertificateSpec {
                    not_after,
                    not_before,
                    alert_before,
                },
            );
        }
    }
    out
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
        let mut targets = BTreeMap::new();
        for (name, raw) in self.targets {
            let at = |f: &str| format!("targets.{name}.{f}");
            let spec = target_spec(raw, &at, &mut errs);
            targets.insert(name, spec);
        }
        let (Ok(listen), Some(tick), Ok(mut inventory)) = (listen, tick, inventory) else {
            return Err(errs);
        };
        for name in targets.keys() {
            if !inventory.secrets.iter().any(|s| &s.name == name) {
                errs.push(ConfigError::new(
                    format!("targets.{name}"),
                    "no secret of that name in the inventory",
                ));
            }
        }
        for (i, s) in inventory.secrets.iter().enumerate() {
            if !s.class.is_observe_only() && !targets.contains_key(&s.name) {
                inventory.warnings.push(ConfigError::new(
                    format!("inventory.secrets[{i}]"),
                    format!("{} has no target: it is reported but not rotated", s.name),
                ));
            }
        }
        let certificates = certificates(self.certificates, &inventory, &mut errs);
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
            certificates,
        })
    }
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
        assert_eq!(c.not_after.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(c.not_before, None);

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
                "certificates.db",
                "certificates.db.not_after",
                "certificates.db.alert_before"
            ]
        );
    }
}
