//! The RPC server: consumes a target's queues and runs endpoint methods.
//!
//! Like an oslo.messaging server it listens on the shared topic queue, its
//! own `topic.server` queue and a private queue on the topic's fanout
//! exchange. Unlike oslo, it acknowledges a request only after the method
//! returned and its reply was confirmed by the broker (at-least-once; the
//! oslo behaviour is [`AckMode::BeforeDispatch`]), takes from each of its
//! three queues no more messages than it runs at once unless told to
//! (prefetch = executor size by default), and stops gracefully:
//! no more deliveries, received-but-not-started ones back to the queue,
//! running ones finished and answered. [`RpcServer::stop_within`] bounds
//! that wait: requests still running after the grace are given back to the
//! queue unanswered, for another server of the topic to run and answer
//! (their callers wait for one reply, whoever sends it).

// Endpoint methods fail with a `RemoteError`, the exception sent to the
// caller: it is the error of this module's results by design.
#![allow(clippy::result_large_err)]
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::dedup::{Admission, CachedReply, DuplicateFilter};
use super::dispatcher::{Dispatcher, Endpoint, MethodResult};
use crate::messaging::broker::{Acker, Delivery, Publication, PublishOutcome, SubscriptionSpec};
use crate::messaging::codec::Codec;
use crate::messaging::consumer::ConsumerGroup;
use crate::messaging::error::{MessagingError, Result};
use crate::messaging::failure::RemoteError;
use crate::messaging::target::Target;
use crate::messaging::transport::Transport;
use crate::messaging::wire::{self, IncomingRequest, OutgoingReply, ReplyAddress};

/// Default cap on request bodies (larger ones are rejected unread).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// When a request is acknowledged to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// After the method returned and its reply was confirmed: a server that
    /// dies mid-request leaves the request to another server.
    #[default]
    AfterDispatch,
    /// Before running it, as oslo.messaging does: a crash loses the request.
    BeforeDispatch,
}

/// Counters of what a server did, for tests, logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Messages received.
    pub received: u64,
    /// Methods that returned a result.
    pub succeeded: u64,
    /// Methods that failed (endpoint errors, unknown methods, bad arguments).
    pub failed: u64,
    /// Messages that could not be decoded; rejected without requeue.
    pub malformed: u64,
    /// Messages refused unread (too large, unknown content type).
    pub rejected: u64,
    /// Duplicates recognised by `_unique_id`.
    pub duplicates: u64,
    /// Replies dropped because the caller's reply queue was gone.
    pub replies_dropped: u64,
    /// Requests still running when a stop ran out of grace: given back to
    /// the queue unanswered (or, acknowledged before they ran under
    /// [`AckMode::BeforeDispatch`], answered with an error).
    pub abandoned: u64,
}

