//! `sre rotation`: the status table, one rotation now (or its dry-run plan), and
//! approvals, over the same config and library code as `rotation-controller`
//! (`sre_rotation::{config, drive, status, approvals}`) and the controller's own wiring
//! (`rotation_controller::ports`), so every target kind the controller rotates can be
//! rotated here too.

use clap::{Args, Subcommand};
use rotation_controller::controller::Managed;
use rotation_controller::ports;
use sre_adapter_openbao::BaoSecretStore;
use sre_core::approval::Principal;
use sre_core::config::{EnvOverrides, Source, load};
use sre_rotation::approvals::{self, ApprovalStoreError};
use sre_rotation::config::{ENV_PREFIX, RawRotationConfig, RotationConfig};
use sre_rotation::drive::{self, DriveError, StopAt, error_chain};
use sre_rotation::plan::{Observed, Step};
use sre_rotation::run::{self, Ports};
use sre_rotation::status;
use std::path::PathBuf;
use std::process::ExitCode;

/// `sre rotation ...`
#[derive(Debug, Args)]
pub struct RotationArgs {
    /// The rotation config (the one `rotation-controller` reads); the OpenBao token comes
    /// from `SRE_ROTATION_BAO_TOKEN` or `openbao.token_file`.
    #[arg(
        long,
        value_name = "FILE",
        env = "SRE_ROTATION_CONFIG",
        default_value = "rotation.yaml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: RotationCommand,
}

