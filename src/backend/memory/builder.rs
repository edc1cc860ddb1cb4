//! How a [`MemoryBackend`] is set up: options gathered first, the shards made once.

use super::{MemoryBackend, DEFAULT_MAX_KEYS};
use crate::clock::{Clock, SystemClock};
use crate::policy::PolicySet;

/// The options of a [`MemoryBackend`], from [`MemoryBackend::builder`].
///
/// # Examples
///
/// ```
/// use ringlimit::{ManualClock, MemoryBackend, Policy};
/// use std::{num::NonZeroU32, time::Duration};
///
/// let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
/// let backend = MemoryBackend::builder(policy)
///     .max_keys(10_000)
///     .clock(ManualClock::new(Duration::from_secs(600)))
///     .build();
/// assert_eq!(backend.max_keys(), 10_000);
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until built"]
pub struct MemoryBuilder<C = SystemClock> {
    policies: PolicySet,
    clock: C,
    max_keys: usize,
}

impl MemoryBuilder {
    pub(crate) fn new(policies: PolicySet) -> Self {
        Self {
            policies,
            clock: SystemClock,
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

impl<C: Clock> MemoryBuilder<C> {
    /// Tracks at most `max_keys` keys per policy (default [`DEFAULT_MAX_KEYS`]; 0
    /// counts as 1); `usize::MAX` lifts the cap. Each policy checked here (a name, an
    /// algorithm and a window) has counters of its own, at most
    /// [`MAX_STORES`](super::MAX_STORES) of them. What happens at the cap is in [`MemoryBackend`]'s
    /// docs. The cap is split evenly over the shards (as many as give each 64 to 65,536
    /// keys, for caps from 64 to a billion), so evictions can begin a little before the
    /// total is reached, and a shard can hold 1/31 more than its share while it sets
    /// aside keys that came back.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Reads the time from `clock` (default [`SystemClock`]; for tests,
    /// [`ManualClock`](crate::ManualClock)).
    pub fn clock<C2: Clock>(self, clock: C2) -> MemoryBuilder<C2> {
        MemoryBuilder {
            policies: self.policies,
            clock,
            max_keys: self.max_keys,
        }
    }

    /// The policy the counters enforce.
    #[cfg(feature = "redis")]
    pub(crate) fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The backend.
    pub fn build(self) -> MemoryBackend<C> {
        MemoryBackend::build(self.policies, self.clock, self.max_keys)
    }
}
