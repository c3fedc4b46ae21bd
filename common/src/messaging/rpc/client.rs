//! The RPC client: `call` waits for a typed result, `cast` only sends.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::debug;

use super::reply::ReplyEvent;
use crate::messaging::broker::{Publication, PublishOutcome, Unsettled};
use crate::messaging::codec::Codec;
use crate::messaging::context::RequestContext;
use crate::messaging::error::{MessagingError, Result};
use crate::messaging::failure::RemoteError;
use crate::messaging::kwargs::{self, Shape};
use crate::messaging::retry::RetryPolicy;
use crate::messaging::target::Target;
use crate::messaging::transport::Transport;
use crate::messaging::version::Version;
use crate::messaging::wire::{self, CallFields, OutgoingRequest, Payload};

/// The longest per-message TTL RabbitMQ accepts (2^32 - 1 ms, about 49.7
/// days); a call's longer timeout is sent as this.
pub(crate) const MAX_EXPIRATION: Duration = Duration::from_millis(u32::MAX as u64);

/// No keyword arguments: `{}`.
#[derive(Serialize)]
struct NoArguments {}

/// Default time a call waits for its reply, as oslo's `rpc_response_timeout`.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Calls and casts methods on the servers of a [`Target`].
///
/// Configure it with the builder-style methods; [`RpcClient::prepare`]
/// makes a copy to override some of them for a few calls, as oslo's
/// `prepare()`:
///
/// ```no_run
/// # use faafo_common::messaging::*;
/// # async fn f(transport: Transport) -> Result<(), MessagingError> {
/// let client = RpcClient::new(&transport, Target::topic("tasks"));
/// let ctx = RequestContext::with_new_request_id();
/// let pong: String = client
///     .prepare()
///     .timeout(std::time::Duration::from_secs(5))
///     .call(&ctx, "oslo_rpc_server_ping", &serde_json::json!({}))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RpcClient {
    transport: Transport,
    target: Target,
    timeout: Duration,
    call_monitor_timeout: Option<Duration>,
    retry: RetryPolicy,
    codec: Codec,
}

impl RpcClient {
    /// A client for `target`, with a 60 s timeout and the transport's codec.
    pub fn new(transport: &Transport, target: Target) -> Self {
        Self {
            transport: transport.clone(),
            target,
            timeout: DEFAULT_CALL_TIMEOUT,
            call_monitor_timeout: None,
            retry: RetryPolicy::NEVER,
            codec: transport.codec(),
        }
    }

    /// A copy to override options on, leaving this client as it is.
    pub fn prepare(&self) -> Self {
        self.clone()
    }

