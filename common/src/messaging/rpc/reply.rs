//! The client side of replies: one reply queue per transport, and a table
//! of calls waiting for their `_msg_id`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::messaging::broker::{
    Acker, Broker, Subscription, SubscriptionEvent, SubscriptionHandle, SubscriptionSpec,
};
use crate::messaging::codec::Codec;
use crate::messaging::error::{MessagingError, Result};
use crate::messaging::topology::TopologyOptions;
use crate::messaging::wire::{IncomingReply, decode_reply, decode_request};

/// Replies routed but not yet acknowledged, at most: acknowledged then,
/// even under a load that leaves no pause.
const MAX_UNACKED: usize = 64;

/// How long a routed reply may wait for its acknowledgement, to share it
/// with the replies that follow: a reply lost with the connection
/// meanwhile comes again, to nobody waiting.
const ACK_DELAY: Duration = Duration::from_millis(5);

/// Acknowledges, in order, the batches of replies it is sent, until the
/// sender is dropped: the batches of [`ACK_DELAY`] are acknowledged
/// together (one message to the broker for all, on RabbitMQ).
fn acknowledger(queue: String) -> mpsc::UnboundedSender<Vec<Acker>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Acker>>();
    tokio::spawn(async move {
        while let Some(mut batch) = rx.recv().await {
            tokio::time::sleep(ACK_DELAY).await;
            while let Ok(more) = rx.try_recv() {
                batch.extend(more);
            }
            if let Err(e) = Acker::ack_all(batch).await {
                debug!(%queue, error = %e, "replies' acknowledgement not sent; they come again");
            }
        }
    });
    tx
}

/// What a waiting call can receive.
pub(crate) enum ReplyEvent {
    /// A reply (final, partial or a call-monitor heartbeat).
    Reply(IncomingReply),
    /// The reply consumer lost its connection and, consuming again, had to
    /// make its queue again: the replies sent before are lost. Which
    /// connection it lost ([`PendingConfirm::link`](crate::messaging::broker::PendingConfirm::link)):
    /// a call sent again on a later one does not count it again.
    ConnectionLost(u64),
    /// The reply consumer lost its connection: no reply comes until it
    /// consumes again (a call-monitor heartbeat neither).
    Away,
    /// The reply consumer consumes again, from the queue it had: the
    /// replies sent meanwhile come now.
    Back,
    /// The broker returned the request as unroutable (nobody listens),
    /// with another publish's confirm ([`StrayReturns`](crate::messaging::broker::StrayReturns)).
    Returned,
    /// A reply to this call that cannot be read (a Python server's `NaN`
    /// in its result), and why.
    Unreadable(String),
}

type Waiters = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<ReplyEvent>>>>;

