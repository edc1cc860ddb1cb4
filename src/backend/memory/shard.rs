//! One shard of the in-memory store: a hash table of counters behind its own lock, which
//! sweeps out the counters of past windows the first time it is used in a new window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;

use crossbeam_utils::sync::ShardedLock;

use hashbrown::hash_table::{Entry as TableEntry, HashTable};

use super::counter::{Counter, Outcome};
use super::stored_key::StoredKey;

#[derive(Debug)]
struct Entry {
    key: StoredKey,
    hash: u64,
    counter: Counter,
}

/// Aligned to a cache line so that neighbouring shards' locks do not share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct Shard {
    /// Readers lock one of several cache lines, chosen by thread, so that threads reading
    /// the same shard (one hot key) do not pass a lock word back and forth.
    table: ShardedLock<HashTable<Entry>>,
    /// The newest window this shard has been swept for.
    swept: AtomicU64,
}

impl Shard {
    /// Counts `cost` for `key` in `window`. A key that already has a counter takes only the
    /// shared lock and allocates nothing.
    pub(super) fn check(
        &self,
        key: &str,
        hash: u64,
        window: u64,
        cost: u32,
        limit: u32,
    ) -> Outcome {
        {
            // The sweep mark is read under the lock: the lock's cache line is already this
            // core's then, so a contended key pays no extra transfer for it.
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            if self.swept.load(Ordering::Acquire) >= window {
                if let Some(entry) = table.find(hash, |e| e.hash == hash && e.key.is(key)) {
                    return entry.counter.check(window, cost, limit);
                }
            }
        }
        if self.swept.load(Ordering::Acquire) < window {
            self.sweep(window);
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        match table.entry(hash, |e| e.hash == hash && e.key.is(key), |e| e.hash) {
            TableEntry::Occupied(entry) => entry.get().counter.check(window, cost, limit),
            TableEntry::Vacant(slot) => {
                // A reader whose clock lags one that already swept counts in the newer
                // window, so a swept window can never be counted twice.
                let window = window.max(self.swept.load(Ordering::Acquire));
                let (counter, outcome) = Counter::first(window, cost, limit);
                slot.insert(Entry {
                    key: StoredKey::new(key),
                    hash,
                    counter,
                });
                outcome
            }
        }
    }

    /// Drops counters of windows before `window` and gives back memory they no longer need.
    fn sweep(&self, window: u64) {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if self.swept.load(Ordering::Acquire) >= window {
            return;
        }
        table.retain(|e| !e.counter.is_older_than(window));
        let live = table.len();
        if table.capacity() > 64 && live < table.capacity() / 4 {
            table.shrink_to(live * 2, |e| e.hash);
        }
        self.swept.fetch_max(window, Ordering::AcqRel);
    }

    /// Units `key` has used in `window`, without counting anything.
    pub(super) fn used(&self, key: &str, hash: u64, window: u64) -> u32 {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table
            .find(hash, |e| e.hash == hash && e.key.is(key))
            .map_or(0, |e| e.counter.used_in(window))
    }

    /// Counters held, of this and (until swept) past windows.
    pub(super) fn len(&self) -> usize {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
