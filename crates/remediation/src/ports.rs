//! The ports remediation reads the world through, with IO-free result models.
//!
//! [`MetricsQuery`] is how verification asks "did the action help?": one instant `PromQL`
//! query. The port lives here rather than in `sre-core` because only remediation judges
//! actions by metrics; the Prometheus HTTP adapter (`sre-adapter-prometheus`) implements it.

use async_trait::async_trait;
use serde::Serialize;
use sre_core::PortError;
use std::collections::BTreeMap;

/// One series of an instant vector: its labels and its value at the query time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The series' labels (including `__name__` when the expression keeps it).
    pub labels: BTreeMap<String, String>,
    /// The value; `NaN` and infinities are kept as Prometheus sent them.
    pub value: f64,
}

/// One series of a range vector (only when the query asked for a range, `x[5m]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// `(unix seconds, value)` points, oldest first.
    pub points: Vec<(f64, f64)>,
}

/// What an instant query returned, by Prometheus' `resultType`.
///
/// Every type is modelled so that a wrongly written verify query is reported as "returns
/// a range vector" rather than as a parse failure of the backend's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "result", rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueryValue {
    /// An instant vector: zero or more series (empty means "the expression matches nothing").
    Vector(Vec<Sample>),
    /// A single number without labels (`scalar(...)`, `1 + 1`).
    Scalar(f64),
    /// A range vector.
    Matrix(Vec<RangeSeries>),
    /// A string literal.
    String(String),
}

impl QueryValue {
    /// The `resultType` name, for messages and evidence.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Vector(_) => "vector",
            Self::Scalar(_) => "scalar",
            Self::Matrix(_) => "matrix",
            Self::String(_) => "string",
        }
    }
}

/// Instant `PromQL` queries: the one capability verification needs from a metrics backend.
///
/// Errors follow [`PortError`]'s contract so that the verify loop can retry an outage
/// (`Unavailable`) and stop at once on a query the server will never accept (`Invalid`).
#[async_trait]
pub trait MetricsQuery: Send + Sync {
    /// Evaluates `promql` at the server's current time.
    async fn instant(&self, promql: &str) -> Result<QueryValue, PortError>;
}
