//! Consuming with bounded concurrency and a graceful stop, shared by the
//! RPC server and the notification listener.
//!
//! Each subscription gets a loop that hands each delivery to the handler
//! once it holds a permit of the group's semaphore (its executor), so no
//! more than `size` messages are handled at once; the prefetch keeps the
//! broker from pushing many more. Stopping cancels the consumers, puts the deliveries
//! that were received but not started back in their queues, and waits for
//! the ones in progress.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::broker::{Delivery, Subscription, SubscriptionEvent};

/// What handles one delivery; it must eventually settle it and drop the permit.
pub(crate) type DeliveryHandler = Arc<dyn Fn(Delivery, OwnedSemaphorePermit) + Send + Sync>;

/// Consumers sharing one executor.
pub(crate) struct ConsumerGroup {
    size: u32,
    semaphore: Arc<Semaphore>,
    shutdown: CancellationToken,
    loops: JoinSet<()>,
}

impl ConsumerGroup {
    /// A group running at most `size` handlers at once.
    pub(crate) fn new(size: usize) -> Self {
        let size = u32::try_from(size.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Self {
            size,
            semaphore: Arc::new(Semaphore::new(size as usize)),
            shutdown: CancellationToken::new(),
            loops: JoinSet::new(),
        }
    }

    /// Starts consuming `subscription` with `handler`.
    pub(crate) fn spawn(
        &mut self,
        name: String,
        subscription: Subscription,
        handler: DeliveryHandler,
    ) {
        let semaphore = self.semaphore.clone();
        let shutdown = self.shutdown.clone();
        self.loops.spawn(async move {
            let Subscription { mut events, handle } = subscription;
            loop {
                let event = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    event = events.recv() => event,
                };
                match event {
                    Some(SubscriptionEvent::Delivery(delivery)) => {
                        // A permit is taken only once there is work, so idle
                        // queues of the group never starve busy ones.
                        let permit = tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => {
                                let _ = delivery.acker.reject(true).await;
                                break;
                            }
                            permit = semaphore.clone().acquire_owned() => match permit {
                                Ok(p) => p,
                                Err(_) => break,
                            },
                        };
                        // Held here while its channel died (a reconnect, a
                        // consumer timeout): the broker gives it to whoever
                        // consumes next, so it is not run here too.
                        if delivery.acker.is_stale() {
                            debug!(queue = %name, "skipped a delivery whose channel is gone: the broker delivers it again");
                            continue;
                        }
                        handler(delivery, permit);
                    }
                    Some(SubscriptionEvent::Interrupted { .. }) => {
                        debug!(queue = %name, "consumer interrupted; waiting for the broker");
                    }
                    Some(SubscriptionEvent::Reconnected { queue_kept }) => {
                        debug!(queue = %name, queue_kept, "consumer re-established after reconnect");
                    }
                    None => {
                        if !shutdown.is_cancelled() {
                            warn!(queue = %name, "subscription ended");
                        }
                        break;
                    }
                }
            }
            handle.cancel().await;
            // Received but never started: back to the queue, for this or
            // another server.
            while let Ok(event) = events.try_recv() {
                if let SubscriptionEvent::Delivery(delivery) = event {
                    let _ = delivery.acker.reject(true).await;
                }
            }
        });
    }

    /// Stops consuming and waits for every handler in progress to finish.
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        while self.loops.join_next().await.is_some() {}
        let _ = self.semaphore.acquire_many(self.size).await;
    }

    /// The token that stops this group (to tie it to other shutdowns).
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
