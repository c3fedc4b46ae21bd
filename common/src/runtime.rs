//! The async runtime every faafo program runs on.

use crate::configuration::MAX_PREFETCH;

/// Blocking threads a program's runtime may start: a worker holds one for
/// each render in progress (up to `executor_size`, at most
/// [`MAX_PREFETCH`]), and file and SQLite work needs some beside them
/// (tokio's default of 512 would queue renders past it, their time limit
/// running). Threads start only when needed.
pub const MAX_BLOCKING_THREADS: usize = MAX_PREFETCH + 512;

/// How long a program's end waits for its blocking threads.
pub const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends `runtime`, waiting at most [`SHUTDOWN_WAIT`] for its blocking
/// threads: a write into a directory that hangs (an NFS mount gone) holds
/// one that may never end, and dropping the runtime would wait for it.
pub fn shut_down(runtime: tokio::runtime::Runtime) {
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
}

/// A multi-threaded runtime with every driver and room for
/// [`MAX_BLOCKING_THREADS`].
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
}
