//! faafo-producer: generates fractal tasks and sees each one through.
//!
//! Every `interval` seconds the producer draws a batch of random tasks (the
//! original's ranges), creates each in the API, marks it running, calls
//! `process` on topic `tasks` (many calls in flight at once), and stores the
//! image and the result back in the API. The API is the source of truth:
//! tasks left pending or running by a crash are found and dispatched again,
//! failed attempts are retried up to `max_attempts`, results wait in memory
//! while the API is away (on disk across a stop: [`kept_results`]), and a
//! duplicate result changes nothing.
//!
//! Modules: [`settings`], [`generator`], [`api`] (retrying API calls),
//! [`dispatcher`] (one task's journey), [`producer`] (the loops).
//! The crate also builds the `faafo` command line, whose `faafo up` runs the
//! API, a worker and the producer in one process.

pub mod api;
pub mod dispatcher;
pub mod generator;
pub mod kept_results;
pub mod producer;
pub mod settings;

mod serve;

pub use api::ResilientApi;
pub use dispatcher::{Dispatcher, Outcome};
pub use generator::TaskGenerator;
pub use producer::{BatchReport, Producer};
pub use serve::serve;
pub use settings::ProducerSettings;
