//! The cap on tracked keys, split evenly over the shards, and what reaching it records.

use std::sync::atomic::{AtomicU64, Ordering};

/// Keys a [`MemoryBackend`](super::MemoryBackend) tracks by default, at most: about
/// 100 MB with short keys.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

#[derive(Debug)]
pub(super) struct Capacity {
    max_keys: usize,
    /// Each shard's share of `max_keys`; `usize::MAX` when there is no cap.
    pub(super) per_shard: usize,
    /// Units one request counts: a key at or under it has been seen once.
    pub(super) one_request: u32,
    evicted: AtomicU64,
    /// The newest window in which reaching the cap was logged.
    logged_window: AtomicU64,
}

impl Capacity {
    pub(super) fn new(max_keys: usize, shards: usize, one_request: u32) -> Self {
        let max_keys = max_keys.max(1);
        let per_shard = match max_keys {
            usize::MAX => usize::MAX,
            max => (max / shards).max(1),
        };
        Self {
            max_keys,
            per_shard,
            one_request,
            evicted: AtomicU64::new(0),
            logged_window: AtomicU64::new(u64::MAX),
        }
    }

    pub(super) fn is_capped(&self) -> bool {
        self.per_shard != usize::MAX
    }

    /// Keys evicted so far.
    pub(super) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Records an eviction in `window`; the first of each window is logged.
    pub(super) fn record_eviction(&self, window: u64) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
        let logged = self.logged_window.load(Ordering::Relaxed);
        if logged == window || (logged != u64::MAX && logged > window) {
            return;
        }
        if self
            .logged_window
            .compare_exchange(logged, window, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                max_keys = self.max_keys,
                evicted_total = self.evicted(),
                "ringlimit: tracked keys reached the cap; evicting the least used keys \
                 (one-request keys first) for the rest of this window"
            );
        }
    }
}
