//! [`BaoDatabase`]: the OpenBao database secrets engine with the PostgreSQL plugin:
//! connections, dynamic roles, credentials with their leases, renewal and revocation,
//! and static roles (one existing account whose password the engine changes in place).

use crate::client::{self, Raw};
use crate::config::BaoConfig;
use crate::error::{BACKEND, Error, Failure};
use sre_core::PortError;
use std::fmt;
use std::time::Duration;
use vaultrs::api::database::requests::{PostgreSQLConnectionRequest, SetRoleRequest};
use vaultrs::client::VaultClient;

/// How the engine reaches PostgreSQL as the account that creates and drops roles.
#[derive(Clone)]
pub struct PostgresConnection {
    /// A libpq URL with `{{username}}` and `{{password}}` placeholders, which the engine
    /// fills from `username`/`password` (so the password is not part of the URL and the
    /// engine can rotate it).
    pub connection_url: String,
    /// The administrative user.
    pub username: String,
    /// Its password. Never logged.
    pub password: String,
    /// Roles allowed to use this connection.
    pub allowed_roles: Vec<String>,
}

impl fmt::Debug for PostgresConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConnection")
            .field("connection_url", &self.connection_url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("allowed_roles", &self.allowed_roles)
            .finish()
    }
}

/// A role that mints a fresh database user per credential request.
#[derive(Debug, Clone)]
pub struct DynamicRole {
    /// Role name (the `creds/<name>` path).
    pub name: String,
    /// SQL run to create the user; `{{name}}`, `{{password}}`, `{{expiration}}` are
    /// filled in by the engine.
    pub creation_statements: Vec<String>,
    /// SQL run on revocation; empty: the plugin's default (drop the role).
    pub revocation_statements: Vec<String>,
    /// Lease length without renewal.
    pub default_ttl: Duration,
    /// Upper bound that renewals cannot pass.
    pub max_ttl: Duration,
}

/// A role bound to one existing database account whose password the engine rotates in
/// place (`<mount>/static-roles/<name>`): for service accounts that cannot be replaced
/// by a fresh user per consumer.
#[derive(Debug, Clone)]
pub struct StaticRole {
    /// Role name (the `static-creds/<name>` path).
    pub name: String,
    /// The existing database user.
    pub username: String,
    /// How often the engine rotates on its own. Set it longer than the rotation
    /// cadence that `sre-rotation` drives, or the engine changes the password behind
    /// the KV copy (each `rotate-role` restarts this period).
    pub rotation_period: Duration,
    /// SQL that sets the password (`{{name}}`, `{{password}}`); empty: the plugin's
    /// default `ALTER ROLE ... WITH PASSWORD`.
    pub rotation_statements: Vec<String>,
}

/// The current password of a static role. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredential {
    /// The database user.
    pub username: String,
    /// Its only valid password.
    pub password: String,
    /// When the engine last set it (RFC 3339, as OpenBao reports it).
    pub last_rotation: String,
    /// Time until the engine's own next rotation.
    pub ttl: Duration,
}

impl fmt::Debug for StaticCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("last_rotation", &self.last_rotation)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// An OpenBao lease: what to renew or revoke, and for how long it is valid now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease id (`<mount>/creds/<role>/<id>`).
    pub id: String,
    /// Time left.
    pub duration: Duration,
    /// Whether it can be extended.
    pub renewable: bool,
}

/// Credentials minted by the engine. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DbCredential {
    /// The database user the engine created.
    pub username: String,
    /// Its password.
    pub password: String,
    /// The lease that keeps the user alive.
    pub lease: Lease,
}

impl fmt::Debug for DbCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("lease", &self.lease)
            .finish()
    }
}

/// The database secrets engine at one mount.
pub struct BaoDatabase {
    client: VaultClient,
    mount: String,
}

impl fmt::Debug for BaoDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaoDatabase")
            .field("address", &self.client.settings.address.as_str())
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

/// The plugin every connection of this adapter uses.
const POSTGRES_PLUGIN: &str = "postgresql-database-plugin";

/// What an `ensure_*` call did to one piece of the engine's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It did not exist and was created.
    Created,
    /// It existed and was written again (it differed, or cannot be compared).
    Updated,
    /// It existed as wanted; nothing was written.
    Unchanged,
}

