//! The [`VectorIndexes`] port over Milvus' REST API v2 (Milvus 2.4 and later): the
//! `MilvusQuerySlow` rule's "rebuild index".
//!
//! Every call is a `POST` to `/v2/vectordb/<resource>/<verb>` with a JSON body naming
//! `dbName` and `collectionName`, and `Authorization: Bearer <token>` (an API key or
//! `user:password`). Milvus answers HTTP 200 with `{"code": 0, "data": ...}`, or with a
//! non-zero `code` and a `message`; those are mapped by what to do next: the service
//! codes Milvus marks retriable (1 not ready, 2 unavailable, 4 too many requests, 8 rate
//! limit) are `Unavailable`, 100 (collection not found) and 700 (index not found) are
//! `NotFound`, every other code (1800: not authenticated, permission denied, bad
//! parameters) is `Rejected`. An HTTP 401/403 (a proxy in front, older versions) is
//! `Rejected`, 5xx and transport errors `Unavailable`.
//!
//! A rebuild: `indexes/list`, `indexes/describe` of each (`fieldName`, `indexName`,
//! `indexType`, `metricType`, and `params` where the server reports them), refuse what
//! cannot be recreated identically, then `collections/release`, `indexes/drop` of each
//! vector index, one `indexes/create` with the same `indexParams`, `collections/load`.
//! A dry run stops after the describe.

use async_trait::async_trait;
use reqwest::Url;
use serde_json::{Value, json};
use sre_core::PortError;
use sre_remediation::actions::{
    ActionOutcome, CollectionRef, IndexSpec, Mode, VectorIndexes, index_params_json,
};
use std::fmt;
use std::time::Duration;
use thiserror::Error;

const BACKEND: &str = "milvus";

/// Why the client could not be built (a config error).
#[derive(Debug, Error)]
pub enum MilvusError {
    /// The URL does not parse or is not http(s).
    #[error("not an http(s) URL: {0}")]
    Url(String),
    /// The token is empty.
    #[error("the Milvus token is empty")]
    EmptyToken,
    /// The database name is empty.
    #[error("the Milvus database name is empty")]
    EmptyDb,
    /// The HTTP client could not be built (TLS set-up).
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// One Milvus (its proxy's HTTP port, 19530 by default), one database, one token.
#[derive(Clone)]
pub struct MilvusIndexes {
    client: reqwest::Client,
    base: Url,
    token: String,
    db_name: String,
}

impl fmt::Debug for MilvusIndexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MilvusIndexes")
            .field("base", &self.base.as_str())
            .field("db_name", &self.db_name)
            .finish_non_exhaustive()
    }
}

/// Adds what was done and the spec to recreate to an error that happened after the
/// first write, so the run record and the escalation carry what a human needs.
fn after_write(e: PortError, context: &str) -> PortError {
    match e {
        PortError::Unavailable { backend, message } => PortError::Unavailable {
            backend,
            message: format!("{message}; {context}"),
        },
        PortError::Rejected { backend, message } => PortError::Rejected {
            backend,
            message: format!("{message}; {context}"),
        },
        PortError::Malformed {
            backend,
            what,
            message,
        } => PortError::Malformed {
            backend,
            what,
            message: format!("{message}; {context}"),
        },
        PortError::NotFound { what } => PortError::NotFound {
            what: format!("{what}; {context}"),
        },
        other => PortError::Rejected {
            backend: BACKEND,
            message: format!("{other}; {context}"),
        },
    }
}

/// The port error for a Milvus answer with a non-zero `code`.
fn code_error(op: &str, code: i64, message: &str, what: &str) -> PortError {
    let message = format!("{op}: Milvus code {code}: {message}");
    match code {
        1 | 2 | 4 | 8 => PortError::Unavailable {
            backend: BACKEND,
            message,
        },
        100 | 700 => PortError::NotFound {
            what: format!("{what} ({message})"),
        },
        _ => PortError::Rejected {
            backend: BACKEND,
            message,
        },
    }
}

