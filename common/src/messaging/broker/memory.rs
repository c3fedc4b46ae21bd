//! The in-process broker behind `memory://`.
//!
//! It implements the part of the AMQP 0-9-1 model that oslo.messaging uses,
//! with RabbitMQ's behaviour: direct, topic (`*`/`#`) and fanout exchanges
//! and the default exchange; declarations that must be equivalent; queues
//! with `x-expires`, auto-delete and a dead-letter exchange; round-robin
//! dispatch limited by each consumer's prefetch; ack, reject with or without
//! requeue (requeued messages go back to the head, marked redelivered);
//! unsettled messages requeued when their consumer's channel closes;
//! per-message TTL; mandatory publishes returned when unroutable. Messages
//! are bytes: everything that crosses it was really serialized.
//!
//! Brokers are named by the URL's path and shared by every transport of the
//! process that opens the same name, so an API, a worker and a producer in
//! one process talk to each other through `memory://`. A broker lives while
//! a transport (or a delivery) holds it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    Acker, Binding, Delivery, ExchangeKind, ExchangeSpec, Publication, PublishOutcome, QueueSpec,
    Subscription, SubscriptionEvent, SubscriptionHandle, SubscriptionSpec, inequivalent,
};
use crate::messaging::error::{MessagingError, Result};

/// RabbitMQ's default `max_message_size` (3.x): larger bodies are refused.
const MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;

static REGISTRY: LazyLock<Mutex<HashMap<String, Weak<Mutex<State>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A handle on a named in-process broker: one "connection" to it. Closing
/// the connection closes its consumers' channels, so their unsettled
/// messages go back to their queues, as on RabbitMQ.
#[derive(Clone)]
pub(crate) struct MemoryBroker {
    state: Arc<Mutex<State>>,
    channels: Arc<Mutex<Vec<Weak<ChannelGuard>>>>,
    /// Closed: every later operation is refused with
    /// [`MessagingError::Closed`], as on a closed RabbitMQ connection.
    closed: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    exchanges: HashMap<String, Exchange>,
    queues: HashMap<String, Queue>,
    next_tag: u64,
    next_consumer: u64,
    /// Order of arrival of every message, so a requeued one goes back to
    /// its place (as in RabbitMQ), not to the front.
    next_seq: u64,
    /// Values whose drop may take the lock again; dropped after unlocking.
    graveyard: Vec<Box<dyn std::any::Any + Send>>,
}

struct Exchange {
    spec: ExchangeSpec,
    /// (binding key, queue name)
    bindings: Vec<(String, String)>,
}

struct Queue {
    spec: QueueSpec,
    ready: VecDeque<Stored>,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    /// delivery tag -> (consumer id, message)
    unacked: HashMap<u64, (u64, Stored)>,
    /// Since when the queue has had no consumer (for `x-expires`).
    unused_since: Option<Instant>,
    had_consumer: bool,
}

#[derive(Clone)]
struct Stored {
    body: Arc<[u8]>,
    content_type: String,
    routing_key: String,
    expires_at: Option<Instant>,
    redelivered: bool,
    seq: u64,
}

struct Consumer {
    id: u64,
    channel: Weak<ChannelGuard>,
    tx: mpsc::UnboundedSender<SubscriptionEvent>,
    prefetch: u32,
    in_flight: u32,
    auto_ack: bool,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the maps half-updated in a
    // way that matters more than losing the broker; keep serving.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Releases the lock, then drops what must not be dropped under it.
fn unlock(mut state: MutexGuard<'_, State>) {
    let graveyard = std::mem::take(&mut state.graveyard);
    drop(state);
    drop(graveyard);
}

impl MemoryBroker {
    /// Opens (or joins) the broker called `name` in this process.
    pub(crate) fn open(name: &str) -> Self {
        let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        registry.retain(|_, weak| weak.strong_count() > 0);
        let state = match registry.get(name).and_then(Weak::upgrade) {
            Some(state) => state,
            None => {
                let state = Arc::new(Mutex::new(State::default()));
                registry.insert(name.to_string(), Arc::downgrade(&state));
                state
            }
        };
        Self {
            state,
            channels: Arc::default(),
            closed: Arc::default(),
        }
    }