/// What [`BaoDatabase::ensure_dynamic`] did, piece by piece: a first call on an empty
/// server reports three `Created`, a repeat `Unchanged` / `Updated` / `Unchanged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineChanges {
    /// The mount (`Created` or `Unchanged`).
    pub mount: Change,
    /// The connection (`Created` or `Updated`: it is always written).
    pub connection: Change,
    /// The dynamic role.
    pub role: Change,
}

/// Replaces every occurrence of `secret` in the error's text: OpenBao passes on what
/// the database driver said, and a driver may quote the connection it was given.
fn redact(e: PortError, secret: &str) -> PortError {
    if secret.is_empty() {
        return e;
    }
    let clean = |m: String| m.replace(secret, "<redacted>");
    match e {
        PortError::Rejected { backend, message } => PortError::Rejected {
            backend,
            message: clean(message),
        },
        PortError::Unavailable { backend, message } => PortError::Unavailable {
            backend,
            message: clean(message),
        },
        PortError::Malformed {
            backend,
            what,
            message,
        } => PortError::Malformed {
            backend,
            what,
            message: clean(message),
        },
        PortError::Invalid(message) => PortError::Invalid(clean(message)),
        other => other,
    }
}

/// Whether a GET of `path` finds something (404: no).
async fn exists(client: &VaultClient, path: &str) -> Result<bool, PortError> {
    match client::envelope(client, Raw::get(path.to_owned()), path).await {
        Ok(_) => Ok(true),
        Err(PortError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The engine type mounted at `mount` according to a `sys/mounts` answer (which lists
/// mounts as `<path>/` both at the top level and under `data`), `None` when nothing is.
fn mount_type(v: &serde_json::Value, mount: &str) -> Result<Option<String>, PortError> {
    let table = v.get("data").filter(|d| d.is_object()).unwrap_or(v);
    let key = format!("{}/", mount.trim_matches('/'));
    table
        .get(&key)
        .map(|m| {
            m.get("type")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| malformed("sys/mounts", format!("no type for {key}")))
        })
        .transpose()
}

/// Whether a `<mount>/roles/<name>` answer already says what `role` on connection `db`
/// wants. A missing statement list reads as empty; TTLs come back in whole seconds.
fn role_matches(v: &serde_json::Value, db: &str, role: &DynamicRole) -> bool {
    let Some(data) = v.get("data") else {
        return false;
    };
    let list = |k: &str| -> Option<Vec<String>> {
        match data.get(k) {
            None | Some(serde_json::Value::Null) => Some(Vec::new()),
            Some(serde_json::Value::Array(a)) => {
                a.iter().map(|s| s.as_str().map(str::to_owned)).collect()
            }
            Some(_) => None,
        }
    };
    let num = |k: &str| data.get(k).and_then(serde_json::Value::as_u64);
    data.get("db_name").and_then(serde_json::Value::as_str) == Some(db)
        && list("creation_statements").as_ref() == Some(&role.creation_statements)
        && list("revocation_statements").as_ref() == Some(&role.revocation_statements)
        && num("default_ttl") == Some(role.default_ttl.as_secs())
        && num("max_ttl") == Some(role.max_ttl.as_secs())
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn malformed(what: &str, message: impl Into<String>) -> PortError {
    PortError::Malformed {
        backend: BACKEND,
        what: what.to_owned(),
        message: message.into(),
    }
}

/// Reads the lease fields of a response envelope (or of `sys/leases/renew`'s answer,
/// which has the same names at the top level).
fn lease(v: &serde_json::Value, what: &str) -> Result<Lease, PortError> {
    let id = v
        .get("lease_id")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed(what, "no lease_id"))?;
    let duration = v
        .get("lease_duration")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| malformed(what, "no lease_duration"))?;
    Ok(Lease {
        id: id.to_owned(),
        duration: Duration::from_secs(duration),
        renewable: v
            .get("renewable")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    })
}

/// Reads `sys/leases/lookup`'s answer, whose fields sit under `data` with other names.
fn looked_up(v: &serde_json::Value, what: &str) -> Result<Lease, PortError> {
    let data = v.get("data").ok_or_else(|| malformed(what, "no data"))?;
    let id = data
        .get("id")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed(what, "no data.id"))?;
    let ttl = data
        .get("ttl")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| malformed(what, "no data.ttl"))?;
    Ok(Lease {
        id: id.to_owned(),
        duration: Duration::from_secs(ttl),
        renewable: data
            .get("renewable")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    })
}

