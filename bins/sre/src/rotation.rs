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
    rt.block_on(async {
        match &args.command {
            RotationCommand::Status => status_table(&cfg, &store).await,
            RotationCommand::Rotate { name, dry_run } => {
                rotate(&cfg, &managed, &store, name, *dry_run).await
            }
            RotationCommand::Approve { id, by } => approve(&cfg, &store, id, by).await,
        }
    })
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
    //! `postgres_dynamic` are built through the controller's wiring and rotate here too.
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
}
