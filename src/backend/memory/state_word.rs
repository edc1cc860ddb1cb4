//! The sliding window and GCRA in one atomic word per key, checked by compare-and-swap as
//! fixed windows are (`counter`).
//!
//! A shard's table holds the counters of one window, its generation, so a word need not
//! say which window it is of:
//! - sliding window: the units of the current window (high half) and of the one before
//!   (low half);
//! - GCRA: the bucket's level, in units × window (ms), as seen from the generation's start
//!   (`level + ms since the start × limit`): below 2 × limit × window ≤ 2^54.
//!
//! A key's first check in a generation carries its word over from the table before.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::algorithm::{Algorithm, Rate, State, Verdict};

/// What a general check needs besides the key.
#[derive(Clone, Copy, Debug)]
pub(super) struct Counting {
    pub(super) algorithm: Algorithm,
    pub(super) rate: Rate,
    pub(super) now_ms: u64,
    pub(super) cost: u32,
}

impl Counting {
    /// The state `word` stands for in generation `generation` (a window index), read at
    /// this check's time.
    #[inline]
    pub(super) fn state(&self, word: u64, generation: u64) -> State {
        let start = generation * self.rate.window_ms;
        match self.algorithm {
            Algorithm::SlidingWindow => State::Sliding {
                window: generation,
                current: (word >> 32) as u32,
                previous: word as u32,
            },
            Algorithm::Gcra => {
                // Saturating: a word carried from long ago has emptied whatever it held.
                let since = self.now_ms.saturating_sub(start);
                State::Gcra {
                    at_ms: self.now_ms.max(start),
                    level: word.saturating_sub(since.saturating_mul(u64::from(self.rate.limit))),
                }
            }
            Algorithm::FixedWindow => unreachable!("fixed windows have counters of their own"),
        }
    }

    /// The word of `state` in generation `generation`.
    #[inline]
    fn word(&self, state: State, generation: u64) -> u64 {
        let start = generation * self.rate.window_ms;
        match state {
            State::Sliding {
                current, previous, ..
            } => (u64::from(current) << 32) | u64::from(previous),
            State::Gcra { at_ms, level } => level + (at_ms - start) * u64::from(self.rate.limit),
            State::Fixed { .. } => unreachable!("fixed windows have counters of their own"),
        }
    }

    /// Replaces the state of `word` (of generation `generation`) by what `merge` makes of
    /// it, as one atomic update.
    #[cfg(feature = "cluster")]
    pub(super) fn merge(
        &self,
        word: &AtomicU64,
        generation: u64,
        merge: impl Fn(State) -> Option<State>,
    ) {
        let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            let merged = merge(self.state(current, generation))?;
            Some(self.word(merged, generation))
        });
    }

    /// The units `word` holds now, for eviction at the key cap: a key that holds one
    /// request's worth at most goes first (under GCRA, what its bucket still holds: a
    /// drained bucket is no state worth keeping).
    pub(super) fn units_held(&self, word: &AtomicU64, generation: u64) -> u32 {
        match self.state(word.load(Ordering::Relaxed), generation) {
            State::Sliding {
                current, previous, ..
            } => current.saturating_add(previous),
            State::Gcra { level, .. } => {
                u32::try_from(level.div_ceil(self.rate.window_ms)).unwrap_or(u32::MAX)
            }
            State::Fixed { used, .. } => used,
        }
    }

    /// This check's time, never before `generation` started: a reader whose clock lags
    /// one that already moved the shard on counts in the newer window.
    #[inline]
    pub(super) fn in_generation(mut self, generation: u64) -> Self {
        self.now_ms = self.now_ms.max(generation * self.rate.window_ms);
        self
    }

    /// Checks against the word of a key already in generation `generation`.
    #[inline]
    pub(super) fn check(&self, word: &AtomicU64, generation: u64) -> Verdict {
        let mut current = word.load(Ordering::Acquire);
        loop {
            let state = self.state(current, generation);
            let (verdict, next) =
                self.algorithm
                    .check(self.rate, Some(state), self.now_ms, self.cost);
            let Some(next) = next else {
                return verdict;
            };
            let next = self.word(next, generation);
            match word.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return verdict,
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes back `self.cost` units counted in generation `counted` from `word`, of
    /// generation `generation` (the same, or a later one the key was carried into): the
    /// sliding window's count of that window goes down by them (nothing is left of it two
    /// windows on), or the bucket's level does (never below empty).
    pub(super) fn refund(&self, word: &AtomicU64, generation: u64, counted: u64) {
        let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            let state = match self.state(current, generation) {
                State::Sliding {
                    window,
                    current,
                    previous,
                } if generation == counted => State::Sliding {
                    window,
                    current: current.saturating_sub(self.cost),
                    previous,
                },
                State::Sliding {
                    window,
                    current,
                    previous,
                } if generation == counted + 1 => State::Sliding {
                    window,
                    current,
                    previous: previous.saturating_sub(self.cost),
                },
                State::Sliding { .. } => return None,
                // Two generations on, the charge has drained whole: nothing of it is left
                // to take back, and taking it would take others' units.
                State::Gcra { .. } if generation > counted + 1 => return None,
                State::Gcra { at_ms, level } => State::Gcra {
                    at_ms,
                    level: level.saturating_sub(u64::from(self.cost) * self.rate.window_ms),
                },
                State::Fixed { .. } => return None,
            };
            Some(self.word(state, generation))
        });
    }

    /// The first check of a key in generation `generation`, from its word in an earlier
    /// generation (`carried`: the word and its generation, if the key was in the table
    /// kept from before): the verdict, and the word to store.
    pub(super) fn first(&self, carried: Option<(u64, u64)>, generation: u64) -> (Verdict, u64) {
        let state = carried.map(|(word, before)| self.state(word, before));
        let (verdict, next) = self
            .algorithm
            .check(self.rate, state, self.now_ms, self.cost);
        // A denial changes nothing: what was carried over is kept, as the algorithm sees
        // it now (a check of nothing rolls it into this generation by its own rules).
        let kept = || {
            let (_, now) = self.algorithm.check(self.rate, state, self.now_ms, 0);
            now
        };
        let stored = next
            .or_else(kept)
            .map_or(0, |state| self.word(state, generation));
        (verdict, stored)
    }
}