impl ServerStats {
    /// Messages whose outcome is known: succeeded, failed, malformed,
    /// rejected, recognised as duplicates or abandoned by a stop. `received`
    /// is counted when a message arrives, before it is read; these once the
    /// method returned (or the message was refused), before the reply is
    /// sent and the message acknowledged. So a caller waiting for messages'
    /// outcomes (a test, a drain check) waits for this to reach the count
    /// instead of `received`. A request whose acknowledgement was lost with
    /// the broker connection before it ran (under
    /// [`AckMode::BeforeDispatch`]) is left to its redelivery and never
    /// counted here; one whose reply could not be sent is counted, and
    /// delivered again.
    pub fn settled(&self) -> u64 {
        self.succeeded
            + self.failed
            + self.malformed
            + self.rejected
            + self.duplicates
            + self.abandoned
    }
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    malformed: AtomicU64,
    rejected: AtomicU64,
    duplicates: AtomicU64,
    replies_dropped: AtomicU64,
    abandoned: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerStats {
            received: get(&self.received),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            malformed: get(&self.malformed),
            rejected: get(&self.rejected),
            duplicates: get(&self.duplicates),
            replies_dropped: get(&self.replies_dropped),
            abandoned: get(&self.abandoned),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Configures an [`RpcServer`].
pub struct RpcServerBuilder {
    transport: Transport,
    target: Target,
    endpoints: Vec<Endpoint>,
    executor_size: usize,
    prefetch: Option<usize>,
    ack_mode: AckMode,
    max_message_size: usize,
    dead_letter_exchange: Option<String>,
    ping: bool,
    missing_reply_queue_timeout: Duration,
}

impl RpcServerBuilder {
    /// Adds an endpoint; endpoints are tried in the order added.
    #[must_use]
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// How many requests run at once (and, unless [`Self::prefetch`] says
    /// otherwise, the prefetch of each queue). Defaults to the number of CPUs.
    #[must_use]
    pub fn executor_size(mut self, size: usize) -> Self {
        self.executor_size = size.max(1);
        self
    }

    /// How many requests each queue hands over before they run (the AMQP
    /// prefetch), at least `executor_size`: the next request is already
    /// here when one ends, instead of a round trip to the broker later.
    /// Those not started when the server stops go back to the queue.
    #[must_use]
    pub fn prefetch(mut self, count: usize) -> Self {
        self.prefetch = Some(count);
        self
    }

    /// When requests are acknowledged; see [`AckMode`].
    #[must_use]
    pub fn ack_mode(mut self, mode: AckMode) -> Self {
        self.ack_mode = mode;
        self
    }

    /// Requests larger than this are rejected without being read.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Declares the shared queues with `x-dead-letter-exchange`, so rejected
    /// (malformed) messages are kept there. Every peer declaring the queue
    /// must use the same setting, or the broker refuses the declaration.
    #[must_use]
    pub fn dead_letter_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.dead_letter_exchange = Some(exchange.into());
        self
    }

    /// Answers oslo's `oslo_rpc_server_ping` with `"pong"` (off by default, as oslo).
    #[must_use]
    pub fn ping(mut self, enabled: bool) -> Self {
        self.ping = enabled;
        self
    }

    /// How long a reply is retried while the caller's reply queue is missing
    /// (e.g. while the caller reconnects), before it is dropped.
    #[must_use]
    pub fn missing_reply_queue_timeout(mut self, timeout: Duration) -> Self {
        self.missing_reply_queue_timeout = timeout.min(crate::messaging::MAX_TIMEOUT);
        self
    }

    /// Declares the queues and starts serving.
    pub async fn start(self) -> Result<RpcServer> {
        let server = self.target.server.clone().ok_or_else(|| {
            MessagingError::Invalid(format!(
                "an RPC server needs a server name in its target ({})",
                self.target
            ))
        })?;
        if self.target.topic.is_empty() {
            return Err(MessagingError::Invalid(
                "an RPC server needs a topic".into(),
            ));
        }
        let transport = self.transport;
        let exchange = transport.exchange_of(&self.target);
        let topology = transport.inner().topology.clone();
        let prefetch = self
            .prefetch
            .unwrap_or(self.executor_size)
            .max(self.executor_size);
        let prefetch = u16::try_from(prefetch).unwrap_or(u16::MAX);
        let dlx = self.dead_letter_exchange.as_deref();
        let topic = &self.target.topic;
        let specs = [
            topology.topic_queue(&exchange, topic, dlx),
            topology.topic_queue(&exchange, &format!("{topic}.{server}"), dlx),
            topology.fanout_queue(topic),
        ];
        let ctx = Arc::new(ServerContext {
            transport: transport.clone(),
            dispatcher: Dispatcher::new(self.endpoints, self.ping),
            ack_mode: self.ack_mode,
            max_message_size: self.max_message_size,
            missing_reply_queue_timeout: self.missing_reply_queue_timeout,
            counters: Counters::default(),
            duplicates: DuplicateFilter::default(),
            gone_reply_queues: Mutex::new(HashMap::new()),
            abandon: CancellationToken::new(),
        });
        let fanout_queue = specs[2].0.name.clone();
        let mut group = ConsumerGroup::new(self.executor_size);
        for (queue, binding) in specs {
            let name = queue.name.clone();
            let subscription = transport
                .inner()
                .broker
                .subscribe(SubscriptionSpec {
                    dead_letters: queue
                        .dead_letter_exchange
                        .as_deref()
                        .map(|name| topology.dead_letter(name)),
                    queue,
                    bindings: vec![binding],
                    prefetch,
                    auto_ack: false,
                })
                .await?;
            let handler_ctx = ctx.clone();
            group.spawn(
                name,
                subscription,
                Arc::new(move |delivery, permit| {
                    let ctx = handler_ctx.clone();
                    tokio::spawn(async move {
                        ctx.handle(delivery).await;
                        drop(permit);
                    });
                }),
            );
        }
        debug!(target = %self.target, "RPC server started");
        Ok(RpcServer {
            group: Some(group),
            ctx,
            fanout_queue,
        })
    }
}

/// A running RPC server. Stop it with [`RpcServer::stop`]; dropping it stops
/// consuming without waiting.
pub struct RpcServer {
    group: Option<ConsumerGroup>,
    ctx: Arc<ServerContext>,
    /// This server's own queue of fanout casts, deleted when it stops:
    /// nobody else reads it, and left behind (for `x-expires`, 30 minutes)
    /// it would keep taking every fanout cast of the topic, so that a cast
    /// with no server running would still be "delivered".
    fanout_queue: String,
}

impl RpcServer {
    /// Starts configuring a server for `target` (which needs a topic and a
    /// server name).
    pub fn builder(transport: &Transport, target: Target) -> RpcServerBuilder {
        RpcServerBuilder {
            transport: transport.clone(),
            target,
            endpoints: Vec::new(),
            executor_size: std::thread::available_parallelism().map_or(1, usize::from),
            prefetch: None,
            ack_mode: AckMode::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            dead_letter_exchange: None,
            ping: false,
            missing_reply_queue_timeout: Duration::from_secs(10),
        }
    }

