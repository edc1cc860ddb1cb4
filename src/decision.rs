//! The outcome of one check.

use std::time::Duration;

/// What a backend decided for one request, and the counter state that goes into the
/// `RateLimit` headers.
///
/// The layer puts it into the extensions of every response it lets through or rejects,
/// so handlers further out can read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request was counted and may proceed. (Under a policy in shadow mode a
    /// request proceeds either way; this says whether the policy would have let it.)
    pub allowed: bool,
    /// Units allowed per window.
    pub limit: u32,
    /// Units that would still fit after this request.
    pub remaining: u32,
    /// For an allowed request, the time until the policy has all its units again if
    /// nothing more is counted (a fixed window: until it ends; a sliding window: up to two
    /// windows). For a denied one, the time until this request's cost fits again.
    pub reset: Duration,
}

impl Decision {
    /// Seconds until reset, rounded up and at least 1: the value of `Retry-After` and of
    /// the `t` parameter of `RateLimit`.
    pub fn reset_secs(&self) -> u64 {
        let secs = self
            .reset
            .as_secs()
            .saturating_add(u64::from(self.reset.subsec_nanos() > 0));
        secs.max(1)
    }

    /// This decision, made elsewhere (an owner node, Redis), with its numbers bounded by
    /// this node's policy: a `remaining` above the limit or a reset later than the
    /// policy's `longest` is never believed.
    #[cfg(any(feature = "cluster", feature = "redis"))]
    pub(crate) fn bounded(self, longest: Duration) -> Self {
        Self {
            remaining: self.remaining.min(self.limit),
            reset: self.reset.min(longest),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_reset(reset: Duration) -> Decision {
        Decision {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset,
        }
    }

    #[test]
    fn reset_seconds_round_up_and_are_at_least_one() {
        assert_eq!(with_reset(Duration::from_millis(1)).reset_secs(), 1);
        assert_eq!(with_reset(Duration::ZERO).reset_secs(), 1);
        assert_eq!(with_reset(Duration::from_millis(36_001)).reset_secs(), 37);
        assert_eq!(with_reset(Duration::from_secs(37)).reset_secs(), 37);
        assert_eq!(with_reset(Duration::MAX).reset_secs(), u64::MAX);
    }

    #[test]
    #[cfg(any(feature = "cluster", feature = "redis"))]
    fn a_remote_decision_is_bounded_by_the_policy() {
        let told = Decision {
            allowed: false,
            limit: 5,
            remaining: 4_000_000,
            reset: Duration::from_secs(4_000_000_000),
        };
        let bounded = told.bounded(Duration::from_secs(60));
        assert_eq!(bounded.remaining, 5);
        assert_eq!(bounded.reset, Duration::from_secs(60));
        assert_eq!(bounded.reset_secs(), 60);
    }
}