    /// Whether [`Self::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// [`MessagingError::Closed`] once closed.
    fn open_or_refuse(&self) -> Result<()> {
        if self.is_closed() {
            Err(MessagingError::Closed)
        } else {
            Ok(())
        }
    }

    /// Closes this connection's channels: consumers stop, and what they
    /// had not settled is delivered again to others.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let channels =
            std::mem::take(&mut *self.channels.lock().unwrap_or_else(|p| p.into_inner()));
        for channel in channels.iter().filter_map(Weak::upgrade) {
            channel.close();
        }
    }

    /// Ready messages in a queue (`None` if there is no such queue).
    pub(crate) fn queue_depth(&self, name: &str) -> Option<usize> {
        let mut state = lock(&self.state);
        // Expired messages at the head are gone, as RabbitMQ counts them.
        state.pump(name, &self.state);
        let depth = state.queues.get(name).map(|q| q.ready.len());
        unlock(state);
        depth
    }

    pub(crate) fn publish(&self, p: &Publication) -> Result<PublishOutcome> {
        self.open_or_refuse()?;
        // Refused as RabbitMQ refuses it: the senders send it once more,
        // then report it (a reply: its caller gets an error in its place).
        if p.body.len() > MAX_MESSAGE_SIZE {
            return Err(MessagingError::Refused(format!(
                "PRECONDITION_FAILED - message size {} is larger than configured max size {MAX_MESSAGE_SIZE}",
                p.body.len()
            )));
        }
        let mut state = lock(&self.state);
        state.reap_expired_queues();
        // As over AMQP, an exchange that exists with other properties is
        // published to as it is.
        if let Some(spec) = &p.declare
            && !state.exchanges.contains_key(&spec.name)
        {
            state.declare_exchange(spec)?;
        }
        state.next_seq += 1;
        let stored = Stored {
            body: p.body.clone(),
            content_type: p.content_type.to_string(),
            routing_key: p.routing_key.clone(),
            expires_at: p.expiration.map(|ttl| Instant::now() + ttl),
            redelivered: false,
            seq: state.next_seq,
        };
        let targets = state.route(&p.exchange, &p.routing_key)?;
        if targets.is_empty() {
            return Ok(if p.mandatory {
                PublishOutcome::Unroutable
            } else {
                PublishOutcome::Delivered
            });
        }
        for queue in targets {
            if let Some(q) = state.queues.get_mut(&queue) {
                q.ready.push_back(stored.clone());
            }
            state.pump(&queue, &self.state);
        }
        unlock(state);
        Ok(PublishOutcome::Delivered)
    }

    pub(crate) fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription> {
        self.open_or_refuse()?;
        let mut state = lock(&self.state);
        state.reap_expired_queues();
        if let Some((queue, binding)) = &spec.dead_letters {
            state.declare_with_bindings(queue, std::slice::from_ref(binding))?;
        }
        state.declare_with_bindings(&spec.queue, &spec.bindings)?;
        state.next_consumer += 1;
        let id = state.next_consumer;
        let channel = Arc::new(ChannelGuard {
            state: Arc::downgrade(&self.state),
            queue: spec.queue.name.clone(),
            consumer: id,
        });
        {
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            channels.retain(|c| c.strong_count() > 0);
            channels.push(Arc::downgrade(&channel));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = state
            .queues
            .get_mut(&spec.queue.name)
            .ok_or_else(|| not_found("queue", &spec.queue.name))?;
        queue.consumers.push(Consumer {
            id,
            channel: Arc::downgrade(&channel),
            tx,
            prefetch: u32::from(spec.prefetch),
            in_flight: 0,
            auto_ack: spec.auto_ack,
        });
        queue.had_consumer = true;
        queue.unused_since = None;
        state.pump(&spec.queue.name, &self.state);
        unlock(state);
        Ok(Subscription {
            events: rx,
            handle: SubscriptionHandle::Memory(MemorySubscriptionHandle { channel }),
        })
    }

    /// Declares a queue and its bindings without consuming from it.
    pub(crate) fn declare(&self, queue: &QueueSpec, bindings: &[Binding]) -> Result<()> {
        self.open_or_refuse()?;
        let mut state = lock(&self.state);
        state.reap_expired_queues();
        state.declare_with_bindings(queue, bindings)?;
        unlock(state);
        Ok(())
    }

    pub(crate) fn delete_queue(&self, name: &str) {
        let mut state = lock(&self.state);
        state.delete_queue(name);
        unlock(state);
    }
}

fn not_found(kind: &str, name: &str) -> MessagingError {
    MessagingError::Broker(format!(
        "NOT_FOUND - no {kind} '{name}' in the memory broker"
    ))
}

impl State {
    fn declare_with_bindings(&mut self, queue: &QueueSpec, bindings: &[Binding]) -> Result<()> {
        for b in bindings {
            if !b.exchange.name.is_empty() {
                self.declare_exchange(&b.exchange)?;
            }
        }
        self.declare_queue(queue)?;
        for b in bindings {
            if b.exchange.name.is_empty() {
                continue;
            }
            if let Some(ex) = self.exchanges.get_mut(&b.exchange.name) {
                let binding = (b.routing_key.clone(), queue.name.clone());
                if !ex.bindings.contains(&binding) {
                    ex.bindings.push(binding);
                }
            }
        }
        Ok(())
    }

