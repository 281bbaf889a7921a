//! The inventory: every managed secret with its class, cadence, owner, consumers and
//! approval requirement, read from a config file in two stages (`RawInventory` as serde
//! fills it, [`Inventory`] once every field has been checked).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sre_core::approval::Principal;
use sre_core::config::{ConfigError, Validate};
use sre_core::schedule::Schedule;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::time::Duration;

/// What kind of secret this is; the class decides how it is rotated and whether a human
/// must approve it (the handbook's rotation table, section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretClass {
    /// Dynamic database credentials minted by the OpenBao database engine (hourly).
    DynamicDb,
    /// A database service account whose password is rotated in place (static role).
    StaticDb,
    /// API tokens and OAuth client secrets kept as KV v2 versions (90 days).
    ApiToken,
    /// Signing keys in OpenBao transit; a security officer approves (365 days).
    SigningKey,
    /// JWT signing keys, rotated in tandem with the clients (30 days).
    JwtKey,
    /// An envelope-encryption master key: re-wrap every data key, then cut over.
    KmsMasterKey,
    /// SPIRE workload identity: SPIRE rotates it; we only report age and expiry.
    Svid,
    /// TLS certificates: cert-manager rotates them; we only report age and expiry.
    Tls,
}

impl SecretClass {
    /// Every class, for parsing and for error messages that list the valid ones.
    pub const ALL: [Self; 8] = [
        Self::DynamicDb,
        Self::StaticDb,
        Self::ApiToken,
        Self::SigningKey,
        Self::JwtKey,
        Self::KmsMasterKey,
        Self::Svid,
        Self::Tls,
    ];

    /// The name used in config files and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DynamicDb => "dynamic_db",
            Self::StaticDb => "static_db",
            Self::ApiToken => "api_token",
            Self::SigningKey => "signing_key",
            Self::JwtKey => "jwt_key",
            Self::KmsMasterKey => "kms_master_key",
            Self::Svid => "svid",
            Self::Tls => "tls",
        }
    }

    /// Parses a config name; `None` for an unknown class.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Key material whose compromise or loss outlives any single session: the handbook
    /// requires a security officer's approval before it changes.
    #[must_use]
    pub fn needs_approval(self) -> bool {
        matches!(self, Self::SigningKey | Self::JwtKey | Self::KmsMasterKey)
    }

    /// Rotated by another system (SPIRE, cert-manager): this crate observes, never acts.
    #[must_use]
    pub fn is_observe_only(self) -> bool {
        matches!(self, Self::Svid | Self::Tls)
    }

    /// The target holds exactly one live credential: rotating it invalidates the old
    /// one at once (an OpenBao static role changes the account's password in place), so
    /// no overlap window can exist. The plan retires the previous version right after
    /// the promotion, and the inventory refuses an overlap other than `0s` rather than
    /// promise one that the database cannot keep; consumers must re-read the secret (an
    /// ESO refresh), which is what matters for this class.
    #[must_use]
    pub fn has_single_live_credential(self) -> bool {
        matches!(self, Self::StaticDb)
    }
}

impl fmt::Display for SecretClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a secret is due: a wall-clock schedule or a maximum age since the last rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cadence {
    /// Rotate at the first schedule tick after the last rotation (read in UTC).
    Schedule(Box<Schedule>),
    /// Rotate once the current version is this old.
    MaxAge(Duration),
    /// Not rotated by us (observe-only classes).
    Never,
}

impl Cadence {
    /// When a secret last rotated at `rotated_at` is next due; `None` for never.
    #[must_use]
    pub fn next_due(&self, rotated_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Schedule(s) => s.next_after(rotated_at, chrono_tz::UTC),
            Self::MaxAge(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| rotated_at.checked_add_signed(d)),
            Self::Never => None,
        }
    }
}

/// Who reads the secret and must pick up a new version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Consumer {
    /// How the consumer is told: restart (Reloader-compatible) or refresh (ESO).
    pub kind: ConsumerKind,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

/// How a consumer picks up a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConsumerKind {
    /// A Deployment restarted (one rollout per window, coalesced across secrets).
    Deployment,
    /// An ESO `ExternalSecret` force-synced.
    ExternalSecret,
}

/// Whether a rotation waits for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalPolicy {
    /// Rotates on its cadence without asking.
    NotRequired,
    /// Waits for one of `approvers`; a request nobody decides within `expires_after`
    /// lapses and a new one must be made.
    Required {
        /// Who may approve (e.g. the security officers).
        approvers: BTreeSet<Principal>,
        /// How long a request stays open.
        expires_after: Duration,
    },
}

