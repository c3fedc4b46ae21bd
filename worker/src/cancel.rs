//! Cooperative cancellation of a render: [`CancelToken`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shared flag the service sets when a render runs past its `exec_timeout`
/// (or the worker stops); the renderer polls it between tiles and stops with
/// [`crate::RenderError::Cancelled`].
///
/// Clones share the flag: keep one, hand one to the render. A
/// [`child`](Self::child) is cancelled with its parent, or alone.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    cancelled: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled by its own [`cancel`](Self::cancel) or by this
    /// one's: one render's, under the worker's.
    pub fn child(&self) -> Self {
        Self {
            cancelled: Arc::default(),
            parent: Some(self.cancelled.clone()),
        }
    }

    /// Asks every render holding a clone of this token to stop soon.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether [`Self::cancel`] was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
            || self
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::Relaxed))
    }
}
