//! Connection settings for one bucket, and the hand-built SDK client.
//!
//! The SDK config is assembled by hand instead of through `aws-config`: the toolkit runs
//! against S3-compatible stores with explicit credentials, and `aws-config` would pull in
//! the credential-provider chain, IMDS and the aws-lc TLS stack for nothing.

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use std::fmt;
use std::time::Duration;

/// Where the bucket lives and how to authenticate.
///
/// `Debug` redacts `secret_key`, so a config can be logged while diagnosing wiring.
#[derive(Clone)]
pub struct S3Config {
    /// Custom endpoint (`http://127.0.0.1:9000`) for S3-compatible stores; `None` means
    /// AWS itself, resolved from `region`.
    pub endpoint: Option<String>,
    /// Region name; S3-compatible stores usually accept any value, AWS signs with it.
    pub region: String,
    /// The bucket every key of this store lives in.
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key. Never logged.
    pub secret_key: String,
    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint`: most
    /// S3-compatible servers on a bare host:port only understand the path style.
    pub force_path_style: bool,
    /// Limit for one whole operation including retries; a witness read that hangs longer
    /// than this is worse than one that fails, because failover must decide on time.
    pub timeout: Duration,
    /// Attempts per operation (1 = no retry). Conditional puts are safe to retry: a
    /// replayed create loses its own precondition instead of overwriting.
    pub max_attempts: u32,
}

impl S3Config {
    /// A config for AWS S3 in `region` with defaults that suit a failover witness: a
    /// 10 s operation timeout and 3 attempts. Set `endpoint` and `force_path_style` for
    /// S3-compatible servers.
    #[must_use]
    pub fn new(
        region: impl Into<String>,
        bucket: impl Into<String>,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: None,
            region: region.into(),
            bucket: bucket.into(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            force_path_style: false,
            timeout: Duration::from_secs(10),
            max_attempts: 3,
        }
    }

    /// The same settings for another bucket (tests and the drill use one bucket per run).
    #[must_use]
    pub fn with_bucket(&self, bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            ..self.clone()
        }
    }

    /// Builds an SDK client from these settings.
    pub(crate) fn client(&self) -> aws_sdk_s3::Client {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let creds = aws_credential_types::Credentials::new(
            self.access_key.clone(),
            self.secret_key.clone(),
            None,
            None,
            "sre-static",
        );
        // Connect timeout is a fraction of the whole budget so that a black-holed
        // endpoint still leaves time for a retry against a recovered one.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(self.timeout / 3)
            .operation_attempt_timeout(self.timeout)
            .operation_timeout(self.timeout)
            .build();
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version_latest()
            .region(Region::new(self.region.clone()))
            .credentials_provider(creds)
            .http_client(http)
            .force_path_style(self.force_path_style)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts.max(1)))
            // Checksums only where S3 requires them: S3-compatible stores differ in which
            // of the newer flexible checksums they understand, and the body is tiny.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(ep) = &self.endpoint {
            b = b.endpoint_url(ep.clone());
        }
        aws_sdk_s3::Client::from_conf(b.build())
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("force_path_style", &self.force_path_style)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret_key() {
        let c = S3Config::new("eu-west-1", "b", "AKIDEXAMPLE", "wJalrXUtnFEMI-very-secret");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
        assert!(
            dbg.contains("AKIDEXAMPLE") && dbg.contains("<redacted>"),
            "{dbg}"
        );
    }

    #[test]
    fn with_bucket_keeps_everything_else() {
        let mut c = S3Config::new("r", "one", "a", "s");
        c.endpoint = Some("http://127.0.0.1:1".into());
        let d = c.with_bucket("two");
        assert_eq!(
            (d.bucket.as_str(), d.endpoint, d.region.as_str()),
            ("two", c.endpoint, "r")
        );
    }
}
