//! What a key's next owner makes of the state another node hands it (when the ring
//! changes): the units counted there are added to its own, in the window they were
//! counted in. A number that comes from a peer is clamped to its policy first: no more
//! than the limit in a window, no fuller than the bucket.

use super::{Rate, State};

/// `local` with `handed` added to it, under `rate`; `None` when `handed` adds nothing
/// (a past window, another algorithm's state, or no units).
pub(crate) fn merged(rate: Rate, local: State, handed: State) -> Option<State> {
    let limit = rate.limit;
    match (local, handed) {
        (State::Fixed { window, used }, State::Fixed { window: w, used: u }) if w >= window => {
            Some(State::Fixed {
                window,
                used: used.saturating_add(u.min(limit)),
            })
        }
        (
            State::Sliding {
                window,
                current,
                previous,
            },
            State::Sliding {
                window: w,
                current: c,
                previous: p,
            },
        ) => {
            let (c, p) = (c.min(limit), p.min(limit));
            // Counted in this window (or a sender's clock a little ahead): both halves
            // line up; counted in the window before: its current is our previous.
            let (add_current, add_previous) = match w {
                w if w >= window => (c, p),
                w if w + 1 == window => (0, c),
                _ => return None,
            };
            Some(State::Sliding {
                window,
                current: current.saturating_add(add_current),
                previous: previous.saturating_add(add_previous),
            })
        }
        (
            State::Gcra { at_ms, level },
            State::Gcra {
                at_ms: at,
                level: l,
            },
        ) => {
            let depth = u64::from(limit) * rate.window_ms;
            // What the handed bucket still holds at our state's time.
            let drained = at_ms.saturating_sub(at).saturating_mul(u64::from(limit));
            let handed = l.min(depth).saturating_sub(drained);
            Some(State::Gcra {
                at_ms,
                level: level.saturating_add(handed).min(depth),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        limit: 5,
        window_ms: 1_000,
    };

    #[test]
    fn fixed_windows_add_units_of_the_same_window_only() {
        let local = State::Fixed { window: 7, used: 2 };
        let same = State::Fixed { window: 7, used: 2 };
        assert_eq!(
            merged(RATE, local, same),
            Some(State::Fixed { window: 7, used: 4 })
        );
        let past = State::Fixed { window: 6, used: 2 };
        assert_eq!(merged(RATE, local, past), None);
    }

    #[test]
    fn a_peer_number_is_clamped_to_the_policy() {
        let local = State::Fixed { window: 7, used: 0 };
        let huge = State::Fixed {
            window: 7,
            used: u32::MAX,
        };
        assert_eq!(
            merged(RATE, local, huge),
            Some(State::Fixed { window: 7, used: 5 })
        );
        let bucket = State::Gcra {
            at_ms: 10,
            level: 0,
        };
        let overfull = State::Gcra {
            at_ms: 10,
            level: u64::MAX,
        };
        let depth = 5 * 1_000;
        assert_eq!(
            merged(RATE, bucket, overfull),
            Some(State::Gcra {
                at_ms: 10,
                level: depth
            })
        );
    }

    #[test]
    fn sliding_windows_line_up_by_window() {
        let local = State::Sliding {
            window: 7,
            current: 1,
            previous: 1,
        };
        let same = State::Sliding {
            window: 7,
            current: 2,
            previous: 3,
        };
        let before = State::Sliding {
            window: 6,
            current: 2,
            previous: 3,
        };
        let (window, current, previous) = (7, 3, 4);
        assert_eq!(
            merged(RATE, local, same),
            Some(State::Sliding {
                window,
                current,
                previous
            })
        );
        let (current, previous) = (1, 3);
        assert_eq!(
            merged(RATE, local, before),
            Some(State::Sliding {
                window,
                current,
                previous
            })
        );
        let long_ago = State::Sliding {
            window: 5,
            current: 2,
            previous: 3,
        };
        assert_eq!(merged(RATE, local, long_ago), None);
    }

    #[test]
    fn a_handed_bucket_has_drained_since_it_was_read() {
        let local = State::Gcra {
            at_ms: 1_200,
            level: 1_000,
        };
        // 3 units at 1 000 ms; 200 ms later 1 unit (5 per second) has drained.
        let handed = State::Gcra {
            at_ms: 1_000,
            level: 3_000,
        };
        assert_eq!(
            merged(RATE, local, handed),
            Some(State::Gcra {
                at_ms: 1_200,
                level: 3_000
            })
        );
    }
}