    fn declare_exchange(&mut self, spec: &ExchangeSpec) -> Result<()> {
        if spec.name.is_empty() {
            return Ok(());
        }
        match self.exchanges.get(&spec.name) {
            Some(existing) => {
                let e = &existing.spec;
                if e.kind != spec.kind {
                    return Err(inequivalent(
                        &format!(
                            "received '{}' but current is '{}'",
                            spec.kind.name(),
                            e.kind.name()
                        ),
                        "type",
                        "exchange",
                        &spec.name,
                    ));
                }
                if e.durable != spec.durable {
                    return Err(inequivalent(
                        &format!("received '{}' but current is '{}'", spec.durable, e.durable),
                        "durable",
                        "exchange",
                        &spec.name,
                    ));
                }
                if e.auto_delete != spec.auto_delete {
                    return Err(inequivalent(
                        &format!(
                            "received '{}' but current is '{}'",
                            spec.auto_delete, e.auto_delete
                        ),
                        "auto_delete",
                        "exchange",
                        &spec.name,
                    ));
                }
                Ok(())
            }
            None => {
                self.exchanges.insert(
                    spec.name.clone(),
                    Exchange {
                        spec: spec.clone(),
                        bindings: Vec::new(),
                    },
                );
                Ok(())
            }
        }
    }

    fn declare_queue(&mut self, spec: &QueueSpec) -> Result<()> {
        match self.queues.get_mut(&spec.name) {
            Some(existing) => {
                let e = &existing.spec;
                let checks = [
                    ("durable", e.durable != spec.durable),
                    ("auto_delete", e.auto_delete != spec.auto_delete),
                    ("x-expires", e.expires != spec.expires),
                    (
                        "x-dead-letter-exchange",
                        e.dead_letter_exchange != spec.dead_letter_exchange,
                    ),
                ];
                for (arg, differs) in checks {
                    if differs {
                        return Err(inequivalent(
                            "declared differently before",
                            arg,
                            "queue",
                            &spec.name,
                        ));
                    }
                }
                // A re-declaration is a use: as in RabbitMQ, it renews the
                // `x-expires` lease of a queue nobody consumes from.
                if existing.consumers.is_empty() {
                    existing.unused_since = Some(Instant::now());
                }
                Ok(())
            }
            None => {
                self.queues.insert(
                    spec.name.clone(),
                    Queue {
                        spec: spec.clone(),
                        ready: VecDeque::new(),
                        consumers: Vec::new(),
                        next_consumer: 0,
                        unacked: HashMap::new(),
                        unused_since: Some(Instant::now()),
                        had_consumer: false,
                    },
                );
                Ok(())
            }
        }
    }

    fn route(&self, exchange: &str, routing_key: &str) -> Result<Vec<String>> {
        if exchange.is_empty() {
            return Ok(if self.queues.contains_key(routing_key) {
                vec![routing_key.to_string()]
            } else {
                Vec::new()
            });
        }
        let ex = self
            .exchanges
            .get(exchange)
            .ok_or_else(|| not_found("exchange", exchange))?;
        let mut out: Vec<String> = Vec::new();
        for (key, queue) in &ex.bindings {
            let matches = match ex.spec.kind {
                ExchangeKind::Fanout => true,
                ExchangeKind::Topic => topic_matches(key, routing_key),
            };
            if matches && !out.contains(queue) {
                out.push(queue.clone());
            }
        }
        Ok(out)
    }

