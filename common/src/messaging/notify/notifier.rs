//! Sending notifications.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::time::Instant;

use super::Priority;
use crate::messaging::broker::{Publication, PublishOutcome};
use crate::messaging::codec::Codec;
use crate::messaging::context::RequestContext;
use crate::messaging::error::{MessagingError, Result};
use crate::messaging::transport::Transport;
use crate::messaging::wire::{self, OutgoingNotification};

/// Default notification topic, as oslo's `notifications` topic.
pub const DEFAULT_TOPIC: &str = "notifications";

/// Sends notifications (`fractal.rendered`...) to `<topic>.<priority>`
/// queues on the control exchange, in messagingv2 format (always JSON, so
/// any OpenStack consumer can read them).
///
/// As oslo's rabbit driver, the first notification of a topic and priority
/// declares its queue, so nothing is lost before a listener starts.
#[derive(Clone)]
pub struct Notifier {
    transport: Option<Transport>,
    publisher_id: String,
    topics: Vec<String>,
    declared: Arc<Mutex<HashSet<String>>>,
}

impl Notifier {
    /// A notifier publishing as `publisher_id` (e.g. `faafo.worker.host1`)
    /// on the `notifications` topic.
    pub fn new(transport: &Transport, publisher_id: impl Into<String>) -> Self {
        Self {
            transport: Some(transport.clone()),
            publisher_id: publisher_id.into(),
            topics: vec![DEFAULT_TOPIC.to_string()],
            declared: Arc::default(),
        }
    }

    /// A notifier that sends nothing (oslo's `noop` driver).
    pub fn noop() -> Self {
        Self {
            transport: None,
            publisher_id: String::new(),
            topics: Vec::new(),
            declared: Arc::default(),
        }
    }

    /// Publishes to these topics instead of `notifications`.
    #[must_use]
    pub fn topics(mut self, topics: Vec<String>) -> Self {
        self.topics = topics;
        self
    }

    /// Whether notifications are sent at all.
    pub fn is_enabled(&self) -> bool {
        self.transport.is_some() && !self.topics.is_empty()
    }

