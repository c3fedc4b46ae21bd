//! The renders a worker runs, by fractal: [`RenderRegistry`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cancel::CancelToken;

/// How long a deleted fractal is remembered: a task of it still waiting in
/// this worker's queue (taken ahead, not started) or in the shared queue is
/// refused when it comes up instead of rendered for nobody. Longer than a
/// call may wait (the producer's `call_timeout`, 900 s by default, is also
/// its request's expiration); the count below bounds the memory.
const REMEMBER_DELETED: Duration = Duration::from_secs(3600);

/// Most deleted fractals remembered at once (the oldest are forgotten).
const MAX_REMEMBERED: usize = 4096;

/// The renders in progress by fractal uuid, so that the deletion of a
/// fractal (announced on the control topic) stops the render of it, and
/// the fractals deleted lately, so that a task of one is not started.
#[derive(Debug, Default)]
pub struct RenderRegistry {
    next_id: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: HashMap<String, Vec<Running>>,
    /// Deleted fractals, and the same in the order of their deletion.
    deleted: HashSet<String>,
    deletions: VecDeque<(String, Instant)>,
}

#[derive(Debug)]
struct Running {
    id: u64,
    render: CancelToken,
    deleted: Arc<AtomicBool>,
}

/// A render's place in the [`RenderRegistry`], until dropped.
#[derive(Debug)]
pub struct RenderTicket<'a> {
    registry: &'a RenderRegistry,
    uuid: String,
    id: u64,
    deleted: Arc<AtomicBool>,
}

impl RenderTicket<'_> {
    /// Whether the fractal was deleted (before or during the render): its
    /// render token is cancelled.
    pub fn deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }
}

impl Drop for RenderTicket<'_> {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        if let Some(renders) = state.running.get_mut(&self.uuid) {
            renders.retain(|r| r.id != self.id);
            if renders.is_empty() {
                state.running.remove(&self.uuid);
            }
        }
    }
}

impl RenderRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the render of `uuid` cancelled through `render`; if the
    /// fractal was deleted lately, the ticket says so at once (and `render`
    /// is cancelled).
    pub fn register(&self, uuid: &str, render: &CancelToken) -> RenderTicket<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let deleted = Arc::new(AtomicBool::new(false));
        let mut state = self.lock();
        state.forget_old(Instant::now());
        if state.deleted.contains(uuid) {
            deleted.store(true, Ordering::Release);
            render.cancel();
        }
        state
            .running
            .entry(uuid.to_string())
            .or_default()
            .push(Running {
                id,
                render: render.clone(),
                deleted: deleted.clone(),
            });
        RenderTicket {
            registry: self,
            uuid: uuid.to_string(),
            id,
            deleted,
        }
    }

    /// The fractal `uuid` was deleted: its renders here are cancelled, and
    /// a task of it that comes up later is refused. Returns how many
    /// renders were running.
    pub fn delete(&self, uuid: &str) -> usize {
        let now = Instant::now();
        let mut state = self.lock();
        state.forget_old(now);
        if state.deleted.insert(uuid.to_string()) {
            if state.deletions.len() >= MAX_REMEMBERED
                && let Some((oldest, _)) = state.deletions.pop_front()
            {
                state.deleted.remove(&oldest);
            }
            state.deletions.push_back((uuid.to_string(), now));
        }
        let renders = state.running.get(uuid).map_or(&[][..], Vec::as_slice);
        for render in renders {
            render.deleted.store(true, Ordering::Release);
            render.render.cancel();
        }
        renders.len()
    }

    /// Renders registered now.
    pub fn running(&self) -> usize {
        self.lock().running.values().map(Vec::len).sum()
    }
}

impl State {
    fn forget_old(&mut self, now: Instant) {
        while let Some((uuid, at)) = self.deletions.front() {
            if now.duration_since(*at) <= REMEMBER_DELETED {
                break;
            }
            self.deleted.remove(uuid);
            self.deletions.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "01a20784-fe99-72fe-a554-9a9b678b0fe0";
    const B: &str = "01a20784-fe99-72fe-a554-9a9b678b0fe1";

    #[test]
    fn a_deletion_cancels_the_renders_of_that_fractal_only() {
        let registry = RenderRegistry::new();
        let (a1, a2, b) = (CancelToken::new(), CancelToken::new(), CancelToken::new());
        let t1 = registry.register(A, &a1);
        let t2 = registry.register(A, &a2);
        let tb = registry.register(B, &b);
        assert_eq!(registry.running(), 3);
        assert_eq!(registry.delete(A), 2);
        assert!(a1.is_cancelled() && a2.is_cancelled() && t1.deleted() && t2.deleted());
        assert!(!b.is_cancelled() && !tb.deleted());
        drop((t1, t2));
        assert_eq!(registry.running(), 1);
        drop(tb);
        assert_eq!(registry.running(), 0);
        assert_eq!(registry.delete(B), 0, "nothing running: nothing cancelled");
    }

    #[test]
    fn a_task_of_a_fractal_deleted_before_it_started_is_refused() {
        let registry = RenderRegistry::new();
        registry.delete(A);
        registry.delete(A);
        let token = CancelToken::new();
        let ticket = registry.register(A, &token);
        assert!(ticket.deleted() && token.is_cancelled());
        let other = CancelToken::new();
        assert!(!registry.register(B, &other).deleted());
        assert!(!other.is_cancelled());
    }

    #[test]
    fn only_the_latest_deletions_are_remembered() {
        let registry = RenderRegistry::new();
        registry.delete(A);
        for i in 0..MAX_REMEMBERED {
            registry.delete(&format!("other-{i}"));
        }
        assert!(!registry.register(A, &CancelToken::new()).deleted());
        assert!(
            registry
                .register(
                    &format!("other-{}", MAX_REMEMBERED - 1),
                    &CancelToken::new()
                )
                .deleted()
        );
    }
}