/// Reads one index of an `indexes/describe` answer.
fn spec_of(v: &Value, op: &str) -> Result<IndexSpec, PortError> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let malformed = |m: String| PortError::Malformed {
        backend: BACKEND,
        what: op.to_owned(),
        message: m,
    };
    let params = match v.get("params") {
        None | Some(Value::Null) => std::collections::BTreeMap::default(),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(other) => return Err(malformed(format!("params is not an object: {other}"))),
    };
    Ok(IndexSpec {
        field_name: text("fieldName").ok_or_else(|| malformed("no fieldName".into()))?,
        index_name: text("indexName").ok_or_else(|| malformed("no indexName".into()))?,
        index_type: text("indexType").unwrap_or_default(),
        metric_type: text("metricType").unwrap_or_default(),
        params,
    })
}

impl MilvusIndexes {
    /// A client for the Milvus at `url` (`http://milvus.ai-hub.svc:19530`), database
    /// `db_name`, each request limited to `timeout`.
    pub fn new(
        url: &str,
        token: &str,
        db_name: &str,
        timeout: Duration,
    ) -> Result<Self, MilvusError> {
        let mut base = Url::parse(url).map_err(|e| MilvusError::Url(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(MilvusError::Url(format!(
                "{base}: scheme must be http or https"
            )));
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(MilvusError::EmptyToken);
        }
        if db_name.trim().is_empty() {
            return Err(MilvusError::EmptyDb);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(MilvusError::Client)?;
        Ok(Self {
            client,
            base,
            token: token.to_owned(),
            db_name: db_name.to_owned(),
        })
    }

    /// One call: `op` is `indexes/list`, `collections/release`, ...; the answer's `data`.
    async fn call(&self, op: &str, mut body: Value, what: &str) -> Result<Value, PortError> {
        let url = self
            .base
            .join(&format!("v2/vectordb/{op}"))
            .map_err(|e| PortError::Invalid(format!("Milvus URL for {op}: {e}")))?;
        if let Value::Object(m) = &mut body {
            m.insert("dbName".into(), Value::String(self.db_name.clone()));
        }
        let resp = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| PortError::Unavailable {
                backend: BACKEND,
                message: format!("{op}: {}", e.without_url()),
            })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| PortError::Unavailable {
            backend: BACKEND,
            message: format!("{op}: reading the answer: {}", e.without_url()),
        })?;
        if !status.is_success() {
            let message = format!(
                "{op} answered HTTP {}: {}",
                status.as_u16(),
                text.chars().take(200).collect::<String>()
            );
            return Err(crate::notify::http_failure(BACKEND, status, message));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| PortError::Malformed {
            backend: BACKEND,
            what: op.to_owned(),
            message: e.to_string(),
        })?;
        let code = v
            .get("code")
            .and_then(Value::as_i64)
            .ok_or_else(|| PortError::Malformed {
                backend: BACKEND,
                what: op.to_owned(),
                message: "no numeric `code` in the answer".into(),
            })?;
        if code != 0 {
            let message = v.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(code_error(op, code, message, what));
        }
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }

    /// Every index of `collection`, as `indexes/describe` reports it.
    async fn indexes(&self, collection: &CollectionRef) -> Result<Vec<IndexSpec>, PortError> {
        let what = collection.to_string();
        let names = self
            .call(
                "indexes/list",
                json!({ "collectionName": collection.name }),
                &what,
            )
            .await?;
        let names: Vec<String> = match names {
            Value::Array(a) => a
                .iter()
                .map(|n| n.as_str().map(str::to_owned))
                .collect::<Option<_>>(),
            Value::Null => Some(Vec::new()),
            _ => None,
        }
        .ok_or_else(|| PortError::Malformed {
            backend: BACKEND,
            what: "indexes/list".into(),
            message: "data is not a list of index names".into(),
        })?;
        let mut specs = Vec::with_capacity(names.len());
        for name in names {
            let data = self
                .call(
                    "indexes/describe",
                    json!({ "collectionName": collection.name, "indexName": name }),
                    &format!("index {name} of {what}"),
                )
                .await?;
            let Value::Array(described) = data else {
                return Err(PortError::Malformed {
                    backend: BACKEND,
                    what: "indexes/describe".into(),
                    message: "data is not a list".into(),
                });
            };
            for d in &described {
                let spec = spec_of(d, "indexes/describe")?;
                if spec.index_name == name {
                    specs.push(spec);
                }
            }
        }
        Ok(specs)
    }
}

