//! The broker layer: AMQP 0-9-1 primitives (exchanges, queues, bindings,
//! confirmed publishes, consumers with prefetch, acks) behind one type.
//!
//! The RPC and notification code above it is written once against these
//! primitives. [`amqp`] maps them onto RabbitMQ through lapin, with
//! reconnection; [`memory`] implements the same model in process, down to
//! round-robin dispatch, prefetch, requeue on channel close, mandatory
//! returns, per-message TTL and dead-lettering, so code that works on
//! `memory://` works on RabbitMQ.

pub(crate) mod amqp;
pub(crate) mod memory;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::error::{MessagingError, Result};
use super::url::{TransportKind, TransportUrl};

/// AMQP exchange types used by oslo.messaging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExchangeKind {
    Topic,
    Fanout,
}

impl ExchangeKind {
    fn name(self) -> &'static str {
        match self {
            ExchangeKind::Topic => "topic",
            ExchangeKind::Fanout => "fanout",
        }
    }
}

/// An exchange declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExchangeSpec {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
}

/// A queue declaration with the arguments oslo.messaging uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueSpec {
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    /// `x-expires`: delete the queue after this long without consumers.
    pub expires: Option<Duration>,
    /// `x-dead-letter-exchange`: where rejected messages go.
    pub dead_letter_exchange: Option<String>,
}

/// A binding of the subscribed queue to an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    pub exchange: ExchangeSpec,
    pub routing_key: String,
}

/// Everything needed to (re)establish a consumer: what to declare, what to
/// bind, how many unacknowledged messages to accept.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionSpec {
    pub queue: QueueSpec,
    pub bindings: Vec<Binding>,
    /// Prefetch (unacknowledged deliveries in flight); 0 is unlimited.
    pub prefetch: u16,
    /// The broker considers messages acknowledged once sent.
    pub auto_ack: bool,
    /// The dead-letter exchange `queue` names and the queue that keeps
    /// what it receives, declared before `queue` each time the consumer
    /// is established: a broker restarted without them (transient, as by
    /// default) would drop every dead letter from then on.
    pub dead_letters: Option<(QueueSpec, Binding)>,
}

/// A message to publish.
#[derive(Debug, Clone)]
pub(crate) struct Publication {
    /// Declared (once per connection) before the first publish to it.
    pub declare: Option<ExchangeSpec>,
    /// Exchange name; `""` is the default exchange.
    pub exchange: String,
    pub routing_key: String,
    pub body: Arc<[u8]>,
    pub content_type: std::borrow::Cow<'static, str>,
    /// Per-message TTL (AMQP `expiration`).
    pub expiration: Option<Duration>,
    /// Ask the broker to return the message if no queue takes it.
    pub mandatory: bool,
    /// Sent on a channel of its own, not the shared publishing one: for
    /// a message sent again after a refusal ([`MessagingError::Refused`]).
    /// RabbitMQ refuses a message by closing its channel, which fails the
    /// confirms of every message still unconfirmed there: sent again on
    /// the shared channel, an innocent message could meet the guilty
    /// one's second refusal and be reported refused twice. Alone, a
    /// refusal is its own.
    pub alone: bool,
}

/// What the broker did with a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishOutcome {
    /// Taken by at least one queue (or by the exchange, when not mandatory).
    Delivered,
    /// Mandatory and no queue matched: returned to the sender.
    Unroutable,
    /// The broker could not take responsibility for it.
    Nacked,
}

/// A confirmation that will arrive; awaiting it never holds a lock, so many
/// publishes can be in flight at once.
pub(crate) enum PendingConfirm {
    /// RabbitMQ's confirm, and what was published (to tell our message
    /// from another one returned on the same channel, which goes to
    /// `strays`).
    Amqp {
        confirm: lapin::PublisherConfirm,
        /// The channel of a message sent [alone](Publication::alone),
        /// closed once its confirm came.
        own_channel: Option<Box<lapin::Channel>>,
        /// Its host's largest message, learnt from a refusal of a larger one.
        size_limit: Arc<LearnedLimit>,
        routing_key: String,
        body: Arc<[u8]>,
        strays: StrayReturns,
        /// The connection's declared exchanges, forgotten when the broker
        /// closes the channel with a refusal before it confirms.
        declared: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
        /// Which connection it was published on.
        link: u64,
    },
    Ready(PublishOutcome),
}

