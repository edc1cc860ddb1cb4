//! A policy: how many requests, per how long, at what cost each, counted how
//! ([`Algorithm`]), under what name, and whether it is enforced or in shadow mode.

mod name;
mod set;

use std::num::NonZeroU32;
use std::time::Duration;

pub use self::name::{PolicyName, PolicyNameError, MAX_NAME_LEN};
pub use self::set::{PolicySet, PolicySetError, MAX_POLICIES};
pub use crate::algorithm::Algorithm;

/// `limit` units per `window`, each request costing `cost` units (1 unless set), counted
/// in fixed windows unless another [`Algorithm`] is set.
///
/// Windows are aligned to the Unix epoch:
/// `window_start = now - now % window`, so every node agrees on where a window begins.
///
/// # Examples
///
/// ```
/// use ringlimit::policy::{Algorithm, PolicyName};
/// use ringlimit::Policy;
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
/// assert_eq!(policy.limit(), 5);
/// assert_eq!(policy.window(), Duration::from_secs(60));
/// assert_eq!(policy.cost(), NonZeroU32::MIN);
/// assert_eq!(policy.algorithm(), Algorithm::FixedWindow);
///
/// // A burst of up to 10, then one request every 6 s, named in the headers.
/// let smooth = Policy::per_window(NonZeroU32::new(10).unwrap(), Duration::from_secs(60))
///     .with_algorithm(Algorithm::Gcra)
///     .with_name(PolicyName::new("smooth").unwrap());
/// assert_eq!(smooth.name().as_str(), "smooth");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    name: PolicyName,
    limit: u32,
    window_ms: u64,
    cost: NonZeroU32,
    algorithm: Algorithm,
    shadow: bool,
}

impl Policy {
    /// Allows `limit` requests in each `window`.
    ///
    /// # Panics
    ///
    /// Windows are counted in whole milliseconds: a `window` shorter than 1 ms, or longer
    /// than `u64::MAX` ms, panics (a configuration mistake, never request input).
    pub fn per_window(limit: NonZeroU32, window: Duration) -> Self {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(0);
        assert!(
            window_ms >= 1,
            "ringlimit: window must be between 1 ms and u64::MAX ms, got {window:?}"
        );
        Self {
            name: PolicyName::DEFAULT,
            limit: limit.get(),
            window_ms,
            cost: NonZeroU32::MIN,
            algorithm: Algorithm::FixedWindow,
            shadow: false,
        }
    }

    /// Sets how many units one request uses (default 1). A cost above the limit is
    /// always denied.
    #[must_use]
    pub fn with_cost(mut self, cost: NonZeroU32) -> Self {
        self.cost = cost;
        self
    }

    /// Counts with `algorithm` (default [`Algorithm::FixedWindow`]). Every backend
    /// decides alike for the same requests at the same times.
    ///
    /// # Panics
    ///
    /// If `algorithm` cannot enforce this limit and window exactly
    /// ([`Algorithm::supports`]): a configuration mistake, never request input.
    #[must_use]
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        assert!(
            algorithm.supports(self.limit, self.window()),
            "ringlimit: {algorithm:?} cannot enforce {} per {:?} exactly",
            self.limit,
            self.window()
        );
        self.algorithm = algorithm;
        self
    }

    /// How the policy counts ([`with_algorithm`](Self::with_algorithm)).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Names the policy (default [`PolicyName::DEFAULT`], `default`): the name the
    /// `RateLimit-Policy` and `RateLimit` headers give it.
    #[must_use]
    pub fn with_name(mut self, name: PolicyName) -> Self {
        self.name = name;
        self
    }

    /// The policy's name ([`with_name`](Self::with_name)).
    pub fn name(&self) -> PolicyName {
        self.name
    }

    /// With `true`, the policy runs in shadow mode: requests are counted and reported as
    /// usual (the `RateLimit` headers, its [`Decision`](crate::Decision) among the
    /// [`Decisions`](crate::Decisions) in the response's extensions, a `debug` log event
    /// naming the policy), but a request over the limit is let through instead of
    /// rejected, and gets no `Retry-After` from it. How a limit is tried
    /// on real traffic before it is enforced. Default `false`.
    ///
    /// A request let through over the limit counts nothing, as a rejected one would not:
    /// turning enforcement on later changes no count. A request the backend cannot decide
    /// goes through too; one without a usable key still gets `400` (it is the client's
    /// mistake, not the policy's decision).
    #[must_use]
    pub fn with_shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Whether the policy is in shadow mode ([`with_shadow`](Self::with_shadow)).
    pub fn shadow(&self) -> bool {
        self.shadow
    }

    /// Units allowed per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// Units one request uses.
    pub fn cost(&self) -> NonZeroU32 {
        self.cost
    }

    /// Whether `other` counts on the same counters as this policy: the same name,
    /// algorithm and window (a changed limit, cost or mode keeps them). Every backend
    /// keys counters so.
    #[inline]
    pub(crate) fn counts_with(&self, other: &Policy) -> bool {
        self.window_ms == other.window_ms
            && self.algorithm == other.algorithm
            && self.name == other.name
    }

    /// The longest a reset can be: two windows for the sliding window (the current
    /// window's count weighs on the next), one for the others.
    #[cfg(any(feature = "cluster", feature = "redis"))]
    pub(crate) fn longest_reset(&self) -> Duration {
        match self.algorithm {
            Algorithm::SlidingWindow => self.window().saturating_mul(2),
            _ => self.window(),
        }
    }

    /// The index of the window containing `now_ms` (milliseconds since the epoch).
    #[cfg(test)]
    fn window_index(&self, now_ms: u64) -> u64 {
        now_ms / self.window_ms
    }

    /// The window length in milliseconds.
    pub(crate) fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Time from `now` until the window containing `now` ends.
    #[cfg(any(feature = "cluster", feature = "redis"))]
    pub(crate) fn reset_at(&self, now: Duration) -> Duration {
        self.reset_after(millis(now) / self.window_ms, now)
    }

    /// Time from `now` until window `index` ends (zero if it already has).
    pub(crate) fn reset_after(&self, index: u64, now: Duration) -> Duration {
        let end = Duration::from_millis(index.saturating_add(1).saturating_mul(self.window_ms));
        end.saturating_sub(now)
    }
}

/// `now` in whole milliseconds, without 128-bit arithmetic.
pub(crate) fn millis(now: Duration) -> u64 {
    now.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(now.subsec_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u32, window_secs: u64) -> Policy {
        Policy::per_window(
            NonZeroU32::new(limit).unwrap(),
            Duration::from_secs(window_secs),
        )
    }

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let p = policy(5, 60);
        let now = Duration::from_secs(1_000_043);
        let index = p.window_index(millis(now));
        assert_eq!(index, 1_000_043 / 60);
        let reset = p.reset_after(index, now);
        // 1_000_043 % 60 == 23, so 37 s remain.
        assert_eq!(reset, Duration::from_secs(37));
    }

    #[test]
    fn the_last_millisecond_belongs_to_the_window() {
        let p = policy(5, 60);
        assert_eq!(p.window_index(119_999), 1);
        assert_eq!(
            p.reset_after(1, Duration::from_millis(119_999)),
            Duration::from_millis(1)
        );
        assert_eq!(p.window_index(120_000), 2);
    }

    #[test]
    #[should_panic(expected = "window must be")]
    fn a_sub_millisecond_window_is_refused() {
        Policy::per_window(NonZeroU32::MIN, Duration::from_micros(10));
    }
}
