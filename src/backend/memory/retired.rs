//! Tables of past windows, dropped a few entries at a time by the checks that follow.
//!
//! Why: dropping a table of a million counters (and their long keys) at once took the
//! first request of a new window hundreds of milliseconds. A retired table is instead
//! emptied [`PER_CHECK`] entries per check that reaches its shard (unless another thread
//! is dropping entries of the same shard at that moment). A check adds at most one key,
//! so reclaiming outpaces growth, and a busy shard is rid of its old keys within about
//! `keys / PER_CHECK` checks. A shard that no request reaches keeps its old table until
//! one does; under a key cap, old keys count against the cap and go first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use hashbrown::hash_table::{HashTable, IntoIter};

/// Entries a check drops when old ones are waiting.
pub(super) const PER_CHECK: usize = 16;

/// The retired tables of one shard.
#[derive(Debug)]
pub(super) struct Retired<T> {
    /// Entries not yet dropped: read on every check, so that a shard with nothing to
    /// reclaim pays one load.
    pending: AtomicUsize,
    tables: Mutex<Vec<IntoIter<T>>>,
}

impl<T> Default for Retired<T> {
    fn default() -> Self {
        Self {
            pending: AtomicUsize::new(0),
            tables: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Retired<T> {
    /// Takes `table` to be dropped bit by bit.
    pub(super) fn add(&self, table: HashTable<T>) {
        if table.is_empty() {
            return; // its buffer, if any, goes now: no entries to drop one by one
        }
        let entries = table.len();
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        tables.push(table.into_iter());
        self.pending.fetch_add(entries, Ordering::Release);
    }

    /// Entries waiting to be dropped.
    pub(super) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Drops up to [`PER_CHECK`] entries, unless another thread is at it already.
    pub(super) fn reclaim_some(&self) {
        if self.pending() == 0 {
            return;
        }
        if let Ok(mut tables) = self.tables.try_lock() {
            self.drop_entries(&mut tables, PER_CHECK);
        }
    }

    /// Drops up to `n` entries, waiting for the lock if need be; how many it dropped.
    pub(super) fn reclaim(&self, n: usize) -> usize {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        self.drop_entries(&mut tables, n)
    }

    fn drop_entries(&self, tables: &mut Vec<IntoIter<T>>, n: usize) -> usize {
        let mut dropped = 0;
        while dropped < n {
            let Some(table) = tables.last_mut() else {
                break;
            };
            match table.next() {
                Some(entry) => {
                    drop(entry);
                    dropped += 1;
                }
                // Emptied: its buffer goes back in one free.
                None => drop(tables.pop()),
            }
        }
        if tables.last().is_some_and(|t| t.len() == 0) {
            tables.pop();
        }
        self.pending.fetch_sub(dropped, Ordering::Release);
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: u64) -> HashTable<Box<str>> {
        let mut table = HashTable::new();
        for i in 0..n {
            table.insert_unique(i, i.to_string().into(), |_| 0);
        }
        table
    }

    #[test]
    fn a_retired_table_is_dropped_a_few_entries_per_check() {
        let retired = Retired::default();
        retired.add(table(40));
        retired.add(HashTable::new());
        assert_eq!(retired.pending(), 40);
        retired.reclaim_some();
        assert_eq!(retired.pending(), 40 - PER_CHECK);
        retired.add(table(10));
        assert_eq!(retired.pending(), 50 - PER_CHECK);
        for _ in 0..10 {
            retired.reclaim_some();
        }
        assert_eq!(retired.pending(), 0);
        assert!(retired.tables.lock().unwrap().is_empty(), "buffers freed");
        assert_eq!(retired.reclaim(5), 0);
    }
}
