//! The generic cell rate algorithm, as a bucket: `limit` units deep, emptying at `limit`
//! units per `window`. A cost fits if the bucket has room for it; a burst of up to
//! `limit`, then one unit every `window / limit`.
//!
//! The level is kept in units × window (ms), so that it empties by exactly `limit` each
//! ms: integers throughout, below 2^53 while `limit × window` is.

use super::{div_ceil, Checked, Rate, State, Verdict};

#[inline]
pub(super) fn check(rate: Rate, state: Option<State>, now_ms: u64, cost: u32) -> Checked {
    let (limit, window) = (u64::from(rate.limit), rate.window_ms);
    let depth = limit * window;
    let (at_ms, level) = match state {
        Some(State::Gcra { at_ms, level }) => (at_ms, level),
        _ => (now_ms, 0),
    };
    // A clock behind the last check (another thread read it later) leaks nothing.
    let now_ms = now_ms.max(at_ms);
    let elapsed = now_ms - at_ms;
    // Never fuller than the bucket (a state left by another rate is read as full).
    let level = if elapsed >= window {
        0
    } else {
        level.saturating_sub(elapsed * limit).min(depth)
    };
    let reset = |level: u64| div_ceil(level, limit);
    if u64::from(cost) <= limit && level + u64::from(cost) * window <= depth {
        let level = level + u64::from(cost) * window;
        let verdict = Verdict {
            allowed: true,
            remaining: ((depth - level) / window) as u32,
            reset_ms: reset(level),
            retry_ms: Some(0),
        };
        return (
            verdict,
            Some(State::Gcra {
                at_ms: now_ms,
                level,
            }),
        );
    }
    let retry_ms = (u64::from(cost) <= limit)
        .then(|| div_ceil(u64::from(cost) * window - (depth - level), limit));
    let verdict = Verdict {
        allowed: false,
        remaining: ((depth - level) / window) as u32,
        reset_ms: reset(level),
        retry_ms,
    };
    (verdict, None)
}
