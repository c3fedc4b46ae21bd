//! RabbitMQ through lapin, with failover, reconnection and re-declaration.
//!
//! A supervisor task owns the connection. When it fails (broker restart,
//! network loss, missed heartbeats) the supervisor reconnects with jittered
//! backoff, moving round-robin through the URL's hosts. Publishers wait for
//! the new connection (up to their deadline); each subscription task
//! re-declares its exchanges, queue and bindings and consumes again, then
//! tells its owner with [`SubscriptionEvent::Reconnected`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, Event};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    Acker, Binding, Delivery, ExchangeKind, ExchangeSpec, LearnedLimit, PendingConfirm,
    Publication, QueueSpec, ReturnSink, StrayReturns, Subscription, SubscriptionEvent,
    SubscriptionHandle, SubscriptionSpec,
};
use crate::messaging::codec::JSON_CONTENT_TYPE;
use crate::messaging::error::{MessagingError, Result};
use crate::messaging::retry::Backoff;
use crate::messaging::url::TransportUrl;

/// A RabbitMQ connection that keeps itself alive.
#[derive(Clone)]
pub(crate) struct AmqpBroker {
    inner: Arc<Inner>,
    _close_on_drop: Arc<CloseOnDrop>,
}

/// Shuts the supervisor down when the last handle on the broker goes.
struct CloseOnDrop(CancellationToken);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

struct Inner {
    url: TransportUrl,
    connection_name: String,
    state: watch::Sender<LinkState>,
    shutdown: CancellationToken,
    /// Parent of every subscription's cancel token, cancelled first on close.
    consumers: CancellationToken,
    /// Cancelled by each subscription task when it has finished.
    consumers_stopped: Mutex<Vec<CancellationToken>>,
    backoff: Backoff,
    /// Where a returned message that a neighbour's confirm carried goes.
    strays: StrayReturns,
    /// Each host's largest message, as it said when it refused a larger
    /// one, by the index of the host in the URL.
    size_limits: Vec<Arc<LearnedLimit>>,
}

#[derive(Clone)]
enum LinkState {
    Connecting(String),
    Up(Arc<Link>),
    Closed,
}

/// One live connection (a "generation").
struct Link {
    /// This connection's number: each new one has a larger one.
    id: u64,
    host: String,
    connection: Connection,
    /// The publishing channel and its generation (which channel failed
    /// is told by generation: channel ids are reused).
    publisher: tokio::sync::Mutex<Option<(u64, Channel)>>,
    generations: std::sync::atomic::AtomicU64,
    /// The lasting exchanges declared on this connection (each on a
    /// channel of its own, not the publishing one): forgotten when a
    /// publish fails, or its confirm comes with the channel closed by a
    /// refusal, which may be a NOT_FOUND for one deleted since.
    declared: Arc<Mutex<HashSet<String>>>,
    /// The largest message this connection's host takes, as it said when
    /// it refused a larger one. A larger one is refused here, not sent:
    /// RabbitMQ would close its channel, with the confirms of the messages
    /// beside it, and the rest of a large message's frames can reach it
    /// after that close, which it takes for a protocol error of the whole
    /// connection.
    size_limit: Arc<LearnedLimit>,
}

type Events = BoxStream<'static, Event>;

impl AmqpBroker {
    /// Connects to the first reachable host (in shuffled order, as oslo);
    /// fails with every host's error when none answers.
    pub(crate) async fn connect(url: TransportUrl, connection_name: &str) -> Result<Self> {
        if url.options.ssl {
            return Err(MessagingError::Invalid(
                "TLS was requested (amqps:// or ssl=1) but this build of faafo has no TLS \
                 support; use a plain amqp:// URL on a trusted network or a TLS-terminating proxy"
                    .into(),
            ));
        }
        let backoff = Backoff {
            initial: url.options.retry_interval,
            step: url.options.retry_backoff,
            max: url.options.retry_interval_max,
        };
        let (state, _) = watch::channel(LinkState::Connecting("not connected yet".into()));
        let hosts = url.hosts.len();
        let inner = Arc::new(Inner {
            url,
            connection_name: connection_name.to_string(),
            state,
            shutdown: CancellationToken::new(),
            consumers: CancellationToken::new(),
            consumers_stopped: Mutex::new(Vec::new()),
            backoff,
            strays: StrayReturns::default(),
            size_limits: (0..hosts).map(|_| Arc::default()).collect(),
        });
        let mut order: Vec<usize> = (0..inner.url.hosts.len()).collect();
        fastrand::shuffle(&mut order);
        let mut errors = Vec::new();
        for (pos, &index) in order.iter().enumerate() {
            match inner.open_link(index).await {
                Ok((link, events)) => {
                    info!(broker = %link.host, "connected to the message broker");
                    inner.state.send_replace(LinkState::Up(link.clone()));
                    tokio::spawn(supervise(inner.clone(), order, pos, link, events));
                    let close = CloseOnDrop(inner.shutdown.clone());
                    return Ok(Self {
                        inner,
                        _close_on_drop: Arc::new(close),
                    });
                }
                Err(e) => errors.push(format!("{}: {e}", inner.url.hosts[index])),
            }
        }
        Err(MessagingError::Disconnected(format!(
            "could not connect to {}: {}",
            inner.url,
            errors.join("; ")
        )))
    }

