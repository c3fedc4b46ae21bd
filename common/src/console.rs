//! Writing a program's results to standard output without `println!`'s
//! panic when the reader has gone (`faafo-api --print-sample-config |
//! head`): a closed pipe means the reader has what it wanted.

use std::io::Write;

/// Writes `text` to standard output and flushes it, every failure the
/// caller's to weigh (a closed pipe is `BrokenPipe`: [`print()`] takes it as
/// the end; a command that stops at it, as `faafo list` does, tells it
/// from a full disk).
pub fn write(text: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(text).and_then(|()| out.flush())
}

/// Writes `text` to standard output and flushes it. A reader that closed
/// the pipe is not an error (the program ends as it would have); any other
/// failure (a full disk) is, for the caller to report.
pub fn print(text: &str) -> std::io::Result<()> {
    match write(format_args!("{text}")) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// [`print()`] for a `main` that prints and ends: success, or the error as
/// `program: cannot write to standard output: <error>` and failure.
pub fn print_and_exit(program: &str, text: &str) -> std::process::ExitCode {
    match print(text) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: cannot write to standard output: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
