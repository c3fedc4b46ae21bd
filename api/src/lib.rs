//! # faafo-api: the record of every fractal, and the page people look at
//!
//! An axum service over SQLite (the default, a file in the data directory),
//! MariaDB/MySQL or PostgreSQL. It serves the original faafo's REST
//! contract under `/v1/fractal` (and `/api/fractal` for seed-era clients),
//! takes each fractal's PNG from the producer (`PUT /v1/fractal/{uuid}/image`),
//! serves it at `/fractal/{uuid}`, and shows the finished fractals on a web
//! page. Operations get `/healthz`, `/readyz`, `/metrics` (Prometheus) and
//! `/openapi.json`.
//!
//! Layers, outside in:
//! - [`startup`]: [`Application`] builds everything from a `FaafoConfig`
//!   and runs until a shutdown future resolves (what `faafo-api` and a
//!   one-process `faafo up` call);
//! - [`routes`] (HTTP: [`extract`] turns bad input into [`error::ApiError`]s,
//!   [`auth`] checks tokens, [`request_log`] logs and measures) and [`web`]
//!   (the HTML pages) and [`openapi`];
//! - [`domain`]: parsed requests and the rules of a fractal's life, free of
//!   HTTP and SQL;
//! - [`db`] (the three databases) and [`images`] (where PNGs are kept).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = faafo_common::configuration::load_from(&[], std::env::vars())?;
//! let app = faafo_api::Application::build(&config).await?;
//! println!("serving on {}", app.url());
//! app.run_until_stopped(faafo_common::shutdown::stop_signal()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod connection;
pub mod db;
pub mod domain;
pub mod error;
pub mod extract;
pub mod images;
pub mod metrics;
pub mod openapi;
pub mod request_log;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod web;

pub use startup::{Application, StartupError};
