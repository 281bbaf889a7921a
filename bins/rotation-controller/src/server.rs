//! `/metrics` (Prometheus text), `/healthz`, and the JWKS documents (`/jwks/<secret>`,
//! `/.well-known/jwks.json`); nothing served carries a credential or a token (a JWKS
//! holds public keys only).

use crate::jwks::{JwksError, JwksPublisher};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sre_core::telemetry::{METRICS_CONTENT_TYPE, Registry, render_metrics};
use std::sync::Arc;

/// The JWK Set media type (RFC 7517 section 8.5).
pub const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    jwks: Arc<JwksPublisher>,
}

/// The router over the metrics registry and the JWKS publisher.
pub fn router(registry: Arc<Registry>, jwks: Arc<JwksPublisher>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/jwks/{name}", get(jwks_named))
        .route("/.well-known/jwks.json", get(jwks_well_known))
        .with_state(AppState { registry, jwks })
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn jwks_named(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    jwks_document(&app.jwks, &name).await
}

async fn jwks_well_known(State(app): State<AppState>) -> Response {
    match app.jwks.well_known() {
        Some(name) => jwks_document(&app.jwks, name).await,
        None => json_error(
            StatusCode::NOT_FOUND,
            "no well-known JWKS: set jwks.well_known or configure exactly one jwt_key",
        ),
    }
}

async fn jwks_document(jwks: &JwksPublisher, name: &str) -> Response {
    match jwks.document(name).await {
        Ok(doc) => (
            [
                (header::CONTENT_TYPE, JWKS_CONTENT_TYPE.to_owned()),
                (
                    header::CACHE_CONTROL,
                    format!("public, max-age={}", jwks.max_age()),
                ),
            ],
            doc.as_str().to_owned(),
        )
            .into_response(),
        Err(e @ JwksError::Unknown(_)) => json_error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e) => {
            tracing::warn!(jwks = name, error = %sre_rotation::drive::error_chain(&e), "JWKS not served");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &sre_rotation::drive::error_chain(&e),
            )
        }
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    match render_metrics(&app.registry) {
        Ok(body) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering metrics failed\n",
        )
            .into_response(),
    }
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends), for graceful shutdown.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler, only Ctrl-C stops us.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