    /// What the server did so far.
    pub fn stats(&self) -> ServerStats {
        self.ctx.counters.snapshot()
    }

    /// Stops consuming, returns unstarted deliveries to their queues, and
    /// waits for the requests in progress to finish and be answered;
    /// what the server did in all.
    pub async fn stop(mut self) -> ServerStats {
        if let Some(group) = self.group.take() {
            group.stop().await;
            self.delete_fanout_queue().await;
        }
        self.stats()
    }

    /// Deletes [`Self::fanout_queue`] (what it still holds is lost, as
    /// with oslo's expiring queue): a failure is only logged, the queue
    /// expires anyway.
    async fn delete_fanout_queue(&self) {
        let broker = &self.ctx.transport.inner().broker;
        if let Err(e) = broker.delete_queue(&self.fanout_queue).await {
            debug!(queue = %self.fanout_queue, error = %e, "could not delete the fanout queue");
        }
    }

    /// Stops as [`Self::stop`] does, but waits only `grace` for the
    /// requests in progress: those still running then are abandoned (their
    /// methods' futures dropped, so a method that must stop work running
    /// elsewhere, on a thread, does so when dropped) and given back to the
    /// queue unanswered, for another server of the topic (a request sent
    /// to this server by name waits in its own queue for its next start; a
    /// fanout cast is lost with the server's fanout queue); their callers
    /// still wait for the one reply. A request acknowledged before it ran
    /// ([`AckMode::BeforeDispatch`]) cannot go back: its caller is answered
    /// with a `RuntimeError`. A method that ended by then is still
    /// answered: its reply may take longer (its broker confirm, or up to
    /// `missing_reply_queue_timeout` for a caller's queue being made
    /// again). Returns what the server did in all: its
    /// [`ServerStats::abandoned`] counts the requests given up.
    pub async fn stop_within(mut self, grace: Duration) -> ServerStats {
        let Some(group) = self.group.take() else {
            return self.stats();
        };
        let mut stop = std::pin::pin!(group.stop());
        if tokio::time::timeout(grace, &mut stop).await.is_ok() {
            self.delete_fanout_queue().await;
            return self.stats();
        }
        // Out of grace, perhaps only for the consumers' cancellation: the
        // counter tells whether a request was actually abandoned.
        self.ctx.abandon.cancel();
        stop.await;
        self.delete_fanout_queue().await;
        let stats = self.stats();
        if stats.abandoned > 0 {
            warn!(
                "gave back {} request(s) still in progress after {grace:?}",
                stats.abandoned
            );
        }
        stats
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        if let Some(group) = &self.group {
            group.shutdown_token().cancel();
        }
    }
}

struct ServerContext {
    transport: Transport,
    dispatcher: Dispatcher,
    ack_mode: AckMode,
    max_message_size: usize,
    missing_reply_queue_timeout: Duration,
    counters: Counters,
    duplicates: DuplicateFilter,
    gone_reply_queues: Mutex<HashMap<String, Instant>>,
    /// Cancelled when a stop runs out of grace: the requests in progress
    /// are abandoned.
    abandon: CancellationToken,
}

/// How the reply went.
enum ReplyOutcome {
    Sent(Arc<[u8]>),
    /// The caller's queue is gone: nobody to answer, the request is done.
    Dropped,
    /// The broker connection failed: the request must run again.
    Disconnected,
    /// The broker refused the reply twice (closing the publishing channel:
    /// a reply larger than it takes, say), and why: the request is done,
    /// its caller told with a small error in its place ([`Self::reply`]).
    Refused(String),
}

impl ServerContext {
    async fn handle(&self, delivery: Delivery) {
        bump(&self.counters.received);
        let Delivery {
            body,
            content_type,
            compression,
            acker,
            redelivered,
        } = delivery;
        if redelivered {
            debug!("received a redelivered request");
        }
        if body.len() > self.max_message_size {
            warn!(
                size = body.len(),
                max = self.max_message_size,
                "rejected a message larger than max_message_size"
            );
            bump(&self.counters.rejected);
            let codec = Codec::from_content_type(content_type.as_deref()).unwrap_or(Codec::Json);
            let reason = format!(
                "the request ({} bytes) is larger than the server's max_message_size ({} bytes)",
                body.len(),
                self.max_message_size
            );
            self.refuse_unread(codec, &body, reason).await;
            let _ = acker.reject(false).await;
            return;
        }
        let body = match crate::messaging::compression::decompressed_aside(
            body,
            compression,
            self.max_message_size,
        )
        .await
        {
            Ok(body) => body,
            Err(reason) => {
                warn!(%reason, "rejected a compressed message");
                bump(&self.counters.malformed);
                let _ = acker.reject(false).await;
                return;
            }
        };
        let codec = match Codec::from_content_type(content_type.as_deref()) {
            Ok(codec) => codec,
            Err(reason) => {
                warn!(%reason, "rejected a message");
                bump(&self.counters.rejected);
                self.refuse_unread(Codec::Json, &body, reason.to_string())
                    .await;
                let _ = acker.reject(false).await;
                return;
            }
        };
        let request = match wire::decode_request(codec, body) {
            Ok(request) => request,
            Err(failure) => {
                warn!(reason = %failure, "rejected a malformed message");
                bump(&self.counters.malformed);
                if let Some(address) = &failure.reply_to {
                    let error =
                        RemoteError::new("MalformedMessage", "faafo.messaging", failure.reason);
                    self.reply(address, codec, Err(error)).await;
                }
                let _ = acker.reject(false).await;
                return;
            }
        };
        let acker = match &request.unique_id {
            Some(unique_id) => {
                // At most once, a finished call is never run again, even
                // with no reply to send (as oslo's id cache drops it).
                let run_again_if_uncached =
                    request.reply_to.is_some() && self.ack_mode == AckMode::AfterDispatch;
                let hold = self.ack_mode == AckMode::AfterDispatch;
                match self
                    .duplicates
                    .admit(unique_id, acker, run_again_if_uncached, hold)
                {
                    Admission::New(acker) => acker,
                    Admission::Held => {
                        bump(&self.counters.duplicates);
                        debug!(%unique_id, "duplicate of a running request held");
                        return;
                    }
                    Admission::Running(acker) => {
                        bump(&self.counters.duplicates);
                        debug!(%unique_id, "duplicate of a running request dropped (at most once)");
                        let _ = acker.ack().await;
                        return;
                    }
                    Admission::Done(acker, cached) => {
                        bump(&self.counters.duplicates);
                        debug!(%unique_id, "duplicate of a finished request");
                        match (cached, &request.reply_to) {
                            (Some(cached), Some(address)) => {
                                self.publish_reply(address, codec, cached.body).await;
                            }
                            // At most once, a call that ran and whose reply
                            // was lost: told so, not left to its timeout.
                            (None, Some(address)) => {
                                let error = RemoteError::runtime_error(format!(
                                    "{}() ran already and its reply was lost; it is not run again (at most once)",
                                    request.method
                                ));
                                self.reply(address, codec, Err(error)).await;
                            }
                            (_, None) => {}
                        }
                        let _ = acker.ack().await;
                        return;
                    }
                }
            }
            None => acker,
        };
        let acker = match self.ack_mode {
            AckMode::BeforeDispatch => {
                // At most once: a request whose acknowledgement did not
                // reach the broker will be delivered again (perhaps to
                // another server), so it does not run here.
                if let Err(e) = acker.ack().await {
                    debug!(error = %e, "not acknowledged: left to its redelivery");
                    if let Some(unique_id) = &request.unique_id {
                        for held in self.duplicates.finish(unique_id, false, None) {
                            settle(held, false).await;
                        }
                    }
                    return;
                }
                None
            }
            AckMode::AfterDispatch => Some(acker),
        };
        let result = tokio::select! {
            // A method that ended is answered, even as the stop gives up.
            biased;
            result = self.run(&request) => result,
            () = self.abandon.cancelled() => {
                self.abandon_request(&request, acker).await;
                return;
            }
        };
        match &result {
            Ok(_) => bump(&self.counters.succeeded),
            Err(error) => {
                bump(&self.counters.failed);
                debug!(method = %request.method, %error, "method failed");
            }
        }
        let (completed, cached) = match &request.reply_to {
            None => (true, None),
            Some(address) => match self.reply(address, request.codec, result).await {
                ReplyOutcome::Sent(body) => (true, Some(CachedReply { body })),
                // (Refused is answered with an error by `reply` itself.)
                ReplyOutcome::Dropped | ReplyOutcome::Refused(_) => (true, None),
                ReplyOutcome::Disconnected => (false, None),
            },
        };
        // Acknowledged before it ran (at most once), it is done whatever
        // became of its reply: the copies held behind it, and the caller's
        // retries, are not run again.
        let done = completed || self.ack_mode == AckMode::BeforeDispatch;
        let held = match &request.unique_id {
            Some(unique_id) => self.duplicates.finish(unique_id, done, cached),
            None => Vec::new(),
        };
        for acker in acker.into_iter().chain(held) {
            settle(acker, done).await;
        }
    }

