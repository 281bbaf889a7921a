//! Telemetry for binaries (feature `telemetry`): structured logs through `tracing`, a
//! Prometheus registry for `/metrics`, and OTLP trace export (feature `otlp`) that turns
//! on only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Libraries never call [`init`]: they emit events and register metrics; the binary
//! decides where they go. A missing or unreachable collector never stops a controller:
//! without the variable there is no exporter, and export failures are only logged.

use prometheus_client::encoding::text::encode;
pub use prometheus_client::registry::Registry;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers (the default for controllers).
    #[default]
    Json,
    /// Human-readable lines, for terminals.
    Text,
}

/// Keeps the trace exporter alive; dropping it flushes pending spans.
#[must_use = "dropping the guard shuts the trace exporter down"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(Err(e)) = self.provider.take().map(|p| p.shutdown()) {
            eprintln!("otlp: flushing traces failed: {e}");
        }
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` does not parse.
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(String),
    /// A global subscriber was already installed (init called twice).
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
    /// The OTLP exporter could not be built from the `OTEL_*` variables.
    #[error("OTLP exporter: {0}")]
    Otlp(String),
}

/// The log filter without `RUST_LOG`: `info`, except vaultrs and its HTTP layer
/// (rustify), which log every non-2xx answer at `error` — including the 404 of a secret
/// not written yet, which the OpenBao adapter maps to a typed error that the caller
/// reports (or expects). Their lines would bury real errors; `RUST_LOG` brings them back.
pub const DEFAULT_FILTER: &str = "info,vaultrs=off,rustify=off";

/// Installs the global subscriber: `RUST_LOG` filter (default [`DEFAULT_FILTER`]), logs on stderr in
/// `format`, plus OTLP traces for `service` when built with `otlp` and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(service: &'static str, format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.is_empty() => {
            EnvFilter::try_new(s).map_err(|e| TelemetryError::Filter(e.to_string()))?
        }
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt_layer);
    #[cfg(feature = "otlp")]
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        use opentelemetry::trace::TracerProvider as _;
        let provider = otlp_provider(service)?;
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
        registry
            .with(layer)
            .try_init()
            .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
        tracing::info!(service, "OTLP trace export enabled");
        return Ok(TelemetryGuard {
            provider: Some(provider),
        });
    }
    registry
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    tracing::debug!(service, "telemetry initialised without OTLP export");
    Ok(TelemetryGuard::default())
}

#[cfg(feature = "otlp")]
fn otlp_provider(
    service: &'static str,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig as _;
    // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and _HEADERS, _TIMEOUT) itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// A registry whose metric names all start with `sre_`, as STYLE.md's naming asks.
#[must_use]
pub fn metrics_registry() -> Registry {
    Registry::with_prefix("sre")
}

/// Renders the registry in the Prometheus text exposition format, the body of `/metrics`.
pub fn render_metrics(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    encode(&mut out, registry)?;
    Ok(out)
}

/// The `Content-Type` for [`render_metrics`] output.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn metrics_render_with_the_sre_prefix() {
        let mut reg = metrics_registry();
        let c: Counter = Counter::default();
        reg.register("demo_events", "Events seen by the demo", c.clone());
        c.inc_by(3);
        let text = render_metrics(&reg).expect("render");
        assert!(text.contains("sre_demo_events_total 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
