//! The spend source behind the budget gate: where [`crate::plan::Observations::spend`]
//! comes from.
//!
//! Either a fixed amount (`spend_cents`, for tests and development) or a `PromQL` query
//! that returns the spend of the budget period (an `OpenCost`-style
//! `sum(node_total_hourly_cost) * 730`), read through the [`MetricsQuery`] port right
//! before planning. [`parse_spend`] is the pure conversion of the answer into [`Cents`];
//! every way it can go wrong (no series, several, `NaN`, negative, too large) is a typed
//! [`SpendError`]. A failed read leaves the spend unknown, which the planner treats as
//! "block scale-ups" (fail closed); [`SpendObservation`] keeps the reason for the run
//! record.

use crate::ports::{MetricsQuery, QueryValue};
use serde::Serialize;
use sre_core::guard::Cents;
use thiserror::Error;

/// What unit the spend query answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendUnit {
    /// Cents already.
    Cents,
    /// Currency units (dollars, euros): multiplied by 100.
    Currency,
}

impl SpendUnit {
    fn factor(self) -> f64 {
        match self {
            Self::Cents => 1.0,
            Self::Currency => 100.0,
        }
    }
}

/// Where the spend so far in the budget period comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum SpendSource {
    /// Nothing configured: spend is unknown and scale-ups are blocked when a budget is.
    None,
    /// A fixed amount (tests, development).
    Static {
        /// The spend.
        cents: Cents,
    },
    /// A `PromQL` instant query returning one number.
    Query {
        /// The query.
        query: String,
        /// What unit it answers in.
        unit: SpendUnit,
    },
}

/// Why an answer is not a spend.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SpendError {
    /// The query matched nothing (the cost exporter is down or the selector is wrong).
    #[error("the spend query returned no series")]
    Empty,
    /// More than one series: the query must aggregate (`sum(...)`).
    #[error("the spend query returned {0} series; aggregate it to one (sum(...))")]
    Ambiguous(usize),
    /// A range vector or a string.
    #[error("the spend query returns a {0}; it must return an instant vector or a scalar")]
    WrongType(&'static str),
    /// `NaN` or an infinity.
    #[error("the spend is not a finite number ({0})")]
    NotFinite(f64),
    /// Below zero.
    #[error("the spend is negative ({0})")]
    Negative(f64),
    /// More cents than fit in 64 bits.
    #[error("the spend ({0} cents) does not fit in 64 bits")]
    Overflow(f64),
    /// The backend could not be asked or refused the query.
    #[error("metrics backend: {0}")]
    Query(String),
    /// The source needs a metrics backend and none is configured.
    #[error("the spend query needs a metrics backend (verify.prometheus_url)")]
    NoBackend,
    /// No spend source is configured.
    #[error("no spend source configured (budget.spend_query or budget.spend_cents)")]
    NotConfigured,
}

/// Converts a query answer in `unit` into cents, rounding up (over-estimating spend
/// errs on the blocking side).
///
/// # Errors
/// [`SpendError`] for every answer that is not exactly one finite, non-negative number
/// that fits in `u64` cents.
pub fn parse_spend(value: &QueryValue, unit: SpendUnit) -> Result<Cents, SpendError> {
    let raw = match value {
        QueryValue::Vector(s) => match s.as_slice() {
            [] => return Err(SpendError::Empty),
            [one] => one.value,
            many => return Err(SpendError::Ambiguous(many.len())),
        },
        QueryValue::Scalar(v) => *v,
        other => return Err(SpendError::WrongType(other.kind())),
    };
    if !raw.is_finite() {
        return Err(SpendError::NotFinite(raw));
    }
    if raw < 0.0 {
        return Err(SpendError::Negative(raw));
    }
    let cents = (raw * unit.factor()).ceil();
    // 2^64 is exactly representable; everything below it converts without saturating.
    if !cents.is_finite() || cents >= 18_446_744_073_709_551_616.0 {
        return Err(SpendError::Overflow(cents));
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "finite, non-negative, integral and below 2^64: checked above"
    )]
    let c = cents as u64;
    Ok(Cents(c))
}

/// The spend as read before one plan, with the reason when it is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendObservation {
    /// The spend, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cents: Option<u64>,
    /// `static`, `query` or `none`.
    pub source: &'static str,
    /// Why the spend is unknown (scale-ups are then blocked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_because: Option<String>,
}

