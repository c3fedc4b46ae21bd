//! Start-up against a database server that cannot be used: the error says
//! why (the connection refused, the database missing), in the server's or
//! the system's words, without the password. And several APIs started
//! together on a new database: one creates the schema, the others wait.

use std::time::{Duration, Instant};

use faafo_api::Application;
use faafo_common::api_client::ApiClient;
use sqlx::Connection;

use crate::helpers::{Backend, TestDatabase, config_on, new_fractal, with_database};

/// The error of building the API on `url`.
async fn startup_error(url: &str) -> String {
    let state = tempfile::tempdir().expect("temporary directory");
    match Application::build(&config_on(url, &state)).await {
        Ok(_) => panic!("the API started on {url}"),
        Err(e) => e.to_string(),
    }
}

/// A port of 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// `bind_host` is taken as `check-config` takes it: spaces around it and
/// brackets are no part of it, and an IPv6 address's zone may be named
/// (a link-local `fe80::1%lo` that the machine does not have is then the
/// system's "cannot assign", not a failed lookup of the whole text).
#[tokio::test]
async fn the_bind_host_is_taken_as_the_configuration_check_takes_it() {
    let state = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", state.path().join("faafo.db").display());
    for host in [" 127.0.0.1 ", "[127.0.0.1]"] {
        let mut config = config_on(&url, &state);
        config.api.bind_host = host.into();
        config.validate().expect("a valid host");
        let app = Application::build(&config)
            .await
            .unwrap_or_else(|e| panic!("{host:?}: {e}"));
        assert!(app.url().starts_with("http://127.0.0.1:"), "{}", app.url());
    }
    let mut config = config_on(&url, &state);
    config.api.bind_host = "fe80::1%lo".into();
    config.validate().expect("a valid host");
    if let Err(e) = Application::build(&config).await {
        let said = e.to_string();
        assert!(said.contains("[fe80::1%lo]"), "{said}");
        assert!(!said.contains("lookup"), "{said}");
    }
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

/// Two APIs started at the same moment on a new database (a first deploy
/// of several API hosts): one updates the schema while the other waits for
/// it, and both serve. MariaDB answers sqlx's own lock (`GET_LOCK(name,
/// -1)`) with NULL at once, and the second died on a duplicate row of
/// `_sqlx_migrations`.
async fn two_apis_start_together_on_a_new_database(backend: Backend) {
    for round in 0..5 {
        let db = TestDatabase::create(backend).await;
        let (state_a, state_b) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (config_a, config_b) = (config_on(&db.url, &state_a), config_on(&db.url, &state_b));
        let (a, b) = tokio::join!(Application::build(&config_a), Application::build(&config_b));
        let a = a.unwrap_or_else(|e| panic!("{backend:?}, round {round}: the first API: {e}"));
        let b = b.unwrap_or_else(|e| panic!("{backend:?}, round {round}: the second API: {e}"));
        let (url_a, url_b) = (a.url(), b.url());
        let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
        let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
        let served_a = tokio::spawn(a.run_until_stopped(async move {
            let _ = stopped_a.await;
        }));
        let served_b = tokio::spawn(b.run_until_stopped(async move {
            let _ = stopped_b.await;
        }));
        // The schema is whole: what one creates, the other reads, and the
        // migration is recorded once.
        let created = ApiClient::new(&url_a, None)
            .expect("client")
            .create(&new_fractal(64, 48, None))
            .await
            .expect("create on the first API");
        let read = ApiClient::new(&url_b, None)
            .expect("client")
            .get(&created.uuid)
            .await
            .expect("read on the second API");
        assert_eq!(read.uuid, created.uuid);
        let versions = applied_migrations(backend, &db.url).await;
        assert_eq!(versions, vec![(1, true)], "{backend:?}, round {round}");
        let _ = (stop_a.send(()), stop_b.send(()));
        served_a.await.expect("task").expect("stopped");
        served_b.await.expect("task").expect("stopped");
    }
}

/// The rows of `_sqlx_migrations`: (version, success).
async fn applied_migrations(backend: Backend, url: &str) -> Vec<(i64, bool)> {
    let sql = "SELECT version, success FROM _sqlx_migrations ORDER BY version";
    match backend {
        Backend::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect");
            sqlx::query_as(sql)
                .fetch_all(&mut conn)
                .await
                .expect("migrations")
        }
        _ => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query_as(sql)
                .fetch_all(&mut conn)
                .await
                .expect("migrations")
        }
    }
}

#[tokio::test]
async fn two_apis_start_together_on_a_new_mariadb_database() {
    two_apis_start_together_on_a_new_database(Backend::MySql).await;
}

#[tokio::test]
async fn two_apis_start_together_on_a_new_postgres_database() {
    two_apis_start_together_on_a_new_database(Backend::Postgres).await;
}