    /// Answers a request refused before it was read with a
    /// `MalformedMessage` error, when its body says where to.
    async fn refuse_unread(&self, codec: Codec, body: &[u8], reason: String) {
        if let Some(address) = wire::reply_address(codec, body) {
            let error = RemoteError::new("MalformedMessage", "faafo.messaging", reason);
            self.reply(&address, codec, Err(error)).await;
        }
    }

    /// Gives up a request still running when a stop ran out of grace:
    /// unacknowledged, it goes back to the queue with the duplicates held
    /// behind it, for another server to run and answer. Acknowledged
    /// already ([`AckMode::BeforeDispatch`]), it ran at most once: its
    /// caller is told instead of left waiting, and the duplicates held
    /// behind it are dropped with it, not run elsewhere after that answer.
    async fn abandon_request(&self, request: &IncomingRequest, acker: Option<Acker>) {
        bump(&self.counters.abandoned);
        let requeue = acker.is_some();
        let held = match &request.unique_id {
            Some(unique_id) => self.duplicates.finish(unique_id, !requeue, None),
            None => Vec::new(),
        };
        if !requeue && let Some(address) = &request.reply_to {
            let error = RemoteError::runtime_error(format!(
                "the server stopped before {}() finished",
                request.method
            ));
            self.reply(address, request.codec, Err(error)).await;
        }
        for acker in acker.into_iter().chain(held) {
            settle(acker, !requeue).await;
        }
    }