/// One secret under management, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedSecret {
    /// Unique name (metric label value, CLI argument).
    pub name: String,
    /// How it is rotated.
    pub class: SecretClass,
    /// KV v2 path that holds its versions and, in custom metadata, the rotation state.
    pub path: String,
    /// When it is due.
    pub cadence: Cadence,
    /// How long the previous version stays valid after a promotion, so that consumers
    /// that still hold it keep working until they have refreshed.
    pub overlap: Duration,
    /// Team or person answerable for it (shown in alerts).
    pub owner: String,
    /// Who must pick up a new version.
    pub consumers: Vec<Consumer>,
    /// Whether a human approves each rotation.
    pub approval: ApprovalPolicy,
}

/// The validated inventory, plus the warnings that did not stop validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The managed secrets, in file order.
    pub secrets: Vec<ManagedSecret>,
    /// Things an operator should look at (a secret nobody consumes, say).
    pub warnings: Vec<ConfigError>,
}

/// The inventory as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// The managed secrets.
    pub secrets: Vec<RawSecret>,
}

/// One secret as written; strings are checked in [`Validate::validate`] so that every
/// bad value is reported at once, an unknown class included.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    /// Unique name.
    pub name: String,
    /// One of [`SecretClass::ALL`] by name.
    pub class: String,
    /// KV v2 path.
    pub path: String,
    /// Cron schedule (`@hourly`, `0 3 * * *`); exclusive with `max_age`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Maximum age (`1h`, `90d`); exclusive with `schedule`.
    #[serde(default)]
    pub max_age: Option<String>,
    /// How long the previous version stays valid (`5m`).
    pub overlap: String,
    /// Who answers for it.
    pub owner: String,
    /// `deployment/NAMESPACE/NAME` or `externalsecret/NAMESPACE/NAME`.
    #[serde(default)]
    pub consumers: Vec<String>,
    /// Approval settings; required for signing-key classes.
    #[serde(default)]
    pub approval: Option<RawApproval>,
}

/// Approval settings as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    /// Who may approve.
    pub approvers: Vec<String>,
    /// How long a request stays open (`24h`).
    pub expires_after: String,
}

