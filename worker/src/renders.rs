//! The renders a worker runs, by fractal: [`RenderRegistry`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use faafo_common::fractal::CancelReason;

use crate::cancel::CancelToken;

/// How long a deleted fractal is remembered: a task of it still waiting in
/// this worker's queue (taken ahead, not started) or in the shared queue is
/// refused when it comes up instead of rendered for nobody. Longer than a
/// call may wait (the producer's `call_timeout`, 900 s by default, is also
/// its request's expiration); the count below bounds the memory.
const REMEMBER_DELETED: Duration = Duration::from_secs(3600);

/// Most deleted fractals and given-up calls remembered at once (the
/// oldest are forgotten): a producer's largest `max_in_flight`, so that
/// one producer's stop does not push out its own given-up calls. (About
/// 100 bytes each.)
const MAX_REMEMBERED: usize = 65_536;

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
    /// Deleted fractals, each with the last revision deleted and when
    /// that news came, and the same in the order of their news: an entry
    /// of the queue older than its map entry's time is a stale one,
    /// skipped when it comes up (so that news of a uuid already
    /// remembered is one push, not a scan of the whole queue under the
    /// lock every render takes).
    deleted: HashMap<String, (Deletion, Instant)>,
    deletions: VecDeque<(String, Instant)>,
}

/// Which tasks of a cancelled uuid are refused, and why.
///
/// Deleted: the tasks at the fractal's last revision the producer knew or
/// before (a fractal created again under the uuid has later ones), or all
/// of them when that revision is unknown; a task of unknown revision may
/// be the deleted fractal's, and is refused too. Given up: the tasks at the
/// revision of a call a producer gave up, or before (its next dispatch has
/// a later one); only those that carry a revision, since a producer sends
/// this only for calls that do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Deletion {
    /// `Some(None)`: every task of the uuid.
    deleted: Option<Option<u64>>,
    given_up: Option<u64>,
}

impl Deletion {
    /// Why a task at `revision` is refused, if it is.
    fn covers(self, revision: Option<u64>) -> Option<CancelReason> {
        let deleted = match (self.deleted, revision) {
            (Some(Some(last)), Some(revision)) => revision <= last,
            (Some(_), _) => true,
            (None, _) => false,
        };
        let given_up =
            matches!((self.given_up, revision), (Some(last), Some(revision)) if revision <= last);
        if deleted {
            Some(CancelReason::Deleted)
        } else if given_up {
            Some(CancelReason::GivenUp)
        } else {
            None
        }
    }

    /// This and a later cancellation of the same uuid: the wider of each.
    fn merge(self, revision: Option<u64>, reason: CancelReason) -> Deletion {
        match reason {
            CancelReason::Deleted => Deletion {
                deleted: Some(match (self.deleted, revision) {
                    (Some(Some(a)), Some(b)) => Some(a.max(b)),
                    (None, revision) => revision,
                    _ => None,
                }),
                ..self
            },
            CancelReason::GivenUp => Deletion {
                given_up: match (self.given_up, revision) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                },
                ..self
            },
        }
    }
}

/// A [`CancelReason`] in an atomic: 0 while not cancelled.
fn encode(reason: CancelReason) -> u8 {
    match reason {
        CancelReason::Deleted => 1,
        CancelReason::GivenUp => 2,
    }
}

fn decode(code: u8) -> Option<CancelReason> {
    match code {
        1 => Some(CancelReason::Deleted),
        2 => Some(CancelReason::GivenUp),
        _ => None,
    }
}

#[derive(Debug)]
struct Running {
    id: u64,
    revision: Option<u64>,
    render: CancelToken,
    cancelled: Arc<AtomicU8>,
}

/// A render's place in the [`RenderRegistry`], until dropped.
#[derive(Debug)]
pub struct RenderTicket<'a> {
    registry: &'a RenderRegistry,
    uuid: String,
    id: u64,
    cancelled: Arc<AtomicU8>,
}

