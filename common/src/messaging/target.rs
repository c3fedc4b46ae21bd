//! Where a message goes, or what a server listens to.
//!
//! A [`Target`] is oslo.messaging's addressing tuple. A client fills in what
//! it needs (a topic, maybe a server, a version it requires); a server fills
//! in the topic and its own server name and listens to the shared topic
//! queue, its own `topic.server` queue and the topic's fanout exchange.

use std::fmt;

use super::version::Version;

/// Exchange used when a target names none, as oslo's `control_exchange`.
pub const DEFAULT_EXCHANGE: &str = "openstack";

/// An oslo.messaging target: exchange, topic, server, namespace, version, fanout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// Topic exchange; the transport's control exchange when `None`.
    pub exchange: Option<String>,
    /// The topic: the shared queue and routing key (e.g. `tasks`).
    pub topic: String,
    /// A single server: routes to `topic.server` instead of the shared queue.
    pub server: Option<String>,
    /// Endpoint namespace the message is for (`None` is the default namespace).
    pub namespace: Option<String>,
    /// The API version the caller needs (client) or implements (endpoint).
    pub version: Option<Version>,
    /// Deliver to every server listening on the topic (casts only).
    pub fanout: bool,
}

impl Target {
    /// A target for `topic` on the default exchange.
    pub fn topic(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            ..Self::default()
        }
    }

    /// Sets the exchange.
    #[must_use]
    pub fn with_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = Some(exchange.into());
        self
    }

    /// Addresses one server of the topic.
    #[must_use]
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// Sets the endpoint namespace.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the version.
    #[must_use]
    pub fn with_version(mut self, version: Version) -> Self {
        self.version = Some(version);
        self
    }

    /// Makes casts go to every server of the topic.
    #[must_use]
    pub fn with_fanout(mut self, fanout: bool) -> Self {
        self.fanout = fanout;
        self
    }

    /// The routing key of a direct (non-fanout) message to this target.
    pub(crate) fn routing_key(&self) -> String {
        match &self.server {
            Some(server) => format!("{}.{server}", self.topic),
            None => self.topic.clone(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "topic '{}'", self.topic)?;
        if let Some(server) = &self.server {
            write!(f, " server '{server}'")?;
        }
        if let Some(exchange) = &self.exchange {
            write!(f, " on exchange '{exchange}'")?;
        }
        if self.fanout {
            f.write_str(" (fanout)")?;
        }
        Ok(())
    }
}
