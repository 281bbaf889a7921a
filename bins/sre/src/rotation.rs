//! `sre rotation`: the status table, one rotation now (or its dry-run plan), and
//! approvals, over the same config and library code as `rotation-controller`
//! (`sre_rotation::{config, drive, status, approvals}`).

use clap::{Args, Subcommand};
use sre_adapter_openbao::{BaoConfig, BaoSecretStore};
use sre_adapter_postgres::PgDynamicTarget;
use sre_core::approval::Principal;
use sre_core::config::{EnvOverrides, Source, load};
use sre_rotation::approvals::{self, ApprovalStoreError};
use sre_rotation::config::{ENV_PREFIX, RawRotationConfig, RotationConfig, TOKEN_ENV};
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
    let token = match read_token(&cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let mut bao = BaoConfig::new(cfg.openbao.address.clone(), token);
    bao.mount.clone_from(&cfg.openbao.kv_mount);
    let store = match BaoSecretStore::new(&bao) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("openbao: {}", error_chain(&e));
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
    rt.block_on(async {
        match &args.command {
            RotationCommand::Status => status_table(&cfg, &store).await,
            RotationCommand::Rotate { name, dry_run } => {
                rotate(&cfg, &bao, &store, name, *dry_run).await
            }
            RotationCommand::Approve { id, by } => approve(&cfg, &store, id, by).await,
        }
    })
}

fn read_token(cfg: &RotationConfig) -> Result<String, String> {
    let text = match &cfg.openbao.token_file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("openbao.token_file {}: {e}", p.display()))?,
        None => std::env::var(TOKEN_ENV)
            .map_err(|_| format!("no OpenBao token: set {TOKEN_ENV} or openbao.token_file"))?,
    };
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err("the OpenBao token is empty".into());
    }
    Ok(token)
}

async fn status_table(cfg: &RotationConfig, store: &BaoSecretStore) -> ExitCode {
    for w in &cfg.inventory.warnings {
        eprintln!("warning: {w}");
    }
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for s in &cfg.inventory.secrets {
        rows.push(drive::status(store, s, now).await);
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
    bao: &BaoConfig,
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
    let target = match cfg
        .target(name)
        .map(|spec| PgDynamicTarget::from_spec(bao, spec))
    {
        Some(Ok(Some(t))) => t,
        Some(Err(e)) => {
            eprintln!("target of {name}: {}", error_chain(&e));
            return ExitCode::from(64);
        }
        Some(Ok(None)) | None => {
            eprintln!(
                "{name} has no target in {}: it cannot be rotated by this build",
                cfg.openbao.address
            );
            return ExitCode::from(64);
        }
    };
    let ports = Ports {
        store,
        target: &target,
    };
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
