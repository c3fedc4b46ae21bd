//! Building and running the application (zero2prod style): [`Application::build`]
//! opens the database, migrates it and binds the listener (port 0 picks a
//! free port, for tests and `faafo up`); [`Application::run_until_stopped`]
//! serves until the given future resolves, then finishes the requests in
//! flight and closes the database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use faafo_common::configuration::FaafoConfig;
use tokio::net::TcpListener;

use crate::db::{Database, DbError};
use crate::images::{ImageStore, ImageStoreError};
use crate::metrics::Metrics;
use crate::settings::{ApiSettings, AuthPolicy, ImageStoreKind};
use crate::state::AppState;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The image directory could not be created.
    #[error("cannot use the image store: {0}")]
    Images(#[from] ImageStoreError),
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `host:port`.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The API, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
    state: AppState,
}

impl Application {
    /// Opens the database of `config` (creating and migrating its schema),
    /// the image store, and binds `[api] bind_host:bind_port`.
    pub async fn build(config: &FaafoConfig) -> Result<Self, StartupError> {
        let settings = ApiSettings::from_config(config);
        // On the loopback interface (faafo up's default) only this
        // machine's users reach it: said at info level, not as a warning.
        if settings.auth == AuthPolicy::NoAuth {
            if loopback(config.api.bare_bind_host()) {
                tracing::info!(
                    "auth_strategy = noauth: any user of this machine may create, change and delete fractals"
                );
            } else {
                tracing::warn!(
                    "auth_strategy = noauth: anyone who can reach this API may create, change and delete fractals"
                );
            }
        }
        let db = Database::connect(&config.database_url(), &config.database).await?;
        let images = ImageStore::open(&settings.image_store)?;
        // The host as `check-config` read it (spaces and brackets off),
        // given to the resolver apart from the port: `fe80::1%eth0`, with
        // a zone's name, is no socket address Rust parses.
        let host = config.api.bare_bind_host();
        let bind = bind_address(host, config.api.bind_port);
        let listener = TcpListener::bind((host, config.api.bind_port))
            .await
            .map_err(|source| StartupError::Bind {
                address: bind.clone(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| StartupError::Bind {
            address: bind.clone(),
            source,
        })?;
        let store = match &settings.image_store {
            ImageStoreKind::Database => "in the database".to_string(),
            ImageStoreKind::Filesystem(dir) => format!("in {}", dir.display()),
        };
        tracing::info!(
            "faafo-api listening on http://{address} (database {}, images {store})",
            db.url()
        );
        let state = AppState {
            db,
            images,
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::default()),
        };
        Ok(Self {
            listener,
            address,
            router: crate::routes::router(state.clone()),
            state,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A URL clients on this machine can use (`http://127.0.0.1:<port>`
    /// when bound to every address).
    pub fn url(&self) -> String {
        faafo_common::configuration::local_api_url(self.address.ip(), self.port())
    }

    /// The database (for tests and `faafo up`).
    pub fn database(&self) -> &Database {
        &self.state.db
    }

    /// Serves until `shutdown` resolves, then lets the requests in flight
    /// finish, for at most [`SHUTDOWN_DRAIN`], and closes the database.
    ///
    /// hyper serves each connection (HTTP/1.1) with a timer, so that a
    /// client has [`HEADER_READ_TIMEOUT`] to send a request's headers: a
    /// slow-loris (a byte a minute) cannot hold connections forever. A
    /// body that stops arriving for [`BODY_READ_TIMEOUT`] is answered 408.
    /// (`axum::serve` gives hyper no timer, and its header timeout never
    /// fires.)
    pub async fn run_until_stopped<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        use hyper_util::rt::{TokioIo, TokioTimer};
        use hyper_util::service::TowerToHyperService;
        use tower::ServiceExt;

        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let sweeper = self
            .state
            .images
            .spawn_orphan_sweeper(self.state.db.clone(), crate::images::ORPHAN_SWEEP_INTERVAL);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, remote) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, a connection reset
                        // before it was taken: wait a little, go on.
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // A handler dropped before its end (its client hung up) closes
            // the database connections it held instead of returning them
            // mid-statement to the pool.
            let service = self.router.clone().map_request(
                move |request: axum::http::Request<hyper::body::Incoming>| {
                    let mut request = request.map(|body| {
                        axum::body::Body::new(tower_http::timeout::TimeoutBody::new(
                            BODY_READ_TIMEOUT,
                            body,
                        ))
                    });
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(remote));
                    request
                },
            );
            let service = service.map_future(crate::db::ClosesConnectionsIfAbandoned::new);
            let stream = crate::connection::StallLimited::new(
                stream,
                crate::connection::WRITE_STALL_TIMEOUT,
            );
            let connection =
                http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("connection from {remote} ended: {e}");
                }
            });
        }
        drop(self.listener);
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        // A connection that never finishes its request (a stalled upload)
        // must not keep the process, and the database, from stopping.
        let result = tokio::select! {
            () = graceful.shutdown() => Ok(()),
            () = tokio::time::sleep(SHUTDOWN_DRAIN) => {
                tracing::warn!(
                    "stopping with requests still unfinished after {SHUTDOWN_DRAIN:?}"
                );
                Ok(())
            }
        };
        // A statement still waiting on a locked table or a silent server
        // would hold the pool's close as long (sqlx waits for every
        // connection): bounded, the rest dropped with the process.
        if tokio::time::timeout(DATABASE_CLOSE_WAIT, self.state.db.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "stopping without waiting more than {DATABASE_CLOSE_WAIT:?} for the database's connections"
            );
        }
        tracing::info!("faafo-api stopped");
        result
    }
}

/// The longest a stopping API waits for the requests in flight.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// The longest a stopping API then waits for its database connections to
/// close (SQLite's writer to finish its last commit).
pub const DATABASE_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The longest a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a request body may pause (no byte arriving) before the API
/// gives up on it with a 408 and closes the connection: between chunks,
/// like nginx's `client_body_timeout`, so a large image on a slow link is
/// not cut off, while a stalled upload does not hold a connection forever.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `host` (without brackets) is this machine's loopback interface
/// only.
fn loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host:port`, with brackets around an IPv6 host: the address a failed
/// bind names (`faafo up` checks its port with it too).
pub fn bind_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::bind_address;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(bind_address("127.0.0.1", 5000), "127.0.0.1:5000");
        assert_eq!(bind_address("::1", 0), "[::1]:0");
    }
}
