//! `faafo up`: the whole system in one process.
//!
//! The API, a worker and the producer run side by side, on the in-memory
//! broker and SQLite in the data directory unless the configuration says
//! otherwise, so one option (`--config-file` with a `transport_url` or a
//! `database_url`) points it at RabbitMQ or another database. Ctrl-C stops
//! the producer and the worker together: the renders in progress finish
//! (within the worker's grace) and their results reach the API, which stops
//! last; tasks not rendered stay running, without using an attempt, and
//! the data stays for the next run.

use std::error::Error;
use std::process::ExitCode;

use clap::Args;
use faafo_api::settings::ImageStoreKind;
use faafo_common::api_client::ApiClient;
use faafo_common::configuration::FaafoConfig;
use faafo_common::messaging::url::TransportKind;
use faafo_common::messaging::{RpcClient, Target, Transport, redact_url};
use faafo_common::shutdown::Shutdown;
use faafo_common::telemetry::{self, TelemetryGuard, TelemetrySettings};
use faafo_producer::{Producer, ProducerSettings, ResilientApi};
use faafo_worker::service::{self, WorkerSettings};
use tracing::{error, info};

/// Options of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Port of the API and web page (default: [api] bind_port, 5000).
    #[arg(long)]
    pub port: Option<u16>,
    /// Generate nothing: only the fractals created with `faafo create` (or
    /// through the API) are rendered. Like any producer it still dispatches
    /// every pending fractal and, at start, takes over the running ones, so
    /// don't point it at a deployment whose producer is running.
    #[arg(long)]
    pub no_producer: bool,
}

/// How long, once the worker has stopped, the producer's calls still in
/// flight may take the replies it sent while stopping, before the calls
/// left (tasks it had not started, given back to the queue) are given up.
const REPLY_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

async fn connect(config: &FaafoConfig, name: &str) -> Result<Transport, Box<dyn Error>> {
    Ok(Transport::builder(&config.default.transport_url)
        .control_exchange(&config.default.control_exchange)
        .codec(config.codec())
        .connection_name(name)
        .connect()
        .await?)
}