    pub(crate) fn is_connected(&self) -> bool {
        !self.inner.shutdown.is_cancelled()
            && matches!(&*self.inner.state.borrow(), LinkState::Up(l) if l.connection.status().connected())
    }

    /// Sends the messages returned to this connection whose confirm was a
    /// neighbour's to `sink` (see [`StrayReturns`]).
    pub(crate) fn on_stray_returns(&self, sink: ReturnSink) {
        self.inner.strays.set(sink);
    }

    pub(crate) async fn publish(
        &self,
        publication: &Publication,
        deadline: Instant,
    ) -> Result<PendingConfirm> {
        // Attempts on one link: a dead link the supervisor has not yet
        // replaced (up to a quarter of a second) must not use up the
        // tries of the link after it.
        let (mut attempt, mut on_link) = (0u32, None);
        'publish: loop {
            let link = self.inner.wait_up(deadline).await?;
            if on_link != Some(link.id) {
                (attempt, on_link) = (0, Some(link.id));
            }
            if let Some(limit) = link.size_limit.get()
                && publication.body.len() > limit
            {
                return Err(MessagingError::Refused(format!(
                    "the message ({} bytes) is larger than the broker takes ({limit} bytes, \
                     as it said when it refused a larger one)",
                    publication.body.len()
                )));
            }
            // A connection the broker blocked (a memory or disk alarm):
            // lapin would keep the message and send it once the alarm
            // clears, long after the caller was told it failed. Held back
            // here instead, until the deadline: then certainly not sent.
            while link.connection.status().blocked() {
                if Instant::now() >= deadline {
                    let why = if link.connection.status().connected() {
                        "the broker is blocked by a resource alarm (memory or disk)"
                    } else {
                        "the connection to the broker was lost while it was blocked"
                    };
                    return Err(MessagingError::Disconnected(format!(
                        "{why}: the message was not sent"
                    )));
                }
                tokio::time::sleep(BLOCKED_POLL.min(deadline - Instant::now())).await;
                // lapin keeps a dead connection's `blocked`: a link that
                // failed meanwhile is left for the next one.
                if !link.connection.status().connected() {
                    continue 'publish;
                }
            }
            attempt += 1;
            // A broker that blocks the connection after lapin took the
            // message, or that stops answering: bounded by the deadline.
            let published = match tokio::time::timeout_at(deadline, link.publish(publication)).await
            {
                Ok(published) => published,
                Err(_) => {
                    return Err(MessagingError::Disconnected(
                        "the broker did not take the message in time (is it blocked by a resource \
                         alarm?); it may still be delivered if the broker takes it later"
                            .into(),
                    ));
                }
            };
            match published {
                Ok((confirm, own_channel)) => {
                    return Ok(PendingConfirm::Amqp {
                        confirm,
                        own_channel,
                        size_limit: link.size_limit.clone(),
                        routing_key: publication.routing_key.clone(),
                        body: publication.body.clone(),
                        strays: self.inner.strays.clone(),
                        declared: link.declared.clone(),
                        link: link.id,
                    });
                }
                Err(e) => {
                    let connected = link.connection.status().connected();
                    let refused = e.is_amqp_soft_error();
                    debug!(error = %e, attempt, connected, "publish failed");
                    // A refusal (e.g. NOT_FOUND for an exchange deleted since we
                    // declared it) is retried once on a fresh channel that
                    // declares again; then it is the caller's error.
                    if connected && (attempt >= 3 || (refused && attempt >= 2)) {
                        return Err(MessagingError::Broker(e.to_string()));
                    }
                    if Instant::now() >= deadline {
                        return Err(MessagingError::Disconnected(e.to_string()));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    pub(crate) async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription> {
        let deadline = Instant::now() + self.inner.url.options.connection_timeout;
        let link = self.inner.wait_up(deadline).await?;
        // A broker that stops answering (a resource alarm, a half-open
        // connection) must not hold the subscriber forever.
        let (channel, consumer) = tokio::time::timeout_at(deadline, start_consumer(&link, &spec))
            .await
            .map_err(|_| unanswered("a consumer"))??;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = self.inner.consumers.child_token();
        let stopped = CancellationToken::new();
        {
            let mut all = self
                .inner
                .consumers_stopped
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            all.retain(|t| !t.is_cancelled());
            all.push(stopped.clone());
        }
        tokio::spawn(run_subscription(
            self.inner.clone(),
            spec,
            Some((link.id, channel, consumer)),
            tx,
            cancel.clone(),
            stopped.clone(),
        ));
        Ok(Subscription {
            events: rx,
            handle: SubscriptionHandle::Amqp(AmqpSubscriptionHandle { cancel, stopped }),
        })
    }

    /// Declares a queue and its bindings without consuming from it.
    pub(crate) async fn declare(&self, queue: &QueueSpec, bindings: &[Binding]) -> Result<()> {
        let deadline = Instant::now() + self.inner.url.options.connection_timeout;
        let link = self.inner.wait_up(deadline).await?;
        tokio::time::timeout_at(deadline, async {
            let channel = link.connection.create_channel().await.map_err(refused)?;
            let result = declare_topology(&channel, queue, bindings).await;
            let _ = channel.close(200, "OK".into()).await;
            result
        })
        .await
        .map_err(|_| unanswered("a declaration"))?
    }

    /// Ready messages in a queue (`None` if there is no such queue).
    pub(crate) async fn queue_depth(&self, name: &str) -> Result<Option<usize>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let link = self.inner.wait_up(deadline).await?;
        let depth = passive_declare(&link, name).await?;
        Ok(depth.map(|ready| ready as usize))
    }

    pub(crate) async fn delete_queue(&self, name: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let link = self.inner.wait_up(deadline).await?;
        tokio::time::timeout_at(deadline, async {
            let channel = link
                .connection
                .create_channel()
                .await
                .map_err(|e| MessagingError::Disconnected(e.to_string()))?;
            let result = channel
                .queue_delete(name.into(), QueueDeleteOptions::default())
                .await
                .map(drop)
                .map_err(|e| MessagingError::Broker(e.to_string()));
            let _ = channel.close(200, "OK".into()).await;
            result
        })
        .await
        .map_err(|_| unanswered("a queue deletion"))?
    }

    /// Closes in order: consumers cancelled and finished, publishing
    /// channel closed, then the connection.
    pub(crate) async fn close(&self) {
        self.inner.consumers.cancel();
        let stopped = self
            .inner
            .consumers_stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let all_stopped = futures_util::future::join_all(stopped.iter().map(|t| t.cancelled()));
        let _ = tokio::time::timeout(Duration::from_secs(5), all_stopped).await;
        let link = match &*self.inner.state.borrow() {
            LinkState::Up(link) => Some(link.clone()),
            _ => None,
        };
        if let Some(link) = link {
            link.reset_publisher(None).await;
        }
        self.inner.shutdown.cancel();
        let mut rx = self.inner.state.subscribe();
        let closed = async {
            while !matches!(*rx.borrow_and_update(), LinkState::Closed) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), closed).await;
    }
}

impl Inner {
    fn amqp_uri(&self, index: usize) -> AMQPUri {
        let host = &self.url.hosts[index];
        AMQPUri {
            scheme: AMQPScheme::AMQP,
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: host.username.clone(),
                    password: host.password.clone(),
                },
                host: host.host.clone(),
                port: host.port,
            },
            vhost: self.url.virtual_host.clone(),
            query: AMQPQueryString {
                heartbeat: Some(
                    // Whole seconds, rounded up: 0.5 s is 1, not 0 (which
                    // would take the broker's value).
                    self.url
                        .options
                        .heartbeat
                        .as_secs_f64()
                        .ceil()
                        .min(f64::from(u16::MAX)) as u16,
                ),
                ..AMQPQueryString::default()
            },
        }
    }

