//! [`PgStaticTarget`]: a PostgreSQL service account behind an OpenBao database-engine
//! static role. The engine owns the account's password and changes it in place; this
//! target asks it to do so now and checks the result with a real login.
//!
//! A static role has exactly one live password. When `rotate-role` runs, the old
//! password stops working at once: there is no overlap, whatever the consumers hold.
//! So `install` and `revoke` have nothing to do (the engine already set the new
//! password, and the old one is already refused), the plan retires the previous KV
//! version right after the promotion (`SecretClass::has_single_live_credential`), and
//! what keeps consumers working is that they re-read the secret promptly (an ESO
//! refresh, or reading `static-creds` themselves). Connections opened with the old
//! password stay open; new logins with it fail.

use crate::target::{PgEndpoint, login};
use async_trait::async_trait;
use sre_adapter_openbao::{BaoConfig, BaoDatabase};
use sre_core::PortError;
use sre_core::ports::SecretData;
use sre_rotation::config::TargetSpec;
use sre_rotation::{CredentialTarget, Verification};
use std::fmt;

/// A static role as a rotation target.
pub struct PgStaticTarget {
    db: BaoDatabase,
    role: String,
    endpoint: PgEndpoint,
}

impl fmt::Debug for PgStaticTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStaticTarget")
            .field("db", &self.db)
            .field("role", &self.role)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

fn field<'a>(credential: &'a SecretData, key: &str) -> Result<&'a str, PortError> {
    credential
        .get(key)
        .ok_or_else(|| PortError::Invalid(format!("credential without {key}")))
}

impl PgStaticTarget {
    /// Static role `role` of the engine `db`, tested against `endpoint`.
    #[must_use]
    pub fn new(db: BaoDatabase, role: impl Into<String>, endpoint: PgEndpoint) -> Self {
        Self {
            db,
            role: role.into(),
            endpoint,
        }
    }

    /// Builds the target a `postgres_static` section of the rotation config names;
    /// `None` for a spec of another kind.
    pub fn from_spec(
        bao: &BaoConfig,
        spec: &TargetSpec,
    ) -> Result<Option<Self>, sre_adapter_openbao::Error> {
        match spec {
            TargetSpec::PostgresStatic {
                database_mount,
                role,
                host,
                port,
                dbname,
            } => Ok(Some(Self::new(
                BaoDatabase::new(bao, database_mount.clone())?,
                role.clone(),
                PgEndpoint::new(host.clone(), *port, dbname.clone()),
            ))),
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl CredentialTarget for PgStaticTarget {
    /// Rotates the password now and reads it back. Repeating this after a crash (before
    /// the KV write) rotates once more: the password that was never stored is simply
    /// replaced, and the one returned is the engine's current one.
    async fn issue(&self) -> Result<SecretData, PortError> {
        self.db.rotate_static_role(&self.role).await?;
        let c = self.db.static_creds(&self.role).await?;
        Ok(SecretData::from_pairs([
            ("username", c.username),
            ("password", c.password),
            ("last_rotation", c.last_rotation),
        ]))
    }

    /// Nothing to set: the engine changed the password in PostgreSQL in `issue`.
    async fn install(&self, _credential: &SecretData) -> Result<(), PortError> {
        Ok(())
    }

    /// The engine must still hold this password (it may have rotated again on its own
    /// `rotation_period`), and a real login with it must succeed.
    async fn verify(&self, credential: &SecretData) -> Result<Verification, PortError> {
        let password = field(credential, "password")?;
        let now = self.db.static_creds(&self.role).await?;
        if now.password != password {
            return Ok(Verification::Refused {
                reason: format!(
                    "static role {} has changed its password again since it was issued \
                     (is the role's rotation_period shorter than the rotation cadence?)",
                    self.role
                ),
            });
        }
        login(&self.endpoint, field(credential, "username")?, password).await
    }

    /// Nothing to do: the old password stopped working when the engine set the new one,
    /// and a dropped pending password is either the live one (which must stay) or was
    /// already replaced. Retiring only destroys the dead KV version.
    async fn revoke(&self, _credential: &SecretData) -> Result<(), PortError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_postgres_static_spec_builds_one() {
        let bao = BaoConfig::new("http://127.0.0.1:8200", "t");
        let spec = TargetSpec::PostgresStatic {
            database_mount: "database".into(),
            role: "svc".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "postgres".into(),
        };
        assert!(matches!(
            PgStaticTarget::from_spec(&bao, &spec),
            Ok(Some(_))
        ));
        let other = TargetSpec::TransitSigning {
            transit_mount: "transit".into(),
            key: "k".into(),
        };
        assert!(matches!(PgStaticTarget::from_spec(&bao, &other), Ok(None)));
        assert!(PgStaticTarget::from_spec(&BaoConfig::new("not a url", "t"), &spec).is_err());
    }

    #[test]
    fn a_credential_without_a_password_is_invalid() {
        let c = SecretData::from_pairs([("username", "svc")]);
        assert!(
            matches!(field(&c, "password"), Err(PortError::Invalid(m)) if m.contains("password"))
        );
    }
}
