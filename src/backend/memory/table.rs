//! The counters of one shard for the current window, and whom to evict when the shard is
//! at its share of the key cap.
//!
//! Keys wait in two queues, as in a segmented LRU: new keys in `newcomers`, in the order
//! they arrived; keys found counted more than once in `returning`. The oldest newcomer
//! still counted for one request at most is evicted first, so a flood of one-request ids
//! evicts its own ids. A newcomer found counted more than once moves to `returning`
//! instead (at most [`MOVES_PER_EVICTION`] per call, so no call does work that grows
//! with the keys). Only when no newcomer is left does a
//! returning key go: the least used of the [`EXAMINED_PER_EVICTION`] oldest. So what the
//! cap costs falls on the keys with the least use, and a user who comes back keeps an
//! exact count while any one-request key is left to evict.

use std::collections::VecDeque;

use hashbrown::hash_table::HashTable;

use super::counter::Counter;
use super::stored_key::StoredKey;

/// Newcomers moved to `returning` by one eviction, at most.
const MOVES_PER_EVICTION: usize = 32;
/// Returning keys examined for one eviction, at most.
const EXAMINED_PER_EVICTION: usize = 8;

/// What one eviction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Eviction {
    /// A key went.
    Evicted,
    /// Newcomers that came back were moved aside and none went: the shard holds one key
    /// more than its share from now on. This happens once per [`MOVES_PER_EVICTION`]
    /// keys moved while one more arrives, so a shard holds at most 1/31 more than its
    /// share.
    Moved,
    /// The table is empty.
    Nothing,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: StoredKey,
    pub(super) hash: u64,
    pub(super) counter: Counter,
}

#[derive(Debug, Default)]
pub(super) struct Table {
    entries: HashTable<Entry>,
    /// The hashes of this window's new keys, oldest first (kept only under a cap).
    newcomers: VecDeque<u64>,
    /// The hashes of keys found counted more than once, oldest first.
    returning: VecDeque<u64>,
}

impl Table {
    pub(super) fn find(&self, key: &str, hash: u64) -> Option<&Entry> {
        self.entries.find(hash, |e| e.hash == hash && e.key.is(key))
    }

    /// Takes `key`'s entry out, if it has one.
    #[cfg(feature = "cluster")]
    pub(super) fn remove_key(&mut self, key: &str, hash: u64) -> Option<Entry> {
        let found = self
            .entries
            .find_entry(hash, |e| e.hash == hash && e.key.is(key));
        found.ok().map(|entry| entry.remove().0)
    }

    /// The entries held.
    #[cfg(feature = "cluster")]
    pub(super) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
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
            self.newcomers.push_back(hash);
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
        self.newcomers = VecDeque::new();
        self.returning = VecDeque::new();
        std::mem::take(&mut self.entries)
    }

    /// Evicts one key, chosen as the module docs say; `one_request` is the units one
    /// request counts, and `units` reads the units a counter holds.
    pub(super) fn evict_one(
        &mut self,
        one_request: u32,
        units: impl Fn(&Counter) -> u32,
    ) -> Eviction {
        let mut moved = 0;
        while let Some(hash) = self.newcomers.pop_front() {
            match self.entries.find_entry(hash, |e| e.hash == hash) {
                Ok(entry) if units(&entry.get().counter) <= one_request => {
                    entry.remove();
                    return Eviction::Evicted;
                }
                Ok(_) => self.returning.push_back(hash),
                Err(_) => {} // no longer held
            }
            moved += 1;
            if moved == MOVES_PER_EVICTION {
                return Eviction::Moved;
            }
        }
        self.evict_least_used_returning(units)
    }

    /// Evicts the least used of the oldest returning keys; the others keep their place.
    fn evict_least_used_returning(&mut self, units: impl Fn(&Counter) -> u32) -> Eviction {
        let mut examined = [0u64; EXAMINED_PER_EVICTION];
        let mut held = 0;
        // The least used key examined, and its place in `examined`.
        let mut least: Option<(u32, usize)> = None;
        while held < EXAMINED_PER_EVICTION {
            let Some(hash) = self.returning.pop_front() else {
                break;
            };
            let Some(used) = self.used_by(hash, &units) else {
                continue; // no longer held
            };
            if least.is_none_or(|(fewest, _)| used < fewest) {
                least = Some((used, held));
            }
            examined[held] = hash;
            held += 1;
        }
        let Some((_, victim)) = least else {
            return Eviction::Nothing;
        };
        self.remove(examined[victim]);
        for (i, &hash) in examined[..held].iter().enumerate().rev() {
            if i != victim {
                self.returning.push_front(hash);
            }
        }
        Eviction::Evicted
    }

    fn used_by(&self, hash: u64, units: impl Fn(&Counter) -> u32) -> Option<u32> {
        let entry = self.entries.find(hash, |e| e.hash == hash)?;
        Some(units(&entry.counter))
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
    fn the_oldest_one_request_key_goes_first_then_the_least_used() {
        let mut table = table_with(&[5, 1, 3, 1]);
        assert_eq!(table.evict_one(1, Counter::used), Eviction::Evicted);
        assert_eq!(held(&table), [0, 2, 3]);
        assert_eq!(table.evict_one(1, Counter::used), Eviction::Evicted);
        assert_eq!(held(&table), [0, 2]);
        // Only returning users are left: the least used of them goes.
        assert_eq!(table.evict_one(1, Counter::used), Eviction::Evicted);
        assert_eq!(held(&table), [0]);
        assert_eq!(table.evict_one(1, Counter::used), Eviction::Evicted);
        assert_eq!(table.evict_one(1, Counter::used), Eviction::Nothing);
    }

    // Regression: with only the 8 oldest keys examined, a flood that followed returning
    // users evicted one of them per new key until the flood's own ids came up.
    #[test]
    fn returning_users_who_came_first_outlast_a_flood_that_follows() {
        let mut table = table_with(&[2; 100]);
        let mut moved = 0;
        for i in 100..10_000u64 {
            match table.evict_one(1, Counter::used) {
                Eviction::Evicted => {}
                Eviction::Moved => moved += 1,
                Eviction::Nothing => unreachable!("the table is full"),
            }
            table.insert(&i.to_string(), i, Counter::first(1, 1, 100).0, true);
        }
        assert_eq!(moved, 100 / MOVES_PER_EVICTION);
        assert_eq!(table.len(), 100 + moved, "over the share by one per move");
        let returning = table.entries.iter().filter(|e| e.counter.used() == 2);
        assert_eq!(returning.count(), 100, "no returning user was evicted");
    }

    #[test]
    fn evictions_at_the_cap_do_not_grow_the_table() {
        let mut table = Table::default();
        for i in 0..1_500u64 {
            table.insert(&i.to_string(), i, Counter::first(1, 1, 100).0, true);
        }
        let buckets = table.entries.num_buckets();
        for i in 1_500..100_000u64 {
            assert_eq!(table.evict_one(1, Counter::used), Eviction::Evicted);
            table.insert(&i.to_string(), i, Counter::first(1, 1, 100).0, true);
        }
        assert_eq!(table.len(), 1_500);
        assert_eq!(table.entries.num_buckets(), buckets);
    }

    #[test]
    fn the_least_used_returning_key_goes_and_the_rest_keep_their_place() {
        let mut table = table_with(&[4, 3, 6]);
        // All three move to `returning`; then the least used of them goes.
        assert_eq!(table.evict_one(1, Counter::used), Eviction::Evicted);
        assert_eq!(held(&table), [0, 2]);
        assert_eq!(table.returning, [0, 2]);
    }
}
