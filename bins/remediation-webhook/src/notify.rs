//! The [`Notifier`] port over HTTP: a JSON `POST` to a webhook URL (a chat bridge, an
//! incident tool, an Alertmanager-style receiver). Used for the rules' `notify` action and
//! for escalations after a remediation did not help.
//!
//! The body is `{"source": "sre-remediation", "channel": ..., "text": ...}`; a `2xx`
//! answer is success, `4xx` is a refusal (fix the URL or the receiver), anything else and
//! transport errors are `Unavailable` (worth retrying). A dry run sends nothing.

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use serde_json::json;
use sre_core::PortError;
use sre_remediation::actions::{ActionOutcome, Mode, Notifier};
use std::time::Duration;
use thiserror::Error;

const BACKEND: &str = "notify webhook";

/// Why the notifier could not be built (a config error, reported at its path).
#[derive(Debug, Error)]
pub enum NotifyError {
    /// The URL does not parse or is not http(s).
    #[error("not an http(s) URL: {0}")]
    Url(String),
    /// The HTTP client could not be built (TLS set-up).
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Notifications as JSON `POST`s to one URL.
#[derive(Debug, Clone)]
pub struct HttpNotifier {
    client: reqwest::Client,
    url: Url,
}

impl HttpNotifier {
    /// A notifier posting to `url`, each request limited to `timeout`, so that a hung
    /// receiver cannot hold an escalation forever.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, NotifyError> {
        let url = http_url(url).map_err(NotifyError::Url)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(NotifyError::Client)?;
        Ok(Self { client, url })
    }

    /// The receiver without path or query (which may carry a secret), for logs and outcomes.
    fn receiver(&self) -> String {
        format!(
            "{}://{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or("?")
        )
    }
}

#[async_trait]
impl Notifier for HttpNotifier {
    async fn notify(
        &self,
        channel: &str,
        message: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let receiver = self.receiver();
        if mode.is_dry_run() {
            return Ok(ActionOutcome::changed(
                mode,
                None,
                None,
                format!("would notify {channel} via {receiver}"),
            ));
        }
        let body = json!({ "source": "sre-remediation", "channel": channel, "text": message });
        let resp = self
            .client
            .post(self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| PortError::Unavailable {
                backend: BACKEND,
                // Without the URL: its path or query may hold a secret.
                message: e.without_url().to_string(),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(ActionOutcome::changed(
                mode,
                None,
                None,
                format!(
                    "notified {channel} via {receiver} (HTTP {})",
                    status.as_u16()
                ),
            ));
        }
        let message = format!("{receiver} answered HTTP {}", status.as_u16());
        Err(http_failure(BACKEND, status, message))
    }
}

/// `text` as an http(s) URL with a host: the one check every outbound client of this
/// crate makes on its configured address (a `file:` or host-less URL is a config error,
/// not a request that fails later).
pub(crate) fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{url}: scheme must be http or https"));
    }
    Ok(url)
}

/// [`http_url`] for an API base that paths are joined to: a trailing `/` is added, so
/// that a base with a sub-path (`https://host/gitea`) keeps it when joined.
pub(crate) fn api_base(text: &str) -> Result<Url, String> {
    let mut base = http_url(text)?;
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    Ok(base)
}

/// The port error for a non-success HTTP answer: a client error other than 429 needs a
/// person (wrong token, wrong path), anything else (429, 5xx, odd codes) may pass and is
/// retried. Shared by the notifier and the Gitea dispatcher so both classify alike.
pub(crate) fn http_failure(
    backend: &'static str,
    status: StatusCode,
    message: String,
) -> PortError {
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        PortError::Rejected { backend, message }
    } else {
        PortError::Unavailable { backend, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode as AxStatus;
    use axum::routing::post;
    use std::sync::{Arc, Mutex};

    async fn receiver(status: AxStatus) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let app = Router::new().route(
            "/hook/secret",
            post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let s = s.clone();
                async move {
                    s.lock().expect("lock").push(v);
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook/secret"), seen)
    }

    #[tokio::test]
    async fn posts_json_and_maps_refusals() {
        let (url, seen) = receiver(AxStatus::NO_CONTENT).await;
        let n = HttpNotifier::new(&url, Duration::from_secs(5)).expect("notifier");
        let dry = n.notify("ops", "hi", Mode::DryRun).await.expect("dry");
        assert!(dry.dry_run && dry.detail.contains("would notify ops"));
        assert!(
            seen.lock().expect("lock").is_empty(),
            "a dry run posts nothing"
        );
        let out = n.notify("ops", "hi", Mode::Apply).await.expect("sent");
        assert!(
            out.changed && !out.detail.contains("secret"),
            "{}",
            out.detail
        );
        assert_eq!(
            seen.lock().expect("lock").as_slice(),
            [json!({"source": "sre-remediation", "channel": "ops", "text": "hi"})]
        );

        let (url, _) = receiver(AxStatus::FORBIDDEN).await;
        let n = HttpNotifier::new(&url, Duration::from_secs(5)).expect("notifier");
        assert!(matches!(
            n.notify("ops", "hi", Mode::Apply).await,
            Err(PortError::Rejected { .. })
        ));
        let (url, _) = receiver(AxStatus::BAD_GATEWAY).await;
        let n = HttpNotifier::new(&url, Duration::from_secs(5)).expect("notifier");
        assert!(matches!(
            n.notify("ops", "hi", Mode::Apply).await,
            Err(PortError::Unavailable { .. })
        ));
        assert!(HttpNotifier::new("ftp://x/y", Duration::from_secs(1)).is_err());
        assert!(HttpNotifier::new("not a url", Duration::from_secs(1)).is_err());
    }
}