/// Runs the API, a worker and the producer until Ctrl-C or SIGTERM.
pub async fn run(
    mut config: FaafoConfig,
    args: UpArgs,
    logging: &mut Option<TelemetryGuard>,
) -> Result<ExitCode, Box<dyn Error>> {
    *logging = Some(telemetry::init(&TelemetrySettings::from_config(
        &config.default,
    ))?);
    if let Some(port) = args.port {
        config.api.bind_port = port;
    }
    // The producer writes to the API of the same process (with
    // `--no-producer` too: it marks the tasks it dispatches running and
    // stores their results): with tokens required, its own must be one of
    // them, or nothing is ever created or rendered.
    if config.api.auth_strategy == "token"
        && !config
            .api
            .auth_tokens
            .0
            .contains(&config.default.auth_token)
    {
        return Err(
            "[api] auth_strategy = token, but [DEFAULT] auth_token is not one of \
                    [api] auth_tokens: the producer of faafo up could neither create nor store a fractal"
                .into(),
        );
    }
    // Its API has the same limits: such tasks would all be refused.
    if !args.no_producer
        && let Some(over) = faafo_producer::settings::tasks_over_limits(&config).first()
    {
        return Err(format!(
            "{over}: the producer of faafo up would generate tasks its own API refuses"
        )
        .into());
    }
    // The data directory only holds the default SQLite database (and the
    // images of `image_store = filesystem`, whose store creates it).
    // One `faafo up` per data directory: a second one's producer would take
    // every task the first is rendering over (each rendered twice), and
    // it would fail only at its port, after opening the database.
    // A port in use is said before a new data directory is made (it
    // stayed behind, with an empty database). An existing one is locked
    // first (for a second `up`, that message is the clearer), and the
    // API's own start says the port.
    let _only_one = if config.default.database_url.is_empty() {
        let state = config.state_path();
        if !state.exists() {
            port_is_free(&config).map_err(said_by_up)?;
        }
        std::fs::create_dir_all(&state)
            .map_err(|e| format!("cannot create the data directory {}: {e}", state.display()))?;
        Some(lock_data_directory(&state)?)
    } else {
        None
    };
    let data = data_location(&config);

    let signal = Shutdown::new();
    signal.on_signal();
    let api = faafo_api::Application::build(&config)
        .await
        .map_err(said_by_up)?;
    let url = api.url();
    // Where `faafo list` and the others look with the same configuration:
    // elsewhere with `--port` (or port 0), and then they are told.
    let commands_elsewhere = config
        .default
        .endpoint_url
        .split(',')
        .next()
        .is_none_or(|first| first.trim().trim_end_matches('/') != url);
    config.default.endpoint_url = url.clone();
    let api_stop = Shutdown::new();
    let api_task = {
        let api_stop = api_stop.clone();
        tokio::spawn(async move {
            api.run_until_stopped(async move { api_stop.wait().await })
                .await
        })
    };

    let worker_transport = connect(&config, "faafo-up worker").await?;
    let worker = service::start(&worker_transport, WorkerSettings::from_config(&config)).await?;

    let producer_transport = connect(&config, "faafo-up producer").await?;
    let dispatcher;
    let producer = {
        let settings = ProducerSettings::from_config(&config);
        let rpc = RpcClient::new(&producer_transport, Target::topic(&settings.topic));
        let api_client = ApiClient::new(&url, Some(config.default.auth_token.clone()))?;
        let producer = Producer::new(ResilientApi::new(api_client), rpc, settings, signal.clone());
        dispatcher = producer.dispatcher().clone();
        let generate = !args.no_producer;
        tokio::spawn(async move {
            if generate {
                producer.run().await;
            } else {
                producer.dispatch_only().await;
            }
        })
    };

    // For the eyes only: a closed standard output does not stop faafo.
    let _ = crate::output::line(format_args!(
        "\n  faafo is up: open {url}/ to watch the fractals arrive\n  \
         broker: {}   database: {}\n  data: {data}   stop: Ctrl-C\n{}",
        redact_url(&config.default.transport_url),
        redact_url(&config.database_url()),
        if commands_elsewhere {
            format!("  commands: faafo --endpoint-url {url} list (or create, show, get...)\n")
        } else {
            String::new()
        },
    ));

    // A part that ends before the signal (a panic, the API's server
    // failing) stops the others: `up` does not go on serving a page that
    // nothing fills, nor renders for an API that is gone.
    let (mut producer, mut api_task) = (producer, api_task);
    let mut producer_ended = None;
    let mut api_ended = None;
    tokio::select! {
        // The signal first: the producer it stops may have ended by the
        // time this polls, and is then not "on its own".
        biased;
        () = signal.wait() => info!("stopping faafo (a second Ctrl-C stops at once)"),
        ended = &mut producer => {
            error!("the producer stopped on its own: stopping faafo (Ctrl-C twice stops at once)");
            producer_ended = Some(ended);
        }
        ended = &mut api_task => {
            error!("the API stopped on its own: stopping faafo (Ctrl-C twice stops at once)");
            api_ended = Some(ended);
        }
    }
    signal.trigger();
    // The producer and the worker stop together, the API last: the renders
    // that finish in the worker's grace are answered and stored. Renders
    // still running after it are cancelled (the worker says so), and the
    // tasks it had not started go back to the queue; on memory:// no other
    // worker can answer those calls, so the producer gives them up then
    // rather than at the end of its own grace. Either way their tasks stay
    // running, without using an attempt, for the next start.
    let only_worker = worker_transport.url().kind == TransportKind::Memory;
    let worker_stopped = async {
        worker
            .stop_within(std::time::Duration::from_secs(config.worker.shutdown_grace))
            .await;
        if only_worker {
            // The replies of the renders the worker finished during its
            // stop are on their way to the producer's calls: taken first
            // (a call given up before its reply came dropped the render).
            let settled = std::time::Instant::now() + REPLY_SETTLE;
            while dispatcher.in_flight() > 0 && std::time::Instant::now() < settled {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            dispatcher.give_up_calls();
        }
    };
    let producer_early = producer_ended.is_some();
    let producer_ended = match producer_ended {
        Some(ended) => {
            worker_stopped.await;
            ended
        }
        None => tokio::join!(producer, worker_stopped).0,
    };
    api_stop.trigger();
    let api_early = api_ended.is_some();
    let api_ended = match api_ended {
        Some(ended) => ended,
        None => api_task.await,
    };
    producer_transport.close().await;
    worker_transport.close().await;
    info!("faafo stopped; its data stays in {data}");
    match api_ended {
        Ok(Ok(())) if api_early => return Err("the API stopped on its own".into()),
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("the API failed: {e}").into()),
        Err(e) => return Err(format!("the API task failed: {e}").into()),
    }
    match producer_ended {
        Err(e) => Err(format!("the producer task failed: {e}").into()),
        Ok(()) if producer_early => Err("the producer stopped on its own".into()),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

/// Where `up` keeps its data, in words: the data directory with the
/// default SQLite database; else the configured database (password
/// hidden), and the images' directory with `image_store = filesystem`.
fn data_location(config: &FaafoConfig) -> String {
    let database = if config.default.database_url.is_empty() {
        config.state_path().display().to_string()
    } else {
        redact_url(&config.database_url())
    };
    match faafo_api::settings::ApiSettings::from_config(config).image_store {
        // Said unless they are in the data directory already said.
        ImageStoreKind::Filesystem(dir)
            if !config.default.database_url.is_empty() || !dir.starts_with(config.state_path()) =>
        {
            format!("{database} (images in {})", dir.display())
        }
        _ => database,
    }
}

/// Whether the API's port can be listened on (any, for port 0), as the
/// API's start would say it cannot.
fn port_is_free(config: &FaafoConfig) -> Result<(), faafo_api::StartupError> {
    let (host, port) = (config.api.bare_bind_host(), config.api.bind_port);
    if port == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind((host, port))
        .map(drop)
        .map_err(|source| faafo_api::StartupError::Bind {
            address: faafo_api::startup::bind_address(host, port),
            source,
        })
}

/// The API's start-up error as `up` says it: a port another program holds
/// with the option that picks another.
fn said_by_up(error: faafo_api::StartupError) -> Box<dyn Error> {
    match &error {
        faafo_api::StartupError::Bind { source, .. }
            if source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            format!("{error} (another program uses it: give faafo up --port another one)").into()
        }
        _ => error.into(),
    }
}

/// Takes the lock of `faafo up` on the data directory `dir` (a file
/// locked for as long as the returned handle lives; the system releases it
/// when the process ends, however it ends).
fn lock_data_directory(dir: &std::path::Path) -> Result<std::fs::File, String> {
    let path = dir.join("faafo-up.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another faafo up is running on the data directory {}: stop it first, or give this one a directory of its own ([DEFAULT] state_path)",
            dir.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}
