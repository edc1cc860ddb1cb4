//! Fixed windows aligned to the Unix epoch: `window = now / length`.

use super::{Checked, Rate, State, Verdict};

pub(super) fn check(rate: Rate, state: Option<State>, now_ms: u64, cost: u32) -> Checked {
    // A clock behind the state's (another node's, or a failover's) counts in the state's
    // window, never afresh in an earlier one.
    let now_ms = match state {
        Some(State::Fixed { window, .. }) => now_ms.max(window.saturating_mul(rate.window_ms)),
        _ => now_ms,
    };
    let window = now_ms / rate.window_ms;
    let used = match state {
        Some(State::Fixed { window: w, used }) if w == window => used,
        _ => 0,
    };
    let reset_ms = (window + 1) * rate.window_ms - now_ms;
    let after = u64::from(used) + u64::from(cost);
    if after <= u64::from(rate.limit) {
        let verdict = Verdict {
            allowed: true,
            remaining: rate.limit - after as u32,
            reset_ms,
            retry_ms: Some(0),
        };
        let used = after as u32;
        return (verdict, Some(State::Fixed { window, used }));
    }
    // Over: the next window starts empty, so a cost within the limit fits then.
    let retry_ms = (cost <= rate.limit).then_some(reset_ms);
    let verdict = Verdict {
        allowed: false,
        remaining: rate.limit - used.min(rate.limit),
        reset_ms,
        retry_ms,
    };
    (verdict, None)
}
