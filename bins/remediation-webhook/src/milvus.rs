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
//!
//! Milvus' REST describe does not report build parameters (`M`, `efConstruction`,
//! `nlist`): for the indexes that have them, `milvus.index_params` gives them
//! ([`IndexParams`]), checked against the type and metric describe reports before
//! anything is changed. Without either source such an index is refused.

use async_trait::async_trait;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};
use sre_core::PortError;
use sre_core::config::ConfigError;
use sre_remediation::actions::{
    ActionOutcome, CollectionRef, IndexSpec, Mode, VectorIndexes, index_params_json,
};
use std::collections::BTreeMap;
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
    index_params: IndexParams,
}

impl fmt::Debug for MilvusIndexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MilvusIndexes")
            .field("base", &self.base.as_str())
            .field("db_name", &self.db_name)
            .field("index_params", &self.index_params)
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

/// `milvus.index_params.<collection>.<index name or field name>` as written: the build
/// parameters an index was created with, for when Milvus' describe does not report them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndexParams {
    /// `HNSW`, `IVF_FLAT`, ...: must be what describe reports at run time.
    index_type: String,
    /// `L2`, `IP`, `COSINE`, ...: must be what describe reports at run time, so that a
    /// stale entry can never change an index's metric.
    metric_type: String,
    /// `M`, `efConstruction`, `nlist`, ... as Milvus' create call takes them.
    #[serde(default)]
    params: BTreeMap<String, Value>,
}

/// `milvus.index_params` as written: collection -> index name or field name -> spec.
pub type RawIndexParamsMap = BTreeMap<String, BTreeMap<String, RawIndexParams>>;

/// How a build parameter's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamKind {
    /// A count or size (`M`, `nlist`): an integer above zero, or such an integer as text.
    PositiveInt,
    /// A ratio or weight (`drop_ratio_build`, `bm25_k1`): a number, at least zero.
    NonNegative,
    /// A name (`sq_type`, `build_algo`): non-empty text.
    Text,
    /// A switch (`refine`, `with_raw_data`): a bool, or `"true"`/`"false"`.
    Bool,
}

/// Every build parameter the index types below take (Milvus 2.4 to 2.6 documentation),
/// with how its value is checked.
const PARAM_KINDS: &[(&str, ParamKind)] = &[
    ("M", ParamKind::PositiveInt),
    ("efConstruction", ParamKind::PositiveInt),
    ("nlist", ParamKind::PositiveInt),
    ("m", ParamKind::PositiveInt),
    ("nbits", ParamKind::PositiveInt),
    ("nrq", ParamKind::PositiveInt),
    ("max_degree", ParamKind::PositiveInt),
    ("search_list_size", ParamKind::PositiveInt),
    ("intermediate_graph_degree", ParamKind::PositiveInt),
    ("graph_degree", ParamKind::PositiveInt),
    ("pq_code_budget_gb_ratio", ParamKind::NonNegative),
    ("search_cache_budget_gb_ratio", ParamKind::NonNegative),
    ("drop_ratio_build", ParamKind::NonNegative),
    ("bm25_k1", ParamKind::NonNegative),
    ("bm25_b", ParamKind::NonNegative),
    ("sq_type", ParamKind::Text),
    ("refine_type", ParamKind::Text),
    ("build_algo", ParamKind::Text),
    ("inverted_index_algo", ParamKind::Text),
    ("refine", ParamKind::Bool),
    ("with_raw_data", ParamKind::Bool),
    ("cache_dataset_on_device", ParamKind::Bool),
    ("adapt_for_cpu", ParamKind::Bool),
];

