//! Every option of every faafo program, with its default and help.
//!
//! The options' help texts are written for the sample file and the
//! documentation (`[api] bind_port`, `<uuid>.png`), and become the fields'
//! doc comments as they are: rustdoc is not to read them as links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use serde::Deserialize;

use super::sample::SectionDoc;
use super::{CommaList, ConfigError, default_state_path, host_name};
use crate::config_section;
use crate::messaging::{Codec, TransportUrl};

config_section! {
    /// Options shared by every faafo program.
    pub struct DefaultSection ["DEFAULT"] {
        /// Message broker: rabbit://user:pass@host:5672/vhost (several hosts separated by commas for failover), or memory:// to run everything in one process.
        transport_url: String = "memory://".into(),
        /// Exchange of faafo's RPC topics and notifications.
        control_exchange: String = "faafo".into(),
        /// Encoding of RPC messages: json (oslo.messaging's, works with Python peers) or msgpack (Rust peers only; images travel raw).
        rpc_codec: String = "json".into(),
        /// SQL database: sqlite:///path/faafo.db, mysql://user:pass@host:3306/faafo or postgresql://user:pass@host:5432/faafo. Empty: faafo.db in state_path.
        database_url: String = String::new(),
        /// Directory for faafo's data (the SQLite database, stored images). Empty: $XDG_DATA_HOME/faafo or ~/.local/share/faafo.
        state_path: String = String::new(),
        /// URL of the faafo API, for the producer and the command line (several API hosts sharing one database separated by commas: used in turn when one fails). Not set: the API of the same configuration, http://<[api] bind_host>:<[api] bind_port> (127.0.0.1 for 0.0.0.0, [::1] for ::), except for bind_port = 0 (a port the system picks at start: the default stays).
        endpoint_url: String = "http://127.0.0.1:5000".into(),
        /// Token sent as X-Auth-Token to an API that requires one (auth_strategy = token).
        auth_token: String = String::new(),
        /// Largest fractal accepted, in pixels (width x height). Workers also refuse a side longer than 65,536 pixels, whatever the limit.
        pixel_limit: u64 = 16 * 1024 * 1024,
        /// Most iterations accepted per fractal (at most 10,000,000).
        iteration_limit: u32 = 100_000,
        /// Log at debug level.
        debug: bool = false,
        /// Log to this file, rotated daily (each day's lines go to <log_file>.<YYYY-MM-DD>), instead of standard error. Empty: standard error.
        log_file: String = String::new(),
        /// With log_file set, log to standard error as well (as oslo.log's use_stderr).
        use_stderr: bool = false,
        /// Log line format: text (the original's: date time pid LEVEL module [request id] message) or json.
        log_format: String = "text".into(),
    }
}

config_section! {
    /// Options of the messaging layer.
    pub struct MessagingSection ["messaging"] {
        /// Seconds without a call-monitor heartbeat after which a call to a worker is given up (0: off). The monitor counts time spent waiting in the queue too, so keep it well above the time a task may wait behind others; it pauses while the producer is away from the broker (its count starts again at the reconnect).
        call_monitor_timeout: u64 = 0,
        /// Exchange that keeps rejected (malformed) requests, and the calls that expired in the queue before a worker took them (call_timeout: the producer has given up on them and sends them again); give its queue a length limit or a TTL (a RabbitMQ policy), or it grows while no worker runs. Every peer of a topic must agree. Empty: such messages are dropped.
        dead_letter_exchange: String = String::new(),
        /// Largest RPC message accepted, in bytes (at least 64 KiB), and largest reply sent: a larger result is answered with an error (RabbitMQ would close the channel on it). At most the broker's own max_message_size (RabbitMQ 3.x: 128 MiB; 4.x: 16 MiB, to lower this to).
        max_message_size: u64 = 64 * 1024 * 1024,
    }
}

