//! faafo-common: what faafo's services share.
//!
//! Its heart is [`messaging`], an oslo.messaging-style RPC and notification
//! library over RabbitMQ (lapin) or an in-process broker, wire-compatible
//! with Python oslo.messaging and usable on its own. Beside it:
//! [`configuration`] (INI files, oslo.config style, one layout for every
//! program) and [`telemetry`] (logging in the original's line format).

pub mod configuration;
pub mod messaging;
pub mod telemetry;

#[cfg(feature = "testing")]
pub mod testing;
