//! The three algorithms a policy can count with, as pure integer arithmetic: no clock, no
//! storage, no I/O. Each takes a key's stored state (if any), the time and a cost, and
//! says whether the cost fits, what remains, when the policy resets, when a denied
//! request could be allowed, and the state to store if it fits.
//!
//! Every quantity stays below 2^53, so the Redis script can compute the very same
//! numbers with Lua's doubles, and every backend gives the same decision for the same
//! schedule of requests. That bounds the policies: a window of at most 2^32 ms (49 days)
//! for the sliding window and GCRA, and `limit × window (ms)` of at most 2^53 for GCRA
//! ([`Algorithm::supports`]; a fixed window takes any window, and the fixed-window
//! backends keep counters of their own that need no such bound).
//!
//! - [`FixedWindow`](Algorithm::FixedWindow): windows aligned to the Unix epoch; up to
//!   `limit` units in each (the default; the original node's algorithm). A client can
//!   spend the limit at the end of one window and again at the start of the next.
//! - [`SlidingWindow`](Algorithm::SlidingWindow): the previous window's count, weighted by
//!   how much of it still overlaps the last `window` (in millionths, rounded down), plus
//!   the current window's count. Removes most of the burst at a window's edge.
//! - [`Gcra`](Algorithm::Gcra): the generic cell rate algorithm, as a bucket of `limit`
//!   units that empties at `limit` units per `window`: a burst of up to `limit`, then
//!   evenly spaced requests.

mod fixed;
mod gcra;
#[cfg(feature = "cluster")]
mod merge;
mod sliding;

#[cfg(feature = "cluster")]
pub(crate) use merge::merged;

#[cfg(test)]
mod tests;

/// The longest window any algorithm takes, in ms (2^32 ms, about 49.7 days).
pub(crate) const MAX_WINDOW_MS: u64 = 1 << 32;
/// The largest `limit × window (ms)` GCRA takes: 2^53, exact in a double.
pub(crate) const MAX_GCRA_PRODUCT: u64 = 1 << 53;

/// How a policy counts ([`Policy::with_algorithm`](crate::Policy::with_algorithm)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Fixed windows aligned to the Unix epoch: up to `limit` units in each (the
    /// default). A client can spend the limit at the end of one window and again at the
    /// start of the next.
    #[default]
    FixedWindow,
    /// The sliding window counter: the previous window's count, weighted by how much of
    /// it still overlaps the last `window` (in millionths, rounded down), plus the current
    /// window's. Removes most of the burst at a window's edge. Windows of at most 2^32 ms.
    SlidingWindow,
    /// The generic cell rate algorithm: a bucket of `limit` units that empties at `limit`
    /// units per `window`; a burst of up to `limit`, then evenly spaced requests. Needs
    /// `limit × window (ms)` of at most 2^53.
    Gcra,
}

/// A policy's numbers, as the algorithms take them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) limit: u32,
    pub(crate) window_ms: u64,
}

/// A key's state under one policy, as stored between checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Units used in window `window` (an index: the window's start over its length).
    Fixed { window: u64, used: u32 },
    /// Units used in window `window` and in the one before it.
    Sliding {
        window: u64,
        current: u32,
        previous: u32,
    },
    /// The bucket's level at `at_ms`, in units × window (ms): it empties by `limit` each ms.
    Gcra { at_ms: u64, level: u64 },
}

/// What one check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) allowed: bool,
    /// Units that would still fit after this check (rounded down).
    pub(crate) remaining: u32,
    /// Time until the policy has all of its units again, if nothing more is counted.
    pub(crate) reset_ms: u64,
    /// For a denial, the time until this same cost would fit (`None`: never, as for a
    /// cost above the limit); zero for an allowed check.
    pub(crate) retry_ms: Option<u64>,
}

/// A check's verdict, and the state to store when it was allowed (a denial changes
/// nothing).
pub(crate) type Checked = (Verdict, Option<State>);

impl Algorithm {
    /// Whether this algorithm can enforce `limit` units per `window` exactly, with every
    /// number it computes below 2^53 (so Redis computes the same): any window of at least
    /// 1 ms for fixed windows, windows of at most 2^32 ms for the sliding window, and
    /// also `limit × window (ms)` of at most 2^53 for GCRA.
    pub fn supports(self, limit: u32, window: std::time::Duration) -> bool {
        u64::try_from(window.as_millis())
            .is_ok_and(|window_ms| self.admits(Rate { limit, window_ms }))
    }

    /// [`supports`](Self::supports), in the crate's own terms.
    pub(crate) fn admits(self, rate: Rate) -> bool {
        let window_fits = rate.window_ms >= 1 && rate.window_ms <= MAX_WINDOW_MS;
        match self {
            Self::FixedWindow => rate.window_ms >= 1,
            Self::SlidingWindow => window_fits,
            Self::Gcra => {
                window_fits
                    && u128::from(rate.limit) * u128::from(rate.window_ms)
                        <= u128::from(MAX_GCRA_PRODUCT)
            }
        }
    }

    /// Checks `cost` units at `now_ms` against `rate`, from `state` (`None`: the key has
    /// none, or one of another algorithm).
    #[inline]
    pub(crate) fn check(self, rate: Rate, state: Option<State>, now_ms: u64, cost: u32) -> Checked {
        debug_assert!(self.admits(rate), "{self:?} cannot enforce {rate:?}");
        match self {
            Self::FixedWindow => fixed::check(rate, state, now_ms, cost),
            Self::SlidingWindow => sliding::check(rate, state, now_ms, cost),
            Self::Gcra => gcra::check(rate, state, now_ms, cost),
        }
    }
}

/// `a / b` rounded up (b > 0).
fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}