/// The largest message a broker host takes, as it said when it refused a
/// larger one: a larger message is then refused before it is sent (see
/// the AMQP broker's `Link::size_limit`). Remembered for
/// [`LIMIT_MEMORY`]: a limit an operator raised since is believed that
/// much later, at the cost of one more refusal.
#[derive(Debug, Default)]
pub(crate) struct LearnedLimit(std::sync::Mutex<Option<(usize, std::time::Instant)>>);

/// How long a learnt [`LearnedLimit`] holds.
pub(crate) const LIMIT_MEMORY: Duration = Duration::from_secs(600);

impl LearnedLimit {
    /// The host refused a message larger than `limit` bytes.
    pub(crate) fn learn(&self, limit: usize) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((limit, std::time::Instant::now()));
    }

    /// The limit, if learnt within [`LIMIT_MEMORY`].
    pub(crate) fn get(&self) -> Option<usize> {
        self.get_at(std::time::Instant::now())
    }

    /// The limit, if learnt within [`LIMIT_MEMORY`] before `now`.
    fn get_at(&self, now: std::time::Instant) -> Option<usize> {
        match *self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((limit, at)) if now.saturating_duration_since(at) < LIMIT_MEMORY => Some(limit),
            _ => None,
        }
    }
}

/// What receives a returned message: its content type and body.
pub(crate) type ReturnSink = Arc<dyn Fn(Option<&str>, &[u8]) + Send + Sync>;

/// Where a message returned as unroutable goes when the confirm it came
/// with was another publish's. A `basic.return` names no message, and the
/// client ties it to a confirm of the same batch, in no set order: the
/// owner's confirm then looks delivered. The owner of a call is found by
/// the message's `_msg_id` (the transport's reply waiter is the sink) and
/// told, so that it is "nobody listening" as it should be, not a wait for
/// its timeout.
#[derive(Clone, Default)]
pub(crate) struct StrayReturns(Arc<std::sync::Mutex<Option<ReturnSink>>>);

impl StrayReturns {
    /// Sends the strays to `sink` from now on.
    pub(crate) fn set(&self, sink: ReturnSink) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    }

    /// Hands `returned` to the sink, if there is one.
    fn send(&self, returned: &lapin::message::BasicReturnMessage) {
        let sink = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(sink) = sink {
            let content_type = returned
                .delivery
                .properties
                .content_type()
                .as_ref()
                .map(|c| c.as_str());
            sink(content_type, &returned.delivery.data);
        }
    }
}

/// Whether a message the broker returned is the one published with
/// `routing_key` and `body`. A `basic.return` names no delivery tag: the
/// client ties it to the next confirm, which, with several mandatory
/// publishes in flight on one channel (a worker's replies, calls), can be
/// another message's (RabbitMQ confirms several at once). Taking that for
/// ours would fail a call that was delivered, and send it again.
pub(crate) fn is_ours(
    returned_key: &str,
    returned_body: &[u8],
    routing_key: &str,
    body: &[u8],
) -> bool {
    returned_key == routing_key && returned_body == body
}

/// A publish's confirmation still to come, awaited to its end even when
/// its waiter gives up (a deadline, a call answered before its confirm
/// came, a dropped future): then in a task of its own. The confirm may
/// carry the return of a neighbour's message, which must reach its owner
/// ([`StrayReturns`]); and lapin keeps every confirm dropped unresolved
/// for the channel's lifetime.
pub(crate) struct Unsettled(
    Option<std::pin::Pin<Box<dyn Future<Output = Result<PublishOutcome>> + Send>>>,
);