impl RenderTicket<'_> {
    /// Why the task was cancelled (before or during the render: its render
    /// token is cancelled then), or `None`.
    pub fn cancelled(&self) -> Option<CancelReason> {
        decode(self.cancelled.load(Ordering::Acquire))
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

    /// Registers the render of `uuid` at `revision` cancelled through
    /// `render`; if that fractal was deleted lately, the ticket says so at
    /// once (and `render` is cancelled).
    pub fn register(
        &self,
        uuid: &str,
        revision: Option<u64>,
        render: &CancelToken,
    ) -> RenderTicket<'_> {
        let key = canonical(uuid);
        let uuid = key.as_str();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancelled = Arc::new(AtomicU8::new(0));
        let mut state = self.lock();
        state.forget_old(Instant::now());
        if let Some(reason) = state
            .deleted
            .get(uuid)
            .and_then(|(deletion, _)| deletion.covers(revision))
        {
            cancelled.store(encode(reason), Ordering::Release);
            render.cancel();
        }
        state
            .running
            .entry(uuid.to_string())
            .or_default()
            .push(Running {
                id,
                revision,
                render: render.clone(),
                cancelled: cancelled.clone(),
            });
        RenderTicket {
            registry: self,
            uuid: uuid.to_string(),
            id,
            cancelled,
        }
    }

    /// The tasks of `uuid` at `revision` or before (`None`: all of them)
    /// are cancelled for `reason`: their renders here stop, and such a
    /// task that comes up later is refused; tasks at later revisions (the
    /// uuid created again, the task dispatched again) are not. Returns how
    /// many renders were cancelled.
    pub fn cancel(&self, uuid: &str, revision: Option<u64>, reason: CancelReason) -> usize {
        let key = canonical(uuid);
        let uuid = key.as_str();
        let now = Instant::now();
        let mut state = self.lock();
        state.forget_old(now);
        let deletion = state
            .deleted
            .get(uuid)
            .map(|(deletion, _)| *deletion)
            .unwrap_or_default()
            .merge(revision, reason);
        // Remembered for REMEMBER_DELETED from now, the latest news of it
        // (its earlier entry in the queue goes stale).
        if state.deletions.len() >= MAX_REMEMBERED
            && let Some((oldest, at)) = state.deletions.pop_front()
        {
            state.forget(&oldest, at);
        }
        state.deleted.insert(uuid.to_string(), (deletion, now));
        state.deletions.push_back((uuid.to_string(), now));
        let renders = state.running.get(uuid).map_or(&[][..], Vec::as_slice);
        let mut cancelled = 0;
        for render in renders {
            if let Some(reason) = deletion.covers(render.revision) {
                render.cancelled.store(encode(reason), Ordering::Release);
                render.render.cancel();
                cancelled += 1;
            }
        }
        cancelled
    }

    /// Renders registered now.
    pub fn running(&self) -> usize {
        self.lock().running.values().map(Vec::len).sum()
    }
}

/// The one spelling of a uuid the registry keys on: a peer may write the
/// same fractal's uuid in any form `uuid` parses (upper case, braces, a
/// `urn:uuid:` prefix, no hyphens), and a cancel must reach its render
/// whichever form each message used. Text that is no uuid is kept as is.
pub(crate) fn canonical(uuid: &str) -> String {
    uuid::Uuid::try_parse(uuid)
        .map(|parsed| parsed.hyphenated().to_string())
        .unwrap_or_else(|_| uuid.to_string())
}

impl State {
    fn forget_old(&mut self, now: Instant) {
        while let Some((_, at)) = self.deletions.front() {
            if now.duration_since(*at) <= REMEMBER_DELETED {
                break;
            }
            if let Some((uuid, at)) = self.deletions.pop_front() {
                self.forget(&uuid, at);
            }
        }
    }

