//! Duplicate detection by `_unique_id`, made safe for at-least-once.
//!
//! oslo.messaging drops any request whose `_unique_id` it saw recently. With
//! acknowledgement after dispatch that would lose work, so this filter is
//! finer:
//! - a duplicate of a request still running is held, and settled the way
//!   the original is (acknowledged once the original's reply is out);
//! - a duplicate of a finished call is answered again from a small cache of
//!   recent replies when its reply is cached, and run again otherwise
//!   (endpoints must be idempotent, as at-least-once delivery requires);
//! - a duplicate of a finished cast is acknowledged and dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::messaging::broker::Acker;

/// Finished requests remembered.
const REMEMBERED: usize = 1024;
/// Replies larger than this are not cached.
const MAX_CACHED_REPLY: usize = 1 << 20;
/// Total bytes of cached replies.
const CACHE_BUDGET: usize = 8 << 20;

/// A reply as it was published, to send again to a duplicate call.
#[derive(Clone)]
pub(crate) struct CachedReply {
    pub body: Arc<[u8]>,
}

/// What to do with a request.
pub(crate) enum Admission {
    /// First time (or must run again): here is its acker back.
    New(Acker),
    /// Same request still running: its acker is held.
    Held,
    /// Same request still running, acknowledged before it ran (at most
    /// once): acknowledge this copy now. Held unacknowledged, it would be
    /// delivered again, to another server, if this one died first, and run
    /// there: twice.
    Running(Acker),
    /// Finished before: acknowledge; send the cached reply if there is one.
    Done(Acker, Option<CachedReply>),
}

#[derive(Default)]
pub(crate) struct DuplicateFilter {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    in_flight: HashMap<String, Vec<Acker>>,
    done: HashMap<String, Option<CachedReply>>,
    order: VecDeque<String>,
    cached_bytes: usize,
}

impl DuplicateFilter {
    /// Classifies a request by its unique id. `run_again_if_uncached`: a
    /// call finished whose reply is not cached runs again (at least once);
    /// else it is done (a cast, or at most once). `hold`: a copy of a
    /// running request is held, to be settled as the original is (at least
    /// once); else it is acknowledged at once (at most once).
    pub(crate) fn admit(
        &self,
        unique_id: &str,
        acker: Acker,
        run_again_if_uncached: bool,
        hold: bool,
    ) -> Admission {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = inner.in_flight.get_mut(unique_id) {
            if !hold {
                return Admission::Running(acker);
            }
            held.push(acker);
            return Admission::Held;
        }
        if let Some(cached) = inner.done.get(unique_id)
            && (!run_again_if_uncached || cached.is_some())
        {
            return Admission::Done(acker, cached.clone());
        }
        inner.in_flight.insert(unique_id.to_string(), Vec::new());
        Admission::New(acker)
    }

    /// Records the end of a request; returns the duplicates held meanwhile,
    /// to be settled as the original was.
    pub(crate) fn finish(
        &self,
        unique_id: &str,
        completed: bool,
        reply: Option<CachedReply>,
    ) -> Vec<Acker> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let held = inner.in_flight.remove(unique_id).unwrap_or_default();
        if completed {
            let reply = reply.filter(|r| r.body.len() <= MAX_CACHED_REPLY);
            inner.cached_bytes += reply.as_ref().map_or(0, |r| r.body.len());
            if let Some(old) = inner.done.insert(unique_id.to_string(), reply) {
                inner.cached_bytes -= old.map_or(0, |r| r.body.len());
            } else {
                inner.order.push_back(unique_id.to_string());
            }
            while inner.order.len() > REMEMBERED || inner.cached_bytes > CACHE_BUDGET {
                let Some(oldest) = inner.order.pop_front() else {
                    break;
                };
                if let Some(Some(r)) = inner.done.remove(&oldest) {
                    inner.cached_bytes -= r.body.len();
                }
            }
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_duplicates_of_running_requests() {
        let f = DuplicateFilter::default();
        assert!(matches!(
            f.admit("u1", Acker::None, true, true),
            Admission::New(_)
        ));
        assert!(matches!(
            f.admit("u1", Acker::None, true, true),
            Admission::Held
        ));
        let held = f.finish("u1", true, None);
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn at_most_once_a_copy_of_a_running_request_is_not_held() {
        let f = DuplicateFilter::default();
        assert!(matches!(
            f.admit("u2", Acker::None, false, false),
            Admission::New(_)
        ));
        assert!(matches!(
            f.admit("u2", Acker::None, false, false),
            Admission::Running(_)
        ));
        assert!(f.finish("u2", true, None).is_empty());
    }

    #[test]
    fn finished_calls_are_answered_from_cache_or_run_again() {
        let f = DuplicateFilter::default();
        let _ = f.admit("cached", Acker::None, true, true);
        f.finish(
            "cached",
            true,
            Some(CachedReply {
                body: Arc::from(&b"reply"[..]),
            }),
        );
        match f.admit("cached", Acker::None, true, true) {
            Admission::Done(_, Some(r)) => assert_eq!(&*r.body, b"reply"),
            _ => panic!("expected the cached reply"),
        }
        let _ = f.admit("uncached", Acker::None, true, true);
        f.finish("uncached", true, None);
        assert!(matches!(
            f.admit("uncached", Acker::None, true, true),
            Admission::New(_)
        ));
    }

    #[test]
    fn finished_casts_are_dropped_and_requeued_ones_forgotten() {
        let f = DuplicateFilter::default();
        let _ = f.admit("cast", Acker::None, false, true);
        f.finish("cast", true, None);
        assert!(matches!(
            f.admit("cast", Acker::None, false, true),
            Admission::Done(_, None)
        ));
        let _ = f.admit("requeued", Acker::None, false, true);
        f.finish("requeued", false, None);
        assert!(matches!(
            f.admit("requeued", Acker::None, false, true),
            Admission::New(_)
        ));
    }

    #[test]
    fn at_most_once_a_finished_call_is_not_run_again_without_its_reply() {
        let f = DuplicateFilter::default();
        let _ = f.admit("lost-reply", Acker::None, false, false);
        f.finish("lost-reply", true, None);
        assert!(matches!(
            f.admit("lost-reply", Acker::None, false, false),
            Admission::Done(_, None)
        ));
    }

    #[test]
    fn memory_is_bounded() {
        let f = DuplicateFilter::default();
        for i in 0..(REMEMBERED + 100) {
            let id = format!("u{i}");
            let _ = f.admit(&id, Acker::None, true, true);
            f.finish(
                &id,
                true,
                Some(CachedReply {
                    body: Arc::from(vec![0u8; 8192]),
                }),
            );
        }
        let inner = f.inner.lock().expect("lock");
        assert!(inner.done.len() <= REMEMBERED);
        assert!(inner.cached_bytes <= CACHE_BUDGET);
        assert_eq!(inner.done.len(), inner.order.len());
    }
}