impl Unsettled {
    /// `confirm`, to be awaited to its end.
    pub(crate) fn new(confirm: PendingConfirm) -> Self {
        Self(Some(Box::pin(confirm.outcome())))
    }

    /// Whether the confirmation is still to come.
    pub(crate) fn pending(&self) -> bool {
        self.0.is_some()
    }

    /// Waits for it (cancel-safe: dropped before the end, it waits on).
    pub(crate) async fn wait(&mut self) -> Result<PublishOutcome> {
        let Some(confirm) = self.0.as_mut() else {
            return Err(MessagingError::Closed);
        };
        let outcome = confirm.await;
        self.0 = None;
        outcome
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(confirm) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = confirm.await;
            });
        }
    }
}

impl PendingConfirm {
    /// Which connection the message was published on: each connection
    /// the transport makes has a larger number (0: the memory broker's
    /// one). A consumer's loss of an earlier connection
    /// ([`SubscriptionEvent::Interrupted`]) came before this publish.
    pub(crate) fn link(&self) -> u64 {
        match self {
            PendingConfirm::Amqp { link, .. } => *link,
            PendingConfirm::Ready(_) => 0,
        }
    }

    /// Waits for the broker's confirmation until `deadline` (a blocked
    /// broker confirms nothing): then fails as disconnected, the
    /// confirmation still awaited ([`Unsettled`]).
    pub(crate) async fn outcome_by(self, deadline: Instant) -> Result<PublishOutcome> {
        if let PendingConfirm::Ready(outcome) = self {
            return Ok(outcome);
        }
        let mut confirm = Unsettled::new(self);
        match tokio::time::timeout_at(deadline, confirm.wait()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(MessagingError::Disconnected(
                "the broker did not confirm the message in time".into(),
            )),
        }
    }

    /// Waits for the broker's confirmation.
    pub(crate) async fn outcome(self) -> Result<PublishOutcome> {
        match self {
            PendingConfirm::Ready(outcome) => Ok(outcome),
            PendingConfirm::Amqp {
                confirm,
                own_channel,
                size_limit,
                routing_key,
                body,
                strays,
                declared,
                ..
            } => match amqp::closing_after(own_channel, confirm).await {
                Ok(lapin::Confirmation::Ack(Some(returned))) => {
                    if is_ours(
                        returned.delivery.routing_key.as_str(),
                        &returned.delivery.data,
                        &routing_key,
                        &body,
                    ) {
                        Ok(PublishOutcome::Unroutable)
                    } else {
                        strays.send(&returned);
                        Ok(PublishOutcome::Delivered)
                    }
                }
                Ok(lapin::Confirmation::Ack(None)) | Ok(lapin::Confirmation::NotRequested) => {
                    Ok(PublishOutcome::Delivered)
                }
                Ok(lapin::Confirmation::Nack(_)) => Ok(PublishOutcome::Nacked),
                // The broker closed the channel with a refusal: of this
                // message (an exchange deleted since it was declared, a
                // message larger than it takes) or of another one on the
                // channel. Not a lost connection: sent again once (the
                // exchange declared again), then the caller's error.
                Err(e) if e.is_amqp_soft_error() => {
                    declared.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    let reason = e.to_string();
                    if let Some(limit) = amqp::size_limit_in(&reason) {
                        size_limit.learn(limit);
                    }
                    Err(MessagingError::Refused(reason))
                }
                Err(e) => Err(MessagingError::Disconnected(format!(
                    "the connection failed before the broker confirmed a message: {e}"
                ))),
            },
        }
    }
}

/// A received message.
pub(crate) struct Delivery {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    /// The `compression` header a Python peer's kombu sets.
    pub compression: Option<String>,
    pub redelivered: bool,
    pub acker: Acker,
}