config_section! {
    /// Options of the SQL database connection.
    pub struct DatabaseSection ["database"] {
        /// Connections in the pool.
        max_connections: u32 = 8,
        /// Seconds to wait for a connection.
        connect_timeout: u64 = 10,
        /// Seconds a statement may take on MariaDB/MySQL or PostgreSQL, waiting for locks included, before its request is answered 503 (1 to 2147483). SQLite waits up to 10 s for a lock.
        query_timeout: u64 = 30,
    }
}

config_section! {
    /// Options of faafo-api, the HTTP API and web page.
    pub struct ApiSection ["api"] {
        /// Address to listen on.
        bind_host: String = "127.0.0.1".into(),
        /// Port to listen on; 0: one the system picks (the API logs its URL at start).
        bind_port: u16 = 5000,
        /// noauth (anyone may write) or token (writes need an X-Auth-Token from auth_tokens).
        auth_strategy: String = "noauth".into(),
        /// Tokens accepted with auth_strategy = token, separated by commas.
        auth_tokens: CommaList = CommaList::default(),
        /// With auth_strategy = token, require a token for reads too.
        protect_reads: bool = false,
        /// Where images are kept: database (in a table of their own, fractal_image) or filesystem (in image_dir).
        image_store: String = "database".into(),
        /// Directory of stored images with image_store = filesystem. Empty: images/ in state_path.
        image_dir: String = String::new(),
        /// Largest request body accepted, in bytes, at least 64 KiB (image uploads included; a JSON body is read up to 1 MiB at most).
        max_body_size: u64 = 64 * 1024 * 1024,
        /// Fractals per page of the collection when the client asks for no size.
        results_per_page: u32 = 10,
        /// Largest page size a client may ask for.
        max_results_per_page: u32 = 100,
    }
}

config_section! {
    /// Options of faafo-worker, the renderer.
    pub struct WorkerSection ["worker"] {
        /// RPC topic to serve.
        topic: String = "tasks".into(),
        /// Server name of this worker (its own queue is topic.server_name). Empty: the host name.
        server_name: String = String::new(),
        /// Tasks rendered at once. 0: twice the number of CPUs (while one task is in its single-threaded PNG step, the others keep every core rendering). Each holds its image in memory, and they share the render threads, so each takes longer than alone (exec_timeout counts from the start of its render).
        executor_size: usize = 0,
        /// Threads of the one render pool that the tasks rendered at once share. 0: the number of CPUs.
        render_threads: usize = 0,
        /// Tasks taken from the queue at once, unacknowledged: those rendering and those waiting for a render slot, so the next render starts the moment one ends. At least executor_size. 0: 2 x executor_size.
        prefetch: usize = 0,
        /// Seconds after which a render is cancelled and reported as failed (at least 1).
        exec_timeout: u64 = 600,
        /// Seconds a stopping worker waits for the renders in progress to finish and be answered. Those still running then are cancelled and their tasks go back to the queue, for another worker (not a failed attempt).
        shutdown_grace: u64 = 30,
        /// Also write each PNG into this directory (as the original did), as <uuid>.png, whole (written aside as .faafo-*.tmp and renamed; leftovers of a crash older than ten minutes are removed at start). Empty: don't.
        filesystem_store_datadir: String = String::new(),
        /// Send fractal.rendered / fractal.failed notifications (to notifications.info / notifications.error on the control exchange), one per attempt a worker ends: a task tried again may have a fractal.failed then a fractal.rendered, and fractal.rendered comes before the producer stores the image. Nothing in faafo reads them: their queues grow until something does; give them a length limit or a TTL (a RabbitMQ policy on ^notifications\.).
        notifications: bool = false,
    }
}

