//! Wiring for the binary: reading the token and the rules, and building the ports the
//! config names (kube executors, Prometheus verifier, HTTP notifier, Gitea, OpenBao
//! unseal, JetStream, Milvus, webhook redelivery, evidence),
//! the budget's spend source and the cluster Runbook poller.
//! Kept out of `main.rs` so that the entry point stays a short list of steps.

use crate::config::{
    BearerToken, ClusterRunbooksConfig, Config, ExecutorKind, GITEA_TOKEN_ENV, TOKEN_ENV,
};
use crate::gitea::GiteaDispatcher;
use crate::notify::HttpNotifier;
use crate::server::{Ports, RuleBookHandle, Settings, TokioSleeper, Verifier};
use anyhow::Context as _;
use sre_adapter_kube::KubeWorkloads;
use sre_adapter_kube::runbook::{ClusterRunbooks, RunbookLister};
use sre_adapter_prometheus::PrometheusClient;
use sre_core::config::Source;
use sre_core::evidence::{EvidenceSink, FileEvidenceLog};
use sre_core::{Clock, SystemClock};
use sre_remediation::checks::Checks;
use sre_remediation::execute::Executors;
use sre_remediation::rules::RuleSet;
use sre_remediation::runbook::{RuleBook, Runbook};
use sre_remediation::spend::SpendSource;
use std::sync::Arc;

/// Reads the bearer token from `token_file` or the environment.
pub fn read_token(cfg: &Config) -> anyhow::Result<BearerToken> {
    let text = match &cfg.token_file {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("token_file {}", p.display()))?
        }
        None => std::env::var(TOKEN_ENV)
            .with_context(|| format!("no bearer token: set {TOKEN_ENV} or token_file"))?,
    };
    BearerToken::new(&text).context("the bearer token is empty")
}

/// The built-in rules (or `rules_file`), with every Runbook file ahead of them.
pub fn read_rules(cfg: &Config) -> anyhow::Result<RuleSet> {
    read_rule_book(cfg).map(|b| b.rules().clone())
}

/// The built-in rules (or `rules_file`) with every Runbook file ahead of them and the
/// Runbooks' preconditions resolved against the config's checks: an unknown check name
/// fails here, at startup, with its file and path.
pub fn read_rule_book(cfg: &Config) -> anyhow::Result<RuleBook> {
    let rules = match &cfg.rules_file {
        Some(p) => RuleSet::load(&Source::File(p.clone()))?,
        None => RuleSet::builtin()?,
    };
    let mut book = RuleBook::new(rules);
    // Later files go ahead of earlier ones, and every Runbook ahead of the rule set.
    for p in &cfg.runbook_files {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("runbook_files: {}", p.display()))?;
        let rb = Runbook::parse_with(&p.display().to_string(), &text, book.rules(), &cfg.checks)?;
        book = book.with_runbook(&rb);
    }
    Ok(book)
}

/// The spend source of the budget gate (none without a budget).
#[must_use]
pub fn spend_source(cfg: &Config) -> SpendSource {
    cfg.budget
        .as_ref()
        .map_or(SpendSource::None, |b| b.spend.clone())
}

/// The cluster Runbook lister when `runbooks.from_cluster` is on; a kube client that
/// cannot be built is [`ClusterUnavailable`] (exit 69), because the operator asked for
/// cluster Runbooks and silently running without them would ignore that.
pub async fn runbook_lister(cfg: &Config) -> anyhow::Result<Option<RunbookLister>> {
    let Some(rc) = &cfg.cluster_runbooks else {
        return Ok(None);
    };
    let client = kube::Client::try_default()
        .await
        .map_err(|e| ClusterUnavailable(format!("runbooks.from_cluster: {e}")))?;
    Ok(Some(RunbookLister::new(client, rc.namespace.as_deref())))
}