/// Whether a failed `sys/leases/*` call says the lease does not exist. OpenBao answers
/// 400, not 404: "lease not found" from renew, "invalid lease" from lookup.
fn lease_is_missing(f: &Failure) -> bool {
    matches!(f, Failure::Status { code: 400, errors }
        if errors.iter().any(|e| e.contains("lease not found") || e.contains("invalid lease")))
}

/// Sends a `sys/leases/*` request, turning "no such lease" into `NotFound` (named by
/// the lease id) so that callers can tell a dead credential from a refused request.
async fn lease_call(
    client: &VaultClient,
    req: Raw,
    lease_id: &str,
) -> Result<serde_json::Value, PortError> {
    vaultrs::api::exec_with_no_result(client, req)
        .await
        .map_err(|e| {
            let f = Failure::from_client(&e);
            if lease_is_missing(&f) {
                PortError::NotFound {
                    what: format!("lease {lease_id}"),
                }
            } else {
                f.into_port("sys/leases")
            }
        })
}

/// Reads `static-creds`' answer.
fn static_credential(v: &serde_json::Value, what: &str) -> Result<StaticCredential, PortError> {
    let data = v.get("data").ok_or_else(|| malformed(what, "no data"))?;
    let text = |k: &str| {
        data.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| malformed(what, format!("no data.{k}")))
    };
    Ok(StaticCredential {
        username: text("username")?,
        password: text("password")?,
        last_rotation: text("last_vault_rotation").unwrap_or_default(),
        ttl: Duration::from_secs(
            data.get("ttl")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
        ),
    })
}

impl BaoDatabase {
    /// The engine at `mount` (e.g. `database`). No request is made.
    pub fn new(config: &BaoConfig, mount: impl Into<String>) -> Result<Self, Error> {
        Ok(Self {
            client: client::build(config)?,
            mount: mount.into(),
        })
    }

    /// The mount this engine is at.
    #[must_use]
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// Mounts the engine; already mounted is success.
    #[tracing::instrument(skip_all, fields(mount = %self.mount))]
    pub async fn enable(&self) -> Result<(), PortError> {
        client::enable_engine(&self.client, &self.mount, "database").await
    }

    /// Creates or replaces connection `name` with `postgresql-database-plugin`. The
    /// engine connects once to verify, so wrong credentials fail here. The password is
    /// cut out of any error text (a driver may echo what it was given).
    #[tracing::instrument(skip_all, fields(mount = %self.mount, connection = name))]
    pub async fn configure_postgres(
        &self,
        name: &str,
        conn: &PostgresConnection,
    ) -> Result<(), PortError> {
        let mut b = PostgreSQLConnectionRequest::builder();
        b.connection_url(conn.connection_url.clone())
            .plugin_name(POSTGRES_PLUGIN.to_owned())
            .username(conn.username.clone())
            .password(conn.password.clone())
            .allowed_roles(conn.allowed_roles.clone())
            .verify_connection(true);
        vaultrs::database::connection::postgres(&self.client, &self.mount, name, Some(&mut b))
            .await
            .map_err(|e| redact(Failure::from_client(&e).into_port(name), &conn.password))
    }

    /// Creates or replaces a dynamic role on connection `db`. The revocation statements
    /// are always sent, empty included, so that replacing a role also clears statements
    /// it no longer has (OpenBao keeps a field that an update leaves out).
    #[tracing::instrument(skip_all, fields(mount = %self.mount, role = %role.name))]
    pub async fn set_role(&self, db: &str, role: &DynamicRole) -> Result<(), PortError> {
        let mut b = SetRoleRequest::builder();
        b.db_name(db.to_owned())
            .creation_statements(role.creation_statements.clone())
            .revocation_statements(role.revocation_statements.clone())
            .default_ttl(secs(role.default_ttl))
            .max_ttl(secs(role.max_ttl));
        vaultrs::database::role::set(&self.client, &self.mount, &role.name, Some(&mut b))
            .await
            .map_err(|e| Failure::from_client(&e).into_port(&role.name))
    }

