//! The Prometheus HTTP API's JSON envelope to [`QueryValue`] or [`PortError`], as a pure
//! function of the HTTP status and body so that every error shape is tested without a
//! server.
//!
//! The envelope (`prometheus/prometheus: docs/querying/api.md`, "Format overview"):
//! `{"status": "success"|"error", "data": {"resultType": ..., "result": ...},
//! "errorType": ..., "error": ..., "warnings": [...]}`.

use serde::Deserialize;
use sre_core::PortError;
use sre_remediation::ports::{QueryValue, RangeSeries, Sample};
use std::collections::BTreeMap;

/// Backend name in every [`PortError`] this adapter returns.
pub(crate) const BACKEND: &str = "prometheus";

#[derive(Debug, Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<RawSample>),
    Scalar((f64, String)),
    Matrix(Vec<RawSeries>),
    String((f64, String)),
}

#[derive(Debug, Deserialize)]
struct RawSample {
    metric: BTreeMap<String, String>,
    /// Absent for native-histogram samples, which carry `histogram` instead.
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    histogram: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RawSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

fn malformed(what: &str, message: impl Into<String>) -> PortError {
    PortError::Malformed {
        backend: BACKEND,
        what: what.to_owned(),
        message: message.into(),
    }
}

/// Prometheus sends sample values as strings (`"1"`, `"NaN"`, `"+Inf"`).
fn number(what: &str, s: &str) -> Result<f64, PortError> {
    s.parse::<f64>()
        .map_err(|e| malformed(what, format!("sample value {s:?}: {e}")))
}

/// Maps an answer of `/api/v1/query` for `promql` to the port's result.
///
/// Errors by what the caller should do: `bad_data` (400) is `Invalid` (the query will never
/// work), `timeout`/`canceled`/`unavailable`/`internal` and any 5xx are `Unavailable`
/// (ask again later), `execution` (422) and other 4xx are `Rejected`, and a 2xx body that
/// is not the documented envelope is `Malformed`, never an empty result.
pub(crate) fn response(
    http_status: u16,
    body: &[u8],
    promql: &str,
) -> Result<QueryValue, PortError> {
    let server_error = (500..600).contains(&http_status);
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) if server_error => {
            return Err(PortError::Unavailable {
                backend: BACKEND,
                message: format!("HTTP {http_status} without an API error body ({e})"),
            });
        }
        Err(e) if (200..300).contains(&http_status) => {
            return Err(malformed(promql, e.to_string()));
        }
        Err(_) => {
            return Err(PortError::Rejected {
                backend: BACKEND,
                message: format!(
                    "HTTP {http_status} without an API error body: is the URL a Prometheus server?"
                ),
            });
        }
    };
    if envelope.status == "error" || !(200..300).contains(&http_status) {
        return Err(api_error(http_status, &envelope));
    }
    if envelope.status != "success" {
        return Err(malformed(
            promql,
            format!("unknown status {:?}", envelope.status),
        ));
    }
    for w in &envelope.warnings {
        tracing::warn!(warning = %w, "prometheus query warning");
    }
    let data = envelope
        .data
        .ok_or_else(|| malformed(promql, "status success without data"))?;
    Ok(match data {
        Data::Vector(samples) => QueryValue::Vector(
            samples
                .into_iter()
                .map(|s| {
                    let value = match (&s.value, &s.histogram) {
                        (Some((_, v)), _) => number(promql, v)?,
                        // A native histogram sample: the series exists, it has no float value.
                        (None, Some(_)) => f64::NAN,
                        (None, None) => return Err(malformed(promql, "sample without value")),
                    };
                    Ok(Sample {
                        labels: s.metric,
                        value,
                    })
                })
                .collect::<Result<_, PortError>>()?,
        ),
        Data::Scalar((_, v)) => QueryValue::Scalar(number(promql, &v)?),
        Data::Matrix(series) => QueryValue::Matrix(
            series
                .into_iter()
                .map(|s| {
                    Ok(RangeSeries {
                        labels: s.metric,
                        points: s
                            .values
                            .iter()
                            .map(|(t, v)| Ok((*t, number(promql, v)?)))
                            .collect::<Result<_, PortError>>()?,
                    })
                })
                .collect::<Result<_, PortError>>()?,
        ),
        Data::String((_, s)) => QueryValue::String(s),
    })
}