    /// Sends one notification and waits for the broker's confirmation.
    pub async fn notify<P: Serialize + ?Sized>(
        &self,
        ctx: &RequestContext,
        priority: Priority,
        event_type: &str,
        payload: &P,
    ) -> Result<()> {
        let Some(transport) = &self.transport else {
            return Ok(());
        };
        let message_id = uuid::Uuid::new_v4().to_string();
        let timestamp = time::OffsetDateTime::now_utc();
        let timestamp = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
            timestamp.year(),
            u8::from(timestamp.month()),
            timestamp.day(),
            timestamp.hour(),
            timestamp.minute(),
            timestamp.second(),
            timestamp.microsecond()
        );
        let inner = transport.inner();
        let exchange = inner.control_exchange.clone();
        for topic in &self.topics {
            let key = format!("{topic}.{priority}");
            // The same notification (one `message_id`), but a `_unique_id`
            // of its own for each topic, as oslo's driver adds at each
            // send: a listener of several topics drops a repeated one as a
            // duplicate.
            let body: Arc<[u8]> = wire::encode(
                Codec::Json,
                &OutgoingNotification {
                    message_id: &message_id,
                    publisher_id: &self.publisher_id,
                    event_type,
                    priority: priority.as_upper(),
                    payload,
                    timestamp: &timestamp,
                    unique_id: &wire::new_id(),
                    context: ctx,
                },
            )?
            .into();
            let mut publication = Publication {
                declare: Some(inner.topology.topic_exchange(&exchange)),
                exchange: exchange.clone(),
                routing_key: key.clone(),
                body: body.clone(),
                content_type: Codec::Json.content_type().into(),
                expiration: None,
                mandatory: true,
                alone: false,
            };
            for attempt in 0..2 {
                self.ensure_queue(transport, &exchange, &key, attempt > 0)
                    .await?;
                let deadline = Instant::now() + transport.send_wait();
                let outcome = match inner
                    .broker
                    .publish(&publication, deadline)
                    .await?
                    .outcome_by(deadline)
                    .await
                {
                    // Perhaps another message's refusal, or the exchange
                    // deleted since: once more, declared again.
                    Err(MessagingError::Refused(_)) if attempt == 0 => {
                        publication.alone = true;
                        continue;
                    }
                    outcome => outcome?,
                };
                match outcome {
                    PublishOutcome::Delivered => break,
                    // The queue vanished (e.g. a broker restart): declare it again.
                    PublishOutcome::Unroutable if attempt == 0 => continue,
                    PublishOutcome::Unroutable | PublishOutcome::Nacked => {
                        return Err(MessagingError::Broker(format!(
                            "notification {event_type} could not be queued on '{key}'"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    async fn ensure_queue(
        &self,
        transport: &Transport,
        exchange: &str,
        key: &str,
        force: bool,
    ) -> Result<()> {
        let known = self
            .declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key);
        if known && !force {
            return Ok(());
        }
        let inner = transport.inner();
        let (queue, binding) = inner.topology.topic_queue(exchange, key, None);
        inner.broker.declare(&queue, &[binding]).await?;
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string());
        Ok(())
    }

    /// Sends at `info` priority.
    pub async fn info<P: Serialize + ?Sized>(
        &self,
        ctx: &RequestContext,
        event_type: &str,
        payload: &P,
    ) -> Result<()> {
        self.notify(ctx, Priority::Info, event_type, payload).await
    }

    /// Sends at `warn` priority.
    pub async fn warn<P: Serialize + ?Sized>(
        &self,
        ctx: &RequestContext,
        event_type: &str,
        payload: &P,
    ) -> Result<()> {
        self.notify(ctx, Priority::Warn, event_type, payload).await
    }

    /// Sends at `error` priority.
    pub async fn error<P: Serialize + ?Sized>(
        &self,
        ctx: &RequestContext,
        event_type: &str,
        payload: &P,
    ) -> Result<()> {
        self.notify(ctx, Priority::Error, event_type, payload).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::messaging::broker::{Subscription, SubscriptionEvent, SubscriptionSpec};

    /// The `oslo.message` of the next message on the queue of `key`.
    async fn queued(transport: &Transport, key: &str) -> Value {
        let inner = transport.inner();
        let (queue, binding) = inner
            .topology
            .topic_queue(&inner.control_exchange, key, None);
        let Subscription { mut events, handle } = inner
            .broker
            .subscribe(SubscriptionSpec {
                queue,
                bindings: vec![binding],
                prefetch: 0,
                auto_ack: true,
                dead_letters: None,
            })
            .await
            .expect("subscribe");
        let Some(SubscriptionEvent::Delivery(delivery)) = events.recv().await else {
            panic!("a notification on {key}");
        };
        drop(handle);
        let envelope: Value = serde_json::from_slice(&delivery.body).expect("JSON");
        serde_json::from_str(envelope["oslo.message"].as_str().expect("oslo.message"))
            .expect("the message's JSON")
    }

    #[tokio::test]
    async fn each_topic_gets_the_notification_under_a_unique_id_of_its_own() {
        let transport = Transport::connect("memory://").await.expect("memory");
        let notifier =
            Notifier::new(&transport, "host").topics(vec!["first".into(), "second".into()]);
        notifier
            .info(&RequestContext::new(), "fractal.rendered", &json!({"n": 1}))
            .await
            .expect("sent");
        let first = queued(&transport, "first.info").await;
        let second = queued(&transport, "second.info").await;
        assert_eq!(
            first["message_id"], second["message_id"],
            "one notification"
        );
        assert_eq!(first["payload"], json!({"n": 1}));
        assert!(first["_unique_id"].is_string());
        assert_ne!(
            first["_unique_id"], second["_unique_id"],
            "a listener of both topics must not drop the second as a repeat"
        );
    }
}