/// Settles a delivery. Dropping it unsettled leaves the message
/// unacknowledged until the consumer's channel closes, then the broker
/// delivers it again, exactly as RabbitMQ does.
pub(crate) enum Acker {
    /// lapin's acker, plus the channel so it stays open until settled.
    Amqp {
        acker: lapin::Acker,
        _channel: lapin::Channel,
    },
    Memory(memory::MemoryAcker),
    /// Auto-acknowledged delivery: nothing to settle.
    None,
}

/// What lapin answers to an ack or a reject: `Ok(false)` is one it did
/// not send (the channel died first; the broker will deliver the message
/// again), an error as much as `Err`.
fn settled(sent: lapin::Result<bool>, what: &str) -> Result<()> {
    match sent {
        Ok(true) => Ok(()),
        Ok(false) => Err(MessagingError::Disconnected(format!(
            "could not {what}: the channel is gone"
        ))),
        Err(e) => Err(MessagingError::Disconnected(format!(
            "could not {what}: {e}"
        ))),
    }
}

impl Acker {
    /// Whether the delivery's channel is gone: the broker has put the
    /// message back in its queue, for this consumer's next channel or
    /// another consumer, so running it here would run it twice. (An
    /// auto-acknowledged delivery is never stale: it is this consumer's.)
    pub(crate) fn is_stale(&self) -> bool {
        match self {
            Acker::Amqp { acker, .. } => acker.poisoned(),
            Acker::Memory(acker) => acker.is_stale(),
            Acker::None => false,
        }
    }

    /// Acknowledges: the broker forgets the message.
    pub(crate) async fn ack(self) -> Result<()> {
        match self {
            Acker::Amqp { acker, .. } => settled(
                acker.ack(lapin::options::BasicAckOptions::default()).await,
                "acknowledge",
            ),
            Acker::Memory(m) => memory_settled(m.settle(memory::Settle::Ack), "acknowledge"),
            Acker::None => Ok(()),
        }
    }

    /// Acknowledges deliveries of one consumer, in the order they came,
    /// with as few messages to the broker as it takes: on RabbitMQ, one
    /// `multiple` acknowledgement for each channel's run of deliveries (it
    /// covers the channel's earlier ones too: `ackers` must hold every
    /// delivery of the channel that came before, unsettled). The errors
    /// are the broker's: those deliveries come again.
    pub(crate) async fn ack_all(ackers: Vec<Acker>) -> Result<()> {
        let mut outcome = Ok(());
        let mut ackers = ackers.into_iter().peekable();
        while let Some(acker) = ackers.next() {
            let sent = match acker {
                Acker::Amqp { acker, _channel } => {
                    let covered_later = matches!(
                        ackers.peek(),
                        Some(Acker::Amqp { _channel: next, .. }) if next.id() == _channel.id()
                    );
                    if covered_later {
                        continue;
                    }
                    settled(
                        acker
                            .ack(lapin::options::BasicAckOptions { multiple: true })
                            .await,
                        "acknowledge",
                    )
                }
                other => other.ack().await,
            };
            if outcome.is_ok() {
                outcome = sent;
            }
        }
        outcome
    }

    /// Rejects: back to the queue (`requeue`) or dead-lettered / dropped.
    pub(crate) async fn reject(self, requeue: bool) -> Result<()> {
        match self {
            Acker::Amqp { acker, .. } => settled(
                acker
                    .reject(lapin::options::BasicRejectOptions { requeue })
                    .await,
                "reject",
            ),
            Acker::Memory(m) => memory_settled(
                m.settle(if requeue {
                    memory::Settle::Requeue
                } else {
                    memory::Settle::Discard
                }),
                "reject",
            ),
            Acker::None => Ok(()),
        }
    }
}

/// A memory settlement that found its delivery gone (its channel closed
/// and gave it back) is an error, as on RabbitMQ's dead channel: with
/// `AckMode::BeforeDispatch` the request is then not run here, where the
/// consumer it went back to runs it.
fn memory_settled(settled: bool, what: &str) -> Result<()> {
    if settled {
        Ok(())
    } else {
        Err(MessagingError::Disconnected(format!(
            "could not {what} the message: its channel closed and gave it back to the queue"
        )))
    }
}

