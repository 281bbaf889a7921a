//! The reference server of the HTTP witness protocol (`PROTOCOL.md`), for tests, the
//! drill and single-process setups.
//!
//! Its store is an in-memory map behind one mutex: every compare-and-swap runs entirely
//! under that lock, so the server is linearizable within its process. It is *not* a
//! production witness: state dies with the process and there is one of it. Production
//! serves the same protocol from a strongly consistent store (a Cloudflare Durable
//! Object, etcd, a database row updated with a conditional `UPDATE`), never from an
//! eventually consistent one such as Workers KV.

use crate::error::{Error, Result};
use crate::token::{BearerToken, LeaseName};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use sre_core::ports::LeaseRecord;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

/// Largest accepted request body. A lease record is a few hundred bytes; the bound keeps
/// an unauthenticated or buggy client from making the server buffer arbitrary data.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone)]
struct Stored {
    body: Bytes,
    etag: String,
}

/// The reference server's lease store: a map from lease name to record bytes and
/// `ETag`, behind one mutex. Clones share the map, so a test can keep a handle and
/// inspect or tamper with what the server holds.
#[derive(Debug, Clone, Default)]
pub struct MemLeaseStore {
    leases: Arc<Mutex<HashMap<LeaseName, Stored>>>,
}

/// What a conditional write asked for.
enum Precondition {
    /// `If-None-Match: *`
    Absent,
    /// `If-Match: <etag>`
    Match(String),
}

/// What a conditional write did.
enum PutOutcome {
    Created(String),
    Replaced(String),
    PreconditionFailed,
    GenerationRule(&'static str),
}

impl MemLeaseStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores arbitrary bytes under `name`, bypassing validation, so that tests can show
    /// what a client does when a witness holds garbage.
    pub fn put_raw(&self, name: &LeaseName, bytes: Vec<u8>) {
        let body = Bytes::from(bytes);
        let etag = etag_of(&body);
        self.lock().insert(name.clone(), Stored { body, etag });
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<LeaseName, Stored>> {
        // Every update is a single insert, so a panicking thread cannot leave a
        // half-updated entry behind; the map is still consistent.
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, name: &LeaseName) -> Option<Stored> {
        self.lock().get(name).cloned()
    }

    // Invariant: the check and the write happen under one lock acquisition; this is what
    // makes the server linearizable and a race have exactly one winner.
    fn put(
        &self,
        name: &LeaseName,
        pre: &Precondition,
        record: &LeaseRecord,
        body: Bytes,
    ) -> PutOutcome {
        let mut leases = self.lock();
        let current = leases.get(name);
        match (pre, current) {
            (Precondition::Absent, None) => {}
            (Precondition::Match(want), Some(cur)) if *want == cur.etag => {
                if let Ok(old) = LeaseRecord::from_bytes(&cur.body)
                    && let Some(rule) = generation_rule(&old, record)
                {
                    return PutOutcome::GenerationRule(rule);
                }
            }
            _ => return PutOutcome::PreconditionFailed,
        }
        let etag = etag_of(&body);
        let created = current.is_none();
        leases.insert(
            name.clone(),
            Stored {
                body,
                etag: etag.clone(),
            },
        );
        if created {
            PutOutcome::Created(etag)
        } else {
            PutOutcome::Replaced(etag)
        }
    }
}

/// The protocol's optional generation rules: generation never decreases, and a new
/// holder comes with a higher generation (the fencing token must change with the holder).
fn generation_rule(old: &LeaseRecord, new: &LeaseRecord) -> Option<&'static str> {
    if new.generation < old.generation {
        Some("generation must never decrease")
    } else if new.holder != old.holder && new.generation <= old.generation {
        Some("a change of holder must increase the generation")
    } else {
        None
    }
}

/// A strong `ETag`: the quoted SHA-256 hex of the stored bytes.
fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(body)))
}

#[derive(Clone)]
struct App {
    store: MemLeaseStore,
    token: Arc<BearerToken>,
}

/// Why a request was refused, kept small so that `Result<_, Reject>` stays cheap and
/// every early return is a `?`.
enum Reject {
    /// 401 with a `WWW-Authenticate` challenge (RFC 6750).
    Unauthorized,
    /// Any other refusal, with a short plain-text reason.
    Status(StatusCode, String),
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"sre-witness\"")],
                "missing or invalid bearer token\n",
            )
                .into_response(),
            Self::Status(status, mut msg) => {
                msg.push('\n');
                (status, msg).into_response()
            }
        }
    }
}

fn reject(status: StatusCode, msg: impl Into<String>) -> Reject {
    Reject::Status(status, msg.into())
}

impl App {
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Reject> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim_start());
        // Constant time, so that response timing does not reveal how much of a guessed
        // token was right.
        let ok = presented
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(self.token.expose().as_bytes())));
        if ok {
            Ok(())
        } else {
            Err(Reject::Unauthorized)
        }
    }
}

fn parse_name(raw: String) -> Result<LeaseName, Reject> {
    LeaseName::new(raw).map_err(|e| reject(StatusCode::BAD_REQUEST, e.to_string()))
}

