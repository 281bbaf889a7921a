//! [`PgDynamicTarget`]: issue through the OpenBao database engine, verify with a real
//! scram login over TCP, keep alive by renewing the lease, revoke through the lease.

use async_trait::async_trait;
use sre_adapter_openbao::{BaoConfig, BaoDatabase};
use sre_core::PortError;
use sre_core::ports::SecretData;
use sre_rotation::config::LeaseRenewal;
use sre_rotation::config::TargetSpec;
use sre_rotation::{CredentialTarget, KeepAlive, Verification};
use std::fmt;
use std::time::Duration;

const BACKEND: &str = "postgres";

/// Where the login test connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgEndpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database to log in to.
    pub dbname: String,
    /// Bound on connecting, so a dead server fails the step (and it is retried) instead
    /// of holding the controller.
    pub connect_timeout: Duration,
}

impl PgEndpoint {
    /// An endpoint with a 5 s connect timeout.
    #[must_use]
    pub fn new(host: impl Into<String>, port: u16, dbname: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port,
            dbname: dbname.into(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Logs in as `user` and runs `SELECT 1`: `Refused` with the SQLSTATE when PostgreSQL
/// says no (bad password, role gone), `Err(Unavailable)` when it cannot be asked.
#[tracing::instrument(skip_all, fields(host = %endpoint.host, port = endpoint.port))]
pub async fn login(
    endpoint: &PgEndpoint,
    user: &str,
    password: &str,
) -> Result<Verification, PortError> {
    let connected = tokio_postgres::Config::new()
        .host(&endpoint.host)
        .port(endpoint.port)
        .user(user)
        .password(password)
        .dbname(&endpoint.dbname)
        .connect_timeout(endpoint.connect_timeout)
        .connect(tokio_postgres::NoTls)
        .await;
    let (client, conn) = match connected {
        Ok(c) => c,
        Err(e) => {
            return match e.as_db_error() {
                Some(db) => Ok(Verification::Refused {
                    reason: format!("{}: {}", db.code().code(), db.message()),
                }),
                None => Err(PortError::Unavailable {
                    backend: BACKEND,
                    message: e.to_string(),
                }),
            };
        }
    };
    let task = tokio::spawn(conn);
    let res = client.simple_query("SELECT 1").await;
    drop(client);
    // The connection task ends once the client is dropped; its result adds nothing.
    let _ = task.await;
    match res {
        Ok(_) => Ok(Verification::Accepted),
        Err(e) => match e.as_db_error() {
            Some(db) => Ok(Verification::Refused {
                reason: format!("{}: {}", db.code().code(), db.message()),
            }),
            None => Err(PortError::Unavailable {
                backend: BACKEND,
                message: e.to_string(),
            }),
        },
    }
}

/// Dynamic credentials: the engine mints a user per rotation (so `install` has nothing
/// to do), a real login tests it, renewing its lease keeps it alive, revoking its lease
/// drops it.
pub struct PgDynamicTarget {
    db: BaoDatabase,
    role: String,
    endpoint: PgEndpoint,
    lease_increment: Duration,
}

impl fmt::Debug for PgDynamicTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgDynamicTarget")
            .field("db", &self.db)
            .field("role", &self.role)
            .field("endpoint", &self.endpoint)
            .field("lease_increment", &self.lease_increment)
            .finish()
    }
}

impl PgDynamicTarget {
    /// A target minting from `role` of the engine `db`, tested against `endpoint`,
    /// renewing leases by [`LeaseRenewal::DEFAULT_INCREMENT`].
    #[must_use]
    pub fn new(db: BaoDatabase, role: impl Into<String>, endpoint: PgEndpoint) -> Self {
        Self {
            db,
            role: role.into(),
            endpoint,
            lease_increment: LeaseRenewal::DEFAULT_INCREMENT,
        }
    }

    /// Asks for `increment` more lease time on each [`CredentialTarget::keep_alive`]
    /// (OpenBao caps it at the role's `max_ttl`).
    #[must_use]
    pub fn with_lease_increment(mut self, increment: Duration) -> Self {
        self.lease_increment = increment;
        self
    }