fn api_error(http_status: u16, e: &Envelope) -> PortError {
    let message = format!(
        "{}: {}",
        e.error_type.as_deref().unwrap_or("error"),
        e.error.as_deref().unwrap_or("no message")
    );
    match e.error_type.as_deref() {
        Some("bad_data") => PortError::Invalid(format!("prometheus rejected the query: {message}")),
        Some("timeout" | "canceled" | "unavailable" | "internal") => PortError::Unavailable {
            backend: BACKEND,
            message,
        },
        _ if (500..600).contains(&http_status) => PortError::Unavailable {
            backend: BACKEND,
            message,
        },
        _ => PortError::Rejected {
            backend: BACKEND,
            message: format!("HTTP {http_status} {message}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> QueryValue {
        response(200, body.as_bytes(), "q").unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn err(status: u16, body: &str) -> PortError {
        match response(status, body.as_bytes(), "q") {
            Ok(v) => panic!("{body}: expected an error, got {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn every_result_type_parses() {
        let v = ok(
            r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"p"},"value":[1700000000.5,"1"]},
            {"metric":{},"value":[1700000000.5,"NaN"]},
            {"metric":{"le":"x"},"value":[1700000000.5,"+Inf"]},
            {"metric":{"h":"1"},"histogram":[1700000000.5,{"count":"1","sum":"2"}]}]}}"#,
        );
        let QueryValue::Vector(s) = v else {
            panic!("{v:?}")
        };
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].labels.get("job").map(String::as_str), Some("p"));
        assert!((s[0].value - 1.0).abs() < f64::EPSILON);
        assert!(s[1].value.is_nan());
        assert!(s[2].value.is_infinite() && s[2].value.is_sign_positive());
        assert!(
            s[3].value.is_nan(),
            "histogram samples exist without a float"
        );
        assert_eq!(
            ok(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            QueryValue::Vector(Vec::new())
        );
        assert_eq!(
            ok(r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"-Inf"]}}"#),
            QueryValue::Scalar(f64::NEG_INFINITY)
        );
        assert_eq!(
            ok(r#"{"status":"success","data":{"resultType":"string","result":[1.5,"hi"]}}"#),
            QueryValue::String("hi".into())
        );
        assert_eq!(
            ok(
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"1"],[2,"2"]]}]},"warnings":["w"]}"#
            ),
            QueryValue::Matrix(vec![RangeSeries {
                labels: BTreeMap::from([("a".into(), "b".into())]),
                points: vec![(1.0, 1.0), (2.0, 2.0)],
            }])
        );
    }

    #[test]
    fn errors_map_to_what_the_caller_should_do() {
        let bad = err(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}"#,
        );
        assert!(
            matches!(&bad, PortError::Invalid(m) if m.contains("parse error")),
            "{bad:?}"
        );
        let unavailable = |e: &PortError| matches!(e, PortError::Unavailable { .. });
        assert!(unavailable(&err(
            503,
            r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#
        )));
        assert!(unavailable(&err(
            500,
            r#"{"status":"error","errorType":"internal","error":"x"}"#
        )));
        assert!(unavailable(&err(502, "<html>bad gateway</html>")));
        let exec = err(
            422,
            r#"{"status":"error","errorType":"execution","error":"many-to-many"}"#,
        );
        assert!(
            matches!(&exec, PortError::Rejected { message, .. } if message.contains("many-to-many")),
            "{exec:?}"
        );
        assert!(matches!(
            err(404, "404 page not found"),
            PortError::Rejected { .. }
        ));
        assert!(matches!(
            err(401, "unauthorized"),
            PortError::Rejected { .. }
        ));
        for garbage in [
            "not json",
            r#"{"status":"success"}"#,
            r#"{"status":"maybe","data":{"resultType":"vector","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"histogramz","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"one"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}"#,
        ] {
            let e = err(200, garbage);
            assert!(
                matches!(&e, PortError::Malformed { backend: "prometheus", what, .. } if what == "q"),
                "{garbage}: {e:?}"
            );
        }
    }
}
