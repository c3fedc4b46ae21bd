//! Reconnect backoff with jitter, and the retry policy of sends.

use std::time::Duration;

/// Linear backoff as oslo's `rabbit_retry_interval` / `rabbit_retry_backoff`
/// / `rabbit_interval_max`, with "equal jitter": each delay is drawn
/// uniformly from [d/2, d], so a fleet of clients that lost the same broker
/// does not come back in lockstep (oslo's reconnect storm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Added for each further attempt.
    pub step: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based), with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_add(self.step.saturating_mul(attempt.saturating_sub(1)))
            .min(self.max);
        let half = base / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            step: Duration::from_secs(2),
            max: Duration::from_secs(30),
        }
    }
}

/// How often a send is attempted again after the connection failed under
/// it, or after the broker found no queue for it (servers not there yet, or
/// re-declaring their queues after a broker restart).
///
/// oslo.messaging's `retry` argument: `None` retries until the operation's
/// deadline (a call's timeout), `Some(0)` never retries, `Some(n)` retries
/// up to `n` times. A call retried this way is sent again with the same
/// `_msg_id` and `_unique_id`, so a server that saw it drops the duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// Maximum number of retries; `None` means until the deadline.
    pub max_retries: Option<u32>,
}

impl RetryPolicy {
    /// Never retry: fail as soon as the connection fails.
    pub const NEVER: RetryPolicy = RetryPolicy {
        max_retries: Some(0),
    };
    /// Retry until the deadline.
    pub const UNTIL_DEADLINE: RetryPolicy = RetryPolicy { max_retries: None };

    /// At most `n` retries.
    pub fn times(n: u32) -> Self {
        Self {
            max_retries: Some(n),
        }
    }

    /// Whether retry number `attempt` (1-based) is allowed.
    pub fn allows(&self, attempt: u32) -> bool {
        self.max_retries.is_none_or(|max| attempt <= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_linearly_with_jitter_and_a_cap() {
        let b = Backoff::default();
        for _ in 0..100 {
            let d1 = b.delay(1);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
            let d3 = b.delay(3);
            assert!(d3 >= Duration::from_millis(2500) && d3 <= Duration::from_secs(5));
            let d100 = b.delay(100);
            assert!(d100 >= Duration::from_secs(15) && d100 <= Duration::from_secs(30));
        }
        let spread: std::collections::HashSet<u128> =
            (0..20).map(|_| b.delay(5).as_micros()).collect();
        assert!(spread.len() > 1, "jitter must vary the delays");
    }

    #[test]
    fn retry_policy_counts() {
        assert!(!RetryPolicy::NEVER.allows(1));
        assert!(RetryPolicy::times(2).allows(2));
        assert!(!RetryPolicy::times(2).allows(3));
        assert!(RetryPolicy::UNTIL_DEADLINE.allows(1000));
    }
}