fn duration(
    errs: &mut Vec<ConfigError>,
    path: &str,
    text: &str,
    nonzero: bool,
) -> Option<Duration> {
    match humantime::parse_duration(text) {
        Ok(d) if nonzero && d.is_zero() => {
            errs.push(ConfigError::new(path, "must be longer than zero"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(ConfigError::new(
                path,
                format!("{text:?} is not a duration: {e}"),
            ));
            None
        }
    }
}

fn consumer(text: &str) -> Option<Consumer> {
    let mut parts = text.split('/');
    let (Some(kind), Some(namespace), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let kind = match kind {
        "deployment" => ConsumerKind::Deployment,
        "externalsecret" => ConsumerKind::ExternalSecret,
        _ => return None,
    };
    if namespace.is_empty() || name.is_empty() {
        return None;
    }
    Some(Consumer {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

fn validate_approval(
    approval: Option<RawApproval>,
    at: &str,
    class: Option<SecretClass>,
    errs: &mut Vec<ConfigError>,
) -> Option<ApprovalPolicy> {
    let p = |field: &str| format!("{at}.{field}");
    match approval {
        None if class.is_some_and(SecretClass::needs_approval) => {
            errs.push(ConfigError::new(
                p("approval"),
                "signing-key classes need an approval section (approvers, expires_after)",
            ));
            None
        }
        None => Some(ApprovalPolicy::NotRequired),
        Some(a) => {
            if a.approvers.iter().all(|s| s.trim().is_empty()) {
                errs.push(ConfigError::new(
                    p("approval.approvers"),
                    "must name at least one approver",
                ));
            }
            duration(errs, &p("approval.expires_after"), &a.expires_after, true).map(
                |expires_after| ApprovalPolicy::Required {
                    approvers: a.approvers.into_iter().map(Principal).collect(),
                    expires_after,
                },
            )
        }
    }
}

impl RawSecret {
    fn cadence(
        &self,
        at: &str,
        class: Option<SecretClass>,
        overlap: Option<Duration>,
        errs: &mut Vec<ConfigError>,
    ) -> Option<Cadence> {
        let p = |field: &str| format!("{at}.{field}");
        match (&self.schedule, &self.max_age) {
            (Some(_), Some(_)) => {
                errs.push(ConfigError::new(
                    p("schedule"),
                    "give either schedule or max_age, not both",
                ));
                None
            }
            (Some(s), None) => match Schedule::parse(s) {
                Ok(s) => Some(Cadence::Schedule(Box::new(s))),
                Err(e) => {
                    errs.push(ConfigError::new(p("schedule"), e.to_string()));
                    None
                }
            },
            (None, Some(m)) => {
                let max_age = duration(errs, &p("max_age"), m, true);
                if let (Some(m), Some(o)) = (max_age, overlap)
                    && o >= m
                {
                    errs.push(ConfigError::new(
                        p("overlap"),
                        "must be shorter than max_age, or two old versions would be valid at once",
                    ));
                }
                max_age.map(Cadence::MaxAge)
            }
            (None, None) if class.is_some_and(SecretClass::is_observe_only) => Some(Cadence::Never),
            (None, None) => {
                errs.push(ConfigError::new(
                    p("schedule"),
                    "give a schedule or a max_age",
                ));
                None
            }
        }
    }

    fn validate_into(
        self,
        at: &str,
        errs: &mut Vec<ConfigError>,
        warnings: &mut Vec<ConfigError>,
    ) -> Option<ManagedSecret> {
        let before = errs.len();
        let p = |field: &str| format!("{at}.{field}");
        if self.name.trim().is_empty() {
            errs.push(ConfigError::new(p("name"), "must not be empty"));
        }
        let class = SecretClass::parse(&self.class);
        if class.is_none() {
            let known: Vec<&str> = SecretClass::ALL.iter().map(|c| c.as_str()).collect();
            errs.push(ConfigError::new(
                p("class"),
                format!(
                    "unknown class {:?}; one of {}",
                    self.class,
                    known.join(", ")
                ),
            ));
        }
        if self.path.is_empty() || self.path.starts_with('/') || self.path.ends_with('/') {
            errs.push(ConfigError::new(
                p("path"),
                "must be a KV v2 path without leading or trailing '/'",
            ));
        }
        if self.owner.trim().is_empty() {
            errs.push(ConfigError::new(p("owner"), "must not be empty"));
        }
        let overlap = duration(errs, &p("overlap"), &self.overlap, false);
        if class.is_some_and(SecretClass::has_single_live_credential)
            && overlap.is_some_and(|o| !o.is_zero())
        {
            errs.push(ConfigError::new(
                p("overlap"),
                format!(
                    "must be 0s for {}: the old password stops working when the new one is set, \
                     so consumers must refresh at once (no overlap can be kept)",
                    self.class
                ),
            ));
        }
        let cadence = self.cadence(at, class, overlap, errs);
        let mut consumers = Vec::new();
        for (i, c) in self.consumers.iter().enumerate() {
            match consumer(c) {
                Some(c) => consumers.push(c),
                None => errs.push(ConfigError::new(
                    format!("{at}.consumers[{i}]"),
                    format!(
                        "{c:?} is not deployment/NAMESPACE/NAME or externalsecret/NAMESPACE/NAME"
                    ),
                )),
            }
        }
        if self.consumers.is_empty() && !class.is_some_and(SecretClass::is_observe_only) {
            // Named, not only indexed: the controller logs it and `sre rotation` prints
            // it, and an operator greps for the secret, not for `secrets[3]`.
            warnings.push(ConfigError::new(
                p("consumers"),
                format!(
                    "secret {:?} has no consumers listed: nothing will pick up a new version",
                    self.name
                ),
            ));
        }
        let approval = validate_approval(self.approval, at, class, errs);
        if errs.len() > before {
            return None;
        }
        Some(ManagedSecret {
            name: self.name,
            class: class?,
            path: self.path,
            cadence: cadence?,
            overlap: overlap?,
            owner: self.owner,
            consumers,
            approval: approval?,
        })
    }
}

impl Validate for RawInventory {
    type Valid = Inventory;

    fn validate(self) -> Result<Inventory, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let mut warnings = Vec::new();
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        let mut secrets = Vec::new();
        for (i, raw) in self.secrets.into_iter().enumerate() {
            let at = format!("secrets[{i}]");
            if !raw.name.is_empty() && !names.insert(raw.name.clone()) {
                errs.push(ConfigError::new(
                    format!("{at}.name"),
                    format!("duplicate name {:?}", raw.name),
                ));
            }
            // Two entries on one path would fight over the same state.
            if !raw.path.is_empty() && !paths.insert(raw.path.clone()) {
                errs.push(ConfigError::new(
                    format!("{at}.path"),
                    format!("path {:?} is managed twice", raw.path),
                ));
            }
            if let Some(s) = raw.validate_into(&at, &mut errs, &mut warnings) {
                secrets.push(s);
            }
        }
        if errs.is_empty() {
            Ok(Inventory { secrets, warnings })
        } else {
            Err(errs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Inventory, Vec<ConfigError>> {
        let raw: RawInventory = serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        raw.validate()
    }

    const GOOD: &str = "
secrets:
  - name: billing-db
    class: dynamic_db
    path: apps/billing/db
    max_age: 1h
    overlap: 5m
    owner: team-billing
    consumers: [deployment/billing/api, externalsecret/billing/db]
  - name: release-signing
    class: signing_key
    path: keys/release
    schedule: '0 3 1 1 *'
    overlap: 7d
    owner: security
    consumers: [deployment/ci/signer]
    approval: { approvers: [security-officer], expires_after: 24h }
  - name: ingress-tls
    class: tls
    path: tls/ingress
    overlap: 0s
    owner: platform
";

    #[test]
    fn a_good_inventory_validates_with_typed_fields() {
        let inv = load(GOOD).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(inv.secrets.len(), 3);
        let db = &inv.secrets[0];
        assert_eq!(db.class, SecretClass::DynamicDb);
        assert_eq!(db.cadence, Cadence::MaxAge(Duration::from_hours(1)));
        assert_eq!(db.overlap, Duration::from_mins(5));
        assert_eq!(db.consumers[1].kind, ConsumerKind::ExternalSecret);
        assert_eq!(db.approval, ApprovalPolicy::NotRequired);
        assert!(matches!(
            inv.secrets[1].approval,
            ApprovalPolicy::Required { .. }
        ));
        assert_eq!(inv.secrets[2].cadence, Cadence::Never);
        assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
    }

    #[test]
    fn every_error_is_reported_at_once_including_an_unknown_class() {
        let err = load(
            "
secrets:
  - name: a
    class: password_of_the_day
    path: /abs
    max_age: soon
    overlap: 5m
    owner: ''
  - name: a
    class: signing_key
    path: keys/x
    schedule: 'not cron'
    overlap: 1d
    owner: sec
    consumers: [pod/x]
  - name: c
    class: api_token
    path: tokens/c
    max_age: 1h
    overlap: 2h
    owner: o
    consumers: [deployment/ns/c]
",
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "secrets[0].class",
                "secrets[0].path",
                "secrets[0].owner",
                "secrets[0].max_age",
                "secrets[1].name",
                "secrets[1].schedule",
                "secrets[1].consumers[0]",
                "secrets[1].approval",
                "secrets[2].overlap",
            ],
            "{err:#?}"
        );
        assert!(err[0].message.contains("password_of_the_day"), "{err:?}");
        assert!(
            err[0].message.contains("dynamic_db"),
            "lists the valid classes"
        );
    }

    #[test]
    fn a_secret_without_consumers_is_a_warning_not_an_error() {
        let inv = load(
            "
secrets:
  - { name: t, class: api_token, path: tokens/t, max_age: 90d, overlap: 1d, owner: o }
",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(inv.warnings.len(), 1);
        assert_eq!(inv.warnings[0].path, "secrets[0].consumers");
        assert_eq!(
            inv.warnings[0].to_string(),
            "secrets[0].consumers: secret \"t\" has no consumers listed: \
             nothing will pick up a new version"
        );
    }

    #[test]
    fn cadence_gives_the_next_due_time() {
        let t = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
        let age = Cadence::MaxAge(Duration::from_hours(1));
        assert_eq!(age.next_due(t), Some(t + chrono::Duration::hours(1)));
        let daily = Cadence::Schedule(Box::new(
            Schedule::parse("0 3 * * *").unwrap_or_else(|e| panic!("{e}")),
        ));
        assert_eq!(daily.next_due(t), Some(t + chrono::Duration::hours(3)));
        assert_eq!(Cadence::Never.next_due(t), None);
    }

    #[test]
    fn a_static_role_allows_no_overlap() {
        let inv = load(
            "
secrets:
  - { name: svc, class: static_db, path: db/svc, max_age: 30d, overlap: 0s, owner: o, consumers: [externalsecret/a/svc] }
",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(inv.secrets[0].class.has_single_live_credential());
        let err = load(
            "
secrets:
  - { name: svc, class: static_db, path: db/svc, max_age: 30d, overlap: 5m, owner: o, consumers: [externalsecret/a/svc] }
",
        )
        .expect_err("overlap on a static role");
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].path, "secrets[0].overlap");
        assert!(err[0].message.contains("static_db"), "{}", err[0].message);
        assert!(!SecretClass::DynamicDb.has_single_live_credential());
    }
}
