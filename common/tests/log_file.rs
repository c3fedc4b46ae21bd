//! `log_file`: lines go to a file rotated daily (named `<file>.<date>`), in
//! the same format as standard error. (Own test binary: logging is global.)

use faafo_common::telemetry::{self, TelemetrySettings};

#[test]
fn lines_go_to_a_daily_log_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("logs/faafo-worker.log");
    let guard = telemetry::init(&TelemetrySettings {
        debug: false,
        json: false,
        log_file: Some(file.clone()),
    })
    .expect("logging starts");
    {
        let span = tracing::info_span!(target: "faafo_worker", "rpc", request_id = "req-file-1");
        let _entered = span.enter();
        tracing::info!(target: "faafo_worker", "processing task 42");
    }
    drop(guard);
    let today = time::OffsetDateTime::now_utc().date();
    let name = format!(
        "faafo-worker.log.{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    let written = std::fs::read_to_string(dir.path().join("logs").join(&name))
        .unwrap_or_else(|e| panic!("{name} in {}: {e}", dir.path().display()));
    let line = written.lines().last().expect("a line");
    assert!(
        line.contains(" INFO faafo.worker [req-file-1] processing task 42"),
        "{line}"
    );
    assert!(
        !line.contains('\u{1b}'),
        "no colour codes in files: {line:?}"
    );
}