config_section! {
    /// Options of faafo-producer, which generates tasks and dispatches them.
    pub struct ProducerSection ["producer"] {
        /// RPC topic of the workers.
        topic: String = "tasks".into(),
        /// Seconds between two batches of tasks.
        interval: f64 = 10.0,
        /// Fewest tasks per batch.
        min_tasks: u32 = 1,
        /// Most tasks per batch.
        max_tasks: u32 = 10,
        /// Smallest width of generated tasks.
        min_width: u32 = 256,
        /// Largest width of generated tasks.
        max_width: u32 = 1024,
        /// Smallest height of generated tasks.
        min_height: u32 = 256,
        /// Largest height of generated tasks.
        max_height: u32 = 1024,
        /// Fewest iterations of generated tasks (at least 12: a worker draws
        /// no Julia constant for fewer).
        min_iterations: u32 = 128,
        /// Most iterations of generated tasks.
        max_iterations: u32 = 512,
        /// One end of the range of xa (drawn uniformly between min_xa and max_xa).
        min_xa: f64 = -1.0,
        /// Other end of the range of xa.
        max_xa: f64 = -4.0,
        /// One end of the range of xb.
        min_xb: f64 = 1.0,
        /// Other end of the range of xb.
        max_xb: f64 = 4.0,
        /// One end of the range of ya.
        min_ya: f64 = -0.5,
        /// Other end of the range of ya.
        max_ya: f64 = -3.0,
        /// One end of the range of yb.
        min_yb: f64 = 0.5,
        /// Other end of the range of yb.
        max_yb: f64 = 3.0,
        /// RPC calls to workers in flight at once.
        max_in_flight: usize = 32,
        /// Seconds a call to a worker may take before it is given up (at least 1: 0 is not "no timeout").
        call_timeout: u64 = 900,
        /// Seconds a running task may go without an update before it is dispatched again (pending tasks are taken every poll_interval). At least 1.
        task_timeout: u64 = 960,
        /// Seconds between two scans for running tasks to dispatch again (those past task_timeout). At least 1.
        recovery_interval: u64 = 60,
        /// Seconds between two looks for pending tasks nobody dispatches (created by the faafo command line, or left by a stopped producer).
        poll_interval: f64 = 2.0,
        /// Seconds between two checks that a task being rendered is still in the API (once it has been in flight that long): the render of one deleted meanwhile is cancelled on the workers. 0: never check.
        deletion_check_interval: f64 = 10.0,
        /// Attempts per task before it is marked failed.
        max_attempts: u32 = 3,
        /// Seconds to wait for calls in flight when stopping.
        shutdown_grace: u64 = 30,
        /// Seed of the random task generator, for reproducible runs and benchmarks. 0: a new seed at each start.
        generator_seed: u64 = 0,
    }
}

impl ApiSection {
    /// `bind_host` without its white space and an IPv6 address's brackets.
    pub fn bare_bind_host(&self) -> &str {
        let host = self.bind_host.trim();
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The URL a client on this machine reaches this API at:
    /// `http://bind_host:bind_port`, as [`local_api_url`] writes it for an
    /// address (an empty host is every IPv4 address; a name stays as it is).
    pub fn local_url(&self) -> String {
        let bare = self.bare_bind_host();
        match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => local_api_url(ip, self.bind_port),
            Err(_) if bare.is_empty() => {
                local_api_url(std::net::Ipv4Addr::UNSPECIFIED.into(), self.bind_port)
            }
            Err(_) => format!("http://{bare}:{}", self.bind_port),
        }
    }
}

/// The URL a client on this machine reaches an API listening on
/// `ip`:`port` at: 127.0.0.1 (`[::1]`) for every IPv4 (IPv6) address, an
/// IPv6 address bracketed. For the API's own announcement and for a
/// client's default alike.
pub fn local_api_url(ip: std::net::IpAddr, port: u16) -> String {
    let host = match ip {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{port}")
}

/// The whole configuration of faafo: every program reads the same layout
/// (and ignores the sections of the others).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaafoConfig {
    /// `[DEFAULT]`
    #[serde(rename = "DEFAULT", default)]
    pub default: DefaultSection,
    /// `[messaging]`
    #[serde(default)]
    pub messaging: MessagingSection,
    /// `[database]`
    #[serde(default)]
    pub database: DatabaseSection,
    /// `[api]`
    #[serde(default)]
    pub api: ApiSection,
    /// `[worker]`
    #[serde(default)]
    pub worker: WorkerSection,
    /// `[producer]`
    #[serde(default)]
    pub producer: ProducerSection,
}

