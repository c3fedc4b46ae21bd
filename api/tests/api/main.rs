//! faafo-api's integration tests: they start the API on port 0 and drive
//! its public HTTP interface (one binary, zero2prod style).
//!
//! - `contract`: the REST contract, on SQLite, MariaDB and PostgreSQL;
//! - `seed_era`: the original's first clients (`/api/fractal`);
//! - `hostile`: bad input never gets a 500 and changes nothing;
//! - `auth`: token auth, route by route;
//! - `browser`: the web page in headless Chromium;
//! - `schemathesis`: the OpenAPI document, fuzzed by schemathesis;
//! - `startup`: the start-up errors of a database server that cannot be used,
//!   and several APIs starting together on a new database;
//! - `outage`: the database going away while the API runs, and coming back.

mod auth;
mod browser;
mod contract;
mod helpers;
mod hostile;
mod outage;
mod schemathesis;
mod seed_era;
mod startup;
