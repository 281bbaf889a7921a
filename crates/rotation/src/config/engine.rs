//! The optional `engine:` block of a `postgres_dynamic` target: the OpenBao database
//! engine's PostgreSQL connection and dynamic role, configured by the controller at
//! start instead of by hand. Without the block an operator must have configured them.
//!
//! Validation refuses a block whose credentials would die before rotation replaces
//! them: a lease cannot outlive the role's `max_ttl`, whatever renewal asks for, so
//! `max_ttl` must cover the secret's whole life (rotation interval, overlap and one
//! tick of lateness).

use crate::model::{Cadence, Inventory};
use serde::Deserialize;
use sre_core::config::ConfigError;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::TargetSpec;

/// The `engine:` block as written (read in `validate`, so its errors carry the path
/// `targets.<name>.engine`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDbEngine {
    /// Name of the engine's connection (`<mount>/config/<connection>`).
    #[serde(default)]
    pub connection: Option<String>,
    /// Connection URL with `{{username}}` and `{{password}}` placeholders.
    #[serde(default)]
    pub connection_url: Option<String>,
    /// The PostgreSQL account that creates and drops the minted users.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding that account's password (required; read when the engine is
    /// configured, never part of the config).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// SQL run to create a user (default [`DEFAULT_CREATION_STATEMENTS`]).
    #[serde(default)]
    pub creation_statements: Option<Vec<String>>,
    /// SQL run when a lease is revoked (default [`DEFAULT_REVOCATION_STATEMENTS`]; an
    /// empty list leaves it to the plugin's own default).
    #[serde(default)]
    pub revocation_statements: Option<Vec<String>>,
    /// Lease length of a fresh credential (default `1h`).
    #[serde(default)]
    pub default_ttl: Option<String>,
    /// Lifetime that no renewal can pass (default `24h`).
    #[serde(default)]
    pub max_ttl: Option<String>,
}

/// A validated `engine:` block, with what it needs from its target: everything the
/// controller hands to the OpenBao adapter. The password is not here, only its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbEngineSpec {
    /// Mount of the database engine (the target's `database_mount`).
    pub database_mount: String,
    /// Connection name.
    pub connection: String,
    /// Connection URL with `{{username}}`/`{{password}}` placeholders.
    pub connection_url: String,
    /// The administrative PostgreSQL account.
    pub username: String,
    /// The file that holds its password.
    pub password_file: PathBuf,
    /// Every role this config serves from the connection (the targets that share it),
    /// sorted: the connection is written with all of them, so one secret's block does
    /// not lock another's role out.
    pub allowed_roles: Vec<String>,
    /// The dynamic role (the target's `role`).
    pub role: String,
    /// SQL that creates a user.
    pub creation_statements: Vec<String>,
    /// SQL that drops one.
    pub revocation_statements: Vec<String>,
    /// Lease length of a fresh credential.
    pub default_ttl: Duration,
    /// Lifetime cap of every lease.
    pub max_ttl: Duration,
}

/// Default creation SQL: a login user that PostgreSQL itself refuses after the lease
/// ends (`VALID UNTIL`; the plugin moves it on renewal), reading the `public` schema of
/// the connection's database. Read-only is the least a service needs to prove it logs
/// in; a service that writes names its own grants.
pub const DEFAULT_CREATION_STATEMENTS: [&str; 3] = [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
    "GRANT USAGE ON SCHEMA public TO \"{{name}}\";",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";",
];

/// Default revocation SQL: the grants of [`DEFAULT_CREATION_STATEMENTS`] taken back (a
/// role that still holds privileges cannot be dropped), then the user dropped.
pub const DEFAULT_REVOCATION_STATEMENTS: [&str; 3] = [
    "REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM \"{{name}}\";",
    "REVOKE USAGE ON SCHEMA public FROM \"{{name}}\";",
    "DROP ROLE IF EXISTS \"{{name}}\";",
];

const DEFAULT_TTL: Duration = Duration::from_hours(1);
const DEFAULT_MAX_TTL: Duration = Duration::from_hours(24);

fn text(
    value: Option<String>,
    field: &str,
    at: &dyn Fn(&str) -> String,
    errs: &mut Vec<ConfigError>,
) -> String {
    match value {
        Some(v) if !v.trim().is_empty() => v,
        Some(_) => {
            errs.push(ConfigError::new(at(field), "must not be empty"));
            String::new()
        }
        None => {
            errs.push(ConfigError::new(at(field), "required"));
            String::new()
        }
    }
}

