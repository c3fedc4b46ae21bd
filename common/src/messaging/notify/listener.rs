//! Receiving notifications.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tracing::{error, warn};

use super::Priority;
use super::notifier::DEFAULT_TOPIC;
use crate::messaging::broker::{Delivery, SubscriptionSpec};
use crate::messaging::codec::Codec;

/// The largest notification read, decompressed or not: an RPC server's
/// default `max_message_size`.
const MAX_NOTIFICATION_SIZE: usize = crate::messaging::DEFAULT_MAX_MESSAGE_SIZE;
use crate::messaging::consumer::ConsumerGroup;
use crate::messaging::error::Result;
use crate::messaging::target::Target;
use crate::messaging::transport::Transport;
use crate::messaging::wire::{Notification, decode_notification};

/// What a handler did with a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationResult {
    /// Done: acknowledge it.
    Handled,
    /// Not now: put it back in the queue, after [`REQUEUE_DELAY`].
    Requeue,
}

/// How long a listener waits, holding the executor slot, before it puts
/// back a notification its handler returned [`NotificationResult::Requeue`]
/// for. The broker puts it back at the head of the queue: at once, a
/// handler that cannot take notifications now (its database is down)
/// would get the same one back thousands of times a second.
pub const REQUEUE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

type Handler = Arc<dyn Fn(Notification) -> BoxFuture<'static, NotificationResult> + Send + Sync>;

/// Configures a [`NotificationListener`].
pub struct NotificationListenerBuilder {
    transport: Transport,
    targets: Vec<Target>,
    priorities: Vec<Priority>,
    pool: Option<String>,
    executor_size: usize,
}

impl NotificationListenerBuilder {
    /// Listens to these topics (default: `notifications` on the control exchange).
    #[must_use]
    pub fn targets(mut self, targets: Vec<Target>) -> Self {
        self.targets = targets;
        self
    }

    /// Only these priorities (default: all).
    #[must_use]
    pub fn priorities(mut self, priorities: Vec<Priority>) -> Self {
        self.priorities = priorities;
        self
    }

    /// Joins a pool: listeners of the same pool share one queue (named after
    /// the pool), so each notification goes to one of them, and each pool
    /// gets every notification. Listeners without a pool share the
    /// notifier's queue (`notifications.<priority>`), as oslo's do: they
    /// split its notifications between them.
    #[must_use]
    pub fn pool(mut self, pool: impl Into<String>) -> Self {
        self.pool = Some(pool.into());
        self
    }

    /// How many notifications are handled at once.
    #[must_use]
    pub fn executor_size(mut self, size: usize) -> Self {
        self.executor_size = size.max(1);
        self
    }

    /// Starts listening; `handler` is called for each notification.
    pub async fn start<F, Fut>(self, handler: F) -> Result<NotificationListener>
    where
        F: Fn(Notification) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = NotificationResult> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |n| Box::pin(handler(n)));
        let inner = self.transport.inner();
        let prefetch = u16::try_from(self.executor_size).unwrap_or(u16::MAX);
        let mut specs: Vec<SubscriptionSpec> = Vec::new();
        for target in &self.targets {
            let exchange = self.transport.exchange_of(target);
            for priority in &self.priorities {
                let key = format!("{}.{priority}", target.topic);
                let queue_name = self.pool.clone().unwrap_or_else(|| key.clone());
                let (mut queue, mut binding) =
                    inner.topology.topic_queue(&exchange, &queue_name, None);
                binding.routing_key = key;
                match specs.iter_mut().find(|s| s.queue.name == queue.name) {
                    Some(spec) => spec.bindings.push(binding),
                    None => {
                        queue.name = queue_name;
                        specs.push(SubscriptionSpec {
                            queue,
                            bindings: vec![binding],
                            prefetch,
                            auto_ack: false,
                            dead_letters: None,
                        });
                    }
                }
            }
        }
        let mut group = ConsumerGroup::new(self.executor_size);
        for spec in specs {
            let name = spec.queue.name.clone();
            let subscription = inner.broker.subscribe(spec).await?;
            let handler = handler.clone();
            group.spawn(
                name,
                subscription,
                Arc::new(move |delivery: Delivery, permit| {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let Delivery {
                            body,
                            content_type,
                            compression,
                            acker,
                            ..
                        } = delivery;
                        let codec = Codec::from_content_type(content_type.as_deref());
                        let body = crate::messaging::compression::decompressed_aside(
                            body,
                            compression,
                            MAX_NOTIFICATION_SIZE,
                        )
                        .await;
                        let decoded = codec
                            .and_then(|c| body.and_then(|body| decode_notification(c, &body)));
                        match decoded {
                            Ok(notification) => {
                                let event_type = notification.event_type.clone();
                                // A panicking handler must not leave the
                                // delivery unsettled (it would hold a prefetch
                                // slot until the connection closes); nor
                                // requeue it, to panic again forever.
                                let handled =
                                    AssertUnwindSafe(async { handler(notification).await })
                                        .catch_unwind()
                                        .await;
                                let _ = match handled {
                                    Ok(NotificationResult::Requeue) => {
                                        tokio::time::sleep(REQUEUE_DELAY).await;
                                        acker.reject(true).await
                                    }
                                    Ok(NotificationResult::Handled) => acker.ack().await,
                                    Err(_) => {
                                        error!(%event_type, "the notification handler panicked; notification dropped");
                                        acker.reject(false).await
                                    }
                                };
                            }
                            Err(reason) => {
                                warn!(%reason, "rejected a malformed notification");
                                let _ = acker.reject(false).await;
                            }
                        }
                        drop(permit);
                    });
                }),
            );
        }
        Ok(NotificationListener { group: Some(group) })
    }
}

/// A running notification listener.
pub struct NotificationListener {
    group: Option<ConsumerGroup>,
}

impl NotificationListener {
    /// Starts configuring a listener on `transport`.
    pub fn builder(transport: &Transport) -> NotificationListenerBuilder {
        NotificationListenerBuilder {
            transport: transport.clone(),
            targets: vec![Target::topic(DEFAULT_TOPIC)],
            priorities: Priority::ALL.to_vec(),
            pool: None,
            executor_size: 1,
        }
    }

    /// Stops consuming and waits for handlers in progress.
    pub async fn stop(mut self) {
        if let Some(group) = self.group.take() {
            group.stop().await;
        }
    }
}

impl Drop for NotificationListener {
    fn drop(&mut self) {
        if let Some(group) = &self.group {
            group.shutdown_token().cancel();
        }
    }
}