    /// Runs the method, sending call-monitor heartbeats if the caller asked.
    async fn run(&self, request: &IncomingRequest) -> MethodResult {
        // The endpoint's closure runs in `dispatch` before its future does:
        // both inside the guard.
        let method = AssertUnwindSafe(async { self.dispatcher.dispatch(request).await })
            .catch_unwind()
            .map(|outcome| {
                outcome.unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(RemoteError::runtime_error(format!(
                        "the endpoint panicked: {what}"
                    )))
                })
            });
        let (Some(timeout), Some(address)) = (request.monitor_timeout, &request.reply_to) else {
            return method.await;
        };
        if timeout < 2 {
            return method.await;
        }
        let every = Duration::from_secs_f64(timeout as f64 / 2.0);
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        // Beside the method, not in turn with it: a heartbeat waiting for
        // a slow broker's confirm does not hold the method up.
        let heartbeats = async {
            loop {
                ticker.tick().await;
                self.heartbeat(address, request.codec).await;
            }
        };
        tokio::select! {
            result = method => result,
            () = heartbeats => unreachable!("heartbeats go on until the method ends"),
        }
    }

    async fn heartbeat(&self, address: &ReplyAddress, codec: Codec) {
        let unique_id = wire::new_id();
        let body = wire::encode(
            codec,
            &OutgoingReply {
                result: None,
                failure: None,
                ending: false,
                msg_id: &address.msg_id,
                unique_id: &unique_id,
            },
        );
        if let Ok(body) = body {
            let publication = reply_publication(address, codec, Arc::from(body));
            let deadline = Instant::now() + Duration::from_secs(1);
            if let Ok(confirm) = self
                .transport
                .inner()
                .broker
                .publish(&publication, deadline)
                .await
            {
                let _ = confirm.outcome_by(deadline).await;
            }
        }
    }

    async fn reply(
        &self,
        address: &ReplyAddress,
        codec: Codec,
        result: MethodResult,
    ) -> ReplyOutcome {
        let unique_id = wire::new_id();
        let encode = |result: Option<&(dyn erased_serde::Serialize + Send + Sync)>,
                      failure: Option<&str>| {
            wire::encode(
                codec,
                &OutgoingReply {
                    result,
                    failure,
                    ending: true,
                    msg_id: &address.msg_id,
                    unique_id: &unique_id,
                },
            )
        };
        // A method's value whose Serialize panics is an error answered, not
        // a handler gone with its request unsettled.
        let body = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &result {
            Ok(value) => encode(Some(value.as_ref()), None),
            Err(error) => encode(None, Some(&error.to_failure_json())),
        }))
        .unwrap_or_else(|_| {
            Err(crate::messaging::MessagingError::Encode(
                "its Serialize panicked".into(),
            ))
        });
        let body = match body {
            // Larger than the broker takes (max_message_size, set to the
            // broker's own): RabbitMQ would close the publishing channel,
            // which reads as a lost connection, and the request would run
            // again for ever. The caller is told instead.
            Ok(body) if body.len() > self.max_message_size => {
                warn!(
                    msg_id = %address.msg_id,
                    bytes = body.len(),
                    max = self.max_message_size,
                    "a reply larger than max_message_size: answered with an error"
                );
                let error = RemoteError::runtime_error(format!(
                    "the result is {} bytes encoded, more than max_message_size ({} bytes)",
                    body.len(),
                    self.max_message_size
                ));
                match encode(None, Some(&error.to_failure_json())) {
                    Ok(body) => body,
                    Err(_) => return ReplyOutcome::Dropped,
                }
            }
            Ok(body) => body,
            Err(e) => {
                let error =
                    RemoteError::type_error(format!("the result could not be encoded: {e}"));
                match encode(None, Some(&error.to_failure_json())) {
                    Ok(body) => body,
                    Err(_) => return ReplyOutcome::Dropped,
                }
            }
        };
        let size = body.len();
        match self.publish_reply(address, codec, Arc::from(body)).await {
            // Refused twice: most likely larger than the broker takes, with
            // a max_message_size above its limit. The caller is told, in a
            // small reply, rather than left to its timeout.
            ReplyOutcome::Refused(reason) => {
                warn!(
                    msg_id = %address.msg_id,
                    bytes = size,
                    %reason,
                    "the broker refused a reply: answered with an error"
                );
                let error = RemoteError::runtime_error(format!(
                    "the broker refused the result ({size} bytes encoded; is max_message_size \
                     above the broker's own limit?): {reason}"
                ));
                let Ok(body) = encode(None, Some(&error.to_failure_json())) else {
                    bump(&self.counters.replies_dropped);
                    return ReplyOutcome::Dropped;
                };
                match self.publish_reply(address, codec, Arc::from(body)).await {
                    ReplyOutcome::Refused(reason) => {
                        warn!(msg_id = %address.msg_id, %reason, "the broker refused the error reply too; reply dropped");
                        bump(&self.counters.replies_dropped);
                        ReplyOutcome::Dropped
                    }
                    outcome => outcome,
                }
            }
            outcome => outcome,
        }
    }

    async fn publish_reply(
        &self,
        address: &ReplyAddress,
        codec: Codec,
        body: Arc<[u8]>,
    ) -> ReplyOutcome {
        // A queue found gone recently is tried once, without waiting for it
        // to come back (as oslo's obsolete reply queues): its caller may have
        // declared it again since.
        let known_gone = {
            let mut gone = self
                .gone_reply_queues
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            gone.retain(|_, since| since.elapsed() < Duration::from_secs(60));
            gone.contains_key(&address.reply_q)
        };
        let mut publication = reply_publication(address, codec, body);
        let give_up = if known_gone {
            Instant::now()
        } else {
            Instant::now() + self.missing_reply_queue_timeout
        };
        // A refusal on the channel may have been another message's: the
        // reply is sent once more before it is dropped.
        let mut refused = false;
        loop {
            let deadline = Instant::now() + Duration::from_secs(30);
            let outcome = match self
                .transport
                .inner()
                .broker
                .publish(&publication, deadline)
                .await
            {
                Ok(confirm) => confirm.outcome_by(deadline).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(PublishOutcome::Delivered) => {
                    if known_gone {
                        self.gone_reply_queues
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&address.reply_q);
                    }
                    return ReplyOutcome::Sent(publication.body);
                }
                Ok(PublishOutcome::Unroutable) if Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(PublishOutcome::Unroutable) if known_gone => {
                    bump(&self.counters.replies_dropped);
                    return ReplyOutcome::Dropped;
                }
                Ok(PublishOutcome::Unroutable) => {
                    warn!(
                        reply_queue = %address.reply_q,
                        msg_id = %address.msg_id,
                        "the caller's reply queue is gone; reply dropped"
                    );
                    self.gone_reply_queues
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(address.reply_q.clone(), Instant::now());
                    bump(&self.counters.replies_dropped);
                    return ReplyOutcome::Dropped;
                }
                // A nack (the queue refuses more, reject-publish; the
                // broker's own failure) is a refusal too: a request run
                // again would meet it again, without end.
                Ok(PublishOutcome::Nacked) if !refused => {
                    debug!(msg_id = %address.msg_id, "the broker did not accept a reply; sending it again");
                    refused = true;
                    publication.alone = true;
                }
                Ok(PublishOutcome::Nacked) => {
                    return ReplyOutcome::Refused("the broker did not accept it (a nack)".into());
                }
                Err(MessagingError::Disconnected(_)) | Err(MessagingError::Closed) => {
                    warn!(msg_id = %address.msg_id, "could not send a reply; the request will run again");
                    return ReplyOutcome::Disconnected;
                }
                Err(MessagingError::Refused(reason)) if !refused => {
                    debug!(msg_id = %address.msg_id, %reason, "the broker refused a reply; sending it again");
                    refused = true;
                    publication.alone = true;
                }
                Err(MessagingError::Refused(reason)) => return ReplyOutcome::Refused(reason),
                Err(error) => {
                    warn!(msg_id = %address.msg_id, %error, "the broker refused a reply; reply dropped");
                    bump(&self.counters.replies_dropped);
                    return ReplyOutcome::Dropped;
                }
            }
        }
    }
}

fn reply_publication(address: &ReplyAddress, codec: Codec, body: Arc<[u8]>) -> Publication {
    Publication {
        declare: None,
        exchange: String::new(),
        routing_key: address.reply_q.clone(),
        body,
        content_type: codec.content_type().into(),
        expiration: None,
        mandatory: true,
        alone: false,
    }
}

async fn settle(acker: Acker, completed: bool) {
    let result = if completed {
        acker.ack().await
    } else {
        acker.reject(true).await
    };
    if let Err(e) = result {
        debug!(error = %e, "could not settle a delivery; the broker will deliver it again");
    }
}