    /// Sends to another topic (as oslo.messaging's `prepare(topic=...)`),
    /// through the same transport.
    #[must_use]
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.target.topic = topic.into();
        self
    }

    /// Sends to one server of the topic (`topic.server`).
    #[must_use]
    pub fn server(mut self, server: impl Into<String>) -> Self {
        self.target.server = Some(server.into());
        self
    }

    /// Casts go to every server of the topic.
    #[must_use]
    pub fn fanout(mut self, fanout: bool) -> Self {
        self.target.fanout = fanout;
        self
    }

    /// The endpoint namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.target.namespace = Some(namespace.into());
        self
    }

    /// The version the server must support.
    #[must_use]
    pub fn version(mut self, version: Version) -> Self {
        self.target.version = Some(version);
        self
    }

    /// The exchange.
    #[must_use]
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.target.exchange = Some(exchange.into());
        self
    }

    /// How long a call waits for its reply (also the request's TTL); at
    /// most [`MAX_TIMEOUT`](crate::messaging::MAX_TIMEOUT).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.min(crate::messaging::MAX_TIMEOUT);
        self
    }

    /// Asks the server for call-monitor heartbeats every half of this
    /// (whole seconds, at least 2); the call fails when none arrives for
    /// this long, even if the overall timeout is far.
    #[must_use]
    pub fn call_monitor_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_monitor_timeout =
            timeout.map(|t| t.clamp(Duration::from_secs(2), crate::messaging::MAX_TIMEOUT));
        self
    }

    /// What to do when the connection fails under a send or a call, or
    /// when nobody listens yet: send again (until the call's deadline) or
    /// fail at once (the default).
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The body encoding (MessagePack only between Rust peers).
    #[must_use]
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The target, as configured.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Calls `method` with keyword arguments `args` (a struct or a map;
    /// `()` for none) and waits for its result.
    ///
    /// Fails at once with [`MessagingError::Undeliverable`] when the topic
    /// has no queue (no server ever ran on it); with
    /// [`MessagingError::Timeout`] when no reply comes in time, which is
    /// also what a topic whose servers have all stopped gives (their queue
    /// stays, as oslo's, and keeps the request until it expires); with
    /// [`MessagingError::Encode`] for arguments that are not keyword
    /// arguments; with the server's error types otherwise.
    pub async fn call<A, R>(&self, ctx: &RequestContext, method: &str, args: &A) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let payload = self.call_raw(ctx, method, args).await?;
        payload.decode_result().map_err(|e| {
            MessagingError::Decode(format!(
                "the result of '{method}' from {} does not have the expected type: {e}",
                self.target
            ))
        })
    }

    async fn call_raw<A: Serialize + ?Sized>(
        &self,
        ctx: &RequestContext,
        method: &str,
        args: &A,
    ) -> Result<Payload> {
        if self.target.fanout {
            return Err(MessagingError::Invalid(format!(
                "cannot call '{method}' on a fanout target: calls have one answer, use cast"
            )));
        }
        let deadline = Instant::now() + self.timeout;
        // The reply queue, made by the transport's first call, within this
        // call's time (a broker away or blocked would hold it longer). A
        // broker away (its subscription waits `connection_timeout`) is
        // waited for as the retry policy says, as it is once the queue
        // exists (a publish waits until the deadline).
        // Retries of this call, whatever their cause: the policy's count
        // is for the call, not for each step.
        let mut attempt = 0u32;
        let waiter = loop {
            match tokio::time::timeout_at(deadline, self.transport.reply_waiter()).await {
                Err(_) => return Err(self.timed_out(method)),
                Ok(Ok(waiter)) => break waiter,
                Ok(Err(MessagingError::Disconnected(reason))) => {
                    if !self.may_retry(&mut attempt, deadline) {
                        return Err(MessagingError::Disconnected(reason));
                    }
                    debug!(%method, attempt, %reason, "no reply queue yet; trying again");
                    let pause = Duration::from_millis(200).min(deadline - Instant::now());
                    tokio::time::sleep(pause).await;
                }
                Ok(Err(e)) => return Err(e),
            }
        };
        let msg_id = wire::new_id();
        let unique_id = wire::new_id();
        let mut pending = waiter.register(&msg_id)?;
        let monitor = self.call_monitor_timeout;
        // The call monitor's deadline from now, when there is one.
        let armed_monitor = || monitor.map(|m| Instant::now() + m);
        let body = self.encode_request(
            ctx,
            method,
            args,
            Some(CallFields {
                msg_id: &msg_id,
                reply_q: waiter.queue(),
                monitor_timeout: monitor.map(|d| d.as_secs()),
            }),
            &unique_id,
        )?;
        let mut publication = self.direct_publication(body, Some(self.timeout));
        // Whether the broker already refused it once (sent again once).
        let mut refused = false;
        // No time to send in (a zero timeout): the call timed out; the
        // broker, given no time, would seem blocked by an alarm.
        if Instant::now() >= deadline {
            return Err(self.timed_out(method));
        }
        'send: loop {
            // A request sent again expires when the call does, not a whole
            // timeout later: nobody would wait for its answer.
            publication.expiration = Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), MAX_EXPIRATION),
            );
            let confirm = self
                .transport
                .inner()
                .broker
                .publish(&publication, deadline)
                .await?;
            // The connection this send went on: the reply consumer's loss
            // of an earlier one (the loss that made it send again, told
            // late) is not a second loss.
            let sent_on = confirm.link();
            // Sent while the reply consumer is away: a reply that comes
            // before it has made its queue again is dropped by the broker,
            // so the queue's loss is this send's loss too.
            let sent_while_away = waiter.is_away();
            let mut confirm = Unsettled::new(confirm);
            // No heartbeat can come while the reply consumer is away: the
            // monitor starts once it is back.
            let mut monitor_deadline = armed_monitor().filter(|_| !sent_while_away);
            let mut partial: Option<Payload> = None;
            loop {
                let lost = tokio::select! {
                    outcome = confirm.wait(), if confirm.pending() => {
                        match outcome {
                            Ok(PublishOutcome::Delivered) => continue,
                            Ok(PublishOutcome::Unroutable) => {
                                // Nobody listens yet (e.g. servers re-declaring
                                // their queues after a broker restart): the
                                // retry policy says whether to wait for one.
                                self.wait_for_listener(&mut attempt, deadline, &publication)
                                    .await?;
                                continue 'send;
                            }
                            Ok(PublishOutcome::Nacked) => {
                                return Err(MessagingError::Broker(format!(
                                    "the broker did not accept the call to '{method}' on {}",
                                    self.target
                                )));
                            }
                            // Perhaps another message's refusal, or an
                            // exchange deleted since: once more, declared
                            // again (a copy that did arrive is run once:
                            // the same `_unique_id`).
                            Err(MessagingError::Refused(reason)) if !refused => {
                                debug!(%method, %reason, "the broker refused the call; sending it again");
                                refused = true;
                                publication.alone = true;
                                continue 'send;
                            }
                            Err(e @ MessagingError::Refused(_)) => return Err(e),
                            Err(e) => e.to_string(),
                        }
                    }
                    event = pending.next() => match event {
                        Some(ReplyEvent::Reply(reply)) => {
                            if let Some(failure) = reply.failure {
                                return Err(self.failure_error(method, &failure));
                            }
                            match reply.ending {
                                Some(false) => {
                                    if !reply.result.is_null() {
                                        partial = Some(reply.result);
                                    }
                                    monitor_deadline = armed_monitor();
                                    continue;
                                }
                                _ => {
                                    return Ok(match partial {
                                        Some(p) if reply.result.is_null() => p,
                                        _ => reply.result,
                                    });
                                }
                            }
                        }
                        // Unroutable after all: its return came with a
                        // neighbour's confirm, and that one looked delivered.
                        Some(ReplyEvent::Returned) => {
                            self.wait_for_listener(&mut attempt, deadline, &publication)
                                .await?;
                            continue 'send;
                        }
                        Some(ReplyEvent::Unreadable(reason)) => {
                            return Err(MessagingError::Decode(format!(
                                "the reply to '{method}' from {} cannot be read: {reason}",
                                self.target
                            )));
                        }
                        // No heartbeat can come while the reply consumer
                        // is away: the monitor waits for it.
                        Some(ReplyEvent::Away) => {
                            monitor_deadline = None;
                            continue;
                        }
                        Some(ReplyEvent::Back) => {
                            monitor_deadline = armed_monitor();
                            continue;
                        }
                        // Sent again already, on a later connection: the
                        // reply consumer is back (the monitor too).
                        Some(ReplyEvent::ConnectionLost(lost))
                            if lost < sent_on && !sent_while_away =>
                        {
                            monitor_deadline = armed_monitor();
                            continue;
                        }
                        Some(ReplyEvent::ConnectionLost(_)) => {
                            "the connection to the broker was lost while waiting for the reply, and the reply queue with it".to_string()
                        }
                        None => return Err(MessagingError::Closed),
                    },
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(self.timed_out(method));
                    }
                    _ = sleep_until_opt(monitor_deadline), if monitor_deadline.is_some() => {
                        return Err(MessagingError::HeartbeatTimeout {
                            target: self.target.to_string(),
                            method: method.to_string(),
                            timeout: monitor.unwrap_or_default(),
                        });
                    }
                };
                if self.may_retry(&mut attempt, deadline) {
                    debug!(%method, attempt, reason = %lost, "sending the call again");
                    continue 'send;
                }
                return Err(MessagingError::Disconnected(format!(
                    "{lost}; the call to '{method}' on {} may or may not have run",
                    self.target
                )));
            }
        }
    }

    /// Sends `method` without waiting for a result. Returns once the broker
    /// has confirmed the message; fails with
    /// [`MessagingError::Undeliverable`] when the topic has no queue (no
    /// server ever ran on it; a fanout cast, when no server runs). A cast
    /// to a topic whose servers have stopped waits in their queue, without
    /// expiry, for the next one to start.
    pub async fn cast<A: Serialize + ?Sized>(
        &self,
        ctx: &RequestContext,
        method: &str,
        args: &A,
    ) -> Result<()> {
        let unique_id = wire::new_id();
        let body = self.encode_request(ctx, method, args, None, &unique_id)?;
        let mut publication = if self.target.fanout {
            let topology = &self.transport.inner().topology;
            let exchange = topology.fanout_exchange(&self.target.topic);
            Publication {
                exchange: exchange.name.clone(),
                declare: Some(exchange),
                routing_key: String::new(),
                body: body.into(),
                content_type: self.codec.content_type().into(),
                expiration: None,
                mandatory: true,
                alone: false,
            }
        } else {
            self.direct_publication(body, None)
        };
        let deadline = Instant::now() + self.transport.send_wait().max(self.timeout);
        let mut attempt = 0u32;
        let mut refused = false;
        loop {
            let result = match self
                .transport
                .inner()
                .broker
                .publish(&publication, deadline)
                .await
            {
                Ok(confirm) => confirm.outcome_by(deadline).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(PublishOutcome::Delivered) => return Ok(()),
                Ok(PublishOutcome::Unroutable) => {
                    self.wait_for_listener(&mut attempt, deadline, &publication)
                        .await?;
                }
                Ok(PublishOutcome::Nacked) => {
                    return Err(MessagingError::Broker(format!(
                        "the broker did not accept the cast of '{method}' to {}",
                        self.target
                    )));
                }
                Err(MessagingError::Disconnected(reason)) => {
                    if !self.may_retry(&mut attempt, deadline) {
                        return Err(MessagingError::Disconnected(reason));
                    }
                }
                // As for a call: once more, the exchange declared again.
                Err(MessagingError::Refused(reason)) if !refused => {
                    debug!(%method, %reason, "the broker refused the cast; sending it again");
                    refused = true;
                    publication.alone = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`MessagingError::Timeout`] for a call of `method`.
    fn timed_out(&self, method: &str) -> MessagingError {
        MessagingError::Timeout {
            target: self.target.to_string(),
            method: method.to_string(),
            timeout: self.timeout,
        }
    }

    /// The body of a request of `method`. Its arguments must be keyword
    /// arguments, as oslo.messaging's are (a struct or a map; `()` or
    /// `None` is sent as none, `{}`): anything else is refused here with
    /// [`MessagingError::Encode`], not sent to be refused by the server as
    /// a malformed message ([`kwargs`]).
    fn encode_request<A: Serialize + ?Sized>(
        &self,
        ctx: &RequestContext,
        method: &str,
        args: &A,
        call: Option<CallFields<'_>>,
        unique_id: &str,
    ) -> Result<Vec<u8>> {
        fn request<'a, T: Serialize + ?Sized>(
            client: &'a RpcClient,
            ctx: &'a RequestContext,
            method: &'a str,
            args: &'a T,
            call: Option<CallFields<'a>>,
            unique_id: &'a str,
        ) -> OutgoingRequest<'a, T> {
            OutgoingRequest {
                method,
                args,
                namespace: client.target.namespace.as_deref(),
                version: client.target.version,
                call,
                unique_id,
                context: ctx,
            }
        }
        match kwargs::shape_of(args) {
            Shape::Map => wire::encode(
                self.codec,
                &request(self, ctx, method, args, call, unique_id),
            ),
            Shape::Nothing => wire::encode(
                self.codec,
                &request(self, ctx, method, &NoArguments {}, call, unique_id),
            ),
            Shape::Other(what) => Err(MessagingError::Encode(format!(
                "the arguments of '{method}' are {what}: oslo.messaging's are keyword \
                 arguments, so give a struct or a map of them (or () for none)"
            ))),
        }
    }

    /// Counts one more retry of a message whose connection failed
    /// (`attempt`, of the whole call or cast): whether the retry policy
    /// allows it, with time left before `deadline`.
    fn may_retry(&self, attempt: &mut u32, deadline: Instant) -> bool {
        *attempt += 1;
        self.retry.allows(*attempt) && Instant::now() < deadline
    }

    /// After the `attempt`th unroutable send of `publication` (counted
    /// here): waits a little before it is sent again, as the retry policy
    /// and the deadline allow, or fails it as undeliverable.
    async fn wait_for_listener(
        &self,
        attempt: &mut u32,
        deadline: Instant,
        publication: &Publication,
    ) -> Result<()> {
        *attempt += 1;
        let attempt = *attempt;
        let delay = Duration::from_millis(100u64 << attempt.min(4));
        if !self.retry.allows(attempt) || Instant::now() + delay >= deadline {
            return Err(self.undeliverable(publication));
        }
        debug!(target = %self.target, attempt, "nobody listens yet; sending again");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// A publication to the target's exchange and key; `expiration`, a
    /// call's timeout, is cut to the longest RabbitMQ takes
    /// ([`MAX_EXPIRATION`]: a longer one closes the publishing channel).
    fn direct_publication(&self, body: Vec<u8>, expiration: Option<Duration>) -> Publication {
        let expiration = expiration.map(|ttl| ttl.min(MAX_EXPIRATION));
        let exchange = self.transport.exchange_of(&self.target);
        Publication {
            declare: Some(self.transport.inner().topology.topic_exchange(&exchange)),
            exchange,
            routing_key: self.target.routing_key(),
            body: Arc::from(body),
            content_type: self.codec.content_type().into(),
            expiration,
            mandatory: true,
            alone: false,
        }
    }

    fn undeliverable(&self, publication: &Publication) -> MessagingError {
        MessagingError::Undeliverable {
            target: self.target.to_string(),
            exchange: publication.exchange.clone(),
            routing_key: publication.routing_key.clone(),
        }
    }

    fn failure_error(&self, method: &str, failure: &str) -> MessagingError {
        let error = RemoteError::from_failure_json(failure);
        let target = self.target.to_string();
        match error.class.as_str() {
            "NoSuchMethod" => MessagingError::NoSuchMethod {
                target,
                method: method.to_string(),
            },
            "UnsupportedVersion" => MessagingError::UnsupportedVersion {
                target,
                version: self.target.version.unwrap_or_default().to_string(),
                method: method.to_string(),
            },
            _ => MessagingError::Remote {
                target,
                error: Box::new(error),
            },
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Payload {
    /// Whether the value is absent or null (a heartbeat carries none).
    pub(crate) fn is_null(&self) -> bool {
        match self {
            Payload::Json(None) => true,
            Payload::Json(Some(raw)) => raw.get() == "null",
            Payload::MsgPack(_) => self
                .decode_result::<Option<serde::de::IgnoredAny>>()
                .map(|v| v.is_none())
                .unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call's timeout longer than RabbitMQ's longest per-message TTL goes
    /// out as that TTL (RabbitMQ refuses a longer `expiration`, closing the
    /// publishing channel, in the versions that check it); a shorter one
    /// as it is.
    #[tokio::test]
    async fn a_request_expires_within_what_rabbitmq_takes() {
        let transport = Transport::builder("memory:///expiration-cap")
            .connect()
            .await
            .expect("memory transport");
        let client = RpcClient::new(&transport, Target::topic("t"));
        let far = Duration::from_secs(60 * 24 * 3600);
        let publication = client.direct_publication(Vec::new(), Some(far));
        assert_eq!(publication.expiration, Some(MAX_EXPIRATION));
        assert_eq!(MAX_EXPIRATION.as_millis(), 4_294_967_295);
        let near = Duration::from_secs(900);
        let publication = client.direct_publication(Vec::new(), Some(near));
        assert_eq!(publication.expiration, Some(near));
        transport.close().await;
    }

    /// A reply no parser takes (a Python server's `NaN` in its result)
    /// ends its call at once, with the reason, instead of at its timeout.
    #[tokio::test]
    async fn an_unreadable_reply_ends_its_call_at_once() {
        use crate::messaging::broker::{SubscriptionEvent, SubscriptionSpec};
        use crate::messaging::wire::decode_request;
        let transport = Transport::builder(&format!("memory:///nan-reply-{}", std::process::id()))
            .connect()
            .await
            .expect("memory transport");
        let broker = &transport.inner().broker;
        // The topic's queue, as a server's.
        let (queue, binding) = transport.inner().topology.topic_queue(
            &transport.exchange_of(&Target::topic("nan")),
            "nan",
            None,
        );
        let mut server = broker
            .subscribe(SubscriptionSpec {
                queue,
                bindings: vec![binding],
                prefetch: 1,
                auto_ack: true,
                dead_letters: None,
            })
            .await
            .expect("subscribe");
        let client =
            RpcClient::new(&transport, Target::topic("nan")).timeout(Duration::from_secs(30));
        let started = Instant::now();
        let call = tokio::spawn({
            let client = client.clone();
            async move {
                client
                    .call::<_, serde_json::Value>(&RequestContext::default(), "ratio", &())
                    .await
            }
        });
        let request = loop {
            if let Some(SubscriptionEvent::Delivery(d)) = server.events.recv().await {
                break decode_request(Codec::Json, d.body.to_vec()).expect("request");
            }
        };
        let address = request.reply_to.expect("a call's reply address");
        // What oslo's jsonutils.dumps writes for float('nan').
        let inner = format!(
            r#"{{"_msg_id": "{}", "result": NaN, "failure": null, "ending": true}}"#,
            address.msg_id
        );
        let body = serde_json::json!({"oslo.version": "2.0", "oslo.message": inner}).to_string();
        broker
            .publish(
                &Publication {
                    declare: None,
                    exchange: String::new(),
                    routing_key: address.reply_q,
                    body: Arc::from(body.into_bytes()),
                    content_type: "application/json".into(),
                    expiration: None,
                    mandatory: false,
                    alone: false,
                },
                Instant::now() + Duration::from_secs(5),
            )
            .await
            .expect("publish the reply");
        let result = call.await.expect("call task");
        assert!(
            matches!(&result, Err(MessagingError::Decode(reason)) if reason.contains("malformed reply")),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited out its timeout"
        );
        transport.close().await;
    }

    /// A call sent again (nobody listened at first) expires with the call,
    /// not a whole timeout after it was sent again: a server that comes
    /// after the caller gave up does not run it.
    #[tokio::test]
    async fn a_request_sent_again_expires_with_its_call() {
        use crate::messaging::broker::{SubscriptionEvent, SubscriptionSpec};
        let transport =
            Transport::builder(&format!("memory:///resend-expiry-{}", std::process::id()))
                .connect()
                .await
                .expect("memory transport");
        let client = RpcClient::new(&transport, Target::topic("late"))
            .timeout(Duration::from_millis(1000))
            .retry(RetryPolicy::UNTIL_DEADLINE);
        let call = tokio::spawn({
            let client = client.clone();
            async move {
                client
                    .call::<_, serde_json::Value>(&RequestContext::default(), "m", &())
                    .await
            }
        });
        // Unroutable at 0 ms and about 200 ms; the queue is there, with no
        // consumer, for the try at about 600 ms.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let (queue, binding) = transport.inner().topology.topic_queue(
            &transport.exchange_of(&Target::topic("late")),
            "late",
            None,
        );
        let broker = &transport.inner().broker;
        broker
            .declare(&queue, std::slice::from_ref(&binding))
            .await
            .expect("declare");
        let result = call.await.expect("call task");
        assert!(
            matches!(result, Err(MessagingError::Timeout { .. })),
            "{result:?}"
        );
        // A server starts after the call timed out: the request expired.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            broker.queue_depth("late").await.expect("depth"),
            Some(0),
            "the request outlived its call"
        );
        let mut subscription = broker
            .subscribe(SubscriptionSpec {
                queue,
                bindings: vec![binding],
                prefetch: 1,
                auto_ack: true,
                dead_letters: None,
            })
            .await
            .expect("subscribe");
        let delivered = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                if let Some(SubscriptionEvent::Delivery(_)) = subscription.events.recv().await {
                    return;
                }
            }
        })
        .await;
        assert!(delivered.is_err(), "the late server was given the request");
        transport.close().await;
    }
}
