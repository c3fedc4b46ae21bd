//! A client connection whose writes may not stall for ever:
//! [`StallLimited`].
//!
//! hyper limits how long a client takes to send its request's headers, and
//! the API how long its body may pause, but nothing how long a client may
//! leave the answer unread. A client that asks for a large image and never
//! reads it would hold the image in memory and its connection open for as
//! long as it likes; a thousand such clients, gigabytes. A write that makes
//! no progress for [`WRITE_STALL_TIMEOUT`] ends the connection instead.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The longest a client may leave the answer unread (no byte of it taken)
/// before its connection is closed: as long as a request body may pause.
pub const WRITE_STALL_TIMEOUT: Duration = crate::startup::BODY_READ_TIMEOUT;

/// A stream whose writes fail with [`io::ErrorKind::TimedOut`] after making
/// no progress for a while (the peer does not read); reads are as they are.
#[derive(Debug)]
pub struct StallLimited<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits for the peer; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> StallLimited<S> {
    /// `inner`, whose writes may stall for at most `limit`.
    pub fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After a write that could not go on (`Pending`): fails once the
    /// stall has lasted `limit`, else waits (the timer wakes the task).
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client read nothing of the answer for {} s",
                limit.as_secs()
            ),
        ))
    }

    /// Passes on a write's outcome; a stall is timed.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match outcome {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.check_stall(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(cx, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_limit() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let mut ours = StallLimited::new(ours, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let error = ours
            .write_all(&vec![7u8; 64 * 1024])
            .await
            .expect_err("nobody reads");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
        drop((ours, theirs));
        // A reader that keeps reading, however slowly, is served in full.
        let (ours, mut theirs_too) = tokio::io::duplex(1024);
        let mut ours = StallLimited::new(ours, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 512];
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                match theirs_too.read(&mut chunk).await {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
        });
        ours.write_all(&vec![9u8; 32 * 1024])
            .await
            .expect("a slow reader is no stalled one");
        ours.shutdown().await.expect("shutdown");
        drop(ours);
        assert_eq!(reader.await.expect("the reader").len(), 32 * 1024);
    }
}