/// What a subscription yields.
// Deliveries are nearly every event; boxing them would cost an allocation
// per message for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum SubscriptionEvent {
    Delivery(Delivery),
    /// The consumer's connection or channel failed: deliveries stop until
    /// it is re-established; what is sent to its queue meanwhile waits
    /// there if the queue outlives the loss (see `Reconnected`). `link`:
    /// which connection it was on ([`PendingConfirm::link`]), so that a
    /// loss is told from a later one.
    Interrupted {
        link: u64,
    },
    /// The consumer was re-established after a connection loss.
    /// `queue_kept`: its queue outlived the loss (it was there before this
    /// consumer declared it), with what was sent to it meanwhile and what
    /// the lost consumer had not acknowledged; else it was made again, and
    /// what was sent to it before is gone.
    Reconnected {
        queue_kept: bool,
    },
}

/// A live consumer. Dropping it cancels the consumer; deliveries not yet
/// settled keep the channel open until they are.
pub(crate) struct Subscription {
    pub events: mpsc::UnboundedReceiver<SubscriptionEvent>,
    pub handle: SubscriptionHandle,
}

/// Cancels a subscription's consumer.
pub(crate) enum SubscriptionHandle {
    Amqp(amqp::AmqpSubscriptionHandle),
    Memory(memory::MemorySubscriptionHandle),
}

impl SubscriptionHandle {
    /// Stops deliveries (AMQP `basic.cancel`); unsettled ones stay valid.
    pub(crate) async fn cancel(&self) {
        match self {
            SubscriptionHandle::Amqp(h) => h.cancel().await,
            SubscriptionHandle::Memory(h) => h.cancel(),
        }
    }
}

/// A connection to a broker of either kind.
#[derive(Clone)]
pub(crate) enum Broker {
    Amqp(amqp::AmqpBroker),
    Memory(memory::MemoryBroker),
}

impl Broker {
    /// Connects (RabbitMQ: tries each host once; reconnects later on its own).
    pub(crate) async fn connect(url: &TransportUrl, connection_name: &str) -> Result<Self> {
        match url.kind {
            TransportKind::Memory => Ok(Broker::Memory(memory::MemoryBroker::open(
                &url.virtual_host,
            ))),
            TransportKind::Rabbit => Ok(Broker::Amqp(
                amqp::AmqpBroker::connect(url.clone(), connection_name).await?,
            )),
        }
    }

    /// Publishes, waiting up to `deadline` for a connection if there is none.
    pub(crate) async fn publish(
        &self,
        publication: &Publication,
        deadline: Instant,
    ) -> Result<PendingConfirm> {
        fits_amqp("exchange", &publication.exchange)?;
        fits_amqp("routing key", &publication.routing_key)?;
        if let Some(spec) = &publication.declare {
            fits_amqp("exchange", &spec.name)?;
        }
        match self {
            Broker::Amqp(b) => b.publish(publication, deadline).await,
            Broker::Memory(b) => b.publish(publication).map(PendingConfirm::Ready),
        }
    }

    /// Declares, binds and starts consuming; errors in the declarations
    /// (e.g. a conflicting existing queue) are returned here.
    pub(crate) async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription> {
        fits_topology(&spec.queue, &spec.bindings)?;
        if let Some((queue, binding)) = &spec.dead_letters {
            fits_topology(queue, std::slice::from_ref(binding))?;
        }
        match self {
            Broker::Amqp(b) => b.subscribe(spec).await,
            Broker::Memory(b) => b.subscribe(spec),
        }
    }

    /// Declares a queue and its bindings without consuming (notifications'
    /// default queues, so nothing is lost before a listener starts).
    pub(crate) async fn declare(&self, queue: &QueueSpec, bindings: &[Binding]) -> Result<()> {
        fits_topology(queue, bindings)?;
        match self {
            Broker::Amqp(b) => b.declare(queue, bindings).await,
            Broker::Memory(b) => b.declare(queue, bindings),
        }
    }

