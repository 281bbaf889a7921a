//! Remediation's [`JetStreamConsumers`] port: one more replica for a lagging consumer,
//! bounded by the rule's maximum and by its stream's replicas, read back after the write.

use async_trait::async_trait;
use sre_core::PortError;
use sre_remediation::actions::{ActionOutcome, ConsumerRef, JetStreamConsumers, Mode};

use crate::client::NatsConfig;
use crate::error::NatsError;
use crate::jetstream::{ConsumerInfo, JetStream};

/// The [`JetStreamConsumers`] port over the JetStream API. Connects per call: the
/// remediation acts once per alert, and a fresh connection cannot carry a stale reply.
#[derive(Debug, Clone)]
pub struct NatsConsumers {
    config: NatsConfig,
}

/// The lag line the outcome carries ("check consumer lag" in the handbook).
fn lag(c: &ConsumerInfo) -> String {
    format!(
        "num_pending={} num_ack_pending={}{}",
        c.num_pending,
        c.num_ack_pending,
        c.leader
            .as_deref()
            .map_or_else(String::new, |l| format!(" leader={l}"))
    )
}

impl NatsConsumers {
    /// A port for the server in `config`. No connection is made.
    #[must_use]
    pub fn new(config: NatsConfig) -> Self {
        Self { config }
    }

    /// [`JetStreamConsumers::add_replica`] with the typed error.
    pub async fn add_replica_typed(
        &self,
        consumer: &ConsumerRef,
        max_replicas: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, NatsError> {
        let mut js = JetStream::connect(&self.config).await?;
        let info = js
            .consumer_info(&consumer.stream, &consumer.consumer)
            .await?;
        let stream = js.stream_info(&consumer.stream).await?;
        let current = info.effective_replicas(stream.num_replicas);
        let state = format!("replicas={current}");
        let lag = lag(&info);
        if current >= max_replicas {
            return Ok(ActionOutcome::unchanged(
                mode,
                state,
                format!(
                    "{consumer} already has {current} replicas, the rule's max_replicas {max_replicas}: nothing to do ({lag})"
                ),
            ));
        }
        if current >= stream.num_replicas {
            return Ok(ActionOutcome::unchanged(
                mode,
                state,
                format!(
                    "{consumer} has {current} replicas and its stream {} only {}: a consumer cannot have more replicas than its stream, nothing to do ({lag})",
                    stream.name, stream.num_replicas
                ),
            ));
        }
        let next = current + 1;
        if mode.is_dry_run() {
            return Ok(ActionOutcome::changed(
                mode,
                Some(state),
                Some(format!("replicas={next}")),
                format!(
                    "would add a replica to {consumer} ({current} -> {next}, stream {} has {}; {lag})",
                    stream.name, stream.num_replicas
                ),
            ));
        }
        let mut config = info.config.clone();
        config["num_replicas"] = serde_json::json!(next);
        let updated = js.put_consumer(&consumer.stream, &config).await?;
        let now = updated.effective_replicas(stream.num_replicas);
        if now != next {
            return Err(NatsError::Malformed {
                what: consumer.to_string(),
                message: format!(
                    "the server accepted the update but reports {now} replicas, not {next}"
                ),
            });
        }
        tracing::info!(%consumer, from = current, to = next, num_pending = info.num_pending, "added a consumer replica");
        Ok(ActionOutcome::changed(
            mode,
            Some(state),
            Some(format!("replicas={now}")),
            format!(
                "added a replica to {consumer} ({current} -> {now}, stream {} has {}; {lag})",
                stream.name, stream.num_replicas
            ),
        ))
    }
}

#[async_trait]
impl JetStreamConsumers for NatsConsumers {
    async fn add_replica(
        &self,
        consumer: &ConsumerRef,
        max_replicas: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        self.add_replica_typed(consumer, max_replicas, mode)
            .await
            .map_err(PortError::from)
    }
}