    async fn open_link(&self, index: usize) -> std::result::Result<(Arc<Link>, Events), String> {
        let uri = self.amqp_uri(index);
        let properties = ConnectionProperties::default()
            .with_connection_name(self.connection_name.clone().into());
        let timeout = self.url.options.connection_timeout;
        let connection = tokio::time::timeout(timeout, Connection::connect_uri(uri, properties))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| connect_error(&e))?;
        let events = connection.events_listener().boxed();
        static LINK_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let link = Arc::new(Link {
            id: LINK_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            host: self.url.hosts[index].to_string(),
            connection,
            publisher: tokio::sync::Mutex::new(None),
            generations: std::sync::atomic::AtomicU64::new(0),
            declared: Arc::default(),
            size_limit: self.size_limits[index].clone(),
        });
        link.publisher().await.map_err(|e| e.to_string())?;
        Ok((link, events))
    }

    /// The live link, waiting for one until `deadline`.
    async fn wait_up(&self, deadline: Instant) -> Result<Arc<Link>> {
        // Closing (the link may still be up while it closes): nothing new
        // starts on it.
        if self.shutdown.is_cancelled() {
            return Err(MessagingError::Closed);
        }
        if let LinkState::Up(link) = &*self.state.borrow() {
            return Ok(link.clone());
        }
        let mut rx = self.state.subscribe();
        loop {
            let reason = match &*rx.borrow_and_update() {
                LinkState::Up(link) => return Ok(link.clone()),
                LinkState::Closed => return Err(MessagingError::Closed),
                LinkState::Connecting(reason) => reason.clone(),
            };
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Err(_) => {
                    return Err(MessagingError::Disconnected(format!(
                        "no connection to {} ({reason})",
                        self.url
                    )));
                }
                Ok(Err(_)) => return Err(MessagingError::Closed),
                Ok(Ok(())) => {}
            }
        }
    }

    /// The live link, waiting as long as it takes (or until cancelled).
    async fn wait_up_forever(&self, cancel: &CancellationToken) -> Option<Arc<Link>> {
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        tokio::select! {
            link = self.wait_up(far) => link.ok(),
            _ = cancel.cancelled() => None,
        }
    }
}

