//! The [`WebhookRedelivery`] port over HTTP: the `BillingWebhookFailed` rule's "retry with
//! backoff" asks the application that owns the webhook to send its failed deliveries
//! again, because only the application has the delivery log, the payloads and the
//! idempotency keys.
//!
//! The endpoint is a template (`redeliver.url_template`) with `${namespace}` and
//! `${name}` (the rule target's, from the alert's labels). Label values are checked, not
//! trusted: only `[A-Za-z0-9._-]`, no `..`, not starting with a dot, so a label cannot
//! move the request to another host or path. One call is one `POST` with
//! `Authorization: Bearer <token>` and `{"source": "sre-remediation", "namespace": ...,
//! "webhook": ...}`: `2xx` is done, `4xx` a refusal (429 excepted: retried, like every
//! HTTP client of this webhook), `5xx` and transport errors `Unavailable`. The retries
//! and their backoff are `sre_remediation::retry`'s. A dry run sends nothing.

use async_trait::async_trait;
use reqwest::Url;
use serde_json::json;
use sre_core::PortError;
use sre_remediation::actions::{ActionOutcome, Mode, WebhookRedelivery, WebhookRef};
use std::fmt;
use std::time::Duration;
use thiserror::Error;

const BACKEND: &str = "webhook redelivery";

/// Why the client could not be built (a config error).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RedeliverError {
    /// The template is not an http(s) URL once its placeholders are filled.
    #[error("not an http(s) URL template: {0}")]
    Url(String),
    /// The template names a placeholder other than `${namespace}` and `${name}`.
    #[error("unknown placeholder ${{{0}}}: use ${{namespace}} and ${{name}}")]
    Placeholder(String),
    /// The token is empty.
    #[error("the redelivery token is empty")]
    EmptyToken,
    /// The HTTP client could not be built (TLS set-up).
    #[error("HTTP client: {0}")]
    Client(String),
}

