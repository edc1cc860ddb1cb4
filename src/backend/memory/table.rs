//! The counters of one shard for the current window, and whom to evict when the shard is
//! at its share of the key cap.
//!
//! Eviction is a clock sweep over the keys in the order they arrived: the oldest key
//! that has been counted for one request at most goes first (a flood of one-request ids
//! evicts its own ids). A key counted more than once is passed over and goes to the back.
//! Only when every key examined has been counted more than once does the least used of
//! them go. So what the cap costs falls on the keys with the least use, and a user who
//! comes back keeps an exact count.

use std::collections::VecDeque;

use hashbrown::hash_table::HashTable;

use super::counter::Counter;
use super::stored_key::StoredKey;

/// Keys examined for one eviction, at most.
const EXAMINED_PER_EVICTION: usize = 8;

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: StoredKey,
    pub(super) hash: u64,
    pub(super) counter: Counter,
}

#[derive(Debug, Default)]
pub(super) struct Table {
    pub(super) entries: HashTable<Entry>,
    /// The hashes of the keys in the order they arrived (kept only under a cap).
    arrivals: VecDeque<u64>,
}

impl Table {
    pub(super) fn find(&self, key: &str, hash: u64) -> Option<&Entry> {
        self.entries.find(hash, |e| e.hash == hash && e.key.is(key))
    }

    /// Adds `key`'s counter; `capped` keeps its arrival for eviction.
    pub(super) fn insert(&mut self, key: &str, hash: u64, counter: Counter, capped: bool) {
        if capped && self.entries.len() == self.entries.capacity() {
            self.rebuild();
        }
        let entry = Entry {
            key: StoredKey::new(key),
            hash,
            counter,
        };
        self.entries.insert_unique(hash, entry, |e| e.hash);
        if capped {
            self.arrivals.push_back(hash);
        }
    }

    /// Moves the entries into a table sized for them and an eighth more.
    ///
    /// Why: where hashbrown removes an entry it may leave a tombstone, which takes room
    /// until the table is rebuilt, and its own rebuild of a table more than half full
    /// doubles it. At the cap, where every new key follows an eviction, that would hold
    /// the tables at twice the size the cap needs. Rebuilt here at the size they need,
    /// with an eighth to spare, a rebuild comes at most once per `len / 8` new keys.
    fn rebuild(&mut self) {
        let len = self.entries.len();
        let mut rebuilt = HashTable::with_capacity(len + len / 8 + 1);
        for entry in self.entries.drain() {
            rebuilt.insert_unique(entry.hash, entry, |e| e.hash);
        }
        self.entries = rebuilt;
    }

    /// Empties the table for a new window, handing back the old counters.
    pub(super) fn take(&mut self) -> HashTable<Entry> {
        self.arrivals = VecDeque::new();
        std::mem::take(&mut self.entries)
    }

    /// Evicts one key, chosen as the module docs say; `one_request` is the units one
    /// request counts. Whether one was evicted (not when the table is empty).
    pub(super) fn evict_one(&mut self, one_request: u32) -> bool {
        let mut kept = [0u64; EXAMINED_PER_EVICTION];
        let mut examined = 0;
        // The least used of the keys examined, and its place in `kept`.
        let mut least: Option<(u32, usize)> = None;
        while examined < EXAMINED_PER_EVICTION {
            let Some(hash) = self.arrivals.pop_front() else {
                break;
            };
            let Some(used) = self.used_by(hash) else {
                continue; // no longer held
            };
            if used <= one_request {
                self.remove(hash);
                self.arrivals.extend(&kept[..examined]);
                return true;
            }
            if least.is_none_or(|(fewest, _)| used < fewest) {
                least = Some((used, examined));
            }
            kept[examined] = hash;
            examined += 1;
        }
        let Some((_, victim)) = least else {
            return false;
        };
        self.remove(kept[victim]);
        let survivors = kept[..examined].iter().enumerate();
        self.arrivals
            .extend(survivors.filter(|&(i, _)| i != victim).map(|(_, &h)| h));
        true
    }

    fn used_by(&self, hash: u64) -> Option<u32> {
        let entry = self.entries.find(hash, |e| e.hash == hash)?;
        Some(entry.counter.used())
    }

    fn remove(&mut self, hash: u64) {
        if let Ok(entry) = self.entries.find_entry(hash, |e| e.hash == hash) {
            entry.remove();
        }
    }

    /// Keys held.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_with(used: &[u32]) -> Table {
        let mut table = Table::default();
        for (i, &units) in used.iter().enumerate() {
            let (counter, _) = Counter::first(1, units, 100);
            table.insert(&format!("key-{i}"), i as u64, counter, true);
        }
        table
    }

    fn held(table: &Table) -> Vec<u64> {
        let mut hashes: Vec<_> = table.entries.iter().map(|e| e.hash).collect();
        hashes.sort_unstable();
        hashes
    }

    #[test]
    fn the_oldest_one_request_key_goes_first() {
        let mut table = table_with(&[5, 1, 3, 1]);
        assert!(table.evict_one(1));
        assert_eq!(held(&table), [0, 2, 3]);
        assert!(table.evict_one(1));
        assert_eq!(held(&table), [0, 2]);
        // Only repeat users are left: the least used of them goes.
        assert!(table.evict_one(1));
        assert_eq!(held(&table), [0]);
        assert!(table.evict_one(1));
        assert!(!table.evict_one(1), "nothing left to evict");
    }

    #[test]
    fn evictions_at_the_cap_do_not_grow_the_table() {
        let mut table = Table::default();
        for i in 0..1_500u64 {
            table.insert(&i.to_string(), i, Counter::first(1, 1, 100).0, true);
        }
        let buckets = table.entries.num_buckets();
        for i in 1_500..100_000u64 {
            assert!(table.evict_one(1));
            table.insert(&i.to_string(), i, Counter::first(1, 1, 100).0, true);
        }
        assert_eq!(table.len(), 1_500);
        assert_eq!(table.entries.num_buckets(), buckets);
    }

    #[test]
    fn repeat_users_passed_over_keep_their_turn_behind_newer_keys() {
        let mut table = table_with(&[4, 4]);
        let (counter, _) = Counter::first(1, 1, 100);
        table.insert("newcomer", 9, counter, true);
        assert!(table.evict_one(1));
        assert_eq!(held(&table), [0, 1]);
        assert_eq!(table.arrivals, [0, 1]);
    }
}
