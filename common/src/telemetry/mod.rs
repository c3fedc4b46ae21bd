//! Logging for every faafo program, in the original's line format:
//!
//! ```text
//! 2026-11-22 23:01:29.308 22526 INFO faafo.worker [req-6f1c...] processing task 212e8c23-...
//! ```
//!
//! (UTC time, process id, level, module, the request id of the enclosing
//! span or `-`, the message and the event's own fields). JSON lines are an
//! option. Lines go to standard error or, as with oslo.log, to a log file
//! with daily rotation instead (or to both, with `use_stderr`).
//!
//! The request id is whatever a span's `request_id` field holds: the API
//! opens such a span per request, the RPC server per call (from the
//! `_context_request_id` the caller sent), so one fractal's lines share it
//! from the API to the worker.

use std::fmt;
use std::path::Path;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_appender::rolling::RollingFileAppender;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

mod batch_writer;

use batch_writer::{BatchWriter, BatchWriterGuard};

/// How to log.
#[derive(Debug, Clone, Default)]
pub struct TelemetrySettings {
    /// Debug level for faafo's own modules.
    pub debug: bool,
    /// JSON lines instead of the text format.
    pub json: bool,
    /// Write to this file, rotated daily, instead of standard error.
    pub log_file: Option<std::path::PathBuf>,
    /// Write to standard error as well as to `log_file` (oslo.log's
    /// `use_stderr`). Without a `log_file`, lines always go to standard
    /// error.
    pub use_stderr: bool,
}

impl TelemetrySettings {
    /// Settings from the `[DEFAULT]` section.
    pub fn from_config(config: &crate::configuration::DefaultSection) -> Self {
        Self {
            debug: config.debug,
            json: config.log_format == "json",
            log_file: Some(config.log_file.as_str())
                .filter(|f| !f.is_empty())
                .map(Into::into),
            use_stderr: config.use_stderr,
        }
    }
}

/// Keeps the log writers alive; drop it last (at the end of `main`): it
/// writes out the lines still queued.
#[must_use = "dropping the guard stops writing the logs"]
pub struct TelemetryGuard {
    stderr: Option<BatchWriterGuard>,
    file: Option<BatchWriterGuard>,
}

impl TelemetryGuard {
    /// Logs `error`, the one that ends the program, when the logs go to a
    /// file: the file then says why the program stopped. Returns whether
    /// the caller must still print it as its one line on standard error
    /// (`faafo-worker: <error>`, after dropping this guard): yes unless the
    /// logged line went there too (`use_stderr`), so that standard error
    /// has the error once, whatever the settings.
    pub fn log_fatal(&self, error: &dyn fmt::Display) -> bool {
        // A filter (RUST_LOG=faafo_worker=debug, off) may drop the line.
        let logged = tracing::enabled!(target: "faafo", tracing::Level::ERROR);
        if self.file.is_some() {
            tracing::error!(target: "faafo", "{error}");
        }
        self.file.is_none() || self.stderr.is_none() || !logged
    }
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log file's directory cannot be used.
    #[error("cannot write the log file {path}: {reason}")]
    LogFile {
        /// The configured file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The thread that writes the lines of one destination could not start.
    #[error("cannot start the thread writing the logs to {destination}: {reason}")]
    WriterThread {
        /// The log file, or `standard error`.
        destination: String,
        /// What the system said.
        reason: String,
    },
    /// A subscriber was already installed.
    #[error("logging was already initialised: {0}")]
    AlreadySet(String),
}

/// The filter: `RUST_LOG` if set, else info (debug with `debug`) for
/// faafo and warnings for the libraries under it.
///
/// lapin is quiet unless `debug` is set: every error it logs is also
/// returned to faafo's broker layer, which reports it once in its own
/// words ("lost the connection to the message broker; reconnecting", or
/// the one-line start-up error), where lapin would add three ERROR lines
/// of protocol detail before it.
fn filter(debug: bool) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directives(debug)))
}

fn default_directives(debug: bool) -> String {
    let (level, lapin) = if debug {
        ("debug", "warn")
    } else {
        ("info", "off")
    };
    format!(
        "warn,faafo={level},faafo_common={level},faafo_api={level},faafo_worker={level},\
         faafo_producer={level},tower_http={level},lapin={lapin}"
    )
}

