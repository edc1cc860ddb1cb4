//! The embedded in-memory backend (the default).

mod builder;
mod capacity;
mod counter;
mod retired;
mod shard;
mod state_word;
mod stored_key;
mod table;

use std::fmt;
use std::future::Ready;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

pub use self::builder::MemoryBuilder;
use self::capacity::Capacity;
pub use self::capacity::DEFAULT_MAX_KEYS;
use self::shard::{Ask, Shard};
use self::state_word::Counting;
use super::{Backend, BackendError, Check};
use crate::algorithm::{Algorithm, Rate};
use crate::clock::{Clock, SystemClock};
use crate::policy::millis;
use crate::{Decision, Policy};

/// Counters in this process's memory.
///
/// Exact under concurrency: each key's counter is one atomic word updated by
/// compare-and-swap, so no number of tasks can admit more than the limit. Keys are spread
/// over many shards, each with its own read-write lock; a key that already has a counter
/// takes a shared lock and allocates nothing. The shared side of each lock is itself split
/// by thread (crossbeam's `ShardedLock`), so threads checking the same hot key do not pass
/// a lock word between cores: only the key's counter moves.
///
/// Memory is bounded two ways, with no cleanup call:
/// - **Past windows**: the first request to reach a shard in a new window swaps in an
///   empty table; the old one is dropped 16 entries per request that reaches the shard
///   after it, so no request pays for dropping millions of keys at a window boundary (a
///   shard no request reaches keeps its old table until one does). Under the sliding
///   window and GCRA, whose state outlives a window, the table of the window just before
///   is kept whole until the next one starts (a key that comes back moves out of it), so
///   keys are held for a window more, outside the cap.
/// - **A cap on tracked keys** ([`MemoryBuilder::max_keys`], default
///   [`DEFAULT_MAX_KEYS`]), split evenly over the shards. A new key that finds its shard
///   full evicts the oldest key counted for one request at most, so a flood of one-request
///   ids evicts its own ids and a user who comes back keeps an exact count (with a limit
///   of one request, a user at the limit looks like one seen once). Keys found
///   counted more than once are set aside, and only when no key seen once is left does
///   one of them go: the least used of the 8 set aside longest, which may then be allowed
///   its evicted units again in this window. Evictions are counted
///   ([`evicted_keys`](Self::evicted_keys)) and the first of each window is logged at
///   `warn`.
///
/// # Examples
///
/// ```
/// use ringlimit::{Backend, Check, ManualClock, MemoryBackend, Policy};
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Duration::from_secs(600));
/// let policy = Policy::per_window(NonZeroU32::new(1).unwrap(), Duration::from_secs(60));
/// let backend = MemoryBackend::builder(policy).clock(clock.clone()).build();
/// let one = NonZeroU32::MIN;
/// let allowed = |check| matches!(check, Check::Ready(Ok(d)) if d.allowed);
///
/// assert!(allowed(backend.check("alice", one)));
/// assert!(!allowed(backend.check("alice", one)));
/// clock.advance(Duration::from_secs(60));
/// assert!(allowed(backend.check("alice", one)));
/// ```
pub struct MemoryBackend<C = SystemClock> {
    policy: Policy,
    clock: C,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Shard]>,
    /// `64 - log2(shards)`: the shard is picked from hash bits the tables do not use.
    shard_shift: u32,
    /// The index of the window last seen, so the hot path needs no division.
    current_window: AtomicU64,
    capacity: Capacity,
}

impl MemoryBackend {
    /// Counters for `policy`, on the system clock, with the default cap on keys.
    pub fn new(policy: Policy) -> Self {
        Self::builder(policy).build()
    }

    /// Counters for `policy`, set up with [`MemoryBuilder`]'s options.
    pub fn builder(policy: Policy) -> MemoryBuilder {
        MemoryBuilder::new(policy)
    }
}

impl<C: Clock> MemoryBackend<C> {
    /// The backend a builder describes: every shard made once, here.
    fn build(policy: Policy, clock: C, max_keys: usize) -> Self {
        let shards = shard_count(max_keys);
        Self {
            policy,
            clock,
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..shards).map(|_| Shard::default()).collect(),
            shard_shift: 64 - shards.trailing_zeros(),
            current_window: AtomicU64::new(0),
            capacity: Capacity::new(max_keys, shards, policy.cost().get()),
        }
    }
}

/// The most shards a backend has: each costs about 1 KiB (its lock's cache lines).
const MAX_SHARDS: usize = 16_384;

/// How many shards hold `max_keys` keys: one per core and then some, so that threads
/// rarely meet on a lock; at least 64 keys to a shard, so that a shard's share of the cap
/// leaves room for the keys that come back; and at most 65,536 (up to a billion keys,
/// [`MAX_SHARDS`] shards), so that rebuilding a shard's table at the cap stays short.
fn shard_count(max_keys: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    let by_cores = (cores * 16).next_power_of_two().clamp(64, 1024);
    if max_keys == usize::MAX {
        return by_cores;
    }
    let fewest = (max_keys / 65_536).min(MAX_SHARDS).next_power_of_two();
    let most = match max_keys / 64 {
        0 => 1,
        n => 1 << n.ilog2(),
    };
    by_cores.max(fewest).min(most)
}

