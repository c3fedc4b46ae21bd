//! The transport: one connection to a broker, shared by the clients,
//! servers, notifiers and listeners built on it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use tracing::debug;

use super::broker::Broker;
use super::codec::Codec;
use super::error::Result;
use super::rpc::reply::ReplyWaiter;
use super::target::{DEFAULT_EXCHANGE, Target};
use super::topology::TopologyOptions;
use super::url::TransportUrl;

/// A connection to a message broker, picked by URL.
///
/// Cheap to clone; clones share the connection and the reply queue. The
/// connection closes when the last clone is dropped or on [`Transport::close`].
#[derive(Clone)]
pub struct Transport {
    inner: Arc<TransportInner>,
}

pub(crate) struct TransportInner {
    pub(crate) url: TransportUrl,
    pub(crate) broker: Broker,
    pub(crate) control_exchange: String,
    pub(crate) codec: Codec,
    pub(crate) topology: TopologyOptions,
    reply: OnceCell<Arc<ReplyWaiter>>,
}

/// Options of a [`Transport`] beyond its URL.
#[derive(Debug, Clone)]
pub struct TransportBuilder {
    url: String,
    control_exchange: String,
    codec: Codec,
    connection_name: String,
}

impl TransportBuilder {
    /// The exchange of targets that name none (oslo's `control_exchange`,
    /// default `openstack`).
    #[must_use]
    pub fn control_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.control_exchange = exchange.into();
        self
    }

    /// The default body encoding of clients and notifiers on this transport.
    #[must_use]
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The name RabbitMQ shows for the connection (e.g. `faafo-worker@host1`).
    #[must_use]
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// Parses the URL and connects. For RabbitMQ, each host is tried once;
    /// after that the connection is kept up by reconnecting in the background.
    pub async fn connect(self) -> Result<Transport> {
        let url = TransportUrl::parse(&self.url)?;
        let broker = Broker::connect(&url, &self.connection_name).await?;
        let topology = TopologyOptions {
            durable: url.options.durable_queues,
            transient_ttl: Some(url.options.transient_queues_ttl).filter(|d| !d.is_zero()),
        };
        Ok(Transport {
            inner: Arc::new(TransportInner {
                url,
                broker,
                control_exchange: self.control_exchange,
                codec: self.codec,
                topology,
                reply: OnceCell::new(),
            }),
        })
    }
}

impl Transport {
    /// Connects with default options; see [`Transport::builder`].
    pub async fn connect(url: &str) -> Result<Transport> {
        Self::builder(url).connect().await
    }

    /// Starts configuring a transport for `url`.
    pub fn builder(url: &str) -> TransportBuilder {
        TransportBuilder {
            url: url.to_string(),
            control_exchange: DEFAULT_EXCHANGE.to_string(),
            codec: Codec::Json,
            connection_name: format!(
                "faafo:{}",
                std::env::args()
                    .next()
                    .and_then(|a| a.rsplit('/').next().map(str::to_string))
                    .unwrap_or_else(|| "faafo".into())
            ),
        }
    }

    /// The parsed URL (its `Display` hides passwords).
    pub fn url(&self) -> &TransportUrl {
        &self.inner.url
    }

    /// The default codec of clients and notifiers.
    pub fn codec(&self) -> Codec {
        self.inner.codec
    }

    /// Whether the broker connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.broker.is_connected()
    }

    /// Deletes this transport's reply queue and closes the connection.
    pub async fn close(&self) {
        if let Some(reply) = self.inner.reply.get() {
            reply.stop().await;
            // Not while the connection is down (it would wait for it):
            // the queue expires on its own (`x-expires`).
            if self.is_connected()
                && let Err(e) = self.inner.broker.delete_queue(reply.queue()).await
            {
                debug!(error = %e, "could not delete the reply queue");
            }
        }
        self.inner.broker.close().await;
    }

    pub(crate) fn inner(&self) -> &TransportInner {
        &self.inner
    }

    /// The exchange a target's messages go to.
    pub(crate) fn exchange_of(&self, target: &Target) -> String {
        target
            .exchange
            .clone()
            .unwrap_or_else(|| self.inner.control_exchange.clone())
    }

    /// The reply queue and its dispatcher, made before the first call.
    pub(crate) async fn reply_waiter(&self) -> Result<Arc<ReplyWaiter>> {
        self.inner
            .reply
            .get_or_try_init(|| ReplyWaiter::start(&self.inner.broker, &self.inner.topology))
            .await
            .cloned()
    }

    /// Time allowed to wait for a broker connection when sending.
    pub(crate) fn send_wait(&self) -> Duration {
        self.inner
            .url
            .options
            .connection_timeout
            .max(Duration::from_secs(1))
    }
}