/// The standard error writer, for its count of dropped lines.
static STDERR_WRITER: std::sync::OnceLock<BatchWriter> = std::sync::OnceLock::new();
/// The log file writer, for its count of dropped lines.
static FILE_WRITER: std::sync::OnceLock<BatchWriter> = std::sync::OnceLock::new();

/// Log lines dropped so far because the disk or the journal could not
/// keep up (each writer lets up to 32 MiB of lines wait rather than make a
/// request wait): 0 unless something is badly wrong with where logs go.
pub fn dropped_log_lines() -> u64 {
    [&STDERR_WRITER, &FILE_WRITER]
        .iter()
        .filter_map(|w| w.get())
        .map(BatchWriter::dropped_lines)
        .sum()
}

/// Installs the global subscriber.
///
/// Each line is formatted once and queued for one writer thread per
/// destination (standard error, the log file, or both, through a batching writer),
/// so a request that logs never waits for a slow disk or journald.
/// Measured: with stderr to a file that a busy API had filled, writing it
/// in place made the 99th percentile of a POST 27-127 ms instead of 9-15.
/// Past 32 MiB of queued lines a line is dropped rather than make a request
/// wait, and counted ([`dropped_log_lines`], in the API's /metrics); no
/// line was dropped in any benchmark run.
pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    let file = settings
        .log_file
        .as_deref()
        .map(|path| {
            let (writer, guard) = writer(
                "faafo-log-file",
                daily_file(path)?,
                format!("the log file {}", path.display()),
            )?;
            let _ = FILE_WRITER.set(writer.clone());
            Ok::<_, TelemetryError>((writer, guard))
        })
        .transpose()?;
    // Colours only for a terminal that gets the lines alone.
    let ansi = file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = || {
        let (writer, guard) = writer(
            "faafo-log-stderr",
            std::io::stderr(),
            "standard error".into(),
        )?;
        let _ = STDERR_WRITER.set(writer.clone());
        Ok::<_, TelemetryError>((writer, guard))
    };
    let (writer, guards) = match file {
        None => {
            let (s, sg) = stderr()?;
            (BoxMakeWriter::new(s), (Some(sg), None))
        }
        Some((f, fg)) if settings.use_stderr => {
            let (s, sg) = stderr()?;
            (BoxMakeWriter::new(s.and(f)), (Some(sg), Some(fg)))
        }
        Some((f, fg)) => (BoxMakeWriter::new(f), (None, Some(fg))),
    };
    let registry = tracing_subscriber::registry()
        .with(filter(settings.debug))
        .with(RequestIdLayer);
    let result = if settings.json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(writer);
        registry.with(layer).try_init()
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .event_format(OriginalFormat)
            .with_ansi(ansi)
            .with_writer(writer);
        registry.with(layer).try_init()
    };
    result.map_err(|e| TelemetryError::AlreadySet(e.to_string()))?;
    Ok(TelemetryGuard {
        stderr: guards.0,
        file: guards.1,
    })
}

/// The log file, rotated daily (`<file>.<date>`), its directory created.
fn daily_file(path: &Path) -> Result<RollingFileAppender, TelemetryError> {
    let fail = |reason: String| TelemetryError::LogFile {
        path: path.display().to_string(),
        reason,
    };
    // The logs would go beside the directory, named after it.
    if path.is_dir() {
        return Err(fail("it is a directory: give a file's path in it".into()));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let name = path
        .file_name()
        .ok_or_else(|| fail("it names no file".into()))?;
    tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(name.to_string_lossy().into_owned())
        .build(dir)
        .map_err(|e| fail(e.to_string()))
}

/// A writer thread for `out` (named `destination` in errors).
fn writer<W: std::io::Write + Send + 'static>(
    name: &str,
    out: W,
    destination: String,
) -> Result<(BatchWriter, BatchWriterGuard), TelemetryError> {
    BatchWriter::spawn(name, out, batch_writer::DEFAULT_LIMIT).map_err(|e| {
        TelemetryError::WriterThread {
            destination,
            reason: e.to_string(),
        }
    })
}

/// A span's request id, stored in its extensions.
struct RequestId(String);

struct RequestIdVisitor(Option<String>);

impl Visit for RequestIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "request_id" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "request_id" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