/// The index types that take build parameters: the ones an entry must give (leaving one
/// out would build with Milvus' default, which is what the config exists to avoid) and
/// the others it may give. Types without build parameters (`AUTOINDEX`, `FLAT`, ...)
/// are rebuilt without configuration and so are not accepted here.
const INDEX_TYPES: &[(&str, &[&str], &[&str])] = &[
    ("HNSW", &["M", "efConstruction"], &[]),
    (
        "HNSW_SQ",
        &["M", "efConstruction", "sq_type"],
        &["refine", "refine_type"],
    ),
    (
        "HNSW_PQ",
        &["M", "efConstruction", "m", "nbits"],
        &["refine", "refine_type"],
    ),
    (
        "HNSW_PRQ",
        &["M", "efConstruction", "m", "nbits", "nrq"],
        &["refine", "refine_type"],
    ),
    ("IVF_FLAT", &["nlist"], &[]),
    ("IVF_SQ8", &["nlist"], &[]),
    ("IVF_PQ", &["nlist", "m"], &["nbits"]),
    ("IVF_RABITQ", &["nlist"], &["refine", "refine_type"]),
    ("SCANN", &["nlist"], &["with_raw_data"]),
    (
        "DISKANN",
        &["max_degree", "search_list_size"],
        &["pq_code_budget_gb_ratio", "search_cache_budget_gb_ratio"],
    ),
    ("BIN_IVF_FLAT", &["nlist"], &[]),
    ("GPU_IVF_FLAT", &["nlist"], &["cache_dataset_on_device"]),
    (
        "GPU_IVF_PQ",
        &["nlist", "m"],
        &["nbits", "cache_dataset_on_device"],
    ),
    (
        "GPU_CAGRA",
        &["intermediate_graph_degree", "graph_degree"],
        &["build_algo", "cache_dataset_on_device", "adapt_for_cpu"],
    ),
    (
        "SPARSE_INVERTED_INDEX",
        &["drop_ratio_build"],
        &["inverted_index_algo", "bm25_k1", "bm25_b"],
    ),
    ("SPARSE_WAND", &["drop_ratio_build"], &["bm25_k1", "bm25_b"]),
];

/// The metrics a vector index can have.
const METRIC_TYPES: &[&str] = &[
    "L2",
    "IP",
    "COSINE",
    "HAMMING",
    "JACCARD",
    "MHJACCARD",
    "BM25",
    "SUBSTRUCTURE",
    "SUPERSTRUCTURE",
];

/// One validated `milvus.index_params` entry (type and metric upper-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConfiguredIndex {
    index_type: String,
    metric_type: String,
    params: BTreeMap<String, Value>,
}

/// Validated `milvus.index_params`: the build parameters of indexes whose describe does
/// not report them, by collection, then by index name or field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexParams(BTreeMap<String, BTreeMap<String, ConfiguredIndex>>);

/// Why `value` is not a valid `kind`.
fn param_value_error(kind: ParamKind, value: &Value) -> Option<&'static str> {
    let ok = match (kind, value) {
        (ParamKind::PositiveInt, Value::Number(n)) => n.as_u64().is_some_and(|n| n > 0),
        (ParamKind::PositiveInt, Value::String(s)) => s.parse::<u64>().is_ok_and(|n| n > 0),
        (ParamKind::NonNegative, Value::Number(n)) => n.as_f64().is_some_and(|f| f >= 0.0),
        (ParamKind::NonNegative, Value::String(s)) => {
            s.parse::<f64>().is_ok_and(|f| f.is_finite() && f >= 0.0)
        }
        (ParamKind::Text, Value::String(s)) => !s.trim().is_empty(),
        (ParamKind::Bool, Value::Bool(_)) => true,
        (ParamKind::Bool, Value::String(s)) => matches!(s.as_str(), "true" | "false"),
        _ => false,
    };
    (!ok).then_some(match kind {
        ParamKind::PositiveInt => "must be an integer above zero",
        ParamKind::NonNegative => "must be a number, at least zero",
        ParamKind::Text => "must be non-empty text",
        ParamKind::Bool => "must be true or false",
    })
}

/// Why `name` cannot be a Milvus collection, index or field name (it would never match).
fn name_error(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("an empty name never matches")
    } else if name
        .chars()
        .any(|c| c.is_whitespace() || c == '.' || c == '/')
    {
        Some("not a Milvus name: no whitespace, '.' or '/'")
    } else {
        None
    }
}

