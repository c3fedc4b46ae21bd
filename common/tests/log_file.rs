//! `log_file`: lines go to a file rotated daily (named `<file>.<date>`), in
//! the same format as standard error, and (as with oslo.log) no longer to
//! standard error unless `use_stderr` says so.
//!
//! Logging is global to a process and the checks read a process's standard
//! error, so this test binary has a `main` of its own (`harness = false`):
//! it runs itself as a child with [`CHILD_LOG_FILE`] set, the child logs
//! one line ([`log_one_line`]), and the parent reads the child's standard
//! error and log file.

use std::path::{Path, PathBuf};
use std::process::Command;

use faafo_common::telemetry::{self, TelemetrySettings};

const LINE: &str = " INFO faafo.worker [req-file-1] processing task 42";

/// Set in the child: the log file to log to.
const CHILD_LOG_FILE: &str = "FAAFO_TEST_LOG_FILE";
/// Set in the child: log to standard error as well.
const CHILD_USE_STDERR: &str = "FAAFO_TEST_USE_STDERR";

fn main() {
    if let Some(file) = std::env::var_os(CHILD_LOG_FILE) {
        log_one_line(file.into());
        return;
    }
    lines_go_to_a_daily_log_file_instead_of_standard_error();
    use_stderr_writes_both();
    a_directory_is_no_log_file();
    println!("log_file: 3 checks passed");
}

/// The child: logs one line with the settings its environment gives.
fn log_one_line(file: PathBuf) {
    let guard = telemetry::init(&TelemetrySettings {
        debug: false,
        json: false,
        log_file: Some(file),
        use_stderr: std::env::var_os(CHILD_USE_STDERR).is_some(),
    })
    .expect("logging starts");
    {
        let span = tracing::info_span!(target: "faafo_worker", "rpc", request_id = "req-file-1");
        let _entered = span.enter();
        tracing::info!(target: "faafo_worker", "processing task 42");
    }
    drop(guard);
}

/// Runs the child logging to `dir/logs/faafo-worker.log`; returns its
/// standard error and the day's log file.
fn log_in_child(dir: &Path, use_stderr: bool) -> (String, String) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"));
    child
        .env(CHILD_LOG_FILE, dir.join("logs/faafo-worker.log"))
        .env_remove(CHILD_USE_STDERR)
        .env_remove("RUST_LOG");
    if use_stderr {
        child.env(CHILD_USE_STDERR, "1");
    }
    let output = child.output().expect("the child runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "child failed: {stderr}");
    let today = time::OffsetDateTime::now_utc().date();
    let name = format!(
        "faafo-worker.log.{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    let written = std::fs::read_to_string(dir.join("logs").join(&name))
        .unwrap_or_else(|e| panic!("{name} in {}: {e}", dir.display()));
    (stderr, written)
}

fn lines_go_to_a_daily_log_file_instead_of_standard_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stderr, written) = log_in_child(dir.path(), false);
    let line = written.lines().last().expect("a line");
    assert!(line.contains(LINE), "{line}");
    assert!(
        !stderr.contains(LINE),
        "standard error got the line: {stderr}"
    );
}

/// A `log_file` naming a directory is refused with a reason: the logs
/// would have gone beside it, named after it. (Refused before logging is
/// set up, so this process can ask.)
fn a_directory_is_no_log_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = telemetry::init(&TelemetrySettings {
        debug: false,
        json: false,
        log_file: Some(dir.path().to_path_buf()),
        use_stderr: false,
    })
    .err()
    .expect("a directory is refused");
    let said = refused.to_string();
    assert!(said.contains("it is a directory"), "{said}");
    assert!(said.contains(&dir.path().display().to_string()), "{said}");
    let beside = std::fs::read_dir(dir.path().parent().expect("a parent"))
        .expect("the parent")
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let own = dir
                .path()
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            name.starts_with(&format!("{own}."))
        })
        .count();
    assert_eq!(beside, 0, "a log file was made beside the directory");
}

fn use_stderr_writes_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stderr, written) = log_in_child(dir.path(), true);
    assert!(written.contains(LINE), "{written}");
    assert!(stderr.contains(LINE), "{stderr}");
}