/// Records each span's `request_id` so the formatter can find it.
struct RequestIdLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for RequestIdLayer {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut visitor = RequestIdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(request_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(RequestId(request_id));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let mut visitor = RequestIdVisitor(None);
        values.record(&mut visitor);
        if let (Some(request_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().replace(RequestId(request_id));
        }
    }
}

/// `date time.ms pid LEVEL module [request-id] message fields`.
struct OriginalFormat;

impl<S, N> FormatEvent<S, N> for OriginalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = time::OffsetDateTime::now_utc();
        let meta = event.metadata();
        let request_id = ctx.event_scope().and_then(|scope| {
            scope
                .from_root()
                .filter_map(|span| span.extensions().get::<RequestId>().map(|r| r.0.clone()))
                .last()
        });
        // A peer's `_context_request_id`: control characters escaped and
        // cut short, like any value a peer sends.
        let request_id = request_id
            .map(|id| crate::fractal::truncate(&crate::configuration::one_line(&id), 100));
        write!(
            writer,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} {} {} {} [{}] ",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.millisecond(),
            std::process::id(),
            meta.level(),
            module_name(meta.target()),
            request_id.as_deref().unwrap_or("-"),
        )?;
        // A line break a peer put in a value (a task's uuid, a worker's
        // error) would forge a line of its own: escaped, one event per line.
        ctx.field_format()
            .format_fields(Writer::new(&mut OneLine(&mut writer)), event)?;
        writeln!(writer)
    }
}

/// Writes through to a log line with line breaks escaped (`\n`, `\r`).
/// tracing-subscriber already escapes the terminal's control sequences.
struct OneLine<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for OneLine<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(['\n', '\r']) {
            self.0.write_str(&rest[..at])?;
            self.0.write_str(if rest[at..].starts_with('\n') {
                "\\n"
            } else {
                "\\r"
            })?;
            rest = &rest[at + 1..];
        }
        self.0.write_str(rest)
    }
}

/// `faafo_worker::service` -> `faafo.worker.service`, as the original's
/// Python module names.
fn module_name(target: &str) -> String {
    let dotted = target.replace("::", ".");
    match dotted.strip_prefix("faafo_") {
        Some(rest) => format!("faafo.{rest}"),
        None => dotted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_read_like_the_original() {
        assert_eq!(module_name("faafo_worker"), "faafo.worker");
        assert_eq!(
            module_name("faafo_common::messaging::rpc"),
            "faafo.common.messaging.rpc"
        );
        assert_eq!(module_name("lapin::channels"), "lapin.channels");
    }

    /// What `emit` logged through [`OriginalFormat`] (with the request-id
    /// layer), as text.
    fn logged(emit: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(RequestIdLayer).with(
            tracing_subscriber::fmt::layer()
                .event_format(OriginalFormat)
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8")
    }

    #[test]
    fn lines_carry_pid_level_module_and_request_id() {
        let text = logged(|| {
            let span = tracing::info_span!("rpc", request_id = "req-42", uuid = "u-1");
            let _guard = span.enter();
            tracing::info!(target: "faafo_worker", "processing task u-1");
        });
        let line = text.lines().next().expect("one line");
        let parts: Vec<&str> = line.splitn(7, ' ').collect();
        assert_eq!(parts[0].len(), 10, "{line}");
        assert_eq!(parts[1].len(), 12, "{line}");
        assert_eq!(parts[2], std::process::id().to_string());
        assert_eq!(parts[3], "INFO");
        assert_eq!(parts[4], "faafo.worker");
        assert_eq!(parts[5], "[req-42]");
        assert_eq!(parts[6], "processing task u-1", "{line:?}");
    }

    #[test]
    fn a_line_break_in_a_value_does_not_forge_a_line() {
        let peer = "x\n2026-11-22 23:01:29.308 1 ERROR faafo.api [-] forged\r";
        let text = logged(|| {
            tracing::warn!(target: "faafo_producer", "task {peer} failed");
        });
        assert_eq!(text.lines().count(), 1, "{text:?}");
        // Nor one in a peer's request id.
        let forged = logged(|| {
            let span = tracing::info_span!("rpc", request_id = peer);
            let _guard = span.enter();
            tracing::info!(target: "faafo_worker", "processing");
        });
        assert_eq!(forged.lines().count(), 1, "{forged:?}");
        assert!(forged.contains("[x\\n2026-11-22"), "{forged:?}");
        assert!(
            text.ends_with(
                "task x\\n2026-11-22 23:01:29.308 1 ERROR faafo.api [-] forged\\r failed\n"
            ),
            "{text:?}"
        );
    }
}