/// Watches the link; on failure reconnects, forever, until shutdown.
async fn supervise(
    inner: Arc<Inner>,
    order: Vec<usize>,
    mut pos: usize,
    mut link: Arc<Link>,
    mut events: Events,
) {
    loop {
        let Some(reason) = wait_for_failure(&link, &mut events, &inner.shutdown).await else {
            // Bounded: a broker that stopped reading (a resource alarm, a
            // half-open connection) never answers the close.
            let _ =
                tokio::time::timeout(CHANNEL_CLOSE_WAIT, link.connection.close(200, "OK".into()))
                    .await;
            inner.state.send_replace(LinkState::Closed);
            return;
        };
        warn!(broker = %link.host, %reason, "lost the connection to the message broker; reconnecting");
        inner.state.send_replace(LinkState::Connecting(reason));
        drop(link);
        let mut attempt = 0u32;
        (link, events) = loop {
            attempt += 1;
            // At least 100 ms: a URL's zero backoff would have a refused
            // connection retried in a loop that holds a core and floods
            // the log.
            let delay = inner.backoff.delay(attempt).max(MIN_RECONNECT_DELAY);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = inner.shutdown.cancelled() => {
                    inner.state.send_replace(LinkState::Closed);
                    return;
                }
            }
            if order.len() > 1 {
                pos = (pos + 1) % order.len();
            }
            // A close during a connect (up to `connection_timeout` to a
            // host that does not answer) does not wait for it, nor leave
            // a link up after it.
            let opened = tokio::select! {
                opened = inner.open_link(order[pos]) => opened,
                _ = inner.shutdown.cancelled() => {
                    inner.state.send_replace(LinkState::Closed);
                    return;
                }
            };
            match opened {
                Ok(opened) => break opened,
                Err(e) => {
                    let host = &inner.url.hosts[order[pos]];
                    warn!(broker = %host, attempt, error = %e, "reconnect failed");
                    inner
                        .state
                        .send_replace(LinkState::Connecting(format!("{host}: {e}")));
                }
            }
        };
        info!(broker = %link.host, attempt, "reconnected to the message broker");
        inner.state.send_replace(LinkState::Up(link.clone()));
    }
}

/// Returns why the connection failed, or `None` on shutdown.
async fn wait_for_failure(
    link: &Link,
    events: &mut Events,
    shutdown: &CancellationToken,
) -> Option<String> {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            event = events.next() => match event {
                // Channel errors are reported here too; only a dead
                // connection matters to the supervisor.
                Some(Event::Error(e)) if !link.connection.status().connected() => {
                    return Some(e.to_string());
                }
                Some(_) => {}
                None => return Some("the connection closed".into()),
            },
            _ = tick.tick() => {
                if !link.connection.status().connected() {
                    return Some("the connection closed".into());
                }
            }
        }
    }
}

impl Link {
    /// The publishing channel (confirm mode) and its generation,
    /// re-created if it died.
    async fn publisher(&self) -> lapin::Result<(u64, Channel)> {
        let mut slot = self.publisher.lock().await;
        if let Some((generation, channel)) = slot.as_ref()
            && channel.status().connected()
        {
            return Ok((*generation, channel.clone()));
        }
        // The dead one goes here, under the lock: a failure to open its
        // successor then leaves nothing to reset, and cannot close another
        // publish's fresh channel.
        *slot = None;
        let channel = self.connection.create_channel().await?;
        if let Err(e) = channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
        {
            drop(slot);
            close_channel(channel).await;
            return Err(e);
        }
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *slot = Some((generation, channel.clone()));
        Ok((generation, channel))
    }