    /// Builds the target a `postgres_dynamic` section of the rotation config names;
    /// `None` for a spec of another kind.
    pub fn from_spec(
        bao: &BaoConfig,
        spec: &TargetSpec,
    ) -> Result<Option<Self>, sre_adapter_openbao::Error> {
        match spec {
            TargetSpec::PostgresDynamic {
                database_mount,
                role,
                host,
                port,
                dbname,
                lease,
            } => Ok(Some(
                Self::new(
                    BaoDatabase::new(bao, database_mount.clone())?,
                    role.clone(),
                    PgEndpoint::new(host.clone(), *port, dbname.clone()),
                )
                .with_lease_increment(lease.increment),
            )),
            #[allow(unreachable_patterns)] // TargetSpec is non_exhaustive: new kinds come.
            _ => Ok(None),
        }
    }
}

fn field<'a>(credential: &'a SecretData, key: &str) -> Result<&'a str, PortError> {
    credential
        .get(key)
        .ok_or_else(|| PortError::Invalid(format!("credential without {key}")))
}

/// What a renewal asked for `asked` and answered `renewed` means: less than asked is
/// OpenBao capping the lease at the role's `max_ttl`; a missing lease is gone.
fn keep_alive_outcome(
    asked: Duration,
    renewed: Result<Duration, PortError>,
) -> Result<KeepAlive, PortError> {
    match renewed {
        Ok(remaining) if remaining < asked => Ok(KeepAlive::Capped { remaining }),
        Ok(remaining) => Ok(KeepAlive::Extended { remaining }),
        Err(PortError::NotFound { .. }) => Ok(KeepAlive::Gone),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl CredentialTarget for PgDynamicTarget {
    async fn issue(&self) -> Result<SecretData, PortError> {
        let c = self.db.issue(&self.role).await?;
        Ok(SecretData::from_pairs([
            ("username", c.username),
            ("password", c.password),
            ("lease_id", c.lease.id),
        ]))
    }

    async fn install(&self, _credential: &SecretData) -> Result<(), PortError> {
        Ok(())
    }

    async fn verify(&self, credential: &SecretData) -> Result<Verification, PortError> {
        login(
            &self.endpoint,
            field(credential, "username")?,
            field(credential, "password")?,
        )
        .await
    }

    async fn revoke(&self, credential: &SecretData) -> Result<(), PortError> {
        self.db.revoke(field(credential, "lease_id")?).await
    }

    /// Renews the credential's lease by the configured increment (`sys/leases/renew`):
    /// without it the engine drops the user when the role's TTL runs out, current
    /// version or not.
    async fn keep_alive(&self, credential: &SecretData) -> Result<KeepAlive, PortError> {
        let lease_id = field(credential, "lease_id")?;
        let renewed = self
            .db
            .renew(lease_id, self.lease_increment)
            .await
            .map(|l| l.duration);
        keep_alive_outcome(self.lease_increment, renewed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_without_its_fields_is_invalid_not_refused() {
        let c = SecretData::from_pairs([("username", "u")]);
        assert_eq!(field(&c, "username"), Ok("u"));
        assert!(
            matches!(field(&c, "lease_id"), Err(PortError::Invalid(m)) if m.contains("lease_id"))
        );
    }

    #[test]
    fn a_renewal_shorter_than_asked_is_capped_and_a_missing_lease_is_gone() {
        let hour = Duration::from_hours(1);
        let check = |renewed, expect: Result<KeepAlive, PortError>| {
            assert_eq!(keep_alive_outcome(hour, renewed), expect);
        };
        check(Ok(hour), Ok(KeepAlive::Extended { remaining: hour }));
        check(
            Ok(Duration::from_mins(59)),
            Ok(KeepAlive::Capped {
                remaining: Duration::from_mins(59),
            }),
        );
        check(
            Ok(Duration::ZERO),
            Ok(KeepAlive::Capped {
                remaining: Duration::ZERO,
            }),
        );
        check(
            Err(PortError::NotFound {
                what: "lease x".into(),
            }),
            Ok(KeepAlive::Gone),
        );
        let down = PortError::Unavailable {
            backend: "openbao",
            message: "sealed".into(),
        };
        check(Err(down.clone()), Err(down));
    }

    #[test]
    fn a_spec_with_a_bad_openbao_address_fails_to_build() {
        let spec = TargetSpec::PostgresDynamic {
            database_mount: "database".into(),
            role: "app".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "postgres".into(),
            lease: LeaseRenewal::with_increment(Duration::from_hours(2)),
        };
        let bad = PgDynamicTarget::from_spec(&BaoConfig::new("not a url", "t"), &spec);
        assert!(bad.is_err());
        let good = PgDynamicTarget::from_spec(&BaoConfig::new("http://127.0.0.1:8200", "t"), &spec);
        assert!(
            matches!(&good, Ok(Some(t)) if t.lease_increment == Duration::from_hours(2)),
            "the configured increment is used: {good:?}"
        );
    }
}