impl SpendObservation {
    /// The spend for [`crate::plan::Observations::spend`].
    #[must_use]
    pub fn spend(&self) -> Option<Cents> {
        self.cents.map(Cents)
    }
}

/// Reads the spend from `source`, asking `query` for a query source.
pub async fn observe(source: &SpendSource, query: Option<&dyn MetricsQuery>) -> SpendObservation {
    let (name, result) = match source {
        SpendSource::None => ("none", Err(SpendError::NotConfigured)),
        SpendSource::Static { cents } => ("static", Ok(*cents)),
        SpendSource::Query { query: q, unit } => (
            "query",
            match query {
                None => Err(SpendError::NoBackend),
                Some(backend) => match backend.instant(q).await {
                    Ok(v) => parse_spend(&v, *unit),
                    Err(e) => Err(SpendError::Query(e.to_string())),
                },
            },
        ),
    };
    match result {
        Ok(c) => SpendObservation {
            cents: Some(c.0),
            source: name,
            unknown_because: None,
        },
        Err(e) => SpendObservation {
            cents: None,
            source: name,
            unknown_because: Some(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Sample;
    use async_trait::async_trait;
    use sre_core::PortError;
    use std::collections::BTreeMap;

    fn one(v: f64) -> QueryValue {
        QueryValue::Vector(vec![Sample {
            labels: BTreeMap::new(),
            value: v,
        }])
    }

    #[test]
    fn parses_one_finite_non_negative_number() {
        assert_eq!(parse_spend(&one(750.0), SpendUnit::Cents), Ok(Cents(750)));
        assert_eq!(
            parse_spend(&one(7.501), SpendUnit::Currency),
            Ok(Cents(751))
        );
        assert_eq!(
            parse_spend(&QueryValue::Scalar(0.0), SpendUnit::Cents),
            Ok(Cents(0))
        );
        assert_eq!(
            parse_spend(&QueryValue::Vector(vec![]), SpendUnit::Cents),
            Err(SpendError::Empty)
        );
        let two = QueryValue::Vector(vec![
            Sample {
                labels: BTreeMap::new(),
                value: 1.0,
            };
            2
        ]);
        assert_eq!(
            parse_spend(&two, SpendUnit::Cents),
            Err(SpendError::Ambiguous(2))
        );
        assert!(matches!(
            parse_spend(&one(f64::NAN), SpendUnit::Cents),
            Err(SpendError::NotFinite(_))
        ));
        assert!(matches!(
            parse_spend(&one(f64::INFINITY), SpendUnit::Cents),
            Err(SpendError::NotFinite(_))
        ));
        assert_eq!(
            parse_spend(&one(-1.0), SpendUnit::Cents),
            Err(SpendError::Negative(-1.0))
        );
        assert!(matches!(
            parse_spend(&one(1.0e19), SpendUnit::Currency),
            Err(SpendError::Overflow(_))
        ));
        assert!(matches!(
            parse_spend(&one(18_446_744_073_709_551_616.0), SpendUnit::Cents),
            Err(SpendError::Overflow(_))
        ));
        assert_eq!(
            parse_spend(&QueryValue::String("x".into()), SpendUnit::Cents),
            Err(SpendError::WrongType("string"))
        );
    }

    struct Answer(Result<QueryValue, PortError>);

    #[async_trait]
    impl MetricsQuery for Answer {
        async fn instant(&self, _: &str) -> Result<QueryValue, PortError> {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn observe_reports_why_the_spend_is_unknown() {
        let q = SpendSource::Query {
            query: "sum(cost)".into(),
            unit: SpendUnit::Cents,
        };
        let ok = observe(&q, Some(&Answer(Ok(one(42.0))))).await;
        assert_eq!(ok.spend(), Some(Cents(42)));
        let down = Answer(Err(PortError::Unavailable {
            backend: "prometheus",
            message: "refused".into(),
        }));
        let o = observe(&q, Some(&down)).await;
        assert_eq!(o.spend(), None);
        assert!(
            o.unknown_because
                .as_deref()
                .is_some_and(|r| r.contains("refused")),
            "{o:?}"
        );
        let o = observe(&q, None).await;
        assert!(
            o.unknown_because
                .is_some_and(|r| r.contains("prometheus_url"))
        );
        let o = observe(&SpendSource::None, None).await;
        assert_eq!((o.cents, o.source), (None, "none"));
        let o = observe(&SpendSource::Static { cents: Cents(5) }, None).await;
        assert_eq!(o.spend(), Some(Cents(5)));
    }
}
