//! Keys that their owner has denied for the rest of the window, remembered by the nodes
//! that forwarded them: until the window ends the key stays denied (a fixed window's count
//! only grows), so asking the owner again would only cost a round trip.
//!
//! The cache only saves round trips, so it is bounded: each shard holds at most
//! [`MAX_PER_SHARD`] denials, and a denial that finds its shard full is not remembered
//! (the owner is asked again). Sweeps therefore touch a bounded number of entries.

use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use std::collections::HashMap;

use crate::Decision;

const SHARDS: usize = 64;
/// Denials one shard holds at most: 65,536 in all.
const MAX_PER_SHARD: usize = 1024;

#[derive(Debug)]
pub(super) struct DeniedCache {
    hasher: foldhash::fast::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Debug, Default)]
struct Shard {
    denials: HashMap<Box<str>, Denial, foldhash::fast::RandomState>,
    /// When (ms since the epoch) to next drop the denials whose window has ended.
    next_sweep_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct Denial {
    /// The owner's window ends here (ms since the epoch, on this node's clock).
    until_ms: u64,
    /// Units the owner still had: a cost above this is denied.
    remaining: u32,
}

impl DeniedCache {
    pub(super) fn new() -> Self {
        Self {
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The denial of `cost` for `key` at `now_ms`, if the owner already said so.
    pub(super) fn get(&self, key: &str, cost: u32, limit: u32, now_ms: u64) -> Option<Decision> {
        let denial = *self.shard(key).denials.get(key)?;
        (now_ms < denial.until_ms && cost > denial.remaining).then(|| {
            let reset = Duration::from_millis(denial.until_ms - now_ms);
            Decision::new(false, limit, denial.remaining, reset)
        })
    }

    /// Remembers that the owner denied `key` at `now_ms`, with `remaining` units left, for
    /// `reset` more.
    pub(super) fn remember(&self, key: &str, remaining: u32, reset: Duration, now_ms: u64) {
        let reset_ms = u64::try_from(reset.as_millis()).unwrap_or(u64::MAX);
        let until_ms = now_ms.saturating_add(reset_ms);
        let mut shard = self.shard(key);
        if now_ms >= shard.next_sweep_ms {
            shard.denials.retain(|_, d| d.until_ms > now_ms);
            shard.next_sweep_ms = now_ms.saturating_add(1000);
        }
        let denial = Denial {
            until_ms,
            remaining,
        };
        let room = shard.denials.len() < MAX_PER_SHARD;
        match shard.denials.get_mut(key) {
            Some(known) => *known = denial,
            None if room => {
                shard.denials.insert(key.into(), denial);
            }
            None => {}
        }
    }

    /// Denials held (including ended ones not yet swept).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .denials
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remember(cache: &DeniedCache, key: &str, remaining: u32, reset_ms: u64, now_ms: u64) {
        cache.remember(key, remaining, Duration::from_millis(reset_ms), now_ms);
    }

    #[test]
    fn a_denial_holds_until_the_owners_window_ends() {
        let cache = DeniedCache::new();
        assert!(cache.get("alice", 1, 5, 1_000).is_none());
        remember(&cache, "alice", 0, 500, 1_000);
        let d = cache.get("alice", 1, 5, 1_200).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.reset, Duration::from_millis(300));
        assert!(cache.get("alice", 1, 5, 1_500).is_none(), "a new window");
        assert!(cache.get("bob", 1, 5, 1_200).is_none());
    }

    #[test]
    fn a_smaller_cost_that_still_fits_is_asked_again() {
        let cache = DeniedCache::new();
        remember(&cache, "alice", 2, 500, 0);
        assert!(cache.get("alice", 3, 5, 10).is_some());
        assert!(cache.get("alice", 2, 5, 10).is_none());
    }

    #[test]
    fn ended_denials_are_swept() {
        let cache = DeniedCache::new();
        for i in 0..1000 {
            remember(&cache, &format!("user-{i}"), 0, 100, 0);
        }
        assert_eq!(cache.len(), 1000);
        for i in 0..1000 {
            remember(&cache, &format!("next-{i}"), 0, 100, 5_000);
        }
        assert_eq!(cache.len(), 1000, "only the current denials remain");
    }

    #[test]
    fn the_cache_is_bounded_and_a_huge_reset_does_not_wrap() {
        let cache = DeniedCache::new();
        for i in 0..SHARDS * MAX_PER_SHARD * 2 {
            remember(&cache, &format!("user-{i}"), 0, 60_000, 0);
        }
        assert!(cache.len() <= SHARDS * MAX_PER_SHARD);

        let cache = DeniedCache::new();
        cache.remember("liar", 0, Duration::MAX, u64::MAX - 5);
        cache.remember("liar", 0, Duration::MAX, 10);
        assert!(!cache.get("liar", 1, 5, 20).unwrap().allowed);
    }
}