#[derive(Debug, Subcommand)]
enum RotationCommand {
    /// One line per secret: class, current/previous version, age, next rotation, last result.
    Status,
    /// Rotate one secret now (its approval gate and overlap window still apply).
    Rotate {
        /// The secret's inventory name.
        name: String,
        /// Print the planned steps and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Approve an open approval request (as shown in the status table).
    Approve {
        /// The request id.
        id: String,
        /// Who approves (must be one of the secret's approvers, not the requester).
        #[arg(long, value_name = "NAME")]
        by: String,
    },
}

/// Runs the subcommand; returns the exit code (64 config, 65 bad input, 69 OpenBao
/// unavailable, 75 retry later, 1 other).
pub fn run(args: &RotationArgs) -> ExitCode {
    let cfg: RotationConfig = match load::<RawRotationConfig>(
        &Source::File(args.config.clone()),
        &EnvOverrides::with_prefix(ENV_PREFIX),
        std::env::vars(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let token = match ports::read_token(&cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(64);
        }
    };
    let bao = ports::bao_config(&cfg, token);
    // Every target is built up front, as the controller does: a target spec that no
    // adapter can build is a config error here too.
    let (store, managed) = match ports::build(&cfg, &bao) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(64);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Warnings (a secret without consumers) do not stop anything, but the operator who
    // looks at or rotates secrets is the one who can fix the file: say them here.
    if matches!(
        args.command,
        RotationCommand::Status | RotationCommand::Rotate { .. }
    ) {
        for w in &cfg.inventory.warnings {
            eprintln!("warning: {w}");
        }
    }
    rt.block_on(async {
        match &args.command {
            RotationCommand::Status => status_table(&cfg, &store).await,
            RotationCommand::Rotate { name, dry_run } => {
                if !*dry_run && let Err(code) = ensure_engine(&cfg, &bao, name).await {
                    return code;
                }
                rotate(&cfg, &managed, &store, name, *dry_run).await
            }
            RotationCommand::Approve { id, by } => approve(&cfg, &store, id, by).await,
        }
    })
}

/// Configures `name`'s database engine (its `engine:` block) before a rotation, as the
/// controller does before its first drive: without it every issue fails against a
/// missing role. Nothing to do without a block.
async fn ensure_engine(
    cfg: &RotationConfig,
    bao: &sre_adapter_openbao::BaoConfig,
    name: &str,
) -> Result<(), ExitCode> {
    let engines = ports::engines(cfg, bao).map_err(|e| {
        eprintln!("{e:#}");
        ExitCode::from(64)
    })?;
    let Some(engine) = engines.get(name) else {
        return Ok(());
    };
    match engine.ensure().await {
        Ok(changes) => {
            println!(
                "database engine of {name}: mount {:?}, connection {:?}, role {:?}",
                changes.mount, changes.connection, changes.role
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("error: database engine of {name}: {}", error_chain(&e));
            Err(ExitCode::from(if e.kind() == "unavailable" {
                69
            } else {
                1
            }))
        }
    }
}

async fn status_table(cfg: &RotationConfig, store: &BaoSecretStore) -> ExitCode {
    let now = chrono::Utc::now();
    // cert-manager sources need a Kubernetes client; built only when one is named.
    let cert_manager: Option<Box<dyn rotation_controller::certs::CertManager>> =
        if cfg.certificates.values().any(|c| {
            matches!(
                c.source,
                sre_rotation::config::CertSource::CertManager { .. }
            )
        }) {
            rotation_controller::consumers::client(&cfg.kubernetes)
                .await
                .map(|c| Box::new(sre_adapter_kube::CertificateStatus::new(c)) as Box<_>)
        } else {
            None
        };
    let mut rows = Vec::new();
    for s in &cfg.inventory.secrets {
        let mut row = drive::status(store, s, now).await;
        if let Some(spec) = cfg.certificates.get(&s.name) {
            let observed = rotation_controller::certs::read(spec, cert_manager.as_deref()).await;
            row = row.with_certificate(&observed, spec.alert_before, now);
        }
        rows.push(row);
    }
    print!("{}", status::render_table(&rows, now));
    if rows.iter().any(|r| r.error.is_some()) {
        ExitCode::from(69)
    } else {
        ExitCode::SUCCESS
    }
}

fn drive_exit(e: &DriveError) -> ExitCode {
    eprintln!("error: {}", error_chain(e));
    ExitCode::from(if e.is_retryable() { 69 } else { 1 })
}

async fn rotate(
    cfg: &RotationConfig,
    managed: &[Managed],
    store: &BaoSecretStore,
    name: &str,
    dry_run: bool,
) -> ExitCode {
    let Some(secret) = cfg.inventory.secrets.iter().find(|s| s.name == name) else {
        eprintln!("no secret {name:?} in the inventory");
        return ExitCode::from(65);
    };
    let forced = status::due_now(secret);
    let now = chrono::Utc::now();
    if dry_run {
        let loaded = run::load(store, &secret.path)
            .await
            .map_err(DriveError::from);
        let approval = approvals::load(store, secret)
            .await
            .map_err(DriveError::from);
        let ((state, latest, _), approval) = match (loaded, approval) {
            (Ok(l), Ok(a)) => (l, a),
            (Err(e), _) | (_, Err(e)) => return drive_exit(&e),
        };
        let obs = Observed {
            latest_version: latest,
            approval: approval.as_ref().map(|a| &a.request),
        };
        println!("dry run: {name} ({}), nothing is changed", secret.class);
        for (i, step) in status::preview(&state, &obs, &forced, now)
            .iter()
            .enumerate()
        {
            println!("  {}. {}", i + 1, status::describe(step));
        }
        return ExitCode::SUCCESS;
    }
    let Some(target) = managed
        .iter()
        .find(|m| m.secret.name == name)
        .and_then(|m| m.target.as_deref())
    else {
        eprintln!(
            "{name} has no target in the config: it is reported, not rotated (add one under `targets`)"
        );
        return ExitCode::from(64);
    };
    let ports = Ports { store, target };
    let report = match drive::drive(ports, &forced, now, StopAt::RotationEnd).await {
        Ok(r) => r,
        Err(e) => return drive_exit(&e),
    };
    for step in &report.steps {
        println!("{}", status::describe(step));
    }
    match report.steps.last() {
        Some(Step::Promote { version }) => {
            println!("rotated {name}: version {version} is current");
            ExitCode::SUCCESS
        }
        Some(Step::DropPending { reason, .. }) => {
            eprintln!("rotation of {name} aborted, current version kept: {reason}");
            ExitCode::from(1)
        }
        Some(Step::RequestApproval { .. } | Step::Wait { .. }) => {
            if let Some(req) = &report.requested {
                println!(
                    "approval required: sre rotation approve {} --by NAME",
                    req.id
                );
            }
            ExitCode::from(75)
        }
        _ => ExitCode::from(75),
    }
}

async fn approve(cfg: &RotationConfig, store: &BaoSecretStore, id: &str, by: &str) -> ExitCode {
    let now = chrono::Utc::now();
    match approvals::approve(store, &cfg.inventory.secrets, id, Principal::new(by), now).await {
        Ok((secret, req)) => {
            println!(
                "approved {} for {secret} by {by}: the controller's next tick (or `sre rotation rotate {secret}`) rotates it",
                req.id
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            let code = match &e {
                e if e.is_retryable() => 69,
                ApprovalStoreError::Store { .. } => 1,
                _ => 65,
            };
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against the real OpenBao (`cargo xtask services up`): kinds other than
    //! `postgres_dynamic` are built through the controller's wiring and rotate here too;
    //! `approve` lets a signing key's next `rotate` run, and refuses (65) a name outside
    //! the approvers and an expired request.
    use super::*;
    use sre_core::testing::test_env;

    fn args(config: &std::path::Path, command: RotationCommand) -> RotationArgs {
        RotationArgs {
            config: config.to_path_buf(),
            command,
        }
    }

    #[test]
    fn every_target_kind_of_the_controller_rotates_from_the_cli() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tag = format!("sre-test-cli-rot-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let token = dir.join("token");
        std::fs::write(&token, test_env("SRE_TEST_BAO_TOKEN")).unwrap_or_else(|e| panic!("{e}"));
        let config = dir.join("rotation.yaml");
        std::fs::write(
            &config,
            format!(
                "
openbao: {{ address: '{addr}', token_file: '{token}' }}
inventory:
  secrets:
    - {{ name: tok, class: api_token, path: {tag}/tok, max_age: 30d, overlap: 1h, owner: o,
        consumers: [deployment/a/b] }}
    - {{ name: sign, class: signing_key, path: {tag}/sign, max_age: 30d, overlap: 1h, owner: o,
        consumers: [deployment/a/b], approval: {{ approvers: [officer], expires_after: 1d }} }}
targets:
  tok: {{ kind: generated }}
  sign: {{ kind: transit_signing, transit_mount: {tag}-transit, key: release }}
",
                addr = test_env("SRE_TEST_BAO_ADDR"),
                token = token.display(),
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let rotate = |name: &str, dry_run| {
            run(&args(
                &config,
                RotationCommand::Rotate {
                    name: name.into(),
                    dry_run,
                },
            ))
        };
        assert_eq!(rotate("tok", true), ExitCode::SUCCESS, "dry run");
        assert_eq!(
            rotate("tok", false),
            ExitCode::SUCCESS,
            "generated token rotated"
        );
        // A transit_signing secret reaches the approval gate (not "no target"): 75.
        assert_eq!(rotate("sign", false), ExitCode::from(75));
        assert_eq!(rotate("ghost", false), ExitCode::from(65));
        assert_eq!(
            run(&args(&config, RotationCommand::Status)),
            ExitCode::SUCCESS
        );

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let bao = sre_adapter_openbao::BaoConfig::new(
            test_env("SRE_TEST_BAO_ADDR"),
            test_env("SRE_TEST_BAO_TOKEN"),
        );
        let store = BaoSecretStore::new(&bao).unwrap_or_else(|e| panic!("{e}"));
        let (state, _, _) = rt
            .block_on(run::load(&store, &format!("{tag}/tok")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((state.current, state.rotations), (Some(1), 1), "{state:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A signing key on the shared OpenBao for the approval tests: a config of its own
    /// (KV path and transit mount unique per run, the mount enabled as an operator
    /// would), and direct access to what `sre rotation` left in OpenBao.
    struct SigningFixture {
        dir: std::path::PathBuf,
        config: std::path::PathBuf,
        path: String,
        rt: tokio::runtime::Runtime,
        store: BaoSecretStore,
    }

    impl SigningFixture {
        fn new(name: &str, expires_after: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let tag = format!("sre-test-cli-{name}-{}-{nanos}", std::process::id());
            let dir = std::env::temp_dir().join(&tag);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
            let token = dir.join("token");
            std::fs::write(&token, test_env("SRE_TEST_BAO_TOKEN"))
                .unwrap_or_else(|e| panic!("{e}"));
            let config = dir.join("rotation.yaml");
            std::fs::write(
                &config,
                format!(
                    "
openbao: {{ address: '{addr}', token_file: '{token}' }}
inventory:
  secrets:
    - {{ name: sign, class: signing_key, path: {tag}/sign, max_age: 365d, overlap: 7d, owner: o,
        consumers: [deployment/a/b],
        approval: {{ approvers: [officer], expires_after: {expires_after} }} }}
targets:
  sign: {{ kind: transit_signing, transit_mount: {tag}-transit, key: release }}
",
                    addr = test_env("SRE_TEST_BAO_ADDR"),
                    token = token.display(),
                ),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            let bao = sre_adapter_openbao::BaoConfig::new(
                test_env("SRE_TEST_BAO_ADDR"),
                test_env("SRE_TEST_BAO_TOKEN"),
            );
            rt.block_on(
                sre_adapter_openbao::BaoKeyring::new(&bao, format!("{tag}-transit"))
                    .unwrap_or_else(|e| panic!("{e}"))
                    .enable(),
            )
            .unwrap_or_else(|e| panic!("enable transit: {e}"));
            let store = BaoSecretStore::new(&bao).unwrap_or_else(|e| panic!("{e}"));
            Self {
                dir,
                config,
                path: format!("{tag}/sign"),
                rt,
                store,
            }
        }

        fn rotate(&self) -> ExitCode {
            run(&args(
                &self.config,
                RotationCommand::Rotate {
                    name: "sign".into(),
                    dry_run: false,
                },
            ))
        }

        fn approve(&self, id: &str, by: &str) -> ExitCode {
            run(&args(
                &self.config,
                RotationCommand::Approve {
                    id: id.into(),
                    by: by.into(),
                },
            ))
        }

        /// The secret as the CLI reads it from the config.
        fn secret(&self) -> sre_rotation::ManagedSecret {
            let cfg: RotationConfig = load::<RawRotationConfig>(
                &Source::File(self.config.clone()),
                &EnvOverrides::with_prefix(ENV_PREFIX),
                std::iter::empty(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            cfg.inventory
                .secrets
                .into_iter()
                .find(|s| s.name == "sign")
                .unwrap_or_else(|| panic!("no secret sign"))
        }

        /// The latest approval request `rotate` stored, as OpenBao holds it.
        fn request(&self) -> sre_core::approval::ApprovalRequest {
            self.rt
                .block_on(approvals::load(&self.store, &self.secret()))
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("no approval request stored"))
                .request
        }

        fn state(&self) -> sre_rotation::RotationState {
            self.rt
                .block_on(run::load(&self.store, &self.path))
                .unwrap_or_else(|e| panic!("{e}"))
                .0
        }
    }

    impl Drop for SigningFixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// `sre rotation approve`: a name outside the approvers is refused (65) and records
    /// nothing; an approver's approval is recorded and lets the next `rotate` of the
    /// signing key run to a promotion; a second decision on the same request is refused.
    #[test]
    fn approve_from_the_cli_lets_the_next_rotate_proceed_and_refuses_a_non_approver() {
        use sre_core::approval::{ApprovalStatus, Principal};
        let f = SigningFixture::new("approve", "1d");
        assert_eq!(f.rotate(), ExitCode::from(75), "waits for an approval");
        let id = f.request().id.0;
        assert_eq!(
            f.state().current,
            None,
            "nothing rotated before the approval"
        );

        assert_eq!(
            f.approve(&id, "mallory"),
            ExitCode::from(65),
            "not an approver"
        );
        let now = chrono::Utc::now();
        assert_eq!(
            f.request().status(now),
            ApprovalStatus::Pending,
            "the refused decision was not recorded"
        );
        assert_eq!(
            f.rotate(),
            ExitCode::from(75),
            "still gated after a refused approval"
        );
        assert_eq!(f.request().id.0, id, "the open request is not replaced");

        assert_eq!(f.approve(&id, "officer"), ExitCode::SUCCESS);
        assert!(
            matches!(
                f.request().status(chrono::Utc::now()),
                ApprovalStatus::Approved { by, .. } if by == Principal::new("officer")
            ),
            "{:?}",
            f.request()
        );
        assert_eq!(f.rotate(), ExitCode::SUCCESS, "the approved rotation runs");
        let state = f.state();
        assert_eq!((state.current, state.rotations), (Some(1), 1), "{state:?}");
        assert_eq!(
            f.approve(&id, "officer"),
            ExitCode::from(65),
            "a request is decided once"
        );
    }

    /// `sre rotation approve` of a request whose `expires_after` (1 s) has passed: 65,
    /// nothing is recorded, and the next `rotate` asks for a fresh approval instead of
    /// rotating.
    #[test]
    fn approve_from_the_cli_refuses_an_expired_request() {
        use sre_core::approval::ApprovalStatus;
        let f = SigningFixture::new("expired", "1s");
        assert_eq!(f.rotate(), ExitCode::from(75));
        let req = f.request();
        // Bounded: expires_after is 1 s, so this sleeps at most a little over that.
        let left = (req.expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        std::thread::sleep(
            left.min(std::time::Duration::from_secs(2)) + std::time::Duration::from_millis(50),
        );
        assert_eq!(
            f.approve(&req.id.0, "officer"),
            ExitCode::from(65),
            "an expired request cannot be approved"
        );
        assert_eq!(
            f.request().status(chrono::Utc::now()),
            ApprovalStatus::Expired,
            "nothing was recorded: {:?}",
            f.request()
        );
        assert_eq!(
            f.rotate(),
            ExitCode::from(75),
            "no rotation without approval"
        );
        assert_ne!(
            f.request().id,
            req.id,
            "a fresh request replaces the expired one"
        );
        assert_eq!(f.state().current, None);
    }
}
