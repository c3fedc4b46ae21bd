//! Cooperative cancellation of a render: [`CancelToken`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shared flag the service sets when a render runs past its `exec_timeout`
/// or its request is abandoned by a stop; the renderer polls it between
/// tiles and stops with [`crate::RenderError::Cancelled`].
///
/// Clones share the flag: keep one, hand one to the render.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    cancelled: Arc<AtomicBool>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every render holding a clone of this token to stop soon.
    pub fn cancel(&self) {
        // Release/Acquire: what the canceller wrote before (a reason, such
        // as the registry's `deleted` flag) is seen by whoever sees the
        // cancel, and through the render's join by the one waiting for it.
        self.cancelled.store(true, Ordering::Release);
    }

    /// Whether [`Self::cancel`] was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// A guard that cancels this token when dropped: a render runs on a
    /// thread of its own, which nothing stops when the future waiting for
    /// it is dropped (an RPC server abandoning the request at a stop).
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// Cancels its [`CancelToken`] when dropped; see
/// [`CancelToken::cancel_on_drop`].
#[derive(Debug)]
pub struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_guard_cancels_every_clone() {
        let token = CancelToken::new();
        let render = token.clone();
        let guard = token.cancel_on_drop();
        assert!(!render.is_cancelled());
        drop(guard);
        assert!(render.is_cancelled());
    }
}