/// One poll of the cluster's Runbooks: list, convert (skipping invalid objects, keeping
/// their last good version), and swap the rule book when the listing changed. A failed
/// list keeps the current book.
pub async fn poll_runbooks_once(
    lister: &RunbookLister,
    cluster: &mut ClusterRunbooks,
    base: &RuleBook,
    checks: &Checks,
    handle: &RuleBookHandle,
) {
    match lister.list().await {
        Ok(listing) => {
            let report = cluster.apply(&listing, base.rules(), checks);
            for bad in &report.invalid {
                tracing::warn!(namespace = %bad.namespace, name = %bad.name,
                    kept_last_good = bad.kept_last_good, errors = %bad.errors,
                    "invalid Runbook in the cluster");
            }
            if report.changed {
                handle.replace(cluster.rule_book(base.clone()));
                tracing::info!(runbooks = ?report.loaded,
                    resource_version = listing.resource_version.as_deref().unwrap_or("-"),
                    "cluster Runbooks loaded");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "listing cluster Runbooks failed; keeping the current rules");
        }
    }
}

/// Polls the cluster's Runbooks every `rc.interval` for as long as the server runs,
/// starting at once; `base` is the file rule book the cluster Runbooks go ahead of.
#[must_use = "dropping the handle detaches the poller; keep it for the server's lifetime"]
pub fn spawn_runbook_poller(
    lister: RunbookLister,
    rc: &ClusterRunbooksConfig,
    base: RuleBook,
    checks: Checks,
    handle: RuleBookHandle,
) -> tokio::task::JoinHandle<()> {
    let interval = rc.interval;
    tokio::spawn(async move {
        let mut cluster = ClusterRunbooks::new();
        loop {
            poll_runbooks_once(&lister, &mut cluster, &base, &checks, &handle).await;
            tokio::time::sleep(interval).await;
        }
    })
}

/// The server settings the config asks for.
#[must_use]
pub fn settings(cfg: &Config, token: BearerToken) -> Settings {
    Settings {
        token,
        policy: cfg.policy,
        dry_run: cfg.dry_run,
        max_body_bytes: cfg.max_body_bytes,
        queue_capacity: cfg.queue_capacity,
        runs_kept: cfg.runs_kept,
    }
}

/// Every port the config names: verifier, executors, evidence.
pub async fn ports(cfg: &Config) -> anyhow::Result<Ports> {
    let verifier = match &cfg.verify.prometheus_url {
        Some(url) => Some(Verifier {
            query: Arc::new(PrometheusClient::new(url, cfg.verify.query_timeout)?),
            sleeper: Arc::new(TokioSleeper),
            interval: cfg.verify.interval,
        }),
        None => None,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let executors = executors(cfg, &clock).await?;
    let evidence: Option<Arc<dyn EvidenceSink>> = match &cfg.evidence_file {
        Some(p) => Some(Arc::new(
            FileEvidenceLog::open(p).with_context(|| format!("evidence_file {}", p.display()))?,
        )),
        None => None,
    };
    Ok(Ports {
        clock,
        verifier,
        executors,
        evidence,
    })
}

/// `executors: kube` without a reachable cluster configuration: exit 69 (unavailable).
#[derive(Debug)]
pub struct ClusterUnavailable(pub String);

impl std::fmt::Display for ClusterUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "executors: kube and runbooks.from_cluster need a Kubernetes API server: {} (in a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config)",
            self.0
        )
    }
}

impl std::error::Error for ClusterUnavailable {}

/// The executors the config names, plus the HTTP notifier when one is configured.
pub async fn executors(cfg: &Config, clock: &Arc<dyn Clock>) -> anyhow::Result<Executors> {
    let mut ex = Executors::default();
    if cfg.executors == ExecutorKind::Kube {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| ClusterUnavailable(e.to_string()))?;
        let kube = Arc::new(KubeWorkloads::new(client, clock.clone()));
        ex.workloads = Some(kube.clone());
        ex.certificates = Some(kube.clone());
        ex.gslb = Some(kube.clone());
        ex.services = Some(kube);
    }
    if let Some(n) = &cfg.notify {
        ex.notifier = Some(Arc::new(HttpNotifier::new(&n.url, n.timeout)?));
    }
    if let Some(g) = &cfg.gitea {
        let token = match &g.token_file {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("gitea.token_file {}", p.display()))?,
            None => std::env::var(GITEA_TOKEN_ENV)
                .with_context(|| format!("gitea: set {GITEA_TOKEN_ENV} or gitea.token_file"))?,
        };
        ex.workflows = Some(Arc::new(GiteaDispatcher::new(&g.url, &token, g.timeout)?));
    }
    crate::platform::add_executors(&mut ex, cfg.unseal.as_ref(), cfg.jetstream.as_ref())?;
    crate::platform::add_app_executors(&mut ex, cfg.milvus.as_ref(), cfg.redeliver.as_ref())?;
    Ok(ex)
}

