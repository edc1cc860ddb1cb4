//! One key's fixed-window counter: a window index and a count packed in one atomic word,
//! so check-and-increment is a single compare-and-swap.

use std::sync::atomic::{AtomicU64, Ordering};

/// The low 32 bits of the window index and the units counted in it.
///
/// Window indexes are compared with wrapping arithmetic: a counter is never older than
/// 2^31 windows because a shard swaps in a new table at each new window.
#[derive(Debug)]
pub(super) struct Counter(AtomicU64);

/// What one check did to a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Outcome {
    pub(super) allowed: bool,
    /// Units counted in `window` after the check.
    pub(super) used: u32,
    /// The window the request was counted in: the caller's, or a newer one another
    /// thread already moved the counter to.
    pub(super) window: u64,
}

impl Counter {
    /// A counter holding `cost` units in `window` (or none, if `cost` exceeds `limit`).
    pub(super) fn first(window: u64, cost: u32, limit: u32) -> (Self, Outcome) {
        let allowed = cost <= limit;
        let used = if allowed { cost } else { 0 };
        let counter = Self(AtomicU64::new(pack(window, used)));
        (
            counter,
            Outcome {
                allowed,
                used,
                window,
            },
        )
    }

    /// Counts `cost` units in `window` if they fit under `limit`.
    pub(super) fn check(&self, window: u64, cost: u32, limit: u32) -> Outcome {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            let (stored, count) = unpack(current);
            let ahead = stored.wrapping_sub(window as u32) as i32;
            let (window, used) = match ahead {
                0 => (window, count),
                // Another thread read the clock later and moved on: count in its window,
                // never in one that has been left behind.
                ahead if ahead > 0 => (window + ahead as u64, count),
                _ => (window, 0),
            };
            let after = u64::from(used) + u64::from(cost);
            if after > u64::from(limit) {
                return Outcome {
                    allowed: false,
                    used,
                    window,
                };
            }
            let next = pack(window, after as u32);
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Outcome {
                        allowed: true,
                        used: after as u32,
                        window,
                    }
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes back `cost` units counted in `window`, if the counter is still of it.
    pub(super) fn refund(&self, window: u64, cost: u32) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let (stored, count) = unpack(current);
                (stored == window as u32).then(|| pack(window, count.saturating_sub(cost)))
            });
    }

    /// Units counted in `window` (0 if the counter is of another window).
    pub(super) fn used_in(&self, window: u64) -> u32 {
        let (stored, count) = unpack(self.0.load(Ordering::Acquire));
        if stored == window as u32 {
            count
        } else {
            0
        }
    }

    /// A counter of another algorithm's word (see `state_word`).
    pub(super) fn from_word(word: u64) -> Self {
        Self(AtomicU64::new(word))
    }

    /// The word itself, for the algorithms that keep their own state in it.
    pub(super) fn word(&self) -> &AtomicU64 {
        &self.0
    }

    /// Units counted in the counter's own window.
    pub(super) fn used(&self) -> u32 {
        unpack(self.0.load(Ordering::Acquire)).1
    }
}

/// The state a counter's `word` stands for, in a table of window `generation`: the
/// window is the table's, or a newer one a later reader moved the counter to.
#[cfg(feature = "cluster")]
pub(super) fn fixed_state(word: u64, generation: u64) -> crate::algorithm::State {
    let (stored, used) = unpack(word);
    let ahead = i64::from(stored.wrapping_sub(generation as u32) as i32);
    crate::algorithm::State::Fixed {
        window: generation.wrapping_add_signed(ahead),
        used,
    }
}

#[cfg(feature = "cluster")]
impl Counter {
    /// Adds the units `merge` makes of this counter's state (in a table of window
    /// `generation`), as one atomic update.
    pub(super) fn merge(
        &self,
        generation: u64,
        merge: impl Fn(crate::algorithm::State) -> Option<crate::algorithm::State>,
    ) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                match merge(fixed_state(word, generation))? {
                    crate::algorithm::State::Fixed { window, used } => Some(pack(window, used)),
                    _ => None,
                }
            });
    }
}

fn pack(window: u64, count: u32) -> u64 {
    (u64::from(window as u32) << 32) | u64::from(count)
}

fn unpack(state: u64) -> (u32, u32) {
    ((state >> 32) as u32, state as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_then_denies_without_counting() {
        let (counter, first) = Counter::first(7, 1, 3);
        assert!(first.allowed);
        assert_eq!(counter.check(7, 1, 3).used, 2);
        assert_eq!(counter.check(7, 1, 3).used, 3);
        let denied = counter.check(7, 1, 3);
        assert!(!denied.allowed);
        assert_eq!(denied.used, 3);
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let (counter, _) = Counter::first(7, 3, 3);
        assert!(!counter.check(7, 1, 3).allowed);
        let next = counter.check(8, 1, 3);
        assert_eq!((next.allowed, next.used, next.window), (true, 1, 8));
        assert_eq!(counter.used(), 1);
    }

    #[test]
    fn a_late_reader_counts_in_the_newer_window() {
        let (counter, _) = Counter::first(8, 1, 3);
        let late = counter.check(7, 1, 3);
        assert_eq!((late.allowed, late.used, late.window), (true, 2, 8));
    }

    #[test]
    fn a_cost_above_the_limit_is_denied_and_counts_nothing() {
        let (counter, first) = Counter::first(1, 5, 3);
        assert!(!first.allowed);
        assert_eq!(counter.check(1, 3, 3).used, 3);
    }

    #[test]
    fn window_indexes_wrap() {
        let w = u64::from(u32::MAX);
        let (counter, _) = Counter::first(w, 1, 3);
        let next = counter.check(w + 1, 1, 3);
        assert_eq!((next.used, next.window), (1, w + 1));
        assert_eq!(counter.used_in(w + 1), 1);
    }
}