fn precondition(headers: &HeaderMap) -> Result<Precondition, Reject> {
    let value = |h| {
        headers
            .get(h)
            .map(|v: &HeaderValue| v.to_str().map(str::trim).unwrap_or_default())
    };
    match (value(header::IF_NONE_MATCH), value(header::IF_MATCH)) {
        (Some("*"), None) => Ok(Precondition::Absent),
        (Some(_), None) => Err(reject(
            StatusCode::BAD_REQUEST,
            "If-None-Match must be \"*\" (create only if absent)",
        )),
        (None, Some("*")) => Err(reject(
            StatusCode::PRECONDITION_REQUIRED,
            "If-Match must name the revision read, not \"*\"",
        )),
        (None, Some(etag)) => Ok(Precondition::Match(etag.to_owned())),
        (Some(_), Some(_)) => Err(reject(
            StatusCode::BAD_REQUEST,
            "send If-None-Match or If-Match, not both",
        )),
        (None, None) => Err(reject(
            StatusCode::PRECONDITION_REQUIRED,
            "a lease write needs If-None-Match: * or If-Match: <etag>",
        )),
    }
}

async fn get_lease(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    app.authorize(&headers)?;
    let name = parse_name(name)?;
    let stored = app
        .store
        .get(&name)
        .ok_or_else(|| reject(StatusCode::NOT_FOUND, format!("no lease {name}")))?;
    Ok((
        StatusCode::OK,
        [
            (header::ETAG, stored.etag),
            (header::CONTENT_TYPE, "application/json".to_owned()),
            // A cached lease is a stale lease: no intermediary may serve this.
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        stored.body,
    )
        .into_response())
}

async fn put_lease(
    State(app): State<App>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, Reject> {
    // Order matters: authenticate before reading a body or revealing anything.
    app.authorize(req.headers())?;
    let name = parse_name(name)?;
    let pre = precondition(req.headers())?;
    // Reads at most MAX_BODY_BYTES (DefaultBodyLimit on the router); beyond that the
    // rejection's status is 413.
    let body = Bytes::from_request(req, &())
        .await
        .map_err(|rejection| reject(rejection.status(), rejection.body_text()))?;
    let record = LeaseRecord::from_bytes(&body)
        .map_err(|e| reject(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(match app.store.put(&name, &pre, &record, body) {
        PutOutcome::Created(etag) => (StatusCode::CREATED, [(header::ETAG, etag)]).into_response(),
        PutOutcome::Replaced(etag) => (StatusCode::OK, [(header::ETAG, etag)]).into_response(),
        PutOutcome::PreconditionFailed => reject(
            StatusCode::PRECONDITION_FAILED,
            format!("lease {name} changed since it was read"),
        )
        .into_response(),
        PutOutcome::GenerationRule(rule) => reject(StatusCode::CONFLICT, rule).into_response(),
    })
}

/// The protocol's routes over `store`, for embedding into a larger axum app (or serving
/// with graceful shutdown). Requests without `token` get 401.
pub fn router(store: MemLeaseStore, token: BearerToken) -> Router {
    let app = App {
        store,
        token: Arc::new(token),
    };
    Router::new()
        .route("/v1/leases/{name}", get(get_lease).put(put_lease))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// Serves the witness protocol on `listener` until the process ends or the listener
/// fails. Bind to loopback (or put TLS in front): the token travels in plain text
/// otherwise.
pub async fn serve(listener: TcpListener, store: MemLeaseStore, token: BearerToken) -> Result<()> {
    axum::serve(listener, router(store, token))
        .await
        .map_err(|source| Error::Serve { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use sre_core::ports::LeaseFormat;
    use sre_core::{Generation, RegionId};

    fn record(holder: &str, generation: u64) -> LeaseRecord {
        let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default();
        LeaseRecord {
            format: LeaseFormat::V1,
            holder: RegionId::new(holder),
            generation: Generation(generation),
            acquired_at: t0,
            renewed_at: t0,
            ttl_ms: 30_000,
            released: false,
        }
    }

    #[test]
    fn generation_rules() {
        let check = |old: (&str, u64), new: (&str, u64), ok: bool| {
            let got = generation_rule(&record(old.0, old.1), &record(new.0, new.1));
            assert_eq!(got.is_none(), ok, "{old:?} -> {new:?}: {got:?}");
        };
        check(("a", 1), ("a", 1), true); // renewal
        check(("a", 1), ("a", 2), true);
        check(("a", 1), ("b", 2), true); // takeover
        check(("a", 2), ("a", 1), false); // decrease
        check(("a", 2), ("b", 2), false); // new holder, same token
        check(("a", 2), ("b", 1), false);
    }

    #[test]
    fn store_cas_has_one_winner() {
        let store = MemLeaseStore::new();
        let name = LeaseName::new("l").expect("valid name");
        let a = record("a", 1);
        let PutOutcome::Created(etag) =
            store.put(&name, &Precondition::Absent, &a, Bytes::from(a.to_bytes()))
        else {
            panic!("first create must win");
        };
        assert!(matches!(
            store.put(&name, &Precondition::Absent, &a, Bytes::from(a.to_bytes())),
            PutOutcome::PreconditionFailed
        ));
        let b = record("b", 2);
        let pre = Precondition::Match(etag);
        assert!(matches!(
            store.put(&name, &pre, &b, Bytes::from(b.to_bytes())),
            PutOutcome::Replaced(_)
        ));
        let c = record("c", 2);
        assert!(matches!(
            store.put(&name, &pre, &c, Bytes::from(c.to_bytes())),
            PutOutcome::PreconditionFailed
        ));
    }
}