/// Fills `${namespace}` and `${name}` of `template`; any other placeholder, or one left
/// open, is an error rather than text sent as is.
fn fill(template: &str, namespace: &str, name: &str) -> Result<String, RedeliverError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(RedeliverError::Placeholder(after.to_owned()));
        };
        match &after[..end] {
            "namespace" => out.push_str(namespace),
            "name" => out.push_str(name),
            other => return Err(RedeliverError::Placeholder(other.to_owned())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a template at config time: known placeholders, an http(s) URL with a host.
///
/// # Errors
/// What is wrong with it.
pub fn check_template(template: &str) -> Result<(), RedeliverError> {
    let url = fill(template, "ns", "hook")?;
    crate::notify::http_url(&url)
        .map(drop)
        .map_err(RedeliverError::Url)
}

/// A label value safe to put into a host or a path segment.
fn safe(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with('.')
        && !value.contains("..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Redelivery requests to the endpoint the template names, with one bearer token.
#[derive(Clone)]
pub struct HttpRedelivery {
    client: reqwest::Client,
    template: String,
    token: String,
}

impl fmt::Debug for HttpRedelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRedelivery")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

impl HttpRedelivery {
    /// A client for `url_template`, each request limited to `timeout`.
    ///
    /// # Errors
    /// A bad template, an empty token, a client that cannot be built.
    pub fn new(url_template: &str, token: &str, timeout: Duration) -> Result<Self, RedeliverError> {
        check_template(url_template)?;
        let token = token.trim();
        if token.is_empty() {
            return Err(RedeliverError::EmptyToken);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RedeliverError::Client(e.to_string()))?;
        Ok(Self {
            client,
            template: url_template.to_owned(),
            token: token.to_owned(),
        })
    }

    /// The endpoint for one webhook.
    fn endpoint(&self, webhook: &WebhookRef) -> Result<Url, PortError> {
        let needs_ns = self.template.contains("${namespace}");
        let ns = match (&webhook.namespace, needs_ns) {
            (Some(ns), _) => ns.as_str(),
            (None, false) => "",
            (None, true) => {
                return Err(PortError::Invalid(format!(
                    "{webhook} has no namespace, and the redelivery URL template needs one"
                )));
            }
        };
        for (what, v) in [("namespace", ns), ("name", webhook.name.as_str())] {
            if (what == "name" || needs_ns) && !safe(v) {
                return Err(PortError::Invalid(format!(
                    "{what} {v:?} of {webhook}: only letters, digits, '.', '_' and '-' go into the redelivery URL"
                )));
            }
        }
        let url = fill(&self.template, ns, &webhook.name)
            .map_err(|e| PortError::Invalid(e.to_string()))?;
        Url::parse(&url).map_err(|e| PortError::Invalid(format!("redelivery URL {url}: {e}")))
    }
}

#[async_trait]
impl WebhookRedelivery for HttpRedelivery {
    async fn redeliver(
        &self,
        webhook: &WebhookRef,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let url = self.endpoint(webhook)?;
        let at = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or("?"),
            url.path()
        );
        if mode.is_dry_run() {
            return Ok(ActionOutcome::changed(
                mode,
                None,
                None,
                format!("would ask {at} to redeliver the failed deliveries of {webhook}"),
            ));
        }
        let body = json!({
            "source": "sre-remediation",
            "namespace": webhook.namespace,
            "webhook": webhook.name,
        });
        let resp = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| PortError::Unavailable {
                backend: BACKEND,
                message: format!("{at}: {}", e.without_url()),
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let snippet: String = text.trim().chars().take(200).collect();
        if status.is_success() {
            let answer = if snippet.is_empty() {
                String::new()
            } else {
                format!(": {snippet}")
            };
            return Ok(ActionOutcome::changed(
                mode,
                None,
                None,
                format!(
                    "{at} accepted the redelivery of {webhook}'s failed deliveries (HTTP {}){answer}",
                    status.as_u16()
                ),
            ));
        }
        let message = format!("{at} answered HTTP {}: {snippet}", status.as_u16());
        Err(crate::notify::http_failure(BACKEND, status, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "http://billing.${namespace}.svc:8080/internal/webhooks/${name}/redeliver";

    #[test]
    fn templates_fill_known_placeholders_and_refuse_unsafe_labels() {
        let r = HttpRedelivery::new(T, "t", Duration::from_secs(1)).expect("valid");
        assert_eq!(
            r.endpoint(&WebhookRef::new(Some("bank"), "stripe.v2"))
                .expect("url")
                .as_str(),
            "http://billing.bank.svc:8080/internal/webhooks/stripe.v2/redeliver"
        );
        for (ns, name) in [
            (Some("bank"), "../admin"),
            (Some("bank"), "a/b"),
            (Some("evil.com#"), "x"),
            (Some("bank"), ""),
            (Some(".bank"), "x"),
            (None, "x"),
        ] {
            assert!(
                matches!(
                    r.endpoint(&WebhookRef::new(ns, name)),
                    Err(PortError::Invalid(_))
                ),
                "{ns:?} {name}"
            );
        }
        let fixed =
            HttpRedelivery::new("https://app/redeliver/${name}", "t", Duration::from_secs(1))
                .expect("no namespace needed");
        assert!(fixed.endpoint(&WebhookRef::new(None, "x")).is_ok());
        assert_eq!(
            check_template("http://a/${tenant}/x"),
            Err(RedeliverError::Placeholder("tenant".into()))
        );
        assert!(matches!(
            check_template("ftp://a/${name}"),
            Err(RedeliverError::Url(_))
        ));
        assert!(matches!(
            check_template("http://a/${name"),
            Err(RedeliverError::Placeholder(_))
        ));
        assert_eq!(
            HttpRedelivery::new(T, "\n", Duration::from_secs(1)).map(|_| ()),
            Err(RedeliverError::EmptyToken)
        );
        assert!(
            !format!("{r:?}").contains("token: "),
            "Debug hides the token"
        );
    }
}