    /// Closes the publishing channel of `failed` generation (all, with
    /// `None`), so that the next publish opens a fresh one; a channel
    /// another publish already opened in its place stays.
    async fn reset_publisher(&self, failed: Option<u64>) {
        let taken = {
            let mut slot = self.publisher.lock().await;
            let stale = match (slot.as_ref(), failed) {
                (Some((generation, _)), Some(failed)) => *generation == failed,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if stale { slot.take() } else { None }
        };
        // Closed outside the lock: the next publish opens its channel
        // meanwhile.
        if let Some((_, channel)) = taken {
            close_channel(channel).await;
        }
    }

    /// Publishes on the publishing channel; on failure, closes that channel
    /// (and only that one) for the next publish to open a fresh one, which
    /// declares its exchange again. A message to send [alone](Publication::alone)
    /// goes on a confirm channel of its own, returned with its confirm.
    async fn publish(
        &self,
        p: &Publication,
    ) -> lapin::Result<(lapin::PublisherConfirm, Option<Box<Channel>>)> {
        // A lasting exchange, once per channel, on a channel of its own: a
        // refusal there fails this publish alone (see
        // `declare_exchange_aside`).
        if let Some(spec) = p.declare.as_ref().filter(|spec| !spec.auto_delete)
            && !self.is_declared(&spec.name)
        {
            self.declare_exchange_aside(spec).await?;
            self.declared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(spec.name.clone());
        }
        if p.alone {
            return self.publish_alone(p).await;
        }
        let (generation, channel) = self.publisher().await?;
        let published = self.publish_on(&channel, p).await;
        if published.is_err() {
            self.forget_declared();
            self.reset_publisher(Some(generation)).await;
        }
        published.map(|confirm| (confirm, None))
    }

    /// Publishes on a confirm channel of its own (see [`Publication::alone`]).
    async fn publish_alone(
        &self,
        p: &Publication,
    ) -> lapin::Result<(lapin::PublisherConfirm, Option<Box<Channel>>)> {
        let channel = self.connection.create_channel().await?;
        let published = match channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
        {
            Ok(()) => self.publish_on(&channel, p).await,
            Err(e) => Err(e),
        };
        match published {
            Ok(confirm) => Ok((confirm, Some(Box::new(channel)))),
            Err(e) => {
                self.forget_declared();
                close_channel(channel).await;
                Err(e)
            }
        }
    }

    /// After a failed publish: a NOT_FOUND may say that an exchange was
    /// deleted since it was declared, so each is declared again.
    fn forget_declared(&self) {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn is_declared(&self, exchange: &str) -> bool {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(exchange)
    }

    /// Declares the exchange a publish goes to on a channel of its own: a
    /// refusal closes the channel it came on, and on the publishing
    /// channel that would fail every confirm still to come there (other
    /// callers' messages, routed and running). A 406 says that the exchange
    /// exists with other properties (a Python peer's with
    /// `amqp_durable_queues`): it is published to as it is.
    async fn declare_exchange_aside(&self, spec: &ExchangeSpec) -> lapin::Result<()> {
        let channel = self.connection.create_channel().await?;
        let declared = declare_exchange(&channel, spec).await;
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
        match declared {
            Err(e) if is_precondition_failed(&e) => {
                debug!(exchange = %spec.name, error = %e, "the exchange exists with other properties: published to as it is");
                Ok(())
            }
            declared => declared,
        }
    }

    async fn publish_on(
        &self,
        channel: &Channel,
        p: &Publication,
    ) -> lapin::Result<lapin::PublisherConfirm> {
        // An auto-delete exchange (a fanout's) goes with its last queue:
        // declared before every publish, on the publishing channel (one
        // round trip; only faafo and oslo declare these, alike), or a
        // publish to it would fail its channel with NOT_FOUND.
        if let Some(spec) = p.declare.as_ref().filter(|spec| spec.auto_delete) {
            declare_exchange(channel, spec).await?;
        }
        let mut properties = BasicProperties::default()
            .with_content_type(p.content_type.as_ref().into())
            .with_delivery_mode(2)
            .with_priority(0)
            .with_headers(FieldTable::default());
        if p.content_type == JSON_CONTENT_TYPE {
            properties = properties.with_content_encoding("utf-8".into());
        }
        if let Some(ttl) = p.expiration {
            properties = properties.with_expiration(ttl.as_millis().to_string().into());
        }
        channel
            .basic_publish(
                p.exchange.as_str().into(),
                p.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: p.mandatory,
                    immediate: false,
                },
                &p.body,
                properties,
            )
            .await
    }
}

/// The largest message a broker takes, read off its refusal of a larger
/// one: RabbitMQ's "PRECONDITION_FAILED - message size 2097343 is larger
/// than configured max size 1048576".
pub(super) fn size_limit_in(refusal: &str) -> Option<usize> {
    let (_, after) = refusal.split_once("larger than configured max size ")?;
    let digits = after.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok().filter(|&limit| limit > 0)
}

/// Closes `channel` if it is still open, waiting at most
/// [`CHANNEL_CLOSE_WAIT`]: a broker that stopped reading (a resource
/// alarm, a connection half gone) never answers, and a stopping program
/// would hang on it.
async fn close_channel(channel: Channel) {
    if channel.status().connected() {
        let _ = tokio::time::timeout(CHANNEL_CLOSE_WAIT, channel.close(200, "OK".into())).await;
    }
}

/// `confirm`'s outcome; then `own_channel`, a message's channel of its
/// own ([`Publication::alone`]), is closed.
pub(super) async fn closing_after(
    own_channel: Option<Box<Channel>>,
    confirm: lapin::PublisherConfirm,
) -> lapin::Result<lapin::Confirmation> {
    let outcome = confirm.await;
    // Closed aside: the outcome is not held back by the close's round trip
    // (nor by a broker that stopped reading, up to CHANNEL_CLOSE_WAIT).
    if let Some(channel) = own_channel {
        tokio::spawn(close_channel(*channel));
    }
    outcome
}

/// Whether the broker refused a declaration as PRECONDITION_FAILED (406):
/// what is declared exists with other properties.
fn is_precondition_failed(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
}

async fn declare_exchange(channel: &Channel, spec: &ExchangeSpec) -> lapin::Result<()> {
    let kind = match spec.kind {
        ExchangeKind::Topic => lapin::ExchangeKind::Topic,
        ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
    };
    channel
        .exchange_declare(
            spec.name.as_str().into(),
            kind,
            ExchangeDeclareOptions {
                durable: spec.durable,
                auto_delete: spec.auto_delete,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// The shortest wait between two reconnection attempts.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);

fn queue_arguments(spec: &QueueSpec) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some(expires) = spec.expires {
        // At least 1 ms: RabbitMQ refuses an x-expires of 0.
        let ms = i32::try_from(expires.as_millis().max(1)).unwrap_or(i32::MAX);
        args.insert("x-expires".into(), AMQPValue::LongInt(ms));
    }
    if let Some(dlx) = &spec.dead_letter_exchange {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.as_str().into()),
        );
    }
    args
}

/// How often a publish held back by a blocked connection looks again.
const BLOCKED_POLL: Duration = Duration::from_millis(50);

/// The error of a request the broker took and never answered.
fn unanswered(what: &str) -> MessagingError {
    MessagingError::Disconnected(format!(
        "the broker did not answer {what} in time (is it blocked by a resource alarm?)"
    ))
}

/// Why a connection could not be opened, in words: a peer that answers
/// in something else than AMQP 0-9-1 (an HTTP server, the management
/// port) is named as such instead of with the parser's internals
/// ("failed to parse: Parsing Error: ParserErrors { ... }").
fn connect_error(e: &lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ParsingError(_) | lapin::ErrorKind::InvalidProtocolVersion(_) => {
            "the server answered, but not as an AMQP 0-9-1 broker (is this \
             RabbitMQ's AMQP port, 5672 by default? 15672 is its web UI)"
                .to_string()
        }
        _ => e.to_string(),
    }
}