/// A value that types alone could not refuse; [`super::load_from`] adds
/// where it came from.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub section: &'static str,
    pub key: &'static str,
    pub message: String,
    /// Another key of the section the problem involves (the `max_` of a
    /// `min_`): the error names the file that set it when no file set `key`.
    pub related: Option<&'static str>,
}

/// The most tasks a worker can hold: AMQP's `basic.qos` prefetch count is
/// 16 bits.
pub const MAX_PREFETCH: usize = u16::MAX as usize;

/// The most calls a producer keeps in flight (it also holds up to four
/// times as many results waiting for the API).
pub const MAX_IN_FLIGHT: usize = u16::MAX as usize;

/// The most threads one render may use.
pub const MAX_RENDER_THREADS: usize = 1024;

/// The longest time any option may give, in seconds: a year, the longest
/// timeout the messaging library keeps.
pub const MAX_SECONDS: u64 = crate::messaging::MAX_TIMEOUT.as_secs();

/// The longest `[database] query_timeout`: PostgreSQL's `statement_timeout`
/// takes at most 2^31 - 1 milliseconds.
pub const MAX_QUERY_TIMEOUT: u64 = i32::MAX as u64 / 1000;

/// The most tasks in one generated batch (the producer holds a batch in
/// memory, about a kilobyte a task, until its tasks are dispatched).
pub const MAX_BATCH: u32 = 100_000;

fn invalid(section: &'static str, key: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        section,
        key,
        message: message.into(),
        related: None,
    }
}

fn one_of(
    section: &'static str,
    key: &'static str,
    value: &str,
    allowed: &[&str],
) -> Result<(), Invalid> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            section,
            key,
            format!("expected one of {}, got '{value}'", allowed.join(", ")),
        ))
    }
}