    /// Forgets `uuid`'s deletion, if the queue's entry of `at` is its
    /// latest news (else a later entry stands for it).
    fn forget(&mut self, uuid: &str, at: Instant) {
        if self
            .deleted
            .get(uuid)
            .is_some_and(|(_, latest)| *latest == at)
        {
            self.deleted.remove(uuid);
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
        let t1 = registry.register(A, None, &a1);
        let t2 = registry.register(A, None, &a2);
        let tb = registry.register(B, None, &b);
        assert_eq!(registry.running(), 3);
        assert_eq!(registry.cancel(A, None, CancelReason::Deleted), 2);
        assert!(
            a1.is_cancelled()
                && a2.is_cancelled()
                && t1.cancelled().is_some()
                && t2.cancelled().is_some()
        );
        assert!(!b.is_cancelled() && tb.cancelled().is_none());
        drop((t1, t2));
        assert_eq!(registry.running(), 1);
        drop(tb);
        assert_eq!(registry.running(), 0);
        assert_eq!(
            registry.cancel(B, None, CancelReason::Deleted),
            0,
            "nothing running: nothing cancelled"
        );
    }

    /// News of a uuid already remembered is kept as the latest (a stale
    /// entry of the queue does not forget it), and the oldest uuid goes
    /// first once MAX_REMEMBERED are kept.
    #[test]
    fn repeated_news_keeps_a_deletion_and_the_oldest_goes_first() {
        let registry = RenderRegistry::new();
        registry.cancel(A, None, CancelReason::Deleted);
        for n in 0..MAX_REMEMBERED - 2 {
            registry.cancel(&format!("other-{n}"), None, CancelReason::Deleted);
        }
        // A's news again: its first entry, the oldest, is stale now.
        registry.cancel(A, None, CancelReason::Deleted);
        // Full: the next news pushes out the oldest entry (A's stale one),
        // which must not forget A.
        registry.cancel(B, None, CancelReason::Deleted);
        registry.cancel("one-more", None, CancelReason::Deleted);
        let refused = |uuid: &str| {
            let token = CancelToken::new();
            registry.register(uuid, None, &token).cancelled().is_some()
        };
        assert!(refused(A), "A's latest news is remembered");
        assert!(refused(B));
        assert!(!refused("other-0"), "the oldest uuid was forgotten");
        assert!(refused("other-1"));
    }

    #[test]
    fn a_task_of_a_fractal_deleted_before_it_started_is_refused() {
        let registry = RenderRegistry::new();
        registry.cancel(A, None, CancelReason::Deleted);
        registry.cancel(A, None, CancelReason::Deleted);
        let token = CancelToken::new();
        let ticket = registry.register(A, None, &token);
        assert!(ticket.cancelled().is_some() && token.is_cancelled());
        let other = CancelToken::new();
        assert!(registry.register(B, None, &other).cancelled().is_none());
        assert!(!other.is_cancelled());
    }

    #[test]
    fn only_the_latest_deletions_are_remembered() {
        let registry = RenderRegistry::new();
        registry.cancel(A, None, CancelReason::Deleted);
        for i in 0..MAX_REMEMBERED {
            registry.cancel(&format!("other-{i}"), None, CancelReason::Deleted);
        }
        assert!(
            registry
                .register(A, None, &CancelToken::new())
                .cancelled()
                .is_none()
        );
        assert!(
            registry
                .register(
                    &format!("other-{}", MAX_REMEMBERED - 1),
                    None,
                    &CancelToken::new()
                )
                .cancelled()
                .is_some()
        );
    }

    #[test]
    fn a_fractal_created_again_under_a_deleted_uuid_is_rendered() {
        let registry = RenderRegistry::new();
        // Deleted at revision 100: its running render at 100 stops, the
        // render of the fractal created again (revision 5,000) does not.
        let (old, new) = (CancelToken::new(), CancelToken::new());
        let old_ticket = registry.register(A, Some(100), &old);
        let new_ticket = registry.register(A, Some(5_000), &new);
        assert_eq!(registry.cancel(A, Some(100), CancelReason::Deleted), 1);
        assert!(old_ticket.cancelled().is_some() && old.is_cancelled());
        assert!(new_ticket.cancelled().is_none() && !new.is_cancelled());
        // Tasks that come up later: up to 100 refused, later ones not,
        // unknown revisions refused (they may be the deleted fractal's).
        for (revision, refused) in [
            (Some(99), true),
            (Some(100), true),
            (Some(101), false),
            (None, true),
        ] {
            let ticket = registry.register(A, revision, &CancelToken::new());
            assert_eq!(ticket.cancelled().is_some(), refused, "{revision:?}");
        }
        // A later deletion widens the bound; an unknown one covers all.
        registry.cancel(A, Some(50), CancelReason::Deleted);
        assert!(
            registry
                .register(A, Some(101), &CancelToken::new())
                .cancelled()
                .is_none()
        );
        registry.cancel(A, Some(6_000), CancelReason::Deleted);
        assert!(new_ticket.cancelled().is_some() && new.is_cancelled());
        assert!(
            registry
                .register(A, Some(6_000), &CancelToken::new())
                .cancelled()
                .is_some()
        );
        assert!(
            registry
                .register(A, Some(6_001), &CancelToken::new())
                .cancelled()
                .is_none()
        );
        registry.cancel(A, None, CancelReason::Deleted);
        assert!(
            registry
                .register(A, Some(1_000_000), &CancelToken::new())
                .cancelled()
                .is_some()
        );
    }

    #[test]
    fn a_cancel_reaches_the_render_whatever_spelling_of_its_uuid() {
        let registry = RenderRegistry::new();
        let render = CancelToken::new();
        let ticket = registry.register("{01A20784-FE99-72FE-A554-9A9B678B0FE0}", Some(1), &render);
        assert_eq!(
            registry.cancel(
                "urn:uuid:01a20784-fe99-72fe-a554-9a9b678b0fe0",
                None,
                CancelReason::Deleted
            ),
            1
        );
        // No hyphens, upper case: the same fractal.
        let again = CancelToken::new();
        let again_ticket = registry.register("01A20784FE9972FEA5549A9B678B0FE0", Some(1), &again);
        assert!(again.is_cancelled(), "refused: its fractal was deleted");
        drop(again_ticket);
        assert!(ticket.cancelled().is_some() && render.is_cancelled());
        // A task that comes later in the canonical spelling is refused too,
        // and the ticket's drop finds its entry under the same key.
        assert!(
            registry
                .register(A, Some(1), &CancelToken::new())
                .cancelled()
                .is_some()
        );
        drop(ticket);
        assert_eq!(registry.running(), 0);
        // Text that is no uuid still matches itself only.
        let other = CancelToken::new();
        let _kept = registry.register("not-a-uuid", None, &other);
        assert_eq!(
            registry.cancel("NOT-A-UUID", None, CancelReason::Deleted),
            0
        );
        assert_eq!(
            registry.cancel("not-a-uuid", None, CancelReason::Deleted),
            1
        );
    }

    #[test]
    fn a_ticket_says_why_its_task_was_cancelled() {
        let registry = RenderRegistry::new();
        let running = registry.register(A, Some(10), &CancelToken::new());
        assert_eq!(registry.cancel(A, Some(10), CancelReason::GivenUp), 1);
        assert_eq!(running.cancelled(), Some(CancelReason::GivenUp));
        let queued = registry.register(A, Some(9), &CancelToken::new());
        assert_eq!(queued.cancelled(), Some(CancelReason::GivenUp));
        // A task without a revision (an older producer's) is no given-up
        // call's: rendered.
        assert_eq!(
            registry.register(A, None, &CancelToken::new()).cancelled(),
            None
        );
        // Deleted later: the later reason, for the wider range.
        registry.cancel(A, Some(20), CancelReason::Deleted);
        let later = registry.register(A, Some(15), &CancelToken::new());
        assert_eq!(later.cancelled(), Some(CancelReason::Deleted));
        assert_eq!(
            registry
                .register(A, Some(21), &CancelToken::new())
                .cancelled(),
            None
        );
    }
}