#[async_trait]
impl VectorIndexes for MilvusIndexes {
    async fn rebuild_index(
        &self,
        collection: &CollectionRef,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let what = collection.to_string();
        let vector: Vec<IndexSpec> = self
            .indexes(collection)
            .await?
            .into_iter()
            .filter(IndexSpec::is_vector)
            .collect();
        if vector.is_empty() {
            return Err(PortError::NotFound {
                what: format!("vector index of {what} (database {})", self.db_name),
            });
        }
        for spec in &vector {
            spec.recreatable().map_err(|m| PortError::Rejected {
                backend: BACKEND,
                message: format!("{what}: {m}: nothing was changed"),
            })?;
        }
        let spec = index_params_json(&vector);
        let names: Vec<&str> = vector.iter().map(|i| i.index_name.as_str()).collect();
        let which = format!(
            "{} index(es) ({}) of {what} (database {})",
            names.len(),
            names.join(", "),
            self.db_name
        );
        if mode.is_dry_run() {
            return Ok(ActionOutcome::changed(
                mode,
                Some(spec.clone()),
                Some(spec),
                format!("would release, drop and recreate {which} with the same spec, then load"),
            ));
        }
        // Before the first write: a log line outlives a crash between drop and create.
        tracing::warn!(collection = %collection.name, db = %self.db_name, index_params = %spec,
            "rebuilding Milvus indexes: if this does not finish, recreate them with these indexParams and load the collection");
        let coll = json!({ "collectionName": collection.name });
        self.call("collections/release", coll.clone(), &what)
            .await?;
        let recreate = format!(
            "collection released and indexes being rebuilt: recreate them with \
             POST /v2/vectordb/indexes/create {{\"collectionName\": {:?}, \"indexParams\": {spec}}}, \
             then load the collection",
            collection.name
        );
        for name in &names {
            self.call(
                "indexes/drop",
                json!({ "collectionName": collection.name, "indexName": name }),
                &what,
            )
            .await
            .map_err(|e| after_write(e, &recreate))?;
        }
        self.call(
            "indexes/create",
            json!({ "collectionName": collection.name, "indexParams": vector }),
            &what,
        )
        .await
        .map_err(|e| after_write(e, &recreate))?;
        self.call("collections/load", coll, &what)
            .await
            .map_err(|e| {
                after_write(
                    e,
                    "indexes recreated but the collection is released: load it",
                )
            })?;
        Ok(ActionOutcome::changed(
            mode,
            Some(spec.clone()),
            Some(spec),
            format!(
                "rebuilt {which}: released, dropped, recreated with the same spec, load requested"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_by_what_to_do_next_and_specs_read_strictly() {
        assert!(matches!(
            code_error("indexes/list", 2, "service unavailable", "c"),
            PortError::Unavailable { .. }
        ));
        assert!(matches!(
            code_error("indexes/list", 100, "collection not found", "c"),
            PortError::NotFound { what } if what.starts_with("c (")
        ));
        assert!(matches!(
            code_error("indexes/drop", 1800, "user hasn't authenticated", "c"),
            PortError::Rejected { message, .. } if message == "indexes/drop: Milvus code 1800: user hasn't authenticated"
        ));
        let spec = spec_of(
            &json!({"fieldName": "v", "indexName": "v_idx", "indexType": "HNSW",
                    "metricType": "IP", "params": {"M": 8}, "indexState": "Finished"}),
            "d",
        )
        .expect("reads");
        assert_eq!(spec.params.get("M"), Some(&json!(8)));
        assert!(spec_of(&json!({"indexName": "x"}), "d").is_err());
        assert!(
            spec_of(
                &json!({"fieldName": "v", "indexName": "x", "params": 3}),
                "d"
            )
            .is_err()
        );
        assert!(matches!(
            MilvusIndexes::new("http://m:19530", " ", "default", Duration::from_secs(1)),
            Err(MilvusError::EmptyToken)
        ));
        assert!(matches!(
            MilvusIndexes::new("http://m:19530", "t", "", Duration::from_secs(1)),
            Err(MilvusError::EmptyDb)
        ));
        assert!(MilvusIndexes::new("grpc://m:19530", "t", "d", Duration::from_secs(1)).is_err());
        let m = MilvusIndexes::new("http://m:19530", "root:Milvus", "d", Duration::from_secs(1))
            .expect("valid");
        assert!(
            !format!("{m:?}").contains("root:Milvus"),
            "Debug hides the token"
        );
    }
}
