//! The database engines that the config's `engine:` blocks ask the controller to
//! configure (`sre_rotation::config::DbEngineSpec`): mount, PostgreSQL connection and
//! dynamic role, through `sre_adapter_openbao::BaoDatabase::ensure_dynamic`, the same
//! code path the test fixtures use. The controller calls [`EngineSetup::ensure`] before
//! it drives the secret for the first time and, while that fails, again on later ticks
//! with back-off (see `Controller::with_engines`): a secret whose engine is not
//! configured is not rotated, since every issue would fail against a missing role.

use async_trait::async_trait;
use sre_adapter_openbao::{
    BaoConfig, BaoDatabase, DynamicRole, EngineChanges, Error as BaoError, PostgresConnection,
};
use sre_core::PortError;
use sre_rotation::config::DbEngineSpec;
use std::path::PathBuf;

/// Why an engine could not be configured. Never carries the admin password.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The password file could not be read (not mounted yet, permissions).
    #[error("password_file {path} cannot be read")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// The password file holds nothing (a half-written secret mount).
    #[error("password_file {path} is empty")]
    EmptyPassword {
        /// The file.
        path: PathBuf,
    },
    /// OpenBao refused or could not be reached.
    #[error(transparent)]
    OpenBao(#[from] PortError),
}

impl EngineError {
    /// A stable label for logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PasswordFile { .. } => "password_file",
            Self::EmptyPassword { .. } => "empty_password",
            Self::OpenBao(PortError::Unavailable { .. }) => "unavailable",
            Self::OpenBao(_) => "rejected",
        }
    }
}

/// Configures one secret's database engine; idempotent, so it may be called again.
#[async_trait]
pub trait EngineSetup: Send + Sync {
    /// Brings the engine to what the config says; what it changed.
    async fn ensure(&self) -> Result<EngineChanges, EngineError>;
}

/// [`EngineSetup`] on OpenBao: the admin password is read from `password_file` at each
/// attempt (so a file mounted after the start, or a replaced password, is picked up)
/// and goes to OpenBao only.
#[derive(Debug)]
pub struct BaoEngine {
    db: BaoDatabase,
    spec: DbEngineSpec,
}

impl BaoEngine {
    /// The engine of `spec` on the OpenBao `bao` names. No request is made.
    pub fn new(bao: &BaoConfig, spec: DbEngineSpec) -> Result<Self, BaoError> {
        Ok(Self {
            db: BaoDatabase::new(bao, spec.database_mount.clone())?,
            spec,
        })
    }

    async fn password(&self) -> Result<String, EngineError> {
        let path = &self.spec.password_file;
        let text =
            tokio::fs::read_to_string(path)
                .await
                .map_err(|source| EngineError::PasswordFile {
                    path: path.clone(),
                    source,
                })?;
        // Secret files often end in a newline that is not part of the password.
        let password = text.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            return Err(EngineError::EmptyPassword { path: path.clone() });
        }
        Ok(password.to_owned())
    }
}

#[async_trait]
impl EngineSetup for BaoEngine {
    async fn ensure(&self) -> Result<EngineChanges, EngineError> {
        let s = &self.spec;
        let conn = PostgresConnection {
            connection_url: s.connection_url.clone(),
            username: s.username.clone(),
            password: self.password().await?,
            allowed_roles: s.allowed_roles.clone(),
        };
        let role = DynamicRole {
            name: s.role.clone(),
            creation_statements: s.creation_statements.clone(),
            revocation_statements: s.revocation_statements.clone(),
            default_ttl: s.default_ttl,
            max_ttl: s.max_ttl,
        };
        Ok(self.db.ensure_dynamic(&s.connection, &conn, &role).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(password_file: PathBuf) -> DbEngineSpec {
        DbEngineSpec {
            database_mount: "database".into(),
            connection: "pg".into(),
            connection_url: "postgresql://{{username}}:{{password}}@127.0.0.1:1/db".into(),
            username: "admin".into(),
            password_file,
            allowed_roles: vec!["app".into()],
            role: "app".into(),
            creation_statements: vec!["CREATE ROLE \"{{name}}\";".into()],
            revocation_statements: vec![],
            default_ttl: Duration::from_hours(1),
            max_ttl: Duration::from_hours(24),
        }
    }

    #[tokio::test]
    async fn the_password_file_is_read_per_attempt_without_its_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pg-admin");
        let bao = BaoConfig::new("http://127.0.0.1:1", "t");
        let engine = BaoEngine::new(&bao, spec(file.clone())).expect("client");
        let missing = engine.password().await;
        assert!(
            matches!(&missing, Err(e @ EngineError::PasswordFile { .. }) if e.kind() == "password_file"),
            "{missing:?}"
        );
        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(
            engine.password().await,
            Err(EngineError::EmptyPassword { .. })
        ));
        std::fs::write(&file, "s3cret pass\r\n").expect("write");
        assert_eq!(engine.password().await.ok().as_deref(), Some("s3cret pass"));
        // Nothing listens on port 1: OpenBao is unavailable, and the error says so
        // without the password.
        let err = engine.ensure().await.expect_err("no OpenBao");
        assert_eq!(err.kind(), "unavailable", "{err:?}");
        assert!(!format!("{err:?} {err}").contains("s3cret"), "{err:?}");
        assert!(!format!("{engine:?}").contains("s3cret"));
    }
}
