//! Keys that their owner has denied for the rest of the window, remembered by the nodes
//! that forwarded them: until the window ends the key stays denied (a fixed window's count
//! only grows), so asking the owner again would only cost a round trip.

use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use std::collections::HashMap;

use crate::Decision;

const SHARDS: usize = 64;

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
        (now_ms < denial.until_ms && cost > denial.remaining).then(|| Decision {
            allowed: false,
            limit,
            remaining: denial.remaining,
            reset: Duration::from_millis(denial.until_ms - now_ms),
        })
    }

    /// Remembers that the owner denied `key` at `now_ms`, as `decision` says.
    pub(super) fn remember(&self, key: &str, decision: &Decision, now_ms: u64) {
        let until_ms = now_ms + decision.reset.as_millis() as u64;
        let mut shard = self.shard(key);
        if now_ms >= shard.next_sweep_ms {
            shard.denials.retain(|_, d| d.until_ms > now_ms);
            shard.next_sweep_ms = now_ms + 1000;
        }
        let denial = Denial {
            until_ms,
            remaining: decision.remaining,
        };
        match shard.denials.get_mut(key) {
            Some(known) => *known = denial,
            None => {
                shard.denials.insert(key.into(), denial);
            }
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

    fn denied(remaining: u32, reset_ms: u64) -> Decision {
        Decision {
            allowed: false,
            limit: 5,
            remaining,
            reset: Duration::from_millis(reset_ms),
        }
    }

    #[test]
    fn a_denial_holds_until_the_owners_window_ends() {
        let cache = DeniedCache::new();
        assert!(cache.get("alice", 1, 5, 1_000).is_none());
        cache.remember("alice", &denied(0, 500), 1_000);
        let d = cache.get("alice", 1, 5, 1_200).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.reset, Duration::from_millis(300));
        assert!(cache.get("alice", 1, 5, 1_500).is_none(), "a new window");
        assert!(cache.get("bob", 1, 5, 1_200).is_none());
    }

    #[test]
    fn a_smaller_cost_that_still_fits_is_asked_again() {
        let cache = DeniedCache::new();
        cache.remember("alice", &denied(2, 500), 0);
        assert!(cache.get("alice", 3, 5, 10).is_some());
        assert!(cache.get("alice", 2, 5, 10).is_none());
    }

    #[test]
    fn ended_denials_are_swept() {
        let cache = DeniedCache::new();
        for i in 0..1000 {
            cache.remember(&format!("user-{i}"), &denied(0, 100), 0);
        }
        assert_eq!(cache.len(), 1000);
        for i in 0..1000 {
            cache.remember(&format!("next-{i}"), &denied(0, 100), 5_000);
        }
        assert_eq!(cache.len(), 1000, "only the current denials remain");
    }
}
