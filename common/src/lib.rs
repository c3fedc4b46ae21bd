//! faafo-common: what faafo's services share.
//!
//! Its heart is [`messaging`], an oslo.messaging-style RPC and notification
//! library over RabbitMQ (lapin) or an in-process broker, wire-compatible
//! with Python oslo.messaging and usable on its own. Beside it:
//! [`configuration`] (INI files, oslo.config style, one layout for every
//! program), [`telemetry`] (logging in the original's line format),
//! [`fractal`] (the data the programs exchange: the REST API's JSON and the
//! workers' RPC contract), [`api_client`] (a client of the REST API) and
//! [`files`] (whole-file writes, never half a PNG on disk), [`console`]
//! (standard output that a closed pipe does not crash) and [`runtime`] (the
//! async runtime the programs share the settings of).

pub mod api_client;
pub mod configuration;
pub mod console;
pub mod files;
pub mod fractal;
pub mod messaging;
pub mod runtime;
pub mod shutdown;
pub mod telemetry;

#[cfg(feature = "testing")]
pub mod testing;