    /// Makes the engine at this mount serve `role` from PostgreSQL connection
    /// `connection`, from whatever is there now: mounts the engine if the mount is
    /// missing, writes the connection, and writes the role unless it already reads back
    /// as wanted. Safe to repeat (a controller calls it at every start): a second call
    /// changes nothing but the connection, which is written every time because OpenBao
    /// never returns its password and so a changed password cannot be seen otherwise.
    ///
    /// Errors: a mount of another engine type at this path is `Rejected` (writing a
    /// database config into a KV mount would "succeed" and configure nothing); a role
    /// that `conn.allowed_roles` does not allow is `Invalid` before anything is sent;
    /// the engine refusing the connection (wrong password, unreachable database) is
    /// `Rejected`, without the password in its text.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, connection = %connection, role = %role.name))]
    pub async fn ensure_dynamic(
        &self,
        connection: &str,
        conn: &PostgresConnection,
        role: &DynamicRole,
    ) -> Result<EngineChanges, PortError> {
        if !conn
            .allowed_roles
            .iter()
            .any(|r| r == &role.name || r == "*")
        {
            return Err(PortError::Invalid(format!(
                "role {} is not in the allowed_roles of connection {connection}",
                role.name
            )));
        }
        let changes = EngineChanges {
            mount: self.ensure_mount().await?,
            connection: self.ensure_postgres(connection, conn).await?,
            role: self.ensure_role(connection, role).await?,
        };
        tracing::info!(?changes, "database engine configured");
        Ok(changes)
    }

    /// Mounts the database engine here unless it is mounted already. A mount of another
    /// type at this path is `Rejected`. Needs `read` on `sys/mounts` (and, the first
    /// time, `create` on `sys/mounts/<mount>`).
    #[tracing::instrument(skip_all, fields(mount = %self.mount))]
    pub async fn ensure_mount(&self) -> Result<Change, PortError> {
        let v = client::envelope(&self.client, Raw::get("sys/mounts"), "sys/mounts").await?;
        match mount_type(&v, &self.mount)? {
            Some(t) if t == "database" => Ok(Change::Unchanged),
            Some(t) => Err(PortError::Rejected {
                backend: BACKEND,
                message: format!(
                    "{}/ is mounted as a {t} engine, not database: pick another database_mount",
                    self.mount
                ),
            }),
            None => {
                self.enable().await?;
                Ok(Change::Created)
            }
        }
    }

    /// Writes connection `name` (see [`Self::configure_postgres`]); `Created` when there
    /// was none, else `Updated`: it is written every time, since its password cannot be
    /// read back to compare.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, connection = name))]
    pub async fn ensure_postgres(
        &self,
        name: &str,
        conn: &PostgresConnection,
    ) -> Result<Change, PortError> {
        let path = format!("{}/config/{name}", self.mount);
        let existed = exists(&self.client, &path).await?;
        self.configure_postgres(name, conn).await?;
        Ok(if existed {
            Change::Updated
        } else {
            Change::Created
        })
    }