fn ttl(
    value: Option<&str>,
    default: Duration,
    field: &str,
    at: &dyn Fn(&str) -> String,
    errs: &mut Vec<ConfigError>,
) -> Option<Duration> {
    let Some(text) = value else {
        return Some(default);
    };
    match humantime::parse_duration(text) {
        // OpenBao counts TTLs in whole seconds, and 0 means "the mount's default".
        Ok(d) if d < Duration::from_secs(1) => {
            errs.push(ConfigError::new(at(field), "must be at least 1s"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(ConfigError::new(
                at(field),
                format!("{text:?} is not a duration: {e}"),
            ));
            None
        }
    }
}

/// Statements as written or the default; every written one non-empty and naming
/// `{{name}}` (a statement that does not cannot act on the minted user).
fn statements(
    value: Option<Vec<String>>,
    default: &[&str],
    field: &str,
    at: &dyn Fn(&str) -> String,
    errs: &mut Vec<ConfigError>,
) -> Vec<String> {
    let Some(list) = value else {
        return default.iter().map(|s| (*s).to_owned()).collect();
    };
    for (i, s) in list.iter().enumerate() {
        if !s.contains("{{name}}") {
            errs.push(ConfigError::new(
                format!("{}[{i}]", at(field)),
                "must name the minted user as {{name}}",
            ));
        }
    }
    list
}

/// The URL as written; it must use the placeholders, so that no password is in it.
fn connection_url(
    value: Option<String>,
    at: &dyn Fn(&str) -> String,
    errs: &mut Vec<ConfigError>,
) -> String {
    let url = text(value, "connection_url", at, errs);
    let templated = url.contains("{{username}}") && url.contains("{{password}}");
    if !url.is_empty() && !templated {
        errs.push(ConfigError::new(
            at("connection_url"),
            "must carry the {{username}} and {{password}} placeholders: the engine fills them \
             from username and password_file, so no password is written in the config (and \
             OpenBao hands the URL back to anyone who may read the connection)",
        ));
    }
    url
}

fn password_file(
    value: Option<PathBuf>,
    at: &dyn Fn(&str) -> String,
    errs: &mut Vec<ConfigError>,
) -> PathBuf {
    match value {
        Some(p) if !p.as_os_str().is_empty() => p,
        Some(_) => {
            errs.push(ConfigError::new(at("password_file"), "must not be empty"));
            PathBuf::new()
        }
        None => {
            errs.push(ConfigError::new(
                at("password_file"),
                "required: the file that holds the password of username (it is never read \
                 from the config itself)",
            ));
            PathBuf::new()
        }
    }
}

/// Creation statements: at least one, and one of them sets `{{password}}`.
fn creation(
    value: Option<Vec<String>>,
    at: &dyn Fn(&str) -> String,
    errs: &mut Vec<ConfigError>,
) -> Vec<String> {
    let list = statements(
        value,
        &DEFAULT_CREATION_STATEMENTS,
        "creation_statements",
        at,
        errs,
    );
    if list.is_empty() {
        errs.push(ConfigError::new(
            at("creation_statements"),
            "must not be empty: nothing would create the user",
        ));
    } else if !list.iter().any(|s| s.contains("{{password}}")) {
        errs.push(ConfigError::new(
            at("creation_statements"),
            "no statement sets the password ({{password}}): the user could not log in",
        ));
    }
    list
}

/// Reads the `engine:` block of target `at("")` (mount and role from the target).
pub(super) fn parse(
    value: serde_json::Value,
    database_mount: &str,
    role: &str,
    at: &dyn Fn(&str) -> String,
    errs: &mut Vec<ConfigError>,
) -> Option<DbEngineSpec> {
    let raw: RawDbEngine = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            errs.push(ConfigError::new(at(""), e.to_string()));
            return None;
        }
    };
    let before = errs.len();
    let connection = text(raw.connection, "connection", at, errs);
    if connection.contains('/') {
        errs.push(ConfigError::new(at("connection"), "must not contain '/'"));
    }
    let connection_url = connection_url(raw.connection_url, at, errs);
    let username = text(raw.username, "username", at, errs);
    let password_file = password_file(raw.password_file, at, errs);
    let creation_statements = creation(raw.creation_statements, at, errs);
    let revocation_statements = statements(
        raw.revocation_statements,
        &DEFAULT_REVOCATION_STATEMENTS,
        "revocation_statements",
        at,
        errs,
    );
    let default_ttl = ttl(
        raw.default_ttl.as_deref(),
        DEFAULT_TTL,
        "default_ttl",
        at,
        errs,
    );
    let max_ttl = ttl(raw.max_ttl.as_deref(), DEFAULT_MAX_TTL, "max_ttl", at, errs);
    if let (Some(d), Some(m)) = (default_ttl, max_ttl)
        && m < d
    {
        errs.push(ConfigError::new(
            at("max_ttl"),
            format!(
                "{} is shorter than default_ttl ({})",
                humantime::format_duration(m),
                humantime::format_duration(d)
            ),
        ));
    }
    if errs.len() > before {
        return None;
    }
    Some(DbEngineSpec {
        database_mount: database_mount.to_owned(),
        connection,
        connection_url,
        username,
        password_file,
        allowed_roles: vec![role.to_owned()],
        role: role.to_owned(),
        creation_statements,
        revocation_statements,
        default_ttl: default_ttl?,
        max_ttl: max_ttl?,
    })
}