fn refused(e: lapin::Error) -> MessagingError {
    if e.is_amqp_soft_error() || e.is_amqp_hard_error() {
        MessagingError::Broker(e.to_string())
    } else {
        MessagingError::Disconnected(e.to_string())
    }
}

/// Puts back in their queue the deliveries a cancelled consumer still
/// holds (pushed by the broker before it took the cancel): unread, they
/// would stay unacknowledged, for no other server to take, as long as the
/// channel lives (the requests in progress on it keep it open).
/// (Without acknowledgements there is nothing to give back.)
async fn give_back_buffered(consumer: &mut Consumer, auto_ack: bool) {
    if auto_ack {
        return;
    }
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_millis(100), consumer.next()).await
    {
        let _ = delivery
            .acker
            .reject(lapin::options::BasicRejectOptions { requeue: true })
            .await;
    }
}

async fn start_consumer(link: &Link, spec: &SubscriptionSpec) -> Result<(Channel, Consumer)> {
    let channel = link.connection.create_channel().await.map_err(refused)?;
    if spec.prefetch > 0 {
        channel
            .basic_qos(spec.prefetch, BasicQosOptions::default())
            .await
            .map_err(refused)?;
    }
    if let Some((queue, binding)) = &spec.dead_letters {
        declare_topology(&channel, queue, std::slice::from_ref(binding)).await?;
    }
    declare_topology(&channel, &spec.queue, &spec.bindings).await?;
    let tag = format!("faafo-{}", uuid::Uuid::new_v4().simple());
    let consumer = channel
        .basic_consume(
            spec.queue.name.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions {
                no_ack: spec.auto_ack,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(refused)?;
    Ok((channel, consumer))
}

/// Whether `queue` exists. `None` when the broker could not be asked (the
/// link died meanwhile): only its NOT_FOUND says that the queue is gone.
async fn queue_exists(link: &Link, queue: &str) -> Option<bool> {
    passive_declare(link, queue)
        .await
        .ok()
        .map(|ready| ready.is_some())
}

/// A passive declaration of `queue`, on a channel of its own (a queue that
/// is not there closes the channel it was asked on): its ready messages,
/// `None` when the broker says NOT_FOUND. Bounded by [`PASSIVE_DECLARE_WAIT`]:
/// a broker that stops answering on a live connection (a stuck node) would
/// otherwise hold a reconnecting consumer away for good.
async fn passive_declare(link: &Link, queue: &str) -> Result<Option<u32>> {
    let asked = tokio::time::timeout(PASSIVE_DECLARE_WAIT, async {
        let channel = link.connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let _ = tokio::time::timeout(CHANNEL_CLOSE_WAIT, channel.close(200, "OK".into())).await;
        Ok(declared.message_count())
    })
    .await
    .map_err(|_| unanswered("a passive queue declaration"))?;
    match asked {
        Ok(ready) => Ok(Some(ready)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(refused(e)),
    }
}

/// The longest wait for the broker to answer a passive declaration.
const PASSIVE_DECLARE_WAIT: Duration = Duration::from_secs(10);

/// The broker's NOT_FOUND (a passive declaration of a queue not there).
fn is_not_found(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}

async fn declare_topology(
    channel: &Channel,
    queue: &QueueSpec,
    bindings: &[Binding],
) -> Result<()> {
    for binding in bindings {
        if !binding.exchange.name.is_empty() {
            declare_exchange(channel, &binding.exchange)
                .await
                .map_err(refused)?;
        }
    }
    channel
        .queue_declare(
            queue.name.as_str().into(),
            QueueDeclareOptions {
                durable: queue.durable,
                auto_delete: queue.auto_delete,
                ..QueueDeclareOptions::default()
            },
            queue_arguments(queue),
        )
        .await
        .map_err(refused)?;
    for binding in bindings {
        if !binding.exchange.name.is_empty() {
            channel
                .queue_bind(
                    queue.name.as_str().into(),
                    binding.exchange.name.as_str().into(),
                    binding.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(refused)?;
        }
    }
    Ok(())
}

/// The longest wait for the broker to answer a channel's close.
const CHANNEL_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A consumer that lasted this long before it was lost was not failing:
/// the next one is started after the shortest delay.
const STEADY_CONSUMER: Duration = Duration::from_secs(5);

async fn run_subscription(
    inner: Arc<Inner>,
    spec: SubscriptionSpec,
    mut current: Option<(u64, Channel, Consumer)>,
    tx: tokio::sync::mpsc::UnboundedSender<SubscriptionEvent>,
    cancel: CancellationToken,
    stopped: CancellationToken,
) {
    let queue = spec.queue.name.clone();
    // Losses in a row, for the delay before consuming again: reset by a
    // delivery, or by a consumer that lasted (an idle reply queue gets no
    // delivery between broker restarts, and would wait longer after each).
    let mut failures = 0u32;
    let mut up_since = tokio::time::Instant::now();
    // Refusals by the broker in a row, to say so now and then.
    let mut refusals = 0u32;
    // Whether the queue outlived the consumer's last loss.
    let mut queue_kept = true;
    // Attempts in a row that could not ask whether it did.
    let mut unasked = 0u32;
    loop {
        if let Some((link, channel, mut consumer)) = current.take() {
            let ended = loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => {
                        let _ = channel
                            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                            .await;
                        give_back_buffered(&mut consumer, spec.auto_ack).await;
                        stopped.cancel();
                        return;
                    }
                    item = consumer.next() => match item {
                        Some(Ok(d)) => {
                            failures = 0;
                            let acker = if spec.auto_ack {
                                Acker::None
                            } else {
                                Acker::Amqp { acker: d.acker, _channel: channel.clone() }
                            };
                            let compression = d.properties.headers().as_ref().and_then(|h| {
                                match h.inner().get("compression")? {
                                    lapin::types::AMQPValue::LongString(s) => {
                                        Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                                    }
                                    lapin::types::AMQPValue::ShortString(s) => {
                                        Some(s.as_str().to_string())
                                    }
                                    _ => None,
                                }
                            });
                            let delivery = Delivery {
                                body: d.data,
                                content_type: d
                                    .properties
                                    .content_type()
                                    .as_ref()
                                    .map(|c| c.as_str().to_string()),
                                compression,
                                redelivered: d.redelivered,
                                acker,
                            };
                            if let Err(unsent) = tx.send(SubscriptionEvent::Delivery(delivery)) {
                                if let SubscriptionEvent::Delivery(delivery) = unsent.0 {
                                    let _ = delivery.acker.reject(true).await;
                                }
                                let _ = channel
                                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                                    .await;
                                give_back_buffered(&mut consumer, spec.auto_ack).await;
                                stopped.cancel();
                                return;
                            }
                        }
                        Some(Err(e)) => break e.to_string(),
                        None => break "the broker cancelled the consumer".to_string(),
                    }
                }
            };
            debug!(%queue, reason = %ended, "consumer ended");
            if up_since.elapsed() >= STEADY_CONSUMER {
                failures = 0;
            }
            // Kept until an attempt to consume again finds it gone: one
            // that made it again and failed after leaves it there for the
            // next, which must not take it for the old one.
            queue_kept = true;
            if tx.send(SubscriptionEvent::Interrupted { link }).is_err() {
                stopped.cancel();
                return;
            }
        }
        if tx.is_closed() || cancel.is_cancelled() {
            stopped.cancel();
            return;
        }
        failures += 1;
        // At least MIN_RECONNECT_DELAY, as the connection's: a zero
        // `rabbit_interval_max` would have a refused declaration retried
        // in a loop that holds a core.
        let delay = Duration::from_millis(50u64 << failures.min(6))
            .min(inner.backoff.max)
            .max(MIN_RECONNECT_DELAY);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => { stopped.cancel(); return; }
        }
        let Some(link) = inner.wait_up_forever(&cancel).await else {
            stopped.cancel();
            return;
        };
        // Asked before the declaration below, which would make it again:
        // a queue kept through the loss still holds what was sent to it
        // meanwhile, and gives back what the lost consumer had not
        // acknowledged.
        match queue_exists(&link, &queue).await {
            Some(kept) => {
                unasked = 0;
                queue_kept &= kept;
            }
            // Not known: not taken for gone (its calls would be sent
            // again); asked again at the next attempt.
            None => {
                unasked += 1;
                if unasked.is_multiple_of(REFUSALS_TO_WARN) {
                    warn!(
                        %queue, attempts = unasked,
                        "cannot ask the broker whether this queue outlived the lost connection: \
                         nothing is consumed from it until it answers; trying again"
                    );
                } else {
                    debug!(%queue, "could not ask whether the queue outlived the loss; trying again");
                }
                continue;
            }
        }
        match start_consumer(&link, &spec).await {
            Ok(c) => {
                refusals = 0;
                up_since = tokio::time::Instant::now();
                info!(%queue, queue_kept, "consumer re-established");
                current = Some((link.id, c.0, c.1));
                if tx
                    .send(SubscriptionEvent::Reconnected { queue_kept })
                    .is_err()
                {
                    stopped.cancel();
                    return;
                }
            }
            // The broker refuses (the queue redeclared with other
            // arguments by a peer after a restart, a permission, a limit):
            // nothing is consumed until someone acts, so it is said, not
            // only at debug level, once and then every [`REFUSALS_TO_WARN`].
            Err(e @ MessagingError::Broker(_)) => {
                refusals += 1;
                if refusals % REFUSALS_TO_WARN == 1 {
                    warn!(
                        %queue, error = %e, refusals,
                        "the broker refuses to re-establish this consumer: nothing is \
                         consumed from the queue until it accepts; trying again"
                    );
                } else {
                    debug!(%queue, error = %e, "could not re-establish the consumer yet");
                }
            }
            Err(e) => debug!(%queue, error = %e, "could not re-establish the consumer yet"),
        }
    }
}

/// Every how many refusals in a row a consumer that the broker will not
/// re-establish is logged as a warning again (about a minute apart).
const REFUSALS_TO_WARN: u32 = 20;

/// Cancels an AMQP subscription.
pub(crate) struct AmqpSubscriptionHandle {
    cancel: CancellationToken,
    stopped: CancellationToken,
}

impl AmqpSubscriptionHandle {
    pub(crate) async fn cancel(&self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stopped.cancelled()).await;
    }
}

impl Drop for AmqpSubscriptionHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::size_limit_in;

    #[test]
    fn the_size_limit_is_read_off_rabbitmqs_refusal() {
        assert_eq!(
            size_limit_in(
                "protocol error: AMQP soft error: PRECONDITION-FAILED: PRECONDITION_FAILED - \
                 message size 2097343 is larger than configured max size 1048576"
            ),
            Some(1_048_576)
        );
        assert_eq!(size_limit_in("NOT_FOUND - no exchange 'x'"), None);
        assert_eq!(size_limit_in("larger than configured max size 0"), None);
        assert_eq!(size_limit_in("larger than configured max size "), None);
        let learnt = super::LearnedLimit::default();
        assert_eq!(learnt.get(), None);
        learnt.learn(1_048_576);
        assert_eq!(learnt.get(), Some(1_048_576));
    }
}
