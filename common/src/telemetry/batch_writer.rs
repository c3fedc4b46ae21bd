//! A log destination written by a thread of its own, in batches.
//!
//! `tracing-appender`'s non-blocking writer hands each line to its thread
//! through a channel, and the thread sleeps whenever the channel is empty:
//! under load that is a wake-up (a futex call on the logging thread, a
//! context switch on the writer) for nearly every line. Measured on the API
//! at 30,000 requests/s, its writer thread alone used 7% of the process's
//! CPU, mostly switching in and out. Here a line is appended to a shared
//! buffer under a mutex and nobody is woken, except the writer when the
//! buffer was empty and it sleeps; it then gathers lines for
//! [`FLUSH_INTERVAL`] and writes them with one call.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer gathers lines before it writes them: how late a
/// line may reach its file.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// Queued bytes at which the writer is woken before [`FLUSH_INTERVAL`].
const WAKE_AT: usize = 1 << 20;

/// Queued bytes past which lines are dropped (and counted) rather than
/// make a request wait for a disk or journal that cannot keep up.
pub const DEFAULT_LIMIT: usize = 32 << 20;

/// What the logging threads and the writer share.
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    dropped: AtomicU64,
    limit: usize,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// The writer sleeps until a line comes.
    idle: bool,
    /// The guard is gone: write what is left and stop.
    stopping: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A line is plain bytes: a thread that panicked while appending
        // leaves nothing inconsistent behind.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handle the log layer writes to: cheap to clone, never blocks on I/O.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it wrote every queued line.
