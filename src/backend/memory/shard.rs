//! One shard of the in-memory store: a table of counters behind its own lock. The first
//! check of a new window swaps in an empty table and retires the old one, which the
//! checks that follow drop a few entries at a time (`retired`): no check does work that
//! grows with the number of keys (under a cap, rebuilding a full table is bounded by the
//! shard's share, at most 65,536 keys up to a billion, and comes once per eighth of it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;

use crossbeam_utils::sync::ShardedLock;
use hashbrown::hash_table::HashTable;

use super::capacity::Capacity;
use super::counter::{Counter, Outcome};
use super::retired::Retired;
use super::state_word::Counting;
use super::table::{Entry, Eviction, Table};
use crate::algorithm::Verdict;

/// Aligned to a cache line so that neighbouring shards' locks do not share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct Shard {
    /// Readers lock one of several cache lines, chosen by thread, so that threads reading
    /// the same shard (one hot key) do not pass a lock word back and forth.
    table: ShardedLock<Table>,
    /// The window the table holds counters of.
    window: AtomicU64,
    /// Tables of past windows, still being dropped.
    retired: Retired<Entry>,
    /// For the algorithms whose state outlives a window (sliding window, GCRA): the
    /// table of the last window before this one, and that window, kept whole so that a
    /// key's first check in a window carries its state over. Empty for fixed windows.
    previous: ShardedLock<(u64, HashTable<Entry>)>,
}

/// One check as a shard takes it: `cost` units for `key` (of `hash`) in `window`, under
/// `limit`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ask<'k> {
    pub(super) key: &'k str,
    pub(super) hash: u64,
    pub(super) window: u64,
    pub(super) cost: u32,
    pub(super) limit: u32,
}

impl Shard {
    /// Counts the check. A key that already has a counter takes only the shared lock and
    /// allocates nothing.
    pub(super) fn check(&self, ask: Ask<'_>, capacity: &Capacity) -> Outcome {
        let outcome = self.check_known(ask);
        let outcome = outcome.unwrap_or_else(|| self.check_new(ask, capacity));
        self.retired.reclaim_some();
        outcome
    }

    /// The check of a key that has a counter in this window already, under the shared lock.
    fn check_known(&self, ask: Ask<'_>) -> Option<Outcome> {
        // The window mark is read under the lock: the lock's cache line is already this
        // core's then, so a contended key pays no extra transfer for it.
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        if self.window.load(Ordering::Acquire) < ask.window {
            return None;
        }
        let entry = table.find(ask.key, ask.hash)?;
        Some(entry.counter.check(ask.window, ask.cost, ask.limit))
    }

