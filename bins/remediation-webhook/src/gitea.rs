//! The [`WorkflowDispatch`] port over Gitea's API: remediation that lives in a repository
//! (a `GitOps` change, a failover playbook) is started as a Gitea Actions workflow with the
//! alert's labels as its inputs.
//!
//! The call is Gitea's documented `POST /api/v1/repos/{owner}/{repo}/actions/workflows/
//! {workflow_id}/dispatches` with `Authorization: token <t>` and the JSON body
//! `CreateActionWorkflowDispatch` (`{"ref": "main", "inputs": {"alertname": ...}}`, inputs
//! a string map); Gitea answers `204 No Content`. `4xx` (bad token, unknown workflow, a
//! workflow without `workflow_dispatch`) is a refusal, anything else and transport errors
//! are `Unavailable`. A dry run sends nothing, because Gitea has no dry-run for dispatches.

use async_trait::async_trait;
use reqwest::Url;
use serde_json::json;
use sre_core::PortError;
use sre_remediation::actions::{ActionOutcome, Mode, WorkflowDispatch};
use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;
use thiserror::Error;

const BACKEND: &str = "gitea";

/// Why the dispatcher could not be built (a config error).
#[derive(Debug, Error)]
pub enum GiteaError {
    /// The base URL does not parse or is not http(s).
    #[error("not an http(s) URL: {0}")]
    Url(String),
    /// The token is empty.
    #[error("the Gitea token is empty")]
    EmptyToken,
    /// The HTTP client could not be built (TLS set-up).
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Dispatches to one Gitea server with one access token (scope `write:repository`).
#[derive(Clone)]
pub struct GiteaDispatcher {
    client: reqwest::Client,
    base: Url,
    token: String,
}

impl fmt::Debug for GiteaDispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GiteaDispatcher")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Percent-encodes one path segment (owner, repo and workflow names come from templates
/// filled with alert labels, so a `/` or `?` must not change the endpoint).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

impl GiteaDispatcher {
    /// A dispatcher for the Gitea at `base_url` (`https://gitea.example`, with or without a
    /// sub-path), each request limited to `timeout`.
    pub fn new(base_url: &str, token: &str, timeout: Duration) -> Result<Self, GiteaError> {
        let base = crate::notify::api_base(base_url).map_err(GiteaError::Url)?;
        let token = token.trim();
        if token.is_empty() {
            return Err(GiteaError::EmptyToken);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(GiteaError::Client)?;
        Ok(Self {
            client,
            base,
            token: token.to_owned(),
        })
    }

    /// The dispatch endpoint for one workflow.
    fn endpoint(&self, owner: &str, repo: &str, workflow: &str) -> Result<Url, PortError> {
        let path = format!(
            "api/v1/repos/{}/{}/actions/workflows/{}/dispatches",
            segment(owner),
            segment(repo),
            segment(workflow)
        );
        self.base.join(&path).map_err(|e| PortError::Rejected {
            backend: BACKEND,
            message: format!("bad dispatch URL: {e}"),
        })
    }
}

#[async_trait]
impl WorkflowDispatch for GiteaDispatcher {
    async fn dispatch(
        &self,
        owner: &str,
        repo: &str,
        workflow: &str,
        git_ref: &str,
        inputs: &BTreeMap<String, String>,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let url = self.endpoint(owner, repo, workflow)?;
        let what = format!("workflow {workflow} of {owner}/{repo} on {git_ref}");
        if mode.is_dry_run() {
            return Ok(ActionOutcome::changed(
                mode,
                None,
                None,
                format!("would dispatch {what} with {} input(s)", inputs.len()),
            ));
        }
        let resp = self
            .client
            .post(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("token {}", self.token),
            )
            .json(&json!({ "ref": git_ref, "inputs": inputs }))
            .send()
            .await
            .map_err(|e| PortError::Unavailable {
                backend: BACKEND,
                message: e.without_url().to_string(),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(ActionOutcome::changed(
                mode,
                None,
                None,
                format!("dispatched {what} (HTTP {})", status.as_u16()),
            ));
        }
        let body = resp.text().await.unwrap_or_default();
        let message = format!(
            "dispatch of {what} answered HTTP {}: {}",
            status.as_u16(),
            body.chars().take(200).collect::<String>()
        );
        Err(crate::notify::http_failure(BACKEND, status, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_follows_gitea_api_and_escapes_labels() {
        let d = GiteaDispatcher::new("https://git.example/sub", "t", Duration::from_secs(1))
            .expect("valid");
        assert_eq!(
            d.endpoint("acme", "ops", "failover.yml")
                .expect("url")
                .as_str(),
            "https://git.example/sub/api/v1/repos/acme/ops/actions/workflows/failover.yml/dispatches"
        );
        assert_eq!(
            d.endpoint("acme", "a/../b?x", "w.yml").expect("url").path(),
            "/sub/api/v1/repos/acme/a%2F..%2Fb%3Fx/actions/workflows/w.yml/dispatches"
        );
        assert!(matches!(
            GiteaDispatcher::new("https://g", " \n", Duration::from_secs(1)),
            Err(GiteaError::EmptyToken)
        ));
        assert!(GiteaDispatcher::new("ftp://g", "t", Duration::from_secs(1)).is_err());
        assert!(
            !format!("{d:?}").contains("token: "),
            "Debug hides the token"
        );
    }
}