impl<C: Clock> MemoryBackend<C> {
    /// The cap on tracked keys in force ([`MemoryBuilder::max_keys`]).
    pub fn max_keys(&self) -> usize {
        self.capacity.max_keys()
    }

    /// Keys evicted at the cap since the backend was made.
    pub fn evicted_keys(&self) -> u64 {
        self.capacity.evicted()
    }

    /// How many keys have a counter, including counters of past windows not yet dropped.
    pub fn tracked_keys(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    /// Units `key` holds now, without counting anything: those used in the current
    /// window (a fixed window), those of the current and the previous window (the sliding
    /// window, unweighted), or the bucket's level, rounded up (GCRA).
    pub fn used(&self, key: &str) -> u32 {
        let now_ms = millis(self.clock.now());
        let window = self.window_index(now_ms);
        let (shard, hash) = self.shard_of(key);
        let algorithm = self.policy.algorithm();
        if algorithm == Algorithm::FixedWindow {
            return shard.used(key, hash, window);
        }
        let counting = Counting {
            algorithm,
            rate: Rate {
                limit: self.policy.limit(),
                window_ms: self.policy.window_ms(),
            },
            now_ms,
            cost: 0,
        };
        shard.held(key, hash, window, counting)
    }

    /// Counts `cost` for `key` now and says whether it fit. For a denial of a policy
    /// other than a fixed window, `reset` is when this cost fits again.
    pub fn decide(&self, key: &str, cost: NonZeroU32) -> Decision {
        let cost = cost.get();
        let now = self.clock.now();
        let now_ms = millis(now);
        let window = self.window_index(now_ms);
        let (shard, hash) = self.shard_of(key);
        let limit = self.policy.limit();
        let ask = Ask {
            key,
            hash,
            window,
            cost,
            limit,
        };
        let algorithm = self.policy.algorithm();
        if algorithm != Algorithm::FixedWindow {
            let counting = Counting {
                algorithm,
                rate: Rate {
                    limit,
                    window_ms: self.policy.window_ms(),
                },
                now_ms,
                cost,
            };
            let verdict = shard.check_carried(ask, counting, &self.capacity);
            let reset_ms = match verdict.allowed {
                true => verdict.reset_ms,
                false => verdict.retry_ms.unwrap_or(verdict.reset_ms),
            };
            return Decision {
                allowed: verdict.allowed,
                limit,
                remaining: verdict.remaining,
                reset: std::time::Duration::from_millis(reset_ms),
            };
        }
        let outcome = shard.check(ask, &self.capacity);
        Decision {
            allowed: outcome.allowed,
            limit,
            remaining: limit - outcome.used,
            reset: self.policy.reset_after(outcome.window, now),
        }
    }

    /// The policy, borrowed: the remote backends read it on every check, and a copy
    /// carries its name.
    #[cfg(any(feature = "cluster", feature = "redis"))]
    pub(crate) fn policy_ref(&self) -> &Policy {
        &self.policy
    }

    /// The shard holding `key`, and the key's hash.
    fn shard_of(&self, key: &str) -> (&Shard, u64) {
        let hash = self.hasher.hash_one(key);
        // hashbrown uses the top 7 bits and the low bits; pick the shard from the middle
        // (with one shard, the shift is 64 and there is nothing to pick).
        let index = (hash << 7).checked_shr(self.shard_shift).unwrap_or(0) as usize;
        (&self.shards[index], hash)
    }

    /// The clock's time, in ms since the epoch.
    #[cfg(feature = "cluster")]
    pub(crate) fn now_ms(&self) -> u64 {
        millis(self.clock.now())
    }

    /// Time until the current window ends.
    #[cfg(any(feature = "cluster", feature = "redis"))]
    pub(crate) fn reset_now(&self) -> std::time::Duration {
        let now = self.clock.now();
        self.policy.reset_after(self.window_index(millis(now)), now)
    }

    /// The index of the window containing `now_ms`: a cached value while it still fits,
    /// a division only when a window starts.
    fn window_index(&self, now_ms: u64) -> u64 {
        let window_ms = self.policy.window_ms();
        let cached = self.current_window.load(Ordering::Relaxed);
        if now_ms.wrapping_sub(cached * window_ms) < window_ms {
            return cached;
        }
        let index = self.policy.window_index(now_ms);
        self.current_window.store(index, Ordering::Relaxed);
        index
    }
}

impl<C: Clock> Backend for MemoryBackend<C> {
    type Future = Ready<Result<Decision, BackendError>>;

    fn policy(&self) -> Policy {
        self.policy
    }

    fn check(&self, key: &str, cost: NonZeroU32) -> Check<Self::Future> {
        Check::Ready(Ok(self.decide(key, cost)))
    }
}

/// Counts every check itself: a forwarded check is a check.
#[cfg(feature = "cluster")]
impl<C: Clock> super::Owner for MemoryBackend<C> {
    fn check_forwarded(&self, key: &str, cost: NonZeroU32) -> Check<Self::Future> {
        self.check(key, cost)
    }
}

impl<C: fmt::Debug> fmt::Debug for MemoryBackend<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("policy", &self.policy)
            .field("clock", &self.clock)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