    /// The check of a key seen first in this window (or of a window not started here yet).
    fn check_new(&self, ask: Ask<'_>, capacity: &Capacity) -> Outcome {
        if self.window.load(Ordering::Acquire) < ask.window {
            self.start_window(ask.window, false);
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = table.find(ask.key, ask.hash) {
            return entry.counter.check(ask.window, ask.cost, ask.limit);
        }
        // A reader whose clock lags one that already started a newer window counts in
        // the newer one, so a window left behind can never be counted in again.
        let window = ask.window.max(self.window.load(Ordering::Acquire));
        let capped = capacity.is_capped();
        if capped {
            self.make_room(&mut table, window, capacity, Counter::used);
        }
        let (counter, outcome) = Counter::first(window, ask.cost, ask.limit);
        table.insert(ask.key, ask.hash, counter, capped);
        outcome
    }

    /// A sliding-window or GCRA check (`counting`) of `ask`'s key in `ask.window`: as
    /// `check`, with the state of a key's first check in a window carried over from the
    /// window before.
    /// Also says which generation (window index) the check counted in, for a refund.
    #[inline]
    pub(super) fn check_carried(
        &self,
        ask: Ask<'_>,
        counting: Counting,
        capacity: &Capacity,
    ) -> (Verdict, u64) {
        let checked = self.carried_known(ask, counting);
        let checked = checked.unwrap_or_else(|| self.carried_new(ask, counting, capacity));
        self.retired.reclaim_some();
        checked
    }

    #[inline]
    fn carried_known(&self, ask: Ask<'_>, counting: Counting) -> Option<(Verdict, u64)> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let generation = self.window.load(Ordering::Acquire);
        if generation < ask.window {
            return None;
        }
        let entry = table.find(ask.key, ask.hash)?;
        let counting = counting.in_generation(generation);
        Some((counting.check(entry.counter.word(), generation), generation))
    }

    fn carried_new(&self, ask: Ask<'_>, counting: Counting, capacity: &Capacity) -> (Verdict, u64) {
        if self.window.load(Ordering::Acquire) < ask.window {
            self.start_window(ask.window, true);
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let generation = self.window.load(Ordering::Acquire);
        let counting = counting.in_generation(generation);
        if let Some(entry) = table.find(ask.key, ask.hash) {
            return (counting.check(entry.counter.word(), generation), generation);
        }
        // Taken out of the window before: a key that comes back holds one entry, not two.
        let carried = {
            let mut previous = self
                .previous
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let window = previous.0;
            previous
                .1
                .find_entry(ask.hash, is(ask.key, ask.hash))
                .ok()
                .map(|entry| {
                    let word = entry.get().counter.word().load(Ordering::Acquire);
                    entry.remove();
                    (word, window)
                })
        };
        let capped = capacity.is_capped();
        if capped {
            let units = |counter: &Counter| counting.units_held(counter.word(), generation);
            self.make_room(&mut table, generation, capacity, units);
        }
        let (verdict, word) = counting.first(carried, generation);
        table.insert(ask.key, ask.hash, Counter::from_word(word), capped);
        (verdict, generation)
    }

    /// Takes back `counting.cost` units that a check of `key` counted in window (or
    /// generation) `counted`, wherever the key's state is now: in this table, carried
    /// over into a newer generation, or still in the table kept from the one before.
    pub(super) fn refund(&self, key: &str, hash: u64, counted: u64, counting: Counting) {
        let fixed = counting.algorithm == crate::algorithm::Algorithm::FixedWindow;
        // Held while the table before is searched too: a check carrying the key over
        // (which takes both, this one first) cannot move it out of sight in between.
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let generation = self.window.load(Ordering::Acquire);
        if let Some(entry) = table.find(key, hash) {
            match fixed {
                true => entry.counter.refund(counted, counting.cost),
                false => counting.in_generation(generation).refund(
                    entry.counter.word(),
                    generation,
                    counted,
                ),
            }
            return;
        }
        if !fixed {
            let previous = self.previous.read().unwrap_or_else(PoisonError::into_inner);
            let (before, entries) = &*previous;
            let found = entries.find(hash, is(key, hash));
            if let (true, Some(entry)) = (*before == counted, found) {
                counting.refund(entry.counter.word(), counted, counted);
            }
        }
    }

    /// Below the shard's share of the cap before one more key goes in: old windows' keys
    /// go first, then one of this window's (see `table`). The table of the window before,
    /// kept whole for the sliding window and GCRA, is outside the cap: it holds at most the
    /// keys of the window it was (the cap's worth), and keys move out of it as they come
    /// back.
    fn make_room(
        &self,
        table: &mut Table,
        window: u64,
        capacity: &Capacity,
        units: impl Fn(&Counter) -> u32,
    ) {
        let held = table.len() + self.retired.pending();
        if held < capacity.per_shard {
            return;
        }
        let excess = held + 1 - capacity.per_shard;
        self.retired.reclaim(excess);
        // Others may have dropped old keys meanwhile (without this lock): count again.
        let still_full = table.len() + self.retired.pending() >= capacity.per_shard;
        if still_full && table.evict_one(capacity.one_request, units) == Eviction::Evicted {
            capacity.record_eviction(window);
        }
    }

    /// Swaps in an empty table for `window` and retires the old one, unless another
    /// thread has already started this window or a newer one. With `carry`, the old table
    /// stays readable as the previous one if it is of the window just before (the one
    /// kept before it is retired instead); a table older than that carries nothing over.
    fn start_window(&self, window: u64, carry: bool) {
        let (old, older) = {
            let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
            let started = self.window.load(Ordering::Acquire);
            if started >= window {
                return;
            }
            self.window.store(window, Ordering::Release);
            let old = table.take();
            if !carry {
                (old, HashTable::new())
            } else {
                let mut previous = self
                    .previous
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                let older = std::mem::take(&mut previous.1);
                if started + 1 == window {
                    *previous = (started, old);
                    (older, HashTable::new())
                } else {
                    (old, older)
                }
            }
        };
        self.retired.add(old);
        self.retired.add(older);
    }

    /// Entries of the window before, kept for carrying.
    fn previous_len(&self) -> usize {
        let previous = self.previous.read().unwrap_or_else(PoisonError::into_inner);
        previous.1.len()
    }

    /// Units `key` has used in `window`, without counting anything.
    pub(super) fn used(&self, key: &str, hash: u64, window: u64) -> u32 {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table
            .find(key, hash)
            .map_or(0, |e| e.counter.used_in(window))
    }

    /// The units `key` holds now (in window `window`) under a sliding window or GCRA
    /// (`counting`), counted in this window or carried from the one before.
    pub(super) fn held(&self, key: &str, hash: u64, window: u64, counting: Counting) -> u32 {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let generation = self.window.load(Ordering::Acquire);
        let word = |entry: &Entry| entry.counter.word().load(Ordering::Acquire);
        let found = table.find(key, hash).map(word);
        let carried = match (found, generation >= window) {
            (Some(found), true) => {
                let counting = counting.in_generation(generation);
                return counting.units_held(&AtomicU64::new(found), generation);
            }
            // The table is of an earlier window than now: what its entry carries over.
            (found, false) => found.map(|found| (found, generation)),
            (None, true) => {
                let previous = self.previous.read().unwrap_or_else(PoisonError::into_inner);
                let (before, entries) = &*previous;
                entries
                    .find(hash, is(key, hash))
                    .map(|entry| (word(entry), *before))
            }
        };
        let now = window.max(generation);
        carried.map_or(0, |carried| {
            let (_, stored) = counting.first(Some(carried), now);
            counting.units_held(&AtomicU64::new(stored), now)
        })
    }

    /// Takes `key`'s counter out, for its next owner: its word and the generation
    /// (window) of the table it was in, this window's or the one kept from before.
    #[cfg(feature = "cluster")]
    pub(super) fn take(&self, key: &str, hash: u64) -> Option<(u64, u64)> {
        let word = |entry: Entry| entry.counter.word().load(Ordering::Acquire);
        // Held while the table before is searched too, as in `refund`.
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = table.remove_key(key, hash) {
            return Some((word(entry), self.window.load(Ordering::Acquire)));
        }
        let mut previous = self
            .previous
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = previous.0;
        let found = previous.1.find_entry(hash, is(key, hash)).ok();
        found.map(|entry| (word(entry.remove().0), before))
    }

    /// `f` of `key`'s counter in this window's table and the table's window, if it has
    /// one there.
    #[cfg(feature = "cluster")]
    pub(super) fn with_entry<R>(
        &self,
        key: &str,
        hash: u64,
        f: impl FnOnce(&Counter, u64) -> R,
    ) -> Option<R> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let generation = self.window.load(Ordering::Acquire);
        table.find(key, hash).map(|e| f(&e.counter, generation))
    }

    /// Whether `key` has a counter here, in this window's table or the one kept from
    /// before.
    #[cfg(feature = "cluster")]
    pub(super) fn holds(&self, key: &str, hash: u64) -> bool {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        if table.find(key, hash).is_some() {
            return true;
        }
        drop(table);
        let previous = self.previous.read().unwrap_or_else(PoisonError::into_inner);
        previous.1.find(hash, is(key, hash)).is_some()
    }

    /// Adds the keys held here (this window's, and the window's before kept for
    /// carrying) to `keys`.
    #[cfg(feature = "cluster")]
    pub(super) fn keys_into(&self, keys: &mut super::HeldKeys) {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        keys.extend(table.iter().map(|e| Box::from(e.key.as_str())));
        drop(table);
        let previous = self.previous.read().unwrap_or_else(PoisonError::into_inner);
        keys.extend(previous.1.iter().map(|e| Box::from(e.key.as_str())));
    }

    /// Counters held: this window's, and past windows' not yet dropped.
    pub(super) fn len(&self) -> usize {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.len() + self.retired.pending() + self.previous_len()
    }
}

/// Whether an entry of the table kept from the window before is `key`'s (of `hash`).
fn is(key: &str, hash: u64) -> impl Fn(&Entry) -> bool + '_ {
    move |entry| entry.hash == hash && entry.key.is(key)
}