    /// Hands ready messages to consumers with free prefetch, round robin.
    fn pump(&mut self, queue_name: &str, state: &Arc<Mutex<State>>) {
        let mut dead_letters = Vec::new();
        let mut reap = false;
        {
            let State {
                queues,
                next_tag,
                graveyard,
                ..
            } = self;
            let Some(queue) = queues.get_mut(queue_name) else {
                return;
            };
            let now = Instant::now();
            // Expired messages at the head go (or are dead-lettered) whether
            // or not anyone consumes, as RabbitMQ's do.
            while queue
                .ready
                .front()
                .is_some_and(|m| m.expires_at.is_some_and(|t| t <= now))
            {
                if let Some(message) = queue.ready.pop_front()
                    && let Some(dlx) = &queue.spec.dead_letter_exchange
                {
                    dead_letters.push((dlx.clone(), message));
                }
            }
            while !queue.ready.is_empty() && !queue.consumers.is_empty() {
                let n = queue.consumers.len();
                let Some(slot) = (0..n).map(|i| (queue.next_consumer + i) % n).find(|&i| {
                    let c = &queue.consumers[i];
                    c.auto_ack || c.prefetch == 0 || c.in_flight < c.prefetch
                }) else {
                    break;
                };
                let Some(message) = queue.ready.pop_front() else {
                    break;
                };
                if message.expires_at.is_some_and(|t| t <= now) {
                    if let Some(dlx) = &queue.spec.dead_letter_exchange {
                        dead_letters.push((dlx.clone(), message));
                    }
                    continue;
                }
                *next_tag += 1;
                let tag = *next_tag;
                let consumer = &mut queue.consumers[slot];
                let Some(channel) = consumer.channel.upgrade() else {
                    // The subscription is being dropped: it takes nothing more.
                    let gone = queue.consumers.remove(slot).id;
                    queue.ready.push_front(message);
                    requeue_consumer(queue, gone);
                    continue;
                };
                let acker = if consumer.auto_ack {
                    graveyard.push(Box::new(channel));
                    Acker::None
                } else {
                    Acker::Memory(MemoryAcker {
                        state: Arc::downgrade(state),
                        queue: queue_name.to_string(),
                        tag,
                        _channel: channel,
                    })
                };
                let delivery = Delivery {
                    body: message.body.to_vec(),
                    content_type: Some(message.content_type.clone()),
                    compression: None,
                    redelivered: message.redelivered,
                    acker,
                };
                if let Err(failed) = consumer.tx.send(SubscriptionEvent::Delivery(delivery)) {
                    // The subscriber is gone without closing: put it back.
                    graveyard.push(Box::new(failed.0));
                    let gone = queue.consumers.remove(slot).id;
                    queue.ready.push_front(message);
                    requeue_consumer(queue, gone);
                    continue;
                }
                if !consumer.auto_ack {
                    consumer.in_flight += 1;
                    queue.unacked.insert(tag, (consumer.id, message));
                }
                queue.next_consumer = (slot + 1) % n;
            }
            if queue.consumers.is_empty() && queue.spec.auto_delete && queue.had_consumer {
                reap = true;
            }
        }
        if reap {
            self.delete_queue(queue_name);
        }
        for (exchange, message) in dead_letters {
            self.dead_letter(&exchange, message, state);
        }
    }

    /// Routes a rejected or expired message through its dead-letter exchange.
    fn dead_letter(&mut self, exchange: &str, mut message: Stored, state: &Arc<Mutex<State>>) {
        message.expires_at = None;
        message.redelivered = false;
        self.next_seq += 1;
        message.seq = self.next_seq;
        let targets = self
            .route(exchange, &message.routing_key)
            .unwrap_or_default();
        for queue in &targets {
            if let Some(q) = self.queues.get_mut(queue) {
                q.ready.push_back(message.clone());
            }
        }
        for queue in targets {
            self.pump(&queue, state);
        }
    }