    /// Deletes a queue (used to clean up reply queues on close).
    pub(crate) async fn delete_queue(&self, name: &str) -> Result<()> {
        fits_amqp("queue name", name)?;
        match self {
            Broker::Amqp(b) => b.delete_queue(name).await,
            Broker::Memory(b) => {
                b.delete_queue(name);
                Ok(())
            }
        }
    }

    /// Sends returned messages whose confirm was another publish's to
    /// `sink` ([`StrayReturns`]); `memory://` ties each return to its own
    /// publish and has none.
    pub(crate) fn on_stray_returns(&self, sink: ReturnSink) {
        if let Broker::Amqp(b) = self {
            b.on_stray_returns(sink);
        }
    }

    /// Whether a connection is up right now.
    pub(crate) fn is_connected(&self) -> bool {
        match self {
            Broker::Amqp(b) => b.is_connected(),
            Broker::Memory(b) => !b.is_closed(),
        }
    }

    /// Closes the connection; subscriptions end.
    pub(crate) async fn close(&self) {
        match self {
            Broker::Amqp(b) => b.close().await,
            Broker::Memory(b) => b.close(),
        }
    }

    /// Ready messages in a queue (`None` if there is no such queue).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) async fn queue_depth(&self, name: &str) -> Result<Option<usize>> {
        fits_amqp("queue name", name)?;
        match self {
            Broker::Amqp(b) => b.queue_depth(name).await,
            Broker::Memory(b) => Ok(b.queue_depth(name)),
        }
    }
}

/// The most bytes an AMQP short string holds: a queue or exchange name, a
/// routing key.
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Fails unless `name` fits an AMQP short string, as queue and exchange
/// names and routing keys must. lapin's conversions panic on a longer one,
/// and a name can come from a peer (a request's `_reply_q`) or from a
/// configuration file: every name is checked here before it reaches them,
/// on `memory://` too, so that what works there works on RabbitMQ.
fn fits_amqp(what: &str, name: &str) -> Result<()> {
    if name.len() > MAX_NAME_BYTES {
        return Err(MessagingError::Invalid(format!(
            "an AMQP {what} has at most {MAX_NAME_BYTES} bytes, got {}: {:?}...",
            name.len(),
            name.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// [`fits_amqp`] for a queue, its dead-letter exchange and its bindings.
fn fits_topology(queue: &QueueSpec, bindings: &[Binding]) -> Result<()> {
    fits_amqp("queue name", &queue.name)?;
    if let Some(dlx) = &queue.dead_letter_exchange {
        fits_amqp("exchange", dlx)?;
    }
    for binding in bindings {
        fits_amqp("exchange", &binding.exchange.name)?;
        fits_amqp("routing key", &binding.routing_key)?;
    }
    Ok(())
}

/// RabbitMQ's text for a declaration that conflicts with an existing one.
pub(crate) fn inequivalent(what: &str, arg: &str, kind: &str, name: &str) -> MessagingError {
    MessagingError::Broker(format!(
        "PRECONDITION_FAILED - inequivalent arg '{arg}' for {kind} '{name}' ({what})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit learnt holds for LIMIT_MEMORY, then is forgotten: a broker
    /// whose limit was raised meanwhile takes larger messages again.
    #[test]
    fn a_learnt_limit_is_forgotten_after_a_while() {
        let limit = LearnedLimit::default();
        assert_eq!(limit.get(), None);
        limit.learn(1024);
        assert_eq!(limit.get(), Some(1024));
        let now = std::time::Instant::now();
        let soon = now + LIMIT_MEMORY - Duration::from_secs(1);
        assert_eq!(limit.get_at(soon), Some(1024));
        let later = now + LIMIT_MEMORY + Duration::from_secs(1);
        assert_eq!(limit.get_at(later), None);
        limit.learn(2048);
        assert_eq!(limit.get(), Some(2048));
    }
}
