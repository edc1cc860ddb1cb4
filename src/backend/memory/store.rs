//! The counters of one policy (a name, an algorithm and a window): shards of tables, each
//! behind its own lock. The limit and the cost come with each check, so a policy whose
//! limit changes keeps its counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::capacity::Capacity;
use super::shard::{Ask, Shard};
use super::state_word::Counting;
#[cfg(feature = "cluster")]
use crate::algorithm::State;
use crate::algorithm::{Algorithm, Rate};
use crate::{Decision, Policy};

/// The counters of the policies with one name, algorithm and window.
pub(super) struct Store {
    /// The policy it was made for: its name, algorithm and window are the store's.
    policy: Policy,
    algorithm: Algorithm,
    window_ms: u64,
    shards: Box<[Shard]>,
    /// `64 - log2(shards)`: the shard is picked from hash bits the tables do not use.
    shard_shift: u32,
    /// The index of the window last seen, so the hot path needs no division.
    current_window: AtomicU64,
    pub(super) capacity: Capacity,
}

impl Store {
    /// The counters of `policy`'s name, algorithm and window, holding at most `max_keys`,
    /// made at `now`.
    pub(super) fn new(policy: &Policy, max_keys: usize, now: Duration) -> Self {
        let shards = shard_count(max_keys);
        Self {
            policy: *policy,
            algorithm: policy.algorithm(),
            window_ms: policy.window_ms(),
            shards: (0..shards).map(|_| Shard::default()).collect(),
            shard_shift: 64 - shards.trailing_zeros(),
            current_window: AtomicU64::new(crate::policy::millis(now) / policy.window_ms()),
            capacity: Capacity::new(max_keys, shards, policy.cost().get()),
        }
    }

    /// Whether `policy` counts here: the same name, algorithm and window.
    #[inline]
    pub(super) fn holds(&self, policy: &Policy) -> bool {
        self.policy.counts_with(policy)
    }

    /// Whether no check has come here for two whole windows, at `now`: nothing it holds
    /// matters any more (a fixed window's count ends with its window, a sliding window's
    /// weighs on one more, GCRA's bucket empties within one), so it can go.
    pub(super) fn idle(&self, now: Duration) -> bool {
        let last = self.current_window.load(Ordering::Relaxed);
        crate::policy::millis(now) / self.window_ms > last.saturating_add(2)
    }

    /// How many shards there are.
    #[cfg(test)]
    pub(super) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Counts `cost` units of `policy` for `key` (of `hash`) at `now`, if they fit, and
    /// says in which window (or generation) they were counted, for a refund. For a denial
    /// of a policy other than a fixed window, `reset` is when this cost fits again.
    #[inline]
    pub(super) fn decide(
        &self,
        key: &str,
        hash: u64,
        policy: &Policy,
        cost: u32,
        now: Duration,
    ) -> (Decision, u64) {
        let now_ms = crate::policy::millis(now);
        let window = self.window_index(now_ms);
        let shard = self.shard(hash);
        let limit = policy.limit();
        let ask = Ask {
            key,
            hash,
            window,
            cost,
            limit,
        };
        if self.algorithm != Algorithm::FixedWindow {
            let counting = self.counting(limit, now_ms, cost);
            let (verdict, generation) = shard.check_carried(ask, counting, &self.capacity);
            let reset_ms = match verdict.allowed {
                true => verdict.reset_ms,
                false => verdict.retry_ms.unwrap_or(verdict.reset_ms),
            };
            let reset = Duration::from_millis(reset_ms);
            let decision = Decision::new(verdict.allowed, limit, verdict.remaining, reset);
            return (decision, generation);
        }
        let outcome = shard.check(ask, &self.capacity);
        let decision = Decision::new(
            outcome.allowed,
            limit,
            limit.saturating_sub(outcome.used),
            policy.reset_after(outcome.window, now),
        );
        (decision, outcome.window)
    }

    /// Takes back `cost` units of `policy` that a check of `key` counted in window
    /// `counted` (what [`decide`](Self::decide) said), when another policy of its set
    /// denied the request: from that window's count, wherever the key's state has moved
    /// since (a fixed window's count goes with its window).
    pub(super) fn refund(
        &self,
        key: &str,
        hash: u64,
        policy: &Policy,
        cost: u32,
        counted: u64,
        now: Duration,
    ) {
        let counting = self.counting(policy.limit(), crate::policy::millis(now), cost);
        self.shard(hash).refund(key, hash, counted, counting);
    }

