//! The JetStream API as request/reply JSON on `$JS.API.>` subjects: stream and consumer
//! info, stream and consumer create/update, and publish with acknowledgement. An answer
//! carrying `{"error": {...}}` becomes [`NatsError::Api`], so "consumer not found" is a
//! typed result rather than a missing field further on.

use serde_json::{Value, json};

use crate::client::{NatsClient, NatsConfig};
use crate::error::NatsError;
use crate::proto::check_name;

/// What the remediation needs to know about one consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerInfo {
    /// The stream it reads.
    pub stream: String,
    /// Its name.
    pub name: String,
    /// Its configuration as the server holds it, kept whole so that an update sends back
    /// exactly what the server has, changed only where we mean to change it.
    pub config: Value,
    /// `config.num_replicas`; `0` means "as many as the stream".
    pub num_replicas: u32,
    /// Messages in the stream not yet delivered to the consumer: the lag.
    pub num_pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub num_ack_pending: u64,
    /// The consumer's RAFT leader (clustered JetStream), if any.
    pub leader: Option<String>,
}

impl ConsumerInfo {
    fn parse(v: &Value, what: &str) -> Result<Self, NatsError> {
        let malformed = |field: &str| NatsError::Malformed {
            what: what.to_owned(),
            message: format!("field `{field}` missing or of the wrong type"),
        };
        let config = v
            .get("config")
            .cloned()
            .ok_or_else(|| malformed("config"))?;
        Ok(Self {
            stream: str_field(v, "stream_name").ok_or_else(|| malformed("stream_name"))?,
            name: str_field(v, "name").ok_or_else(|| malformed("name"))?,
            num_replicas: replicas(&config).ok_or_else(|| malformed("config.num_replicas"))?,
            config,
            num_pending: v.get("num_pending").and_then(Value::as_u64).unwrap_or(0),
            num_ack_pending: v
                .get("num_ack_pending")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            leader: v
                .get("cluster")
                .and_then(|c| c.get("leader"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// The replicas the consumer runs with: its own setting, or its stream's when `0`.
    #[must_use]
    pub fn effective_replicas(&self, stream_replicas: u32) -> u32 {
        if self.num_replicas == 0 {
            stream_replicas
        } else {
            self.num_replicas
        }
    }
}

/// What the remediation needs to know about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Its name.
    pub name: String,
    /// `config.num_replicas` (at least 1).
    pub num_replicas: u32,
    /// Messages stored.
    pub messages: u64,
}

fn str_field(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// The answer's `{"error": {"code", "err_code", "description"}}`, if it has one.
fn api_error(v: &Value, subject: &str) -> Option<NatsError> {
    let err = v.get("error")?;
    let num = |f: &str| err.get(f).and_then(Value::as_u64).unwrap_or(0);
    Some(NatsError::Api {
        subject: subject.to_owned(),
        code: u16::try_from(num("code")).unwrap_or(0),
        err_code: u32::try_from(num("err_code")).unwrap_or(0),
        description: str_field(err, "description").unwrap_or_default(),
    })
}

/// `num_replicas` of a config, absent meaning 0 (the server omits zero values).
fn replicas(config: &Value) -> Option<u32> {
    match config.get("num_replicas") {
        None | Some(Value::Null) => Some(0),
        Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()),
    }
}

/// A JetStream API session over one connection.
#[derive(Debug)]
pub struct JetStream {
    client: NatsClient,
    prefix: String,
}

impl JetStream {
    /// Connects to the server in `config`.
    pub async fn connect(config: &NatsConfig) -> Result<Self, NatsError> {
        Ok(Self {
            client: NatsClient::connect(config).await?,
            prefix: config.api_prefix.clone(),
        })
    }

    /// The connection underneath (server info, plain requests).
    pub fn client(&mut self) -> &mut NatsClient {
        &mut self.client
    }

    /// Calls API `op` (e.g. `STREAM.INFO.ORDERS`) with `body` (`Value::Null`: empty
    /// payload) and returns the answer, or its error object as [`NatsError::Api`].
    pub async fn api(&mut self, op: &str, body: &Value) -> Result<Value, NatsError> {
        let subject = format!("{}.{op}", self.prefix);
        let payload = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).map_err(|e| NatsError::Malformed {
                what: subject.clone(),
                message: e.to_string(),
            })?
        };
        let answer = self.client.request(&subject, &payload).await?;
        let v: Value = serde_json::from_slice(&answer).map_err(|e| NatsError::Malformed {
            what: subject.clone(),
            message: e.to_string(),
        })?;
        match api_error(&v, &subject) {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }

    /// `STREAM.INFO.<stream>`.
    pub async fn stream_info(&mut self, stream: &str) -> Result<StreamInfo, NatsError> {
        check_name(stream)?;
        let v = self
            .api(&format!("STREAM.INFO.{stream}"), &Value::Null)
            .await?;
        let what = format!("stream {stream}");
        let config = v.get("config").ok_or_else(|| NatsError::Malformed {
            what: what.clone(),
            message: "no config".into(),
        })?;
        Ok(StreamInfo {
            name: str_field(config, "name").unwrap_or_else(|| stream.to_owned()),
            num_replicas: replicas(config)
                .ok_or_else(|| NatsError::Malformed {
                    what,
                    message: "config.num_replicas is no number".into(),
                })?
                .max(1),
            messages: v
                .get("state")
                .and_then(|s| s.get("messages"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
        })
    }

    /// `CONSUMER.INFO.<stream>.<consumer>`.
    pub async fn consumer_info(
        &mut self,
        stream: &str,
        consumer: &str,
    ) -> Result<ConsumerInfo, NatsError> {
        check_name(stream)?;
        check_name(consumer)?;
        let v = self
            .api(&format!("CONSUMER.INFO.{stream}.{consumer}"), &Value::Null)
            .await?;
        ConsumerInfo::parse(&v, &format!("consumer {stream}/{consumer}"))
    }

    /// Creates a stream, or updates it to `config` (`STREAM.CREATE` / `STREAM.UPDATE`
    /// are separate subjects; this is the create).
    pub async fn create_stream(&mut self, config: &Value) -> Result<StreamInfo, NatsError> {
        let name = config
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| NatsError::InvalidName("stream config without a name".into()))?
            .to_owned();
        check_name(&name)?;
        self.api(&format!("STREAM.CREATE.{name}"), config).await?;
        self.stream_info(&name).await
    }

    /// Creates a durable consumer, or updates it: JetStream treats a create with the name
    /// of an existing consumer as an update of the fields that may change
    /// (`num_replicas` among them), and refuses the others.
    pub async fn put_consumer(
        &mut self,
        stream: &str,
        config: &Value,
    ) -> Result<ConsumerInfo, NatsError> {
        check_name(stream)?;
        let what = format!("consumer config for {stream}");
        let name = config
            .get("durable_name")
            .or_else(|| config.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| NatsError::InvalidName(format!("{what} has no durable_name")))?
            .to_owned();
        check_name(&name)?;
        let body = json!({ "stream_name": stream, "config": config });
        let v = self
            .api(&format!("CONSUMER.DURABLE.CREATE.{stream}.{name}"), &body)
            .await?;
        ConsumerInfo::parse(&v, &format!("consumer {stream}/{name}"))
    }

    /// Publishes into a stream and waits for its acknowledgement; answers the sequence
    /// number the stream stored the message under.
    pub async fn publish(&mut self, subject: &str, payload: &[u8]) -> Result<u64, NatsError> {
        let answer = self.client.request(subject, payload).await?;
        let v: Value = serde_json::from_slice(&answer).map_err(|e| NatsError::Malformed {
            what: format!("ack for {subject}"),
            message: e.to_string(),
        })?;
        if let Some(e) = api_error(&v, subject) {
            return Err(e);
        }
        v.get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| NatsError::Malformed {
                what: format!("ack for {subject}"),
                message: "no seq".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_info_reads_replicas_lag_and_leader() {
        let v = json!({
            "type": "io.nats.jetstream.api.v1.consumer_info_response",
            "stream_name": "ORDERS", "name": "billing",
            "config": {"durable_name": "billing", "ack_policy": "explicit", "num_replicas": 1},
            "num_pending": 5000, "num_ack_pending": 12,
            "cluster": {"name": "C1", "leader": "n2"}
        });
        let c = ConsumerInfo::parse(&v, "c").expect("parse");
        assert_eq!(
            (c.num_replicas, c.num_pending, c.num_ack_pending),
            (1, 5000, 12)
        );
        assert_eq!(c.leader.as_deref(), Some("n2"));
        assert_eq!(c.effective_replicas(3), 1);
        let inherit = ConsumerInfo::parse(
            &json!({"stream_name": "S", "name": "c", "config": {"durable_name": "c"}}),
            "c",
        )
        .expect("parse");
        assert_eq!(
            inherit.effective_replicas(3),
            3,
            "0/absent inherits the stream's"
        );
        assert!(matches!(
            ConsumerInfo::parse(&json!({"stream_name": "S", "name": "c"}), "c"),
            Err(NatsError::Malformed { .. })
        ));
    }
}
