//! Writing a program's results to standard output without `println!`'s
//! panic when the reader has gone (`faafo-api --print-sample-config |
//! head`): a closed pipe means the reader has what it wanted. And its
//! messages to standard error without `eprintln!`'s panic when that is
//! gone (`faafo create --wait 2>&1 | head`): [`say!`](crate::say).

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
            crate::say!("{program}: cannot write to standard output: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes one line to standard error, as `eprintln!` does, but a standard
/// error that is gone (a closed pipe) is no panic: the message is lost,
/// and the program ends as it would have, with its exit status.
pub fn say(text: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(text).and_then(|()| err.write_all(b"\n"));
}

/// `eprintln!` without its panic when standard error is gone ([`say`]).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::say(format_args!($($arg)*))
    };
}