/// Receives every reply of a transport and routes it to its call.
pub(crate) struct ReplyWaiter {
    queue: String,
    waiters: Waiters,
    /// Whether the reply consumer lost its connection and does not
    /// consume again yet (set under the waiters' lock).
    away: Arc<AtomicBool>,
    /// Set by [`Self::stop`], under the waiters' lock: no call registers
    /// after it (it would wait for a reply nobody routes).
    stopped: AtomicBool,
    handle: SubscriptionHandle,
    task: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReplyWaiter {
    /// Declares the reply queue and starts consuming it.
    pub(crate) async fn start(broker: &Broker, topology: &TopologyOptions) -> Result<Arc<Self>> {
        let spec = SubscriptionSpec {
            queue: topology.reply_queue(),
            bindings: Vec::new(),
            prefetch: 0,
            // Acknowledged once routed: a reply on its way when the
            // connection goes is given back to the queue, which outlives
            // the loss (`x-expires`, not auto-delete), and comes again.
            auto_ack: false,
            dead_letters: None,
        };
        let queue = spec.queue.name.clone();
        let Subscription { mut events, handle } = broker.subscribe(spec).await?;
        let waiters: Waiters = Arc::default();
        // A call of this transport returned with a neighbour's confirm:
        // its `_msg_id` says whose it is.
        let returns = waiters.clone();
        broker.on_stray_returns(Arc::new(move |content_type, body| {
            let Ok(codec) = Codec::from_content_type(content_type) else {
                return;
            };
            let Some(msg_id) = decode_request(codec, body.to_vec())
                .ok()
                .and_then(|request| request.reply_to)
                .map(|reply| reply.msg_id)
            else {
                return;
            };
            if let Some(tx) = lock(&returns).get(&msg_id) {
                debug!(%msg_id, "a call came back unroutable with another message's confirm");
                let _ = tx.send(ReplyEvent::Returned);
            }
        }));
        let routes = waiters.clone();
        let away = Arc::new(AtomicBool::new(false));
        let consumer_away = away.clone();
        let name = queue.clone();
        let task = tokio::spawn(async move {
            // The connection the consumer lost, until it consumes again.
            let mut lost: Option<u64> = None;
            // Replies routed, acknowledged together when no other waits
            // (one message to the broker for many under load), by a task
            // of their own: the routing of replies never waits for one (a
            // connection blocked by a broker's alarm writes nothing, and
            // replies still come).
            let mut unacked: Vec<Acker> = Vec::new();
            let acks = acknowledger(name.clone());
            loop {
                if !unacked.is_empty() && (events.is_empty() || unacked.len() >= MAX_UNACKED) {
                    let _ = acks.send(std::mem::take(&mut unacked));
                }
                let Some(event) = events.recv().await else {
                    break;
                };
                match event {
                    SubscriptionEvent::Delivery(mut delivery) => {
                        // Settled once routed (below), whatever becomes of
                        // the reply: it is not to come again.
                        unacked.push(std::mem::replace(&mut delivery.acker, Acker::None));
                        let codec = match Codec::from_content_type(delivery.content_type.as_deref())
                        {
                            Ok(codec) => codec,
                            Err(reason) => {
                                warn!(queue = %name, %reason, "dropped an unreadable reply");
                                continue;
                            }
                        };
                        // A Python server with `kombu_compression` set
                        // compresses its replies too: expanded up to the
                        // default max_message_size (a small body must not
                        // expand into gigabytes). Replies sent as they are
                        // have no bound here (the broker's own applies).
                        let body = match delivery.compression {
                            None => delivery.body,
                            method => match crate::messaging::compression::decompressed_aside(
                                delivery.body,
                                method,
                                crate::messaging::DEFAULT_MAX_MESSAGE_SIZE,
                            )
                            .await
                            {
                                Ok(body) => body,
                                Err(reason) => {
                                    warn!(queue = %name, %reason, "dropped an unreadable reply");
                                    continue;
                                }
                            },
                        };
                        match decode_reply(codec, body) {
                            Ok(reply) => {
                                let route = lock(&routes).get(&reply.msg_id).cloned();
                                match route {
                                    Some(tx) => {
                                        let _ = tx.send(ReplyEvent::Reply(reply));
                                    }
                                    None => debug!(
                                        msg_id = %reply.msg_id,
                                        "reply to a call that is no longer waiting"
                                    ),
                                }
                            }
                            Err(failure) => {
                                let reason = failure.reason;
                                let route = failure
                                    .msg_id
                                    .and_then(|msg_id| lock(&routes).get(&msg_id).cloned());
                                match route {
                                    // Its call ends now with the reason,
                                    // instead of at its timeout.
                                    Some(tx) => {
                                        warn!(queue = %name, %reason, "an unreadable reply");
                                        let _ = tx.send(ReplyEvent::Unreadable(reason));
                                    }
                                    None => {
                                        warn!(queue = %name, %reason, "dropped an unreadable reply")
                                    }
                                }
                            }
                        }
                    }
                    // Nothing is lost yet: replies sent meanwhile wait in
                    // the queue, if it outlives the loss.
                    // Under the waiters' lock, as a call registers: one
                    // that registers while the consumer is away is told
                    // so by `register`.
                    SubscriptionEvent::Interrupted { link } => {
                        lost.get_or_insert(link);
                        let waiting = lock(&routes);
                        consumer_away.store(true, Ordering::SeqCst);
                        for tx in waiting.values() {
                            let _ = tx.send(ReplyEvent::Away);
                        }
                    }
                    SubscriptionEvent::Reconnected { queue_kept } => {
                        let Some(link) = lost.take() else { continue };
                        let waiting = lock(&routes);
                        consumer_away.store(false, Ordering::SeqCst);
                        if queue_kept {
                            debug!(queue = %name, "reply queue kept through a reconnect; its replies come now");
                            for tx in waiting.values() {
                                let _ = tx.send(ReplyEvent::Back);
                            }
                        } else {
                            // Made again (a broker restart, or expired):
                            // the replies sent to the old one are gone,
                            // and the calls waiting for them send again.
                            debug!(queue = %name, "reply queue made again after a reconnect");
                            for tx in waiting.values() {
                                let _ = tx.send(ReplyEvent::ConnectionLost(link));
                            }
                        }
                    }
                }
            }
        });
        Ok(Arc::new(Self {
            queue,
            waiters,
            away,
            stopped: AtomicBool::new(false),
            handle,
            task: Mutex::new(Some(task)),
        }))
    }

    /// Whether the reply consumer lost its connection and does not
    /// consume again yet: no reply (nor heartbeat) comes meanwhile.
    pub(crate) fn is_away(&self) -> bool {
        self.away.load(Ordering::SeqCst)
    }

    /// The reply queue's name (`_reply_q`).
    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    /// Starts waiting for replies to `msg_id`; stops when dropped.
    /// [`MessagingError::Closed`] once the transport is closing: the call
    /// is not sent.
    pub(crate) fn register(self: &Arc<Self>, msg_id: &str) -> Result<PendingReply> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut waiters = lock(&self.waiters);
            if self.stopped.load(Ordering::SeqCst) {
                return Err(MessagingError::Closed);
            }
            if self.away.load(Ordering::SeqCst) {
                let _ = tx.send(ReplyEvent::Away);
            }
            waiters.insert(msg_id.to_string(), tx);
        }
        Ok(PendingReply {
            rx,
            waiter: self.clone(),
            msg_id: msg_id.to_string(),
        })
    }

    /// Stops consuming replies; calls still waiting end at once, as closed.
    pub(crate) async fn stop(&self) {
        // Stopped first: a close given up while the consumer is cancelled
        // leaves no call registered (or registering) for replies that
        // nothing would route.
        {
            let mut waiters = lock(&self.waiters);
            self.stopped.store(true, Ordering::SeqCst);
            waiters.clear();
        }
        self.handle.cancel().await;
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl Drop for ReplyWaiter {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// One call's subscription to its replies.
pub(crate) struct PendingReply {
    rx: mpsc::UnboundedReceiver<ReplyEvent>,
    waiter: Arc<ReplyWaiter>,
    msg_id: String,
}

impl PendingReply {
    /// The next reply event; `None` when the transport closed.
    pub(crate) async fn next(&mut self) -> Option<ReplyEvent> {
        self.rx.recv().await
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        lock(&self.waiter.waiters).remove(&self.msg_id);
    }
}

#[cfg(test)]
mod tests {
    use crate::messaging::{MessagingError, Transport};

    /// A call that starts while its transport closes (the broker's close
    /// takes seconds on RabbitMQ) is refused before it is sent, instead of
    /// waiting its whole timeout for a reply nobody routes; one waiting
    /// already ends at once.
    #[tokio::test]
    async fn no_call_waits_on_a_stopped_reply_waiter() {
        let transport = Transport::builder("memory:///reply-waiter-stop")
            .connect()
            .await
            .expect("memory transport");
        let waiter = transport.reply_waiter().await.expect("the reply waiter");
        let mut waiting = waiter.register("m1").expect("registered");
        waiter.stop().await;
        assert!(waiting.next().await.is_none(), "ended as closed");
        assert!(matches!(waiter.register("m2"), Err(MessagingError::Closed)));
        transport.close().await;
    }
}