/// Checks `milvus.index_params`: Milvus names as keys, a known index type that takes
/// build parameters, a known metric, every required parameter of the type and no
/// parameter it does not take, each value of the right kind. Every problem is pushed
/// with its path (`milvus.index_params.docs.vec.params.M`).
pub fn check_index_params(raw: RawIndexParamsMap, errs: &mut Vec<ConfigError>) -> IndexParams {
    let mut out = BTreeMap::new();
    for (collection, indexes) in raw {
        let at_coll = format!("milvus.index_params.{collection}");
        if let Some(e) = name_error(&collection) {
            errs.push(ConfigError::new(&at_coll, e));
        }
        if indexes.is_empty() {
            errs.push(ConfigError::new(&at_coll, "names no index"));
        }
        let mut checked = BTreeMap::new();
        for (key, entry) in indexes {
            let at = format!("{at_coll}.{key}");
            if let Some(e) = name_error(&key) {
                errs.push(ConfigError::new(&at, e));
            }
            let index_type = entry.index_type.trim().to_ascii_uppercase();
            let metric_type = entry.metric_type.trim().to_ascii_uppercase();
            if !METRIC_TYPES.contains(&metric_type.as_str()) {
                errs.push(ConfigError::new(
                    format!("{at}.metric_type"),
                    format!(
                        "unknown metric {:?}; one of {}",
                        entry.metric_type,
                        METRIC_TYPES.join(", ")
                    ),
                ));
            }
            match INDEX_TYPES.iter().find(|(t, _, _)| *t == index_type) {
                None => {
                    let why = if PARAMETERLESS_VECTOR.contains(&index_type.as_str()) {
                        format!(
                            "{} takes no build parameters: it is rebuilt without an entry here",
                            entry.index_type
                        )
                    } else {
                        format!(
                            "unknown index type {:?}; one of {}",
                            entry.index_type,
                            INDEX_TYPES
                                .iter()
                                .map(|(t, _, _)| *t)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    errs.push(ConfigError::new(format!("{at}.index_type"), why));
                }
                Some((_, required, optional)) => {
                    for r in *required {
                        if !entry.params.contains_key(*r) {
                            errs.push(ConfigError::new(
                                format!("{at}.params.{r}"),
                                format!(
                                    "{index_type} needs {r}: without it Milvus would build with its default"
                                ),
                            ));
                        }
                    }
                    for (k, v) in &entry.params {
                        let path = format!("{at}.params.{k}");
                        if !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) {
                            let mut takes: Vec<&str> =
                                required.iter().chain(optional.iter()).copied().collect();
                            takes.sort_unstable();
                            errs.push(ConfigError::new(
                                path,
                                format!(
                                    "{index_type} takes no build parameter {k:?} (it takes {})",
                                    takes.join(", ")
                                ),
                            ));
                            continue;
                        }
                        let kind = PARAM_KINDS
                            .iter()
                            .find(|(name, _)| name == k)
                            .map_or(ParamKind::Text, |(_, kind)| *kind);
                        if let Some(e) = param_value_error(kind, v) {
                            errs.push(ConfigError::new(path, format!("{e}, not {v}")));
                        }
                    }
                }
            }
            checked.insert(
                key,
                ConfiguredIndex {
                    index_type,
                    metric_type,
                    params: entry.params,
                },
            );
        }
        out.insert(collection, checked);
    }
    IndexParams(out)
}

/// Vector index types whose create call takes no build parameters (the vector half of
/// `sre_remediation`'s list): an entry for one would have nothing to add.
const PARAMETERLESS_VECTOR: &[&str] = &["AUTOINDEX", "FLAT", "BIN_FLAT", "GPU_BRUTE_FORCE"];

impl IndexParams {
    /// Whether no entry is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Gives `spec` of `collection` its configured build parameters when describe
    /// reported none: the entry under the index's name, else under its field's name.
    /// `Ok(Some(key))` names the entry used, `Ok(None)` means nothing applied.
    ///
    /// # Errors
    /// The entry was written for another index type or metric than Milvus reports: the
    /// index is refused rather than recreated with another metric (which changes every
    /// search's results) or with parameters meant for another type.
    fn complete(&self, collection: &str, spec: &mut IndexSpec) -> Result<Option<String>, String> {
        if !spec.params.is_empty() {
            return Ok(None);
        }
        let Some(indexes) = self.0.get(collection) else {
            return Ok(None);
        };
        let Some((key, c)) = [&spec.index_name, &spec.field_name]
            .into_iter()
            .find_map(|k| indexes.get_key_value(k.as_str()))
        else {
            return Ok(None);
        };
        let at = format!("milvus.index_params.{collection}.{key}");
        if !spec.index_type.eq_ignore_ascii_case(&c.index_type) {
            return Err(format!(
                "index {} on {} is {}, but {at} is for {}: refusing to build it with \
                 parameters meant for another index type",
                spec.index_name, spec.field_name, spec.index_type, c.index_type
            ));
        }
        if !spec.metric_type.eq_ignore_ascii_case(&c.metric_type) {
            return Err(format!(
                "index {} on {} has metric {}, but {at} says {}: refusing rather than \
                 changing the index's metric; correct the config",
                spec.index_name, spec.field_name, spec.metric_type, c.metric_type
            ));
        }
        spec.params.clone_from(&c.params);
        Ok(Some(at))
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
        let base = crate::notify::api_base(url).map_err(MilvusError::Url)?;
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
            index_params: IndexParams::default(),
        })
    }

    /// The same client, filling in build parameters describe does not report from
    /// `index_params` (`milvus.index_params`).
    #[must_use]
    pub fn with_index_params(mut self, index_params: IndexParams) -> Self {
        self.index_params = index_params;
        self
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
        let mut vector: Vec<IndexSpec> = self
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
        let refuse = |m: String| PortError::Rejected {
            backend: BACKEND,
            message: format!("{what}: {m}: nothing was changed"),
        };
        let mut configured = Vec::new();
        for spec in &mut vector {
            if let Some(at) = self
                .index_params
                .complete(&collection.name, spec)
                .map_err(refuse)?
            {
                configured.push(format!("{} from {at}", spec.index_name));
            }
            spec.recreatable().map_err(|m| {
                if spec.index_type.is_empty() {
                    refuse(m)
                } else {
                    refuse(format!(
                        "{m}; give them in milvus.index_params.{}.{}",
                        collection.name, spec.index_name
                    ))
                }
            })?;
        }
        let spec = index_params_json(&vector);
        let names: Vec<&str> = vector.iter().map(|i| i.index_name.as_str()).collect();
        let from_config = if configured.is_empty() {
            String::new()
        } else {
            format!(" (build parameters of {})", configured.join(", "))
        };
        let which = format!(
            "{} index(es) ({}) of {what} (database {}){from_config}",
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

    /// `milvus.index_params` from YAML: the validated map and the paths of the errors.
    fn index_params(yaml: &str) -> (IndexParams, Vec<String>) {
        let raw: RawIndexParamsMap = serde_norway::from_str(yaml).expect("parses");
        let mut errs = Vec::new();
        let p = check_index_params(raw, &mut errs);
        (p, errs.iter().map(|e| e.path.clone()).collect())
    }

    #[test]
    fn index_params_accept_known_types_and_name_each_bad_value_by_its_path() {
        let (good, errs) = index_params(
            "docs:
  vec: {index_type: hnsw, metric_type: cosine, params: {M: 16, efConstruction: '200'}}
  sparse: {index_type: SPARSE_INVERTED_INDEX, metric_type: IP, params: {drop_ratio_build: 0.2}}
archive:
  embedding: {index_type: IVF_PQ, metric_type: L2, params: {nlist: 1024, m: 8, nbits: 8}}
",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert!(!good.is_empty());
        assert_eq!(
            good.0["docs"]["vec"].index_type, "HNSW",
            "types are compared upper-cased"
        );

        let (_, errs) = index_params(
            "docs:
  vec: {index_type: HNSW, metric_type: EUCLID, params: {M: 0, efConstruction: 200, nlist: 8}}
  ivf: {index_type: IVF_FLAT, metric_type: L2}
  auto: {index_type: AUTOINDEX, metric_type: L2}
  odd: {index_type: HNSW_FAST, metric_type: IP, params: {M: 8}}
  sq: {index_type: HNSW_SQ, metric_type: IP, params: {M: 8, efConstruction: 64, sq_type: '', refine: maybe}}
  sparse: {index_type: SPARSE_WAND, metric_type: IP, params: {drop_ratio_build: -0.5}}
'bad.name': {}
",
        );
        assert_eq!(
            errs,
            [
                "milvus.index_params.bad.name",
                "milvus.index_params.bad.name",
                "milvus.index_params.docs.auto.index_type",
                "milvus.index_params.docs.ivf.params.nlist",
                "milvus.index_params.docs.odd.index_type",
                "milvus.index_params.docs.sparse.params.drop_ratio_build",
                "milvus.index_params.docs.sq.params.refine",
                "milvus.index_params.docs.sq.params.sq_type",
                "milvus.index_params.docs.vec.metric_type",
                "milvus.index_params.docs.vec.params.M",
                "milvus.index_params.docs.vec.params.nlist",
            ]
        );
        let msgs = |yaml: &str| {
            let raw: RawIndexParamsMap = serde_norway::from_str(yaml).expect("parses");
            let mut errs = Vec::new();
            check_index_params(raw, &mut errs);
            errs.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        let m = msgs("c: {i: {index_type: AUTOINDEX, metric_type: L2}}\n");
        assert!(m[0].contains("takes no build parameters"), "{m:?}");
        let m = msgs("c: {i: {index_type: HNSW, metric_type: L2, params: {M: 16}}}\n");
        assert!(
            m[0].contains("needs efConstruction") && m[0].contains("default"),
            "{m:?}"
        );
        let m = msgs("c: {i: {index_type: IVF_FLAT, metric_type: L2, params: {nlist: 4, M: 8}}}\n");
        assert!(
            m[0].contains("takes no build parameter \"M\" (it takes nlist)"),
            "{m:?}"
        );
        // An unknown key in an entry is a parse error, not silently ignored.
        assert!(
            serde_norway::from_str::<RawIndexParamsMap>(
                "c: {i: {index_type: HNSW, metric_type: L2, metric: IP}}\n"
            )
            .is_err()
        );
        // Every parameter an index type takes has a value check.
        for (t, required, optional) in INDEX_TYPES {
            for k in required.iter().chain(optional.iter()) {
                assert!(
                    PARAM_KINDS.iter().any(|(name, _)| name == k),
                    "{t}: {k} has no kind"
                );
            }
        }
    }

    #[test]
    fn configured_params_fill_a_bare_describe_only_for_the_same_type_and_metric() {
        let (p, errs) = index_params(
            "docs:
  vec: {index_type: HNSW, metric_type: L2, params: {M: 16, efConstruction: 200}}
  body: {index_type: IVF_FLAT, metric_type: IP, params: {nlist: 128}}
",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let described = |name: &str, field: &str, t: &str, metric: &str| IndexSpec {
            field_name: field.into(),
            index_name: name.into(),
            index_type: t.into(),
            metric_type: metric.into(),
            params: BTreeMap::new(),
        };
        // By index name.
        let mut s = described("vec", "embedding", "HNSW", "L2");
        assert_eq!(
            p.complete("docs", &mut s),
            Ok(Some("milvus.index_params.docs.vec".into()))
        );
        assert_eq!(
            index_params_json(&[s]),
            r#"[{"fieldName":"embedding","indexName":"vec","indexType":"HNSW","metricType":"L2","params":{"M":16,"efConstruction":200}}]"#
        );
        // By field name, when no entry has the index's name.
        let mut s = described("body_idx", "body", "IVF_FLAT", "IP");
        assert_eq!(
            p.complete("docs", &mut s),
            Ok(Some("milvus.index_params.docs.body".into()))
        );
        assert_eq!(s.params.get("nlist"), Some(&json!(128)));
        // What describe reports wins; other collections are not looked at.
        let mut s = described("vec", "embedding", "HNSW", "L2");
        s.params.insert("M".into(), json!(32));
        assert_eq!(p.complete("docs", &mut s), Ok(None));
        assert_eq!(s.params.len(), 1);
        let mut s = described("vec", "embedding", "HNSW", "L2");
        assert_eq!(p.complete("other", &mut s), Ok(None));
        assert!(s.params.is_empty());
        // Another metric or type: refused, the spec left without parameters.
        let mut s = described("vec", "embedding", "HNSW", "COSINE");
        let e = p.complete("docs", &mut s).expect_err("metric differs");
        assert!(
            e.contains("metric COSINE") && e.contains("says L2") && e.contains("refusing"),
            "{e}"
        );
        assert!(s.params.is_empty());
        let mut s = described("vec", "embedding", "IVF_FLAT", "L2");
        let e = p.complete("docs", &mut s).expect_err("type differs");
        assert!(
            e.contains("is IVF_FLAT") && e.contains("is for HNSW"),
            "{e}"
        );
    }
}