    fn delete_queue(&mut self, name: &str) {
        self.queues.remove(name);
        let mut empty_auto_delete = Vec::new();
        for (ex_name, ex) in self.exchanges.iter_mut() {
            let before = ex.bindings.len();
            ex.bindings.retain(|(_, q)| q != name);
            if before > 0 && ex.bindings.is_empty() && ex.spec.auto_delete {
                empty_auto_delete.push(ex_name.clone());
            }
        }
        for ex in empty_auto_delete {
            self.exchanges.remove(&ex);
        }
    }

    fn reap_expired_queues(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .queues
            .iter()
            .filter(|(_, q)| {
                q.consumers.is_empty()
                    && match (q.spec.expires, q.unused_since) {
                        (Some(ttl), Some(since)) => now.duration_since(since) >= ttl,
                        _ => false,
                    }
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            self.delete_queue(&name);
        }
    }
}

/// Puts every unsettled message of `consumer` back at the head of the queue.
fn requeue_consumer(queue: &mut Queue, consumer: u64) {
    let mut tags: Vec<u64> = queue
        .unacked
        .iter()
        .filter(|(_, (c, _))| *c == consumer)
        .map(|(tag, _)| *tag)
        .collect();
    // Oldest first at the head, as RabbitMQ restores the original order.
    tags.sort_unstable_by(|a, b| b.cmp(a));
    for tag in tags {
        if let Some((_, mut message)) = queue.unacked.remove(&tag) {
            message.redelivered = true;
            queue.ready.push_front(message);
        }
    }
}

/// MQTT-style topic match of AMQP: `*` is one word, `#` zero or more.
fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
            Some((&"*", rest)) => !k.is_empty() && go(rest, &k[1..]),
            Some((word, rest)) => k.first() == Some(word) && go(rest, &k[1..]),
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

/// How a delivery is settled.
pub(crate) enum Settle {
    Ack,
    Requeue,
    Discard,
}

/// Settles one delivery of the memory broker.
pub(crate) struct MemoryAcker {
    state: Weak<Mutex<State>>,
    queue: String,
    tag: u64,
    _channel: Arc<ChannelGuard>,
}

impl MemoryAcker {
    /// Whether the delivery can no longer be settled: its channel closed
    /// and gave it back to the queue (another consumer may have it now),
    /// or the broker is gone.
    pub(crate) fn is_stale(&self) -> bool {
        let Some(state_arc) = self.state.upgrade() else {
            return true;
        };
        let state = lock(&state_arc);
        !state
            .queues
            .get(&self.queue)
            .is_some_and(|queue| queue.unacked.contains_key(&self.tag))
    }

