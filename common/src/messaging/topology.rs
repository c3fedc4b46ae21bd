//! The exchanges and queues oslo.messaging's rabbit driver declares, with
//! the same names, flags and arguments, so Rust and Python peers can share
//! them without a PRECONDITION_FAILED.

use std::time::Duration;

use super::broker::{Binding, ExchangeKind, ExchangeSpec, QueueSpec};
use super::wire::new_id;

/// Declaration settings shared by a transport's peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopologyOptions {
    /// `amqp_durable_queues`: topic exchanges and queues survive restarts.
    pub durable: bool,
    /// `rabbit_transient_queues_ttl`: `x-expires` of reply and fanout queues.
    pub transient_ttl: Option<Duration>,
}

impl TopologyOptions {
    /// The topic exchange (`openstack`, or the target's).
    pub(crate) fn topic_exchange(&self, name: &str) -> ExchangeSpec {
        ExchangeSpec {
            name: name.to_string(),
            kind: ExchangeKind::Topic,
            durable: self.durable,
            auto_delete: false,
        }
    }

    /// A shared topic queue (`tasks`) or per-server queue (`tasks.host1`),
    /// bound with its own name as the key.
    pub(crate) fn topic_queue(
        &self,
        exchange: &str,
        name: &str,
        dead_letter_exchange: Option<&str>,
    ) -> (QueueSpec, Binding) {
        (
            QueueSpec {
                name: name.to_string(),
                durable: self.durable,
                auto_delete: false,
                expires: None,
                dead_letter_exchange: dead_letter_exchange.map(str::to_string),
            },
            Binding {
                exchange: self.topic_exchange(exchange),
                routing_key: name.to_string(),
            },
        )
    }

    /// The fanout exchange of a topic (`tasks_fanout`).
    pub(crate) fn fanout_exchange(&self, topic: &str) -> ExchangeSpec {
        ExchangeSpec {
            name: format!("{topic}_fanout"),
            kind: ExchangeKind::Fanout,
            durable: false,
            auto_delete: true,
        }
    }

    /// A server's private fanout queue (`tasks_fanout_<hex>`).
    pub(crate) fn fanout_queue(&self, topic: &str) -> (QueueSpec, Binding) {
        (
            QueueSpec {
                name: format!("{topic}_fanout_{}", new_id()),
                durable: false,
                auto_delete: false,
                expires: self.transient_ttl,
                dead_letter_exchange: None,
            },
            Binding {
                exchange: self.fanout_exchange(topic),
                routing_key: topic.to_string(),
            },
        )
    }

    /// A dead-letter exchange and the queue that keeps what it receives,
    /// both named `name`.
    pub(crate) fn dead_letter(&self, name: &str) -> (QueueSpec, Binding) {
        (
            QueueSpec {
                name: name.to_string(),
                durable: self.durable,
                auto_delete: false,
                expires: None,
                dead_letter_exchange: None,
            },
            Binding {
                exchange: ExchangeSpec {
                    name: name.to_string(),
                    kind: ExchangeKind::Fanout,
                    durable: self.durable,
                    auto_delete: false,
                },
                routing_key: String::new(),
            },
        )
    }

    /// A client's reply queue (`reply_<hex>`), on the default exchange.
    pub(crate) fn reply_queue(&self) -> QueueSpec {
        QueueSpec {
            name: format!("reply_{}", new_id()),
            durable: false,
            auto_delete: false,
            expires: self.transient_ttl,
            dead_letter_exchange: None,
        }
    }
}
