//! faafo-common: what faafo's services share.
//!
//! Its heart is [`messaging`], an oslo.messaging-style RPC and notification
//! library over RabbitMQ (lapin) or an in-process broker, wire-compatible
//! with Python oslo.messaging and usable on its own.

pub mod messaging;

#[cfg(feature = "testing")]
pub mod testing;
