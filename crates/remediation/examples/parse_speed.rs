//! Temporary micro measurement (removed after use).
#![allow(missing_docs, dead_code, clippy::all, clippy::pedantic)]
    mod derived {
        use sre_remediation::payload::{AlertStatus, Labels};
        use chrono::{DateTime, Utc};
        use serde::Deserialize;
        use serde_json::Value;
        use std::collections::BTreeMap;

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct WebhookPayload {
            pub version: String,
            pub group_key: String,
            pub status: AlertStatus,
            pub receiver: String,
            pub group_labels: Labels,
            pub common_labels: Labels,
            pub common_annotations: Labels,
            #[serde(rename = "externalURL")]
            pub external_url: String,
            pub alerts: Vec<Alert>,
            #[serde(default)]
            pub truncated_alerts: u64,
            #[serde(flatten)]
            pub extra: BTreeMap<String, Value>,
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Alert {
            pub status: AlertStatus,
            pub labels: Labels,
            #[serde(default)]
            pub annotations: Labels,
            pub starts_at: DateTime<Utc>,
            pub ends_at: DateTime<Utc>,
            #[serde(rename = "generatorURL", default)]
            pub generator_url: String,
            pub fingerprint: String,
            #[serde(flatten)]
            pub extra: BTreeMap<String, Value>,
        }

        impl From<WebhookPayload> for sre_remediation::payload::WebhookPayload {
            fn from(p: WebhookPayload) -> Self {
                Self {
                    version: p.version,
                    group_key: p.group_key,
                    status: p.status,
                    receiver: p.receiver,
                    group_labels: p.group_labels,
                    common_labels: p.common_labels,
                    common_annotations: p.common_annotations,
                    external_url: p.external_url,
                    alerts: p
                        .alerts
                        .into_iter()
                        .map(|a| sre_remediation::payload::Alert {
                            status: a.status,
                            labels: a.labels,
                            annotations: a.annotations,
                            starts_at: a.starts_at,
                            ends_at: a.ends_at,
                            generator_url: a.generator_url,
                            fingerprint: a.fingerprint,
                            extra: a.extra,
                        })
                        .collect(),
                    truncated_alerts: p.truncated_alerts,
                    extra: p.extra,
                }
            }
        }
    }


fn main() {
    let body = std::fs::read("../shared/fixtures/alertmanager/firing-high-memory.json").unwrap();
    let body2 = std::fs::read("../shared/fixtures/alertmanager/firing-vllm-oom-two-pods.json").unwrap();
    for (name, b) in [("1 alert", &body), ("2 alerts", &body2)] {
        for round in 0..3 {
            let n = 200_000;
            let t = std::time::Instant::now();
            for _ in 0..n {
                let p: derived::WebhookPayload = serde_json::from_slice(std::hint::black_box(b)).unwrap();
                std::hint::black_box(p);
            }
            let old = t.elapsed().as_nanos() as f64 / n as f64;
            let t = std::time::Instant::now();
            for _ in 0..n {
                let p = sre_remediation::payload::parse(std::hint::black_box(b)).unwrap();
                std::hint::black_box(p);
            }
            let new = t.elapsed().as_nanos() as f64 / n as f64;
            let t = std::time::Instant::now();
            for _ in 0..n {
                let p: serde_json::Value = serde_json::from_slice(std::hint::black_box(b)).unwrap();
                std::hint::black_box(p);
            }
            let val = t.elapsed().as_nanos() as f64 / n as f64;
            println!("{name} round {round}: derived+flatten {old:.0} ns, hand-written parse {new:.0} ns, Value {val:.0} ns");
        }
    }
}