impl FaafoConfig {
    /// Checks what types alone cannot: URLs, choices, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|i| {
            ConfigError::new(
                "configuration",
                format!("[{}] {}: {}", i.section, i.key, i.message),
            )
        })
    }

    pub(crate) fn check(&self) -> Result<(), Invalid> {
        let d = &self.default;
        let transport = TransportUrl::parse(&d.transport_url)
            .map_err(|e| invalid("DEFAULT", "transport_url", e.reason.clone()))?;
        // Refused here, by check-config and at start, rather than by every
        // connection attempt of a service that systemd restarts forever.
        if transport.options.ssl {
            return Err(invalid(
                "DEFAULT",
                "transport_url",
                "TLS (amqps:// or ssl=1) is not supported by this build of faafo: use a \
                 plain rabbit:// URL on a private network, or a TLS-terminating proxy",
            ));
        }
        d.rpc_codec
            .parse::<Codec>()
            .map_err(|e| invalid("DEFAULT", "rpc_codec", e))?;
        // Refused by check-config, not first by the API's start: a port in
        // it (`0.0.0.0:5000`), a URL, a typo.
        let bare = self.api.bare_bind_host();
        // What the system's resolver takes: a name (underscores and a
        // trailing dot too), an address, an IPv6 one with its `%zone`.
        let name = bare.strip_suffix('.').unwrap_or(bare);
        let host_name = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        let address = bare.parse::<std::net::IpAddr>().is_ok()
            || bare.split_once('%').is_some_and(|(ip, zone)| {
                ip.parse::<std::net::Ipv6Addr>().is_ok() && !zone.is_empty()
            });
        if !address && !host_name {
            return Err(invalid(
                "api",
                "bind_host",
                format!(
                    "expected an IP address or a host name (0.0.0.0 for every IPv4 address, \
                     :: for every IPv6 one; the port is bind_port), got {:?}",
                    self.api.bind_host
                ),
            ));
        }
        // No shell reads these files: a `~` would be a directory named `~`
        // in whatever directory the service started from.
        let sqlite_path = d
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| d.database_url.strip_prefix("sqlite:"))
            .unwrap_or_default();
        for (section, key, path) in [
            ("DEFAULT", "state_path", d.state_path.as_str()),
            ("DEFAULT", "log_file", d.log_file.as_str()),
            ("DEFAULT", "database_url", sqlite_path),
            ("api", "image_dir", self.api.image_dir.as_str()),
            (
                "worker",
                "filesystem_store_datadir",
                self.worker.filesystem_store_datadir.as_str(),
            ),
        ] {
            if path.starts_with('~') {
                return Err(invalid(
                    section,
                    key,
                    format!(
                        "{path:?}: `~` is not expanded here; write the whole path (/home/<you>/...)"
                    ),
                ));
            }
        }
        // The logs would go beside the directory, named after it.
        if d.log_file.ends_with('/') {
            return Err(invalid(
                "DEFAULT",
                "log_file",
                format!(
                    "{:?} names a directory: give a file's path in it (each day's lines go to <log_file>.<YYYY-MM-DD>)",
                    d.log_file
                ),
            ));
        }
        let w = &self.worker;
        // AMQP counts unacknowledged messages in 16 bits; past that many
        // threads, a render pool only adds switching (and each thread is
        // started up front).
        for (key, value, most) in [
            ("executor_size", w.executor_size, MAX_PREFETCH),
            ("prefetch", w.prefetch, MAX_PREFETCH),
            ("render_threads", w.render_threads, MAX_RENDER_THREADS),
        ] {
            if value > most {
                return Err(invalid(
                    "worker",
                    key,
                    format!("must be at most {most}, got {value}"),
                ));
            }
        }
        // 0 would cancel every render at once (it was silently read as 1).
        if w.exec_timeout == 0 {
            return Err(invalid(
                "worker",
                "exec_timeout",
                "must be at least 1 (seconds)",
            ));
        }
        // 0 would fail every statement at once; PostgreSQL's
        // statement_timeout takes at most 2^31 - 1 ms.
        if !(1..=MAX_QUERY_TIMEOUT).contains(&self.database.query_timeout) {
            return Err(invalid(
                "database",
                "query_timeout",
                format!(
                    "must be between 1 and {MAX_QUERY_TIMEOUT} seconds (PostgreSQL's limit, \
                     about 24 days), got {}",
                    self.database.query_timeout
                ),
            ));
        }
        if w.prefetch != 0 && w.executor_size != 0 && w.prefetch < w.executor_size {
            return Err(invalid(
                "worker",
                "prefetch",
                format!(
                    "must be at least executor_size ({}), got {}",
                    w.executor_size, w.prefetch
                ),
            ));
        }
        if !d.database_url.is_empty() {
            // A URL (or SQLite's `sqlite::memory:`): `postgresql:/u:pw@h`
            // is a typo, not PostgreSQL.
            let scheme = match d.database_url.split_once("://") {
                Some((scheme, _)) => scheme,
                None if d.database_url.starts_with("sqlite:") => "sqlite",
                None => "",
            };
            one_of(
                "DEFAULT",
                "database_url",
                scheme,
                &["sqlite", "mysql", "mariadb", "postgres", "postgresql"],
            )
            .map_err(|_| {
                invalid(
                    "DEFAULT",
                    "database_url",
                    format!(
                        "expected a sqlite://, mysql:// or postgresql:// URL, got '{}'",
                        crate::messaging::redact_url(&d.database_url)
                    ),
                )
            })?;
        }
        // The API client speaks plain HTTP (no TLS library is built in): an
        // https:// URL would fail at every request instead of at start.
        for endpoint in d.endpoint_url.split(',').map(str::trim) {
            if !endpoint.is_empty() && !endpoint.contains("://") {
                return Err(invalid(
                    "DEFAULT",
                    "endpoint_url",
                    format!(
                        "expected an http:// URL, got '{}': write http://{0}",
                        crate::messaging::redact_url(endpoint)
                    ),
                ));
            }
            if !endpoint.is_empty() && !endpoint.starts_with("http://") {
                return Err(invalid(
                    "DEFAULT",
                    "endpoint_url",
                    format!(
                        "expected an http:// URL (faafo's client speaks plain HTTP; put TLS in a proxy beside it), got '{}'",
                        crate::messaging::redact_url(endpoint)
                    ),
                ));
            }
        }
        crate::api_client::ApiEndpoints::parse(&d.endpoint_url)
            .map_err(|e| invalid("DEFAULT", "endpoint_url", e.to_string()))?;
        one_of("DEFAULT", "log_format", &d.log_format, &["text", "json"])?;
        if d.pixel_limit < 4 {
            return Err(invalid(
                "DEFAULT",
                "pixel_limit",
                "must be at least 4 (2 x 2 pixels)",
            ));
        }
        if !(1..=crate::fractal::MAX_ITERATION_LIMIT).contains(&d.iteration_limit) {
            return Err(invalid(
                "DEFAULT",
                "iteration_limit",
                format!(
                    "must be 1 to {} (a worker checks for a cancel between tiles of up to 256 pixels x iterations steps)",
                    crate::fractal::MAX_ITERATION_LIMIT
                ),
            ));
        }
        // Below this, every task (a request of a few hundred bytes, a reply
        // with its PNG) or every upload would be refused, long after start.
        const SMALLEST_MESSAGE: u64 = 64 * 1024;
        if self.messaging.max_message_size < SMALLEST_MESSAGE {
            return Err(invalid(
                "messaging",
                "max_message_size",
                format!("must be at least {SMALLEST_MESSAGE} bytes (64 KiB)"),
            ));
        }
        if self.api.max_body_size < SMALLEST_MESSAGE {
            return Err(invalid(
                "api",
                "max_body_size",
                format!("must be at least {SMALLEST_MESSAGE} bytes (64 KiB)"),
            ));
        }
        let a = &self.api;
        one_of(
            "api",
            "auth_strategy",
            &a.auth_strategy,
            &["noauth", "token"],
        )?;
        if a.auth_strategy == "token" && a.auth_tokens.0.is_empty() {
            return Err(invalid(
                "api",
                "auth_strategy",
                "token needs at least one token in auth_tokens",
            ));
        }
        one_of(
            "api",
            "image_store",
            &a.image_store,
            &["database", "filesystem"],
        )?;
        if a.results_per_page == 0 || a.results_per_page > a.max_results_per_page {
            return Err(Invalid {
                related: Some("max_results_per_page"),
                ..invalid(
                    "api",
                    "results_per_page",
                    format!(
                        "must be between 1 and max_results_per_page ({})",
                        a.max_results_per_page
                    ),
                )
            });
        }
        let p = &self.producer;
        // A time past the end of the clock's range panics where it is
        // added to "now"; nothing here needs more than a year.
        for (section, key, seconds) in [
            (
                "messaging",
                "call_monitor_timeout",
                self.messaging.call_monitor_timeout as f64,
            ),
            (
                "database",
                "connect_timeout",
                self.database.connect_timeout as f64,
            ),
            (
                "database",
                "query_timeout",
                self.database.query_timeout as f64,
            ),
            ("worker", "exec_timeout", w.exec_timeout as f64),
            ("worker", "shutdown_grace", w.shutdown_grace as f64),
            ("producer", "interval", p.interval),
            ("producer", "call_timeout", p.call_timeout as f64),
            ("producer", "task_timeout", p.task_timeout as f64),
            ("producer", "recovery_interval", p.recovery_interval as f64),
            ("producer", "poll_interval", p.poll_interval),
            (
                "producer",
                "deletion_check_interval",
                p.deletion_check_interval,
            ),
            ("producer", "shutdown_grace", p.shutdown_grace as f64),
        ] {
            if seconds > MAX_SECONDS as f64 {
                return Err(invalid(
                    section,
                    key,
                    format!("must be at most {MAX_SECONDS} seconds (a year), got {seconds}"),
                ));
            }
        }
        if p.max_tasks > MAX_BATCH {
            return Err(invalid(
                "producer",
                "max_tasks",
                format!(
                    "must be at most {MAX_BATCH} (a batch is held in memory), got {}",
                    p.max_tasks
                ),
            ));
        }
        for (key, min, max_key, max) in [
            ("min_tasks", p.min_tasks, "max_tasks", p.max_tasks),
            ("min_width", p.min_width, "max_width", p.max_width),
            ("min_height", p.min_height, "max_height", p.max_height),
            (
                "min_iterations",
                p.min_iterations,
                "max_iterations",
                p.max_iterations,
            ),
        ] {
            if min > max {
                return Err(Invalid {
                    related: Some(max_key),
                    ..invalid(
                        "producer",
                        key,
                        format!("{min} is larger than {max_key} ({max})"),
                    )
                });
            }
        }
        for (key, side) in [("min_width", p.min_width), ("min_height", p.min_height)] {
            if side < 2 {
                return Err(invalid(
                    "producer",
                    key,
                    format!("widths and heights must be at least 2, got {side}"),
                ));
            }
        }
        if p.min_iterations < crate::fractal::MIN_DRAWN_ITERATIONS {
            return Err(invalid(
                "producer",
                "min_iterations",
                format!(
                    "must be at least {} (a worker draws no Julia constant for fewer), got {}",
                    crate::fractal::MIN_DRAWN_ITERATIONS,
                    p.min_iterations
                ),
            ));
        }
        for (key, seconds) in [("interval", p.interval), ("poll_interval", p.poll_interval)] {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(invalid(
                    "producer",
                    key,
                    "must be a positive number of seconds",
                ));
            }
        }
        if !(p.deletion_check_interval.is_finite() && p.deletion_check_interval >= 0.0) {
            return Err(invalid(
                "producer",
                "deletion_check_interval",
                "must be a number of seconds, 0 or more",
            ));
        }
        for (key, v) in [
            ("min_xa", p.min_xa),
            ("max_xa", p.max_xa),
            ("min_xb", p.min_xb),
            ("max_xb", p.max_xb),
            ("min_ya", p.min_ya),
            ("max_ya", p.max_ya),
            ("min_yb", p.min_yb),
            ("max_yb", p.max_yb),
        ] {
            if !v.is_finite() {
                return Err(invalid("producer", key, "must be a finite number"));
            }
        }
        for (key, value) in [
            ("max_attempts", p.max_attempts as usize),
            ("max_in_flight", p.max_in_flight),
        ] {
            if value == 0 {
                return Err(invalid("producer", key, "must be at least 1"));
            }
        }
        // 0 is not "off" here (as it is for call_monitor_timeout and
        // deletion_check_interval): it was silently read as 1 s, which
        // failed every call after a second.
        for (key, value) in [
            ("call_timeout", p.call_timeout),
            ("task_timeout", p.task_timeout),
            ("recovery_interval", p.recovery_interval),
        ] {
            if value == 0 {
                return Err(invalid("producer", key, "must be at least 1 (seconds)"));
            }
        }
        if p.max_in_flight > MAX_IN_FLIGHT {
            return Err(invalid(
                "producer",
                "max_in_flight",
                format!("must be at most {MAX_IN_FLIGHT}, got {}", p.max_in_flight),
            ));
        }
        Ok(())
    }

    /// Sets `[DEFAULT] endpoint_url` to the API of `[api]` (for a
    /// configuration where no source set it): one file serves the API and
    /// its clients. A `bind_host` that makes no URL leaves it as it is (the
    /// API refuses to start with it), and so does `bind_port = 0` (a port
    /// the system picks at start, which no other process can know; `faafo
    /// up` gives its producer the port its API got).
    pub(crate) fn endpoint_url_from_api(&mut self) {
        if self.api.bind_port == 0 {
            return;
        }
        let url = self.api.local_url();
        if crate::api_client::ApiEndpoints::parse(&url).is_ok() {
            self.default.endpoint_url = url;
        }
    }

    /// The data directory.
    pub fn state_path(&self) -> PathBuf {
        if self.default.state_path.is_empty() {
            default_state_path()
        } else {
            PathBuf::from(&self.default.state_path)
        }
    }

    /// The database URL, with the SQLite default filled in.
    pub fn database_url(&self) -> String {
        if self.default.database_url.is_empty() {
            format!("sqlite://{}", self.state_path().join("faafo.db").display())
        } else {
            self.default.database_url.clone()
        }
    }

    /// The RPC codec (validated at load).
    pub fn codec(&self) -> Codec {
        self.default.rpc_codec.parse().unwrap_or_default()
    }

    /// The worker's server name, with the host-name default filled in.
    pub fn worker_server_name(&self) -> String {
        if self.worker.server_name.is_empty() {
            host_name()
        } else {
            self.worker.server_name.clone()
        }
    }

    /// Refuses a `memory://` transport for `program` (`faafo-worker`,
    /// `faafo-producer`) running on its own: that broker lives inside one
    /// process, so a worker alone would wait for tasks forever and a
    /// producer's calls would reach nobody. It is the default, so a missing
    /// `transport_url` is caught here, at start and by `check-config`,
    /// rather than by a worker that silently does nothing.
    pub fn require_shared_broker(&self, program: &str) -> Result<(), String> {
        let in_process = crate::messaging::TransportUrl::parse(&self.default.transport_url)
            .is_ok_and(|url| url.kind == crate::messaging::url::TransportKind::Memory);
        if !in_process {
            return Ok(());
        }
        let alone = if program.contains("worker") {
            "a worker alone would never get a task"
        } else {
            "a producer alone would call workers nobody runs"
        };
        Err(format!(
            "[DEFAULT] transport_url is {}, a broker inside one process: {alone}. \
             Set it to your RabbitMQ (rabbit://user:pass@host:5672/vhost), \
             or run everything in one process with `faafo up`",
            crate::messaging::redact_url(&self.default.transport_url)
        ))
    }

    /// What `check-config` says of a valid configuration: the line a
    /// program prints, naming what it would use (passwords hidden), so that
    /// a file that is valid but points elsewhere than meant shows it. The
    /// `faafo` command line, which runs any of them, names all.
    pub fn check_summary(&self, program: &str) -> String {
        use crate::messaging::redact_url;
        let broker = format!("broker {}", redact_url(&self.default.transport_url));
        let database = format!("database {}", redact_url(&self.database_url()));
        let listening = format!("listening on {}:{}", self.api.bind_host, self.api.bind_port);
        let endpoints: Vec<String> = self
            .default
            .endpoint_url
            .split(',')
            .map(|endpoint| redact_url(endpoint.trim()))
            .collect();
        let api = format!("API {}", endpoints.join(","));
        let tasks = format!("topic {}", self.producer.topic);
        let worker = format!(
            "topic {} as {}",
            self.worker.topic,
            self.worker_server_name()
        );
        let parts = match program {
            "faafo-api" => vec![database, listening],
            "faafo-worker" => vec![broker, worker],
            "faafo-producer" => vec![broker, tasks, api],
            _ => vec![database, listening, broker, tasks, api],
        };
        format!(
            "{program}: the configuration is valid ({})\n",
            parts.join(", ")
        )
    }

    /// A sample file with every section.
    pub fn sample() -> String {
        super::sample_config(
            "faafo configuration: one file for every faafo program",
            &Self::section_docs(),
        )
    }

    /// The documentation of every section, in file order.
    pub fn section_docs() -> Vec<SectionDoc> {
        vec![
            SectionDoc::of::<DefaultSection>(),
            SectionDoc::of::<MessagingSection>(),
            SectionDoc::of::<DatabaseSection>(),
            SectionDoc::of::<ApiSection>(),
            SectionDoc::of::<WorkerSection>(),
            SectionDoc::of::<ProducerSection>(),
        ]
    }
}
