//! Start-up against a database server that cannot be used: the error says
//! why (the connection refused, the database missing), in the server's or
//! the system's words, without the password.

use std::time::{Duration, Instant};

use faafo_api::Application;
use faafo_common::configuration::FaafoConfig;

use crate::helpers::{Backend, with_database};

/// The error of building the API on `url`.
async fn startup_error(url: &str) -> String {
    let state = tempfile::tempdir().expect("temporary directory");
    let mut config = FaafoConfig::default();
    config.default.database_url = url.to_string();
    config.default.state_path = state.path().display().to_string();
    config.api.bind_port = 0;
    match Application::build(&config).await {
        Ok(_) => panic!("the API started on {url}"),
        Err(e) => e.to_string(),
    }
}

/// A port of 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test]
async fn a_closed_port_is_reported_as_refused_at_once() {
    for scheme in ["postgresql", "mysql"] {
        let port = closed_port();
        let url = format!("{scheme}://faafo:hunter22@127.0.0.1:{port}/faafo");
        let started = Instant::now();
        let err = startup_error(&url).await;
        assert!(
            err.starts_with(&format!(
                "cannot open the database {scheme}://faafo:***@127.0.0.1:{port}/faafo: "
            )),
            "{err}"
        );
        assert!(err.contains("Connection refused"), "{err}");
        assert!(!err.contains("pool timed out"), "{err}");
        assert!(!err.contains("hunter22"), "{err}");
        // Not after the pool's 10 s of retries.
        assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    }
}

#[tokio::test]
async fn a_missing_database_is_named_in_the_servers_words() {
    let name = format!("faafo_missing_{}", uuid::Uuid::new_v4().simple());
    for (backend, expected) in [
        (
            Backend::Postgres,
            format!("database \"{name}\" does not exist"),
        ),
        (Backend::MySql, format!("Unknown database '{name}'")),
    ] {
        let (admin, _) = backend.admin_url().expect("a server");
        let err = startup_error(&with_database(&admin, &name)).await;
        // Not PostgreSQL's "at line 948", nor sqlx's or MySQL's prefixes.
        assert!(
            err.starts_with("cannot open the database ") && err.ends_with(&format!(": {expected}")),
            "{backend:?}: {err}"
        );
    }
}
