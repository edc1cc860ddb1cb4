//! The sliding window counter: the previous window's count, weighted by how much of it
//! still overlaps the last `window`, plus the current window's count.
//!
//! The weight is in millionths, rounded down, and so is the weighted count: with windows
//! of at most 2^32 ms and counts below 2^32, no product reaches 2^53.

use super::{Checked, Rate, State, Verdict};

/// One, in the weight's unit.
const WHOLE: u64 = 1_000_000;

/// The counts that matter at one moment: this window's, and the previous one's.
#[derive(Clone, Copy)]
struct Counts {
    current: u64,
    previous: u64,
}

#[inline]
pub(super) fn check(rate: Rate, state: Option<State>, now_ms: u64, cost: u32) -> Checked {
    // A clock behind the state's counts in the state's window, never afresh earlier.
    let now_ms = match state {
        Some(State::Sliding { window, .. }) => now_ms.max(window.saturating_mul(rate.window_ms)),
        _ => now_ms,
    };
    // The state's own window, when the time is still in it, without a division.
    let (window, into) = match state {
        Some(State::Sliding { window, .. })
            if now_ms.wrapping_sub(window * rate.window_ms) < rate.window_ms =>
        {
            (window, now_ms - window * rate.window_ms)
        }
        _ => (now_ms / rate.window_ms, now_ms % rate.window_ms),
    };
    let counts = match state {
        Some(State::Sliding {
            window: w,
            current,
            previous,
        }) if w == window => Counts {
            current: current.into(),
            previous: previous.into(),
        },
        Some(State::Sliding {
            window: w, current, ..
        }) if w + 1 == window => Counts {
            current: 0,
            previous: current.into(),
        },
        _ => Counts {
            current: 0,
            previous: 0,
        },
    };
    let limit = u64::from(rate.limit);
    let cost = u64::from(cost);
    let used = estimate(rate, counts, into);
    if used + cost <= limit {
        let after = Counts {
            current: counts.current + cost,
            ..counts
        };
        let verdict = Verdict {
            allowed: true,
            remaining: (limit - used - cost) as u32,
            reset_ms: wait_until_fits(rate, after, into, limit).expect("the limit fits in time"),
            retry_ms: Some(0),
        };
        let state = State::Sliding {
            window,
            current: after.current as u32,
            previous: after.previous as u32,
        };
        return (verdict, Some(state));
    }
    let verdict = Verdict {
        allowed: false,
        remaining: limit.saturating_sub(used) as u32,
        reset_ms: wait_until_fits(rate, counts, into, limit).expect("the limit fits in time"),
        retry_ms: wait_until_fits(rate, counts, into, cost),
    };
    (verdict, None)
}

/// The units counted against the limit `into` ms into the current window.
#[inline]
fn estimate(rate: Rate, counts: Counts, into: u64) -> u64 {
    let overlap = (rate.window_ms - into) * WHOLE / rate.window_ms;
    counts.previous * overlap / WHOLE + counts.current
}

/// How long from `into` ms into the current window until `need` units fit, if nothing
/// more is counted meanwhile; `None` if they never will (`need` above the limit).
#[inline]
fn wait_until_fits(rate: Rate, counts: Counts, into: u64, need: u64) -> Option<u64> {
    if need > u64::from(rate.limit) {
        return None;
    }
    if let Some(at) = first_fit(rate, counts, need) {
        return Some(at.max(into) - into);
    }
    // Next window: this one's count becomes the previous one.
    let next = Counts {
        current: 0,
        previous: counts.current,
    };
    let left = rate.window_ms - into;
    Some(match first_fit(rate, next, need) {
        Some(at) => left + at,
        // The window after that starts empty.
        None => left + rate.window_ms,
    })
}

/// The first ms of a window with `counts` at which `need` more units fit, in closed form:
/// they fit once the previous window's weight `w` is small enough that
/// `previous × w / WHOLE` (rounded down) leaves room, that is `w < k` with
/// `k = ⌈(room + 1) × WHOLE / previous⌉`, and `w = ⌊(window − at) × WHOLE / window⌋ < k`
/// holds from `at = ⌊(WHOLE − k) × window / WHOLE⌋ + 1` on.
#[inline]
fn first_fit(rate: Rate, counts: Counts, need: u64) -> Option<u64> {
    let room = u64::from(rate.limit).checked_sub(counts.current + need)?;
    if counts.previous == 0 {
        return Some(0);
    }
    let k = ((room + 1) * WHOLE).div_ceil(counts.previous);
    if k > WHOLE {
        return Some(0);
    }
    let at = (WHOLE - k) * rate.window_ms / WHOLE + 1;
    (at < rate.window_ms).then_some(at)
}