#[cfg(test)]
mod tests {
    //! The file-reading half of the wiring: what an operator's files turn into, and what
    //! a wrong path or a broken file says.
    use super::*;
    use sre_core::config::{EnvOverrides, Format, load};

    fn config(text: &str) -> Config {
        load::<crate::config::RawConfig>(
            &Source::Text {
                name: "webhook.yaml".into(),
                text: text.into(),
                format: Format::Yaml,
            },
            &EnvOverrides::with_prefix(crate::config::ENV_PREFIX),
            std::iter::empty(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(book: &RuleBook) -> Vec<String> {
        book.rules()
            .rules()
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    #[test]
    fn the_token_file_is_read_and_trimmed_and_a_missing_one_names_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret-token\n").expect("write");
        let cfg = config(&format!("token_file: '{}'", file.display()));
        let token = read_token(&cfg).expect("token");
        assert_eq!(
            token.expose(),
            b"s3cret-token",
            "the trailing newline is not part of it"
        );

        std::fs::write(&file, "\n").expect("write");
        let err = read_token(&cfg).expect_err("empty");
        assert!(format!("{err:#}").contains("empty"), "{err:#}");

        let missing = config(&format!(
            "token_file: '{}'",
            dir.path().join("nope").display()
        ));
        let err = read_token(&missing).expect_err("missing");
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn a_rules_file_replaces_the_builtins_and_runbook_files_go_ahead_of_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("rules.yaml");
        std::fs::write(
            &rules,
            "rules:
  - name: site/high-memory
    alert: HighMemoryUsage
    action: {kind: notify, channel: platform}
    target: {kind: deployment, namespace: \"${namespace}\", name: \"${deployment}\"}
    verify: {query: 'up == 0', expect: empty, timeout: 1m}
",
        )
        .expect("write");
        let runbook = dir.path().join("sealed.yaml");
        std::fs::write(
            &runbook,
            "apiVersion: catalyst.openova.io/v1alpha1
kind: Runbook
metadata: {name: openbao-sealed, namespace: catalyst-system}
spec:
  triggers: [{alertName: OpenBaoSealed}]
  steps:
    - run: openbao operator unseal --auto-shamir
  target: {kind: openbao, namespace: catalyst-system, name: openbao-0}
  verify: {query: 'vault_core_unsealed == 0', expect: empty, timeout: 2m}
",
        )
        .expect("write");
        let cfg = config(&format!(
            "rules_file: '{}'\nrunbook_files: ['{}']",
            rules.display(),
            runbook.display()
        ));
        let book = read_rule_book(&cfg).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            names(&book),
            ["runbook/catalyst-system/openbao-sealed", "site/high-memory"],
            "the file replaces the 21 built-in rules; the Runbook goes first"
        );

        // Without a rules file: the built-ins, still behind the Runbook.
        let cfg = config(&format!("runbook_files: ['{}']", runbook.display()));
        let book = read_rule_book(&cfg).unwrap_or_else(|e| panic!("{e:#}"));
        let all = names(&book);
        assert_eq!(all[0], "runbook/catalyst-system/openbao-sealed");
        assert!(all.len() > 20, "{all:?}");

        // A Runbook with an unknown step kind fails at startup with its file and path.
        std::fs::write(
            &runbook,
            "apiVersion: catalyst.openova.io/v1alpha1
kind: Runbook
metadata: {name: bad, namespace: ns}
spec:
  triggers: [{alertName: OpenBaoSealed}]
  steps: [{reboot: now}]
",
        )
        .expect("write");
        let err = read_rule_book(&cfg).expect_err("invalid runbook");
        let text = format!("{err:#}");
        assert!(text.contains("sealed.yaml"), "{text}");
        assert!(text.contains("spec.steps[0]"), "{text}");

        let cfg = config("runbook_files: [/nonexistent/runbook.yaml]");
        let err = read_rule_book(&cfg).expect_err("missing");
        assert!(format!("{err:#}").contains("/nonexistent/runbook.yaml"));
    }
}