    /// Settles the delivery; `false` when it no longer could be (its
    /// channel closed meanwhile and gave it back to the queue, or the
    /// broker is gone), as RabbitMQ refuses a settlement on a dead channel.
    pub(crate) fn settle(self, how: Settle) -> bool {
        let Some(state_arc) = self.state.upgrade() else {
            return false;
        };
        let mut state = lock(&state_arc);
        let dead_letter = {
            let Some(queue) = state.queues.get_mut(&self.queue) else {
                return false;
            };
            let Some((consumer, mut message)) = queue.unacked.remove(&self.tag) else {
                return false;
            };
            if let Some(c) = queue.consumers.iter_mut().find(|c| c.id == consumer) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
            match how {
                Settle::Ack => None,
                Settle::Requeue => {
                    message.redelivered = true;
                    let place = queue.ready.partition_point(|m| m.seq < message.seq);
                    queue.ready.insert(place, message);
                    None
                }
                Settle::Discard => queue
                    .spec
                    .dead_letter_exchange
                    .clone()
                    .map(|dlx| (dlx, message)),
            }
        };
        if let Some((dlx, message)) = dead_letter {
            state.dead_letter(&dlx, message, &state_arc);
        }
        state.pump(&self.queue, &state_arc);
        unlock(state);
        true
    }
}

/// The consumer's "channel": when the subscription is dropped, unsettled
/// messages return to the queue, as when an AMQP channel closes.
struct ChannelGuard {
    state: Weak<Mutex<State>>,
    queue: String,
    consumer: u64,
}

impl ChannelGuard {
    fn cancel(&self) {
        let Some(state_arc) = self.state.upgrade() else {
            return;
        };
        let mut state = lock(&state_arc);
        let auto_delete = match state.queues.get_mut(&self.queue) {
            Some(queue) => {
                queue.consumers.retain(|c| c.id != self.consumer);
                if queue.consumers.is_empty() {
                    queue.unused_since = Some(Instant::now());
                }
                queue.consumers.is_empty() && queue.spec.auto_delete
            }
            None => false,
        };
        if auto_delete {
            state.delete_queue(&self.queue);
        }
        unlock(state);
    }
}

impl ChannelGuard {
    /// Closes the channel: no more deliveries, unsettled ones requeued.
    fn close(&self) {
        self.cancel();
        let Some(state_arc) = self.state.upgrade() else {
            return;
        };
        let mut state = lock(&state_arc);
        if let Some(queue) = state.queues.get_mut(&self.queue) {
            requeue_consumer(queue, self.consumer);
        }
        state.pump(&self.queue, &state_arc);
        unlock(state);
    }
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        self.close();
    }
}

/// Cancels a memory subscription.
pub(crate) struct MemorySubscriptionHandle {
    channel: Arc<ChannelGuard>,
}

impl MemorySubscriptionHandle {
    pub(crate) fn cancel(&self) {
        self.channel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn topic_patterns() {
        assert!(topic_matches("tasks", "tasks"));
        assert!(!topic_matches("tasks", "tasks.h1"));
        assert!(topic_matches("tasks.*", "tasks.h1"));
        assert!(topic_matches("#", "a.b.c"));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#.c", "a.b.b.c"));
        assert!(!topic_matches("a.*.c", "a.c"));
    }

    /// A message larger than the broker takes is refused as RabbitMQ
    /// refuses it (`Refused`, which the senders send once more, then
    /// report), not as another broker error (a reply then went unanswered).
    #[test]
    fn a_message_too_large_is_refused_as_by_rabbitmq() {
        let broker = MemoryBroker::open(&format!("too-large-{}", std::process::id()));
        let refused = broker.publish(&Publication {
            declare: None,
            exchange: String::new(),
            routing_key: "anywhere".into(),
            body: Arc::from(vec![b' '; MAX_MESSAGE_SIZE + 1]),
            content_type: "application/json".into(),
            expiration: None,
            mandatory: true,
            alone: false,
        });
        match refused {
            Err(MessagingError::Refused(reason)) => assert!(
                reason.contains("is larger than configured max size"),
                "{reason}"
            ),
            other => panic!("expected a refusal: {other:?}"),
        }
    }

    /// Requeued messages go back to their places, as in RabbitMQ: the
    /// order a stopping consumer gives back its unstarted deliveries in
    /// does not reorder the queue.
    #[tokio::test]
    async fn requeued_messages_keep_their_order() {
        let broker = MemoryBroker::open(&format!("requeue-order-{}", std::process::id()));
        let queue = QueueSpec {
            name: "ordered".into(),
            durable: false,
            auto_delete: false,
            expires: None,
            dead_letter_exchange: None,
        };
        broker.declare(&queue, &[]).expect("declare");
        let publish = |n: u8| Publication {
            declare: None,
            exchange: String::new(),
            routing_key: "ordered".into(),
            body: Arc::from(vec![n]),
            content_type: "application/json".into(),
            expiration: None,
            mandatory: true,
            alone: false,
        };
        for n in 1..=3 {
            broker.publish(&publish(n)).expect("publish");
        }
        let spec = SubscriptionSpec {
            queue,
            bindings: Vec::new(),
            prefetch: 3,
            auto_ack: false,
            dead_letters: None,
        };
        let mut first = broker.subscribe(spec.clone()).expect("subscribe");
        let mut held = Vec::new();
        for _ in 0..3 {
            match first.events.recv().await {
                Some(SubscriptionEvent::Delivery(d)) => held.push(d),
                _ => panic!("three deliveries"),
            }
        }
        // One more, waiting behind them (the prefetch is full).
        broker.publish(&publish(4)).expect("publish");
        first.handle.cancel().await;
        // Given back out of order: each goes back to its place, ahead of
        // the one that waited (not after it, nor in the order given back).
        held.swap(0, 2);
        held.swap(0, 1);
        for d in held {
            d.acker.reject(true).await.expect("requeue");
        }
        let mut second = broker.subscribe(spec).expect("subscribe again");
        let mut order = Vec::new();
        for _ in 0..4 {
            match second.events.recv().await {
                Some(SubscriptionEvent::Delivery(d)) => {
                    assert_eq!(d.redelivered, d.body[0] != 4, "{:?}", d.body);
                    order.push(d.body[0]);
                    d.acker.ack().await.expect("ack");
                }
                _ => panic!("four deliveries"),
            }
        }
        assert_eq!(order, vec![1, 2, 3, 4]);
    }

    /// A delivery whose channel closed (its transport closed) went back to
    /// the queue: settling it afterwards is an error, as on RabbitMQ's dead
    /// channel, not a success that would let the request run twice.
    #[tokio::test]
    async fn settling_after_the_channel_closed_is_an_error() {
        let name = format!("settle-after-close-{}", std::process::id());
        let (a, b) = (MemoryBroker::open(&name), MemoryBroker::open(&name));
        let queue = QueueSpec {
            name: "work".into(),
            durable: false,
            auto_delete: false,
            expires: None,
            dead_letter_exchange: None,
        };
        a.declare(&queue, &[]).expect("declare");
        a.publish(&Publication {
            declare: None,
            exchange: String::new(),
            routing_key: "work".into(),
            body: Arc::from(vec![7]),
            content_type: "application/json".into(),
            expiration: None,
            mandatory: true,
            alone: false,
        })
        .expect("publish");
        let spec = SubscriptionSpec {
            queue,
            bindings: Vec::new(),
            prefetch: 1,
            auto_ack: false,
            dead_letters: None,
        };
        let mut on_a = a.subscribe(spec.clone()).expect("subscribe on a");
        let Some(SubscriptionEvent::Delivery(held)) = on_a.events.recv().await else {
            panic!("a delivery");
        };
        a.close();
        match held.acker.ack().await {
            Err(MessagingError::Disconnected(reason)) => {
                assert!(reason.contains("gave it back"), "{reason}");
            }
            other => panic!("an ack after the close must fail: {other:?}"),
        }
        let mut on_b = b.subscribe(spec).expect("subscribe on b");
        match on_b.events.recv().await {
            Some(SubscriptionEvent::Delivery(again)) => {
                assert!(again.redelivered && again.body[0] == 7);
                again.acker.ack().await.expect("acknowledged on b");
            }
            _ => panic!("the message went back to the queue"),
        }
        b.close();
    }

    /// As in RabbitMQ, declaring a queue again renews its `x-expires`
    /// lease: a reply queue its client re-declares (after a reconnect)
    /// does not vanish under it. On a paused clock: the margins hold
    /// however loaded the machine.
    #[tokio::test(start_paused = true)]
    async fn a_redeclaration_renews_the_expiry_lease() {
        let broker = MemoryBroker::open(&format!("expires-renewed-{}", std::process::id()));
        let ttl = Duration::from_millis(1200);
        let queue = QueueSpec {
            name: "leased".into(),
            durable: false,
            auto_delete: false,
            expires: Some(ttl),
            dead_letter_exchange: None,
        };
        // Publishing reaps expired queues first; unroutable once it is gone.
        let exists = || {
            let outcome = broker
                .publish(&Publication {
                    declare: None,
                    exchange: String::new(),
                    routing_key: "leased".into(),
                    body: Arc::from(vec![0u8]),
                    content_type: "application/json".into(),
                    expiration: Some(Duration::from_millis(1)),
                    mandatory: true,
                    alone: false,
                })
                .expect("publish");
            matches!(outcome, PublishOutcome::Delivered)
        };
        broker.declare(&queue, &[]).expect("declare");
        for _ in 0..3 {
            tokio::time::sleep(ttl / 2).await;
            assert!(exists(), "renewed by the last declaration");
            broker.declare(&queue, &[]).expect("declare again");
        }
        tokio::time::sleep(ttl + Duration::from_millis(500)).await;
        assert!(!exists(), "expired once nobody declares it");
    }
}