#[must_use = "dropping the guard stops the writer"]
pub struct BatchWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchWriter {
    /// Starts a thread named `name` that writes to `out`, with at most
    /// `limit` bytes waiting.
    pub fn spawn<W: Write + Send + 'static>(
        name: &str,
        out: W,
        limit: usize,
    ) -> std::io::Result<(Self, BatchWriterGuard)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            limit,
        });
        let thread = std::thread::Builder::new().name(name.into()).spawn({
            let shared = shared.clone();
            move || write_loop(&shared, out)
        })?;
        Ok((
            Self {
                shared: shared.clone(),
            },
            BatchWriterGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Lines dropped so far: the queue was full, or writing them failed.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Write for BatchWriter {
    /// Queues `line` (the log layer writes each line with one call).
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut queue = self.shared.lock();
        if queue.bytes.len() + line.len() > self.shared.limit {
            drop(queue);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        let before = queue.bytes.len();
        queue.bytes.extend_from_slice(line);
        // Wake the writer once: when it sleeps for want of lines, or when
        // this line takes the queue past WAKE_AT.
        if queue.idle || (before < WAKE_AT && queue.bytes.len() >= WAKE_AT) {
            queue.idle = false;
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for BatchWriterGuard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: sleeps until a line comes, gathers lines for
/// [`FLUSH_INTERVAL`] (or until [`WAKE_AT`] bytes wait), writes them, and
/// again, until the guard is dropped.
fn write_loop<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let stopping = {
            let mut queue = shared.lock();
            while queue.bytes.is_empty() && !queue.stopping {
                queue.idle = true;
                queue = shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if !queue.stopping && queue.bytes.len() < WAKE_AT {
                queue = shared
                    .wake
                    .wait_timeout_while(queue, FLUSH_INTERVAL, |q| {
                        !q.stopping && q.bytes.len() < WAKE_AT
                    })
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut queue.bytes, &mut batch);
            queue.stopping
        };
        write_out(shared, &mut out, &mut batch);
        if stopping {
            // The lines that came while the last batch was being written.
            let mut rest = std::mem::take(&mut shared.lock().bytes);
            write_out(shared, &mut out, &mut rest);
            return;
        }
    }
}

/// Writes `batch` and empties it, keeping a buffer of at most [`WAKE_AT`]
/// (after a burst, the queue need not keep holding its size in memory).
/// Lines a failed write lost (a full disk) are counted as dropped, and the
/// first failure is said once on standard error.
fn write_out<W: Write>(shared: &Shared, out: &mut W, batch: &mut Vec<u8>) {
    if let Err(e) = out.write_all(batch).and_then(|()| out.flush()) {
        let lines = batch.iter().filter(|&&b| b == b'\n').count().max(1) as u64;
        if shared.dropped.fetch_add(lines, Ordering::Relaxed) == 0 {
            // Not eprintln!: when the failing output is standard error
            // itself, it would panic and end this thread for good.
            crate::say!("faafo: cannot write the log ({e}): lines are dropped and counted");
        }
    }
    batch.clear();
    batch.shrink_to(WAKE_AT);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read.
    #[derive(Clone, Default)]
    struct Output(Arc<Mutex<Vec<u8>>>);

    impl Write for Output {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("output").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Output {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("output").clone()).expect("utf-8")
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_is_gone() {
        let out = Output::default();
        let (writer, guard) =
            BatchWriter::spawn("test-log", out.clone(), DEFAULT_LIMIT).expect("spawn");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.make_writer();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        w.write_all(format!("{t} {i}\n").as_bytes()).expect("write");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        drop(guard);
        let text = out.text();
        for t in 0..4 {
            let mine: Vec<u32> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|i| i.parse().expect("a number"))
                .collect();
            assert_eq!(mine, (0..10_000).collect::<Vec<_>>(), "thread {t}");
        }
        assert_eq!(writer.dropped_lines(), 0);
    }

    /// Waits up to 5 s for `done`.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// An output that always fails, as a full disk does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("no space left on device"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_a_failed_write_lost_are_counted() {
        let (writer, guard) = BatchWriter::spawn("test-log", Full, DEFAULT_LIMIT).expect("spawn");
        let mut w = writer.clone();
        for i in 0..10 {
            w.write_all(format!("line {i}\n").as_bytes())
                .expect("write");
        }
        drop(guard);
        assert_eq!(writer.dropped_lines(), 10);
    }

    #[test]
    fn a_line_wakes_the_sleeping_writer_without_a_flush() {
        let out = Output::default();
        let (mut writer, _guard) =
            BatchWriter::spawn("test-log", out.clone(), DEFAULT_LIMIT).expect("spawn");
        for line in ["first\n", "second\n"] {
            eventually("the writer goes to sleep", || writer.shared.lock().idle);
            writer.write_all(line.as_bytes()).expect("write");
            eventually("the line is written", || out.text().ends_with(line));
        }
        assert_eq!(out.text(), "first\nsecond\n");
    }

    /// An output whose writes wait until it is opened, and that says when
    /// a write has begun.
    #[derive(Clone, Default)]
    struct Gate {
        state: Arc<(Mutex<(bool, bool)>, Condvar)>,
        out: Output,
    }

    impl Gate {
        fn entered(&self) -> bool {
            self.state.0.lock().expect("gate").0
        }
        fn open(&self) {
            self.state.0.lock().expect("gate").1 = true;
            self.state.1.notify_all();
        }
    }

    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (lock, changed) = &*self.state;
            let mut state = lock.lock().expect("gate");
            state.0 = true;
            let _open = changed.wait_while(state, |(_, open)| !*open).expect("gate");
            self.out.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_past_the_limit_are_dropped_and_counted_not_waited_for() {
        let gate = Gate::default();
        let (mut writer, guard) = BatchWriter::spawn("test-log", gate.clone(), 100).expect("spawn");
        // The first line is taken by the writer, which then hangs on the
        // closed gate; the next ones fill the queue.
        writer.write_all(b"0123456789\n").expect("write");
        eventually("the writer is stuck writing", || gate.entered());
        for _ in 0..20 {
            writer.write_all(b"0123456789\n").expect("write");
        }
        let dropped = writer.dropped_lines();
        gate.open();
        drop(guard);
        assert_eq!(dropped, 11, "9 lines of 11 bytes fit in 100");
        assert_eq!(gate.out.text().lines().count(), 10);
    }
}