/// The longest a credential can stay current under `cadence`: `max_age`, or for a cron
/// schedule the longest gap between two of its next 366 ticks after 2026-01-01 (read in
/// UTC, as rotation reads it). `None` for a secret that is never rotated.
fn longest_interval(cadence: &Cadence) -> Option<Duration> {
    match cadence {
        Cadence::MaxAge(d) => Some(*d),
        Cadence::Never => None,
        Cadence::Schedule(s) => {
            let anchor = chrono::DateTime::from_timestamp(1_767_225_600, 0)?;
            let ticks = s.upcoming(anchor, chrono_tz::UTC, 366);
            ticks
                .windows(2)
                .filter_map(|w| (w[1] - w[0]).to_std().ok())
                .max()
        }
    }
}

/// Checks that need the inventory and the other targets: each credential outlives its
/// rotation, renewal stays within `max_ttl`, and blocks that share a connection or a
/// role agree; then gives each connection every role that uses it.
pub(super) fn check(
    engines: &mut BTreeMap<String, DbEngineSpec>,
    targets: &BTreeMap<String, TargetSpec>,
    inventory: &Inventory,
    tick: Duration,
    errs: &mut Vec<ConfigError>,
) {
    let fmt = |d: Duration| humantime::format_duration(d).to_string();
    for (name, e) in engines.iter() {
        if let Some(s) = inventory.secrets.iter().find(|s| &s.name == name)
            && let Some(interval) = longest_interval(&s.cadence)
        {
            let life = interval.saturating_add(s.overlap).saturating_add(tick);
            if e.max_ttl <= life {
                errs.push(ConfigError::new(
                    format!("targets.{name}.engine.max_ttl"),
                    format!(
                        "{} is not longer than {name}'s rotation interval + overlap + tick ({} \
                         + {} + {} = {}): its credentials would expire before rotation \
                         replaces and retires them, and consumers would fail to log in",
                        fmt(e.max_ttl),
                        fmt(interval),
                        fmt(s.overlap),
                        fmt(tick),
                        fmt(life)
                    ),
                ));
            }
        }
        if let Some(lease) = targets.get(name).and_then(TargetSpec::lease_renewal)
            && lease.increment > e.max_ttl
        {
            errs.push(ConfigError::new(
                format!("targets.{name}.lease_increment"),
                format!(
                    "{} is longer than engine.max_ttl ({}): every renewal would be capped",
                    fmt(lease.increment),
                    fmt(e.max_ttl)
                ),
            ));
        }
    }
    // Blocks that share a connection must describe the same one, and blocks that share
    // a role the same role: otherwise the last one written would win at random.
    let mut connections: BTreeMap<(String, String), (String, Vec<String>)> = BTreeMap::new();
    let mut roles: BTreeMap<(String, String), &str> = BTreeMap::new();
    for (name, e) in engines.iter() {
        let key = (e.database_mount.clone(), e.connection.clone());
        match connections.get_mut(&key) {
            None => {
                connections.insert(key, (name.clone(), vec![e.role.clone()]));
            }
            Some((first, roles_of)) => {
                let f = &engines[first.as_str()];
                if (&f.connection_url, &f.username, &f.password_file)
                    != (&e.connection_url, &e.username, &e.password_file)
                {
                    errs.push(ConfigError::new(
                        format!("targets.{name}.engine.connection"),
                        format!(
                            "connection {} on mount {} is also configured by targets.{first} \
                             with another connection_url, username or password_file",
                            e.connection, e.database_mount
                        ),
                    ));
                }
                roles_of.push(e.role.clone());
            }
        }
        let role_key = (e.database_mount.clone(), e.role.clone());
        match roles.get(&role_key) {
            None => {
                roles.insert(role_key, name.as_str());
            }
            Some(first) => {
                let f = &engines[*first];
                let same = f.connection == e.connection
                    && f.creation_statements == e.creation_statements
                    && f.revocation_statements == e.revocation_statements
                    && f.default_ttl == e.default_ttl
                    && f.max_ttl == e.max_ttl;
                if !same {
                    errs.push(ConfigError::new(
                        format!("targets.{name}.engine"),
                        format!(
                            "role {} on mount {} is also configured by targets.{first} with \
                             another connection, statements or TTLs",
                            e.role, e.database_mount
                        ),
                    ));
                }
            }
        }
    }
    for e in engines.values_mut() {
        if let Some((_, all)) = connections.get(&(e.database_mount.clone(), e.connection.clone())) {
            let mut all = all.clone();
            all.sort_unstable();
            all.dedup();
            e.allowed_roles = all;
        }
    }
}