    /// Writes dynamic role `role.name` on connection `db` unless it reads back with the
    /// same connection, statements and TTLs (`Unchanged`); `Created` or `Updated`
    /// otherwise. Leases already issued keep the TTLs they were issued with.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, role = %role.name))]
    pub async fn ensure_role(&self, db: &str, role: &DynamicRole) -> Result<Change, PortError> {
        let path = format!("{}/roles/{}", self.mount, role.name);
        let current = match client::envelope(&self.client, Raw::get(path.clone()), &path).await {
            Ok(v) => Some(v),
            Err(PortError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        if current.as_ref().is_some_and(|v| role_matches(v, db, role)) {
            return Ok(Change::Unchanged);
        }
        self.set_role(db, role).await?;
        Ok(if current.is_some() {
            Change::Updated
        } else {
            Change::Created
        })
    }

    /// Mints credentials from `role`: the engine creates the database user now.
    /// (`vaultrs::database::role::creds` drops the lease, hence the raw request.)
    #[tracing::instrument(skip_all, fields(mount = %self.mount, role))]
    pub async fn issue(&self, role: &str) -> Result<DbCredential, PortError> {
        let path = format!("{}/creds/{role}", self.mount);
        let v = client::envelope(&self.client, Raw::get(path.clone()), &path).await?;
        let field = |k: &str| {
            v.get("data")
                .and_then(|d| d.get(k))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| malformed(&path, format!("no data.{k}")))
        };
        Ok(DbCredential {
            username: field("username")?,
            password: field("password")?,
            lease: lease(&v, &path)?,
        })
    }

    /// Creates or replaces static role `role.name` on connection `db`. The engine sets
    /// a new password at once (the account's old one stops working).
    #[tracing::instrument(skip_all, fields(mount = %self.mount, role = %role.name))]
    pub async fn set_static_role(&self, db: &str, role: &StaticRole) -> Result<(), PortError> {
        let path = format!("{}/static-roles/{}", self.mount, role.name);
        let mut body = serde_json::json!({
            "db_name": db,
            "username": role.username,
            "rotation_period": secs(role.rotation_period),
        });
        if !role.rotation_statements.is_empty() {
            body["rotation_statements"] = serde_json::json!(role.rotation_statements);
        }
        client::empty(&self.client, Raw::put(path.clone(), body), &path).await
    }

    /// The static role's current password, as the engine last set it.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, role))]
    pub async fn static_creds(&self, role: &str) -> Result<StaticCredential, PortError> {
        let path = format!("{}/static-creds/{role}", self.mount);
        let v = client::envelope(&self.client, Raw::get(path.clone()), &path).await?;
        static_credential(&v, &path)
    }

    /// Makes the engine change the static role's password now (`rotate-role`): the new
    /// one is in [`Self::static_creds`], the old one no longer logs in. Repeating it
    /// only rotates once more.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, role))]
    pub async fn rotate_static_role(&self, role: &str) -> Result<(), PortError> {
        let path = format!("{}/rotate-role/{role}", self.mount);
        client::empty(
            &self.client,
            Raw::put(path.clone(), serde_json::json!({})),
            &path,
        )
        .await
    }

    /// Extends a lease by `increment`. OpenBao caps the result at the role's
    /// `max_ttl` (counted from issue), so a returned duration shorter than `increment`
    /// means the lease cannot be extended any further. A lease that does not exist
    /// (revoked, expired) is `PortError::NotFound`.
    #[tracing::instrument(skip_all, fields(mount = %self.mount))]
    pub async fn renew(&self, lease_id: &str, increment: Duration) -> Result<Lease, PortError> {
        let body = serde_json::json!({ "lease_id": lease_id, "increment": increment.as_secs() });
        let v = lease_call(&self.client, Raw::put("sys/leases/renew", body), lease_id).await?;
        lease(&v, "sys/leases/renew")
    }

    /// Where a lease stands now, without changing it (`sys/leases/lookup`): `duration`
    /// is the time left. A lease that does not exist is `PortError::NotFound`.
    #[tracing::instrument(skip_all, fields(mount = %self.mount))]
    pub async fn lookup(&self, lease_id: &str) -> Result<Lease, PortError> {
        let body = serde_json::json!({ "lease_id": lease_id });
        let v = lease_call(&self.client, Raw::put("sys/leases/lookup", body), lease_id).await?;
        looked_up(&v, "sys/leases/lookup")
    }

    /// Revokes a lease now: the engine drops the database user. Revoking a lease that
    /// is already gone succeeds, so a retried revocation is harmless.
    #[tracing::instrument(skip_all, fields(mount = %self.mount))]
    pub async fn revoke(&self, lease_id: &str) -> Result<(), PortError> {
        let body = serde_json::json!({ "lease_id": lease_id });
        client::empty(
            &self.client,
            Raw::put("sys/leases/revoke", body),
            "sys/leases/revoke",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_fields_are_read_and_missing_ones_are_malformed() {
        let v = serde_json::json!({"lease_id": "db/creds/r/abc", "lease_duration": 3600, "renewable": true});
        assert_eq!(
            lease(&v, "p"),
            Ok(Lease {
                id: "db/creds/r/abc".into(),
                duration: Duration::from_hours(1),
                renewable: true
            })
        );
        let err = lease(
            &serde_json::json!({"lease_id": "", "lease_duration": 1}),
            "p",
        );
        assert!(matches!(err, Err(PortError::Malformed { .. })), "{err:?}");
    }

    #[test]
    fn lookup_answers_are_read_and_missing_leases_are_recognised() {
        let v = serde_json::json!({"data": {"id": "db/creds/r/abc", "ttl": 5000,
            "renewable": true, "expire_time": "2026-01-01T01:23:20Z"}});
        assert_eq!(
            looked_up(&v, "p"),
            Ok(Lease {
                id: "db/creds/r/abc".into(),
                duration: Duration::from_secs(5000),
                renewable: true
            })
        );
        let bad = looked_up(&serde_json::json!({"data": {"id": "x"}}), "p");
        assert!(matches!(bad, Err(PortError::Malformed { .. })), "{bad:?}");
        let st = |code, msg: &str| Failure::Status {
            code,
            errors: vec![msg.into()],
        };
        assert!(lease_is_missing(&st(400, "lease not found")));
        assert!(lease_is_missing(&st(400, "invalid lease")));
        assert!(!lease_is_missing(&st(400, "lease is not renewable")));
        assert!(!lease_is_missing(&st(403, "lease not found")));
    }

    #[test]
    fn static_creds_are_read_and_a_missing_password_is_malformed() {
        let v = serde_json::json!({"data": {"username": "svc", "password": "A1a-x",
            "last_vault_rotation": "2026-01-01T00:00:00Z", "ttl": 86_399, "rotation_period": 86_400}});
        let c = static_credential(&v, "p").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.username.as_str(), c.password.as_str()), ("svc", "A1a-x"));
        assert_eq!(c.ttl, Duration::from_secs(86_399));
        assert!(!format!("{c:?}").contains("A1a-x"));
        let bad = static_credential(&serde_json::json!({"data": {"username": "svc"}}), "p");
        assert!(matches!(bad, Err(PortError::Malformed { .. })), "{bad:?}");
    }

    fn app_role() -> DynamicRole {
        DynamicRole {
            name: "app".into(),
            creation_statements: vec!["CREATE ROLE \"{{name}}\";".into()],
            revocation_statements: vec![],
            default_ttl: Duration::from_hours(1),
            max_ttl: Duration::from_hours(24),
        }
    }

    #[test]
    fn a_role_matches_only_when_connection_statements_and_ttls_all_agree() {
        let role = app_role();
        let read = serde_json::json!({"data": {"db_name": "pg",
            "creation_statements": ["CREATE ROLE \"{{name}}\";"], "revocation_statements": [],
            "renew_statements": [], "default_ttl": 3600, "max_ttl": 86_400}});
        assert!(role_matches(&read, "pg", &role));
        assert!(
            !role_matches(&read, "other-pg", &role),
            "another connection"
        );
        let mut missing = read.clone();
        missing["data"]
            .as_object_mut()
            .map(|d| d.remove("revocation_statements"));
        assert!(role_matches(&missing, "pg", &role), "absent list = empty");
        for (key, value) in [
            ("default_ttl", serde_json::json!(1800)),
            ("max_ttl", serde_json::json!(7200)),
            ("revocation_statements", serde_json::json!(["DROP ROLE x;"])),
            ("creation_statements", serde_json::json!(["CREATE ROLE y;"])),
            ("creation_statements", serde_json::json!("CREATE ROLE y;")),
        ] {
            let mut changed = read.clone();
            changed["data"][key] = value;
            assert!(!role_matches(&changed, "pg", &role), "{key} differs");
        }
        assert!(!role_matches(&serde_json::json!({}), "pg", &role));
    }

    #[test]
    fn mount_types_are_read_from_either_shape_of_sys_mounts() {
        let v = serde_json::json!({"secret/": {"type": "kv"},
            "data": {"secret/": {"type": "kv"}, "db/": {"type": "database"}}});
        assert_eq!(mount_type(&v, "db"), Ok(Some("database".into())));
        assert_eq!(mount_type(&v, "/secret/"), Ok(Some("kv".into())));
        assert_eq!(mount_type(&v, "nope"), Ok(None));
        let top = serde_json::json!({"db/": {"type": "database"}});
        assert_eq!(mount_type(&top, "db"), Ok(Some("database".into())));
        let bad = mount_type(&serde_json::json!({"data": {"db/": {}}}), "db");
        assert!(matches!(bad, Err(PortError::Malformed { .. })), "{bad:?}");
    }

    #[test]
    fn redaction_cuts_the_password_out_of_every_message() {
        let e = PortError::Rejected {
            backend: BACKEND,
            message: "status 400: failed to verify: postgres://admin:hunter22@h/db".into(),
        };
        let out = redact(e, "hunter22").to_string();
        assert!(
            !out.contains("hunter22") && out.contains("<redacted>"),
            "{out}"
        );
        let same = PortError::NotFound { what: "x".into() };
        assert_eq!(redact(same.clone(), ""), same);
    }

    #[test]
    fn debug_never_prints_passwords() {
        let c = DbCredential {
            username: "v-root-r-1".into(),
            password: "A1a-very-secret".into(),
            lease: Lease {
                id: "x".into(),
                duration: Duration::ZERO,
                renewable: false,
            },
        };
        let p = PostgresConnection {
            connection_url: "postgresql://{{username}}:{{password}}@h/db".into(),
            username: "postgres".into(),
            password: "A1a-very-secret".into(),
            allowed_roles: vec![],
        };
        for s in [format!("{c:?}"), format!("{p:?}")] {
            assert!(
                !s.contains("very-secret") && s.contains("<redacted>"),
                "{s}"
            );
        }
    }
}
