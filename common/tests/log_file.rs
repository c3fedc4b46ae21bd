//! `log_file`: lines go to a file rotated daily (named `<file>.<date>`), in
//! the same format as standard error, and (as with oslo.log) no longer to
//! standard error unless `use_stderr` says so. Logging is global, so each
//! case runs [`log_one_line`] in a child process of its own and reads its
//! standard error and its log file.

use std::path::Path;
use std::process::Command;

use faafo_common::telemetry::{self, TelemetrySettings};

const LINE: &str = " INFO faafo.worker [req-file-1] processing task 42";

/// Not a test of its own: the child process of the tests below logs one
/// line with the settings their environment gives.
#[test]
#[ignore = "run by the other tests in a child process"]
fn log_one_line() {
    let file = std::env::var_os("FAAFO_TEST_LOG_FILE")
        .expect("FAAFO_TEST_LOG_FILE: this is run by the other tests of this file");
    let guard = telemetry::init(&TelemetrySettings {
        debug: false,
        json: false,
        log_file: Some(file.into()),
        use_stderr: std::env::var_os("FAAFO_TEST_USE_STDERR").is_some(),
    })
    .expect("logging starts");
    {
        let span = tracing::info_span!(target: "faafo_worker", "rpc", request_id = "req-file-1");
        let _entered = span.enter();
        tracing::info!(target: "faafo_worker", "processing task 42");
    }
    drop(guard);
}

/// Runs [`log_one_line`] logging to `dir/logs/faafo-worker.log`; returns
/// its standard error and the day's log file.
fn log_in_child(dir: &Path, use_stderr: bool) -> (String, String) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"));
    child
        .args(["--ignored", "--exact", "log_one_line", "--nocapture"])
        .env("FAAFO_TEST_LOG_FILE", dir.join("logs/faafo-worker.log"))
        .env_remove("RUST_LOG");
    if use_stderr {
        child.env("FAAFO_TEST_USE_STDERR", "1");
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

#[test]
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

#[test]
fn use_stderr_writes_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stderr, written) = log_in_child(dir.path(), true);
    assert!(written.contains(LINE), "{written}");
    assert!(stderr.contains(LINE), "{stderr}");
}
