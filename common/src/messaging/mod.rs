//! oslo.messaging-style RPC and notifications, over RabbitMQ or in memory.
//!
//! The concepts are oslo.messaging's, in async Rust:
//! - a [`Transport`] is a connection picked by URL (`rabbit://...` or
//!   `memory://`);
//! - a [`Target`] says where messages go: exchange, topic, server,
//!   namespace, version, fanout;
//! - an [`RpcClient`] calls methods (and waits for a typed result) or casts
//!   them; an [`RpcServer`] runs [`Endpoint`] methods with typed arguments;
//! - a [`Notifier`] sends notifications, a [`NotificationListener`] gets them.
//!
//! On the wire it is oslo.messaging's rabbit driver (same exchanges, queues,
//! envelope and keys), so a Python OpenStack service can be either peer.
//! Delivery is at-least-once by default and errors are types.
//!
//! ```no_run
//! use faafo_common::messaging::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct AddArgs { a: i64, b: i64 }
//!
//! # async fn demo() -> Result<(), MessagingError> {
//! let transport = Transport::connect("memory://").await?;
//! let server = RpcServer::builder(&transport, Target::topic("calc").with_server("host1"))
//!     .endpoint(Endpoint::new().method("add", |_ctx, args: AddArgs| async move {
//!         Ok::<_, RemoteError>(args.a + args.b)
//!     }))
//!     .start()
//!     .await?;
//! let client = RpcClient::new(&transport, Target::topic("calc"));
//! let sum: i64 = client
//!     .call(&RequestContext::with_new_request_id(), "add", &AddArgs { a: 2, b: 3 })
//!     .await?;
//! assert_eq!(sum, 5);
//! server.stop().await;
//! # Ok(()) }
//! ```

mod broker;
pub mod codec;
mod compression;
mod consumer;
mod context;
mod error;
mod failure;
mod kwargs;
mod notify;
mod retry;
mod rpc;
mod target;
mod topology;
mod transport;
pub mod url;
mod version;
mod wire;

/// The longest timeout the library keeps: one year. A caller's or a peer's
/// longer one (e.g. a `_timeout` of 1e30 seconds) is cut to it, because a
/// deadline beyond `Instant`'s range would panic.
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

pub use codec::{Codec, bytes};
pub use context::{RequestContext, new_request_id};
pub use error::{MessagingError, Result};
pub use failure::RemoteError;
pub use notify::Priority;
pub use notify::listener::{
    NotificationListener, NotificationListenerBuilder, NotificationResult, REQUEUE_DELAY,
};
pub use notify::notifier::Notifier;
pub use retry::{Backoff, RetryPolicy};
pub use rpc::client::{DEFAULT_CALL_TIMEOUT, RpcClient};
pub use rpc::dispatcher::{Endpoint, PING_METHOD};
pub use rpc::server::{
    AckMode, DEFAULT_MAX_MESSAGE_SIZE, RpcServer, RpcServerBuilder, ServerStats,
};
pub use target::{DEFAULT_EXCHANGE, Target};
pub use transport::{Transport, TransportBuilder};
pub use url::{TransportUrl, TransportUrlError, redact_url};
pub use version::{InvalidVersion, Version};
pub use wire::Notification;

/// Internals the `testing` module needs.
#[cfg(feature = "testing")]
pub(crate) mod testing_support {
    use std::sync::Arc;

    use super::broker::{Publication, PublishOutcome};
    use super::{MessagingError, Result, Transport};

    pub(crate) fn publication(
        exchange: &str,
        routing_key: &str,
        body: Vec<u8>,
        content_type: String,
    ) -> Publication {
        Publication {
            declare: None,
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            body: Arc::from(body),
            content_type: content_type.into(),
            expiration: None,
            mandatory: true,
            alone: false,
        }
    }

    pub(crate) async fn publish(transport: &Transport, publication: Publication) -> Result<()> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        match transport
            .inner()
            .broker
            .publish(&publication, deadline)
            .await?
            .outcome_by(deadline)
            .await?
        {
            PublishOutcome::Delivered => Ok(()),
            other => Err(MessagingError::Broker(format!("raw publish: {other:?}"))),
        }
    }

    pub(crate) async fn queue_depth(transport: &Transport, queue: &str) -> Result<Option<usize>> {
        transport.inner().broker.queue_depth(queue).await
    }
}

/// Entry points for the cargo-fuzz targets in `common/fuzz`.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    /// Parses any text as a configuration file: refused with one line or
    /// accepted, never a panic; a refusal never shows a password.
    pub fn parse_config(text: &str) {
        match crate::configuration::parse_str(text, "fuzz.conf") {
            Ok(config) => {
                let _ = config.database_url();
                let _ = config.state_path();
            }
            Err(e) => {
                let line = e.to_string();
                assert!(!line.contains('\n'), "error on several lines: {line}");
            }
        }
    }

    use super::codec::Codec;
    use super::wire;

    /// Decodes `data` as every kind of message in both codecs, and the
    /// arguments and results inside, as a server and a client would.
    pub fn decode_everything(data: &[u8]) {
        for codec in [Codec::Json, Codec::MsgPack] {
            if let Ok(request) = wire::decode_request(codec, data.to_vec()) {
                let _ = request.args.decode_args::<serde_json::Value>();
                let _ = request.context.request_id();
            }
            if let Ok(reply) = wire::decode_reply(codec, data.to_vec()) {
                let _ = reply.result.decode_result::<serde_json::Value>();
                if let Some(failure) = reply.failure {
                    let _ = super::RemoteError::from_failure_json(&failure);
                }
            }
            let _ = wire::decode_notification(codec, data);
        }
    }

    /// Parses `raw` (must not panic), then a URL made of the given parts
    /// around a known password, which must never show in an error, in the
    /// URL's `Display` or in its `Debug`.
    pub fn parse_url(raw: &str, scheme: &str, user: &str, host: &str, rest: &str) {
        let _ = super::TransportUrl::parse(raw);
        const SECRET: &str = "Zq9SeCrEtPw";
        let bad_user = |c: char| matches!(c, '/' | '?' | ':' | '@' | ',');
        if !scheme.chars().all(|c| c.is_ascii_alphanumeric())
            || user.contains(bad_user)
            || [scheme, user, host, rest]
                .iter()
                .any(|p| p.contains("SeCrEt"))
        {
            return;
        }
        let url = format!("{scheme}://{user}:{SECRET}@{host}/{rest}");
        match super::TransportUrl::parse(&url) {
            Err(e) => assert!(!e.to_string().contains(SECRET), "password leaked: {e}"),
            Ok(u) => {
                assert!(!u.to_string().contains(SECRET), "password leaked: {u}");
                assert!(!format!("{u:?}").contains(SECRET), "password leaked: {u:?}");
            }
        }
    }
}