    /// Units `key` holds now under `policy` (see `MemoryBackend::used`).
    pub(super) fn used(&self, key: &str, hash: u64, policy: &Policy, now: Duration) -> u32 {
        let now_ms = crate::policy::millis(now);
        let window = self.window_index(now_ms);
        let shard = self.shard(hash);
        if self.algorithm == Algorithm::FixedWindow {
            return shard.used(key, hash, window);
        }
        shard.held(key, hash, window, self.counting(policy.limit(), now_ms, 0))
    }

    /// Takes `key`'s state out, read at `now`, for the key's next owner; `None` if it
    /// has none here.
    #[cfg(feature = "cluster")]
    pub(super) fn take(&self, key: &str, hash: u64, now: Duration) -> Option<State> {
        let (word, generation) = self.shard(hash).take(key, hash)?;
        Some(match self.algorithm {
            Algorithm::FixedWindow => super::counter::fixed_state(word, generation),
            _ => self
                .counting(self.policy.limit(), crate::policy::millis(now), 0)
                .in_generation(generation)
                .state(word, generation),
        })
    }

    /// Adds `handed`, a key's state taken from its previous owner, to `key`'s own here
    /// at `now` (see `algorithm::merged`).
    #[cfg(feature = "cluster")]
    pub(super) fn absorb(&self, key: &str, hash: u64, handed: State, now: Duration) {
        let limit = self.policy.limit();
        // A check of nothing gives the key a counter in this window, its state carried.
        let _ = self.decide(key, hash, &self.policy, 0, now);
        let rate = Rate {
            limit,
            window_ms: self.window_ms,
        };
        let merge = |local| crate::algorithm::merged(rate, local, handed);
        let now_ms = crate::policy::millis(now);
        let fixed = self.algorithm == Algorithm::FixedWindow;
        self.shard(hash)
            .with_entry(key, hash, |counter, generation| match fixed {
                true => counter.merge(generation, merge),
                false => self
                    .counting(limit, now_ms, 0)
                    .in_generation(generation)
                    .merge(counter.word(), generation, merge),
            });
    }

    /// Whether `key` (of `hash`) has a counter here.
    #[cfg(feature = "cluster")]
    pub(super) fn holds_key(&self, key: &str, hash: u64) -> bool {
        self.shard(hash).holds(key, hash)
    }

    /// Adds the keys held here to `keys`.
    #[cfg(feature = "cluster")]
    pub(super) fn keys_into(&self, keys: &mut super::HeldKeys) {
        for shard in &*self.shards {
            shard.keys_into(keys);
        }
    }

    /// The policy this store was made for.
    #[cfg(feature = "cluster")]
    pub(super) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Counters held, including past windows' not yet dropped.
    pub(super) fn tracked_keys(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    /// The shard of a key of `hash`.
    #[inline]
    pub(super) fn shard(&self, hash: u64) -> &Shard {
        // hashbrown uses the top 7 bits and the low bits; pick the shard from the middle
        // (with one shard, the shift is 64 and there is nothing to pick).
        let index = (hash << 7).checked_shr(self.shard_shift).unwrap_or(0) as usize;
        &self.shards[index]
    }

    #[inline]
    fn counting(&self, limit: u32, now_ms: u64, cost: u32) -> Counting {
        Counting {
            algorithm: self.algorithm,
            rate: Rate {
                limit,
                window_ms: self.window_ms,
            },
            now_ms,
            cost,
        }
    }

    /// The index of the window containing `now_ms`: a cached value while it still fits,
    /// a division only when a window starts.
    #[inline]
    fn window_index(&self, now_ms: u64) -> u64 {
        let window_ms = self.window_ms;
        let cached = self.current_window.load(Ordering::Relaxed);
        if now_ms.wrapping_sub(cached * window_ms) < window_ms {
            return cached;
        }
        let index = now_ms / window_ms;
        self.current_window.store(index, Ordering::Relaxed);
        index
    }
}

/// The most shards a store has: each costs about 1 KiB (its lock's cache lines).
const MAX_SHARDS: usize = 16_384;

/// How many shards hold `max_keys` keys: one per core and then some, so that threads
/// rarely meet on a lock; at least 64 keys to a shard, so that a shard's share of the cap
/// leaves room for the keys that come back; and at most 65,536 (up to a billion keys,
/// [`MAX_SHARDS`] shards), so that rebuilding a shard's table at the cap stays short.
pub(super) fn shard_count(max_keys: usize) -> usize {
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
