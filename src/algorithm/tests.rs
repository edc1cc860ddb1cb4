use proptest::prelude::*;

use super::*;

const MINUTE: u64 = 60_000;
/// A time on a minute's start.
const T0: u64 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE;

fn rate(limit: u32, window_ms: u64) -> Rate {
    Rate { limit, window_ms }
}

/// Runs checks of `cost` at each time of `times`, storing state as a backend would; the
/// verdicts.
fn run(algorithm: Algorithm, rate: Rate, times: &[u64], cost: u32) -> Vec<Verdict> {
    let mut state = None;
    times
        .iter()
        .map(|&now| {
            let (verdict, next) = algorithm.check(rate, state, now, cost);
            state = next.or(state);
            verdict
        })
        .collect()
}

fn allowed(verdicts: &[Verdict]) -> usize {
    verdicts.iter().filter(|v| v.allowed).count()
}

#[test]
fn a_fixed_window_allows_the_limit_and_starts_afresh_at_its_end() {
    let checks = run(Algorithm::FixedWindow, rate(3, MINUTE), &[T0 + 10; 4], 1);
    assert_eq!(allowed(&checks), 3);
    assert_eq!(checks[2].remaining, 0);
    let denied = checks[3];
    assert_eq!(denied.reset_ms, MINUTE - 10);
    assert_eq!(denied.retry_ms, Some(MINUTE - 10));
    // The burst at a window's edge that the other two remove: 3 at its end, 3 at the start
    // of the next.
    let edge = [T0 + MINUTE - 1; 3]
        .into_iter()
        .chain([T0 + MINUTE; 3])
        .collect::<Vec<_>>();
    assert_eq!(
        allowed(&run(Algorithm::FixedWindow, rate(3, MINUTE), &edge, 1)),
        6
    );
}

#[test]
fn a_sliding_window_weighs_the_previous_window_by_its_overlap() {
    let limit = rate(10, MINUTE);
    // 10 at the end of one window: none at the start of the next, and half the limit
    // back half-way through it.
    let mut times = vec![T0 + MINUTE - 1; 10];
    times.extend([T0 + MINUTE; 2]);
    times.extend([T0 + MINUTE + MINUTE / 2; 6]);
    let checks = run(Algorithm::SlidingWindow, limit, &times, 1);
    let allowed_at = |range: std::ops::Range<usize>| allowed(&checks[range]);
    assert_eq!(allowed_at(0..10), 10);
    assert_eq!(
        allowed_at(10..12),
        0,
        "no burst of twice the limit at the edge"
    );
    assert_eq!(
        allowed_at(12..18),
        5,
        "half of the previous window still counts"
    );
    // A window with nothing before it is a fixed window.
    assert_eq!(
        allowed(&run(Algorithm::SlidingWindow, limit, &[T0 + 5; 11], 1)),
        10
    );
}

#[test]
fn gcra_allows_a_burst_of_the_limit_then_one_unit_per_interval() {
    let limit = rate(4, MINUTE); // one unit every 15 s
    let checks = run(Algorithm::Gcra, limit, &[T0; 5], 1);
    assert_eq!(allowed(&checks), 4);
    assert_eq!(checks[3].remaining, 0);
    assert_eq!(
        checks[3].reset_ms, MINUTE,
        "empty again a window after the burst"
    );
    assert_eq!(checks[4].retry_ms, Some(15_000));
    let spaced: Vec<u64> = [T0; 4]
        .into_iter()
        .chain([T0 + 14_999, T0 + 15_000, T0 + 29_999, T0 + 30_000])
        .collect();
    let checks = run(Algorithm::Gcra, limit, &spaced, 1);
    assert_eq!(
        checks.iter().map(|v| v.allowed).collect::<Vec<_>>(),
        [true, true, true, true, false, true, false, true]
    );
}

#[test]
fn a_cost_above_the_limit_never_fits_and_costs_nothing() {
    for algorithm in [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
        Algorithm::Gcra,
    ] {
        let (verdict, state) = algorithm.check(rate(5, MINUTE), None, T0, 6);
        assert!(!verdict.allowed, "{algorithm:?}");
        assert_eq!(verdict.retry_ms, None, "{algorithm:?}");
        assert_eq!(verdict.remaining, 5, "{algorithm:?}");
        assert_eq!(state, None, "{algorithm:?}");
    }
}

#[test]
fn the_bounds_that_keep_every_number_exact_in_a_double() {
    assert!(Algorithm::SlidingWindow.admits(rate(u32::MAX, MAX_WINDOW_MS)));
    assert!(!Algorithm::SlidingWindow.admits(rate(1, MAX_WINDOW_MS + 1)));
    assert!(!Algorithm::FixedWindow.admits(rate(1, 0)));
    assert!(Algorithm::FixedWindow.admits(rate(1, u64::MAX)));
    assert!(Algorithm::Gcra.admits(rate(1 << 21, 1 << 32)));
    assert!(!Algorithm::Gcra.admits(rate((1 << 21) + 1, 1 << 32)));
    // At the bounds nothing overflows.
    for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
        let edge = rate(u32::MAX, MAX_WINDOW_MS);
        let times = [
            T0,
            T0 + MAX_WINDOW_MS - 1,
            T0 + MAX_WINDOW_MS,
            T0 + 2 * MAX_WINDOW_MS,
        ];
        let checks = run(algorithm, edge, &times, u32::MAX);
        assert!(checks[0].allowed, "{algorithm:?}");
    }
    let checks = run(
        Algorithm::Gcra,
        rate(1 << 21, 1 << 32),
        &[T0, T0, T0 + 1],
        1 << 21,
    );
    assert_eq!(allowed(&checks), 1);
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::FixedWindow),
        Just(Algorithm::SlidingWindow),
        Just(Algorithm::Gcra),
    ]
}

proptest! {
    // A denial's retry time is exact: the same cost fits then, and not a millisecond
    // before; and a denial changes nothing.
    #[test]
    fn a_denial_says_exactly_when_the_cost_fits(
        algorithm in algorithm(),
        limit in prop_oneof![1u32..50, 1u32..=u32::MAX],
        window_ms in prop_oneof![1u64..5_000, 1u64..=MAX_WINDOW_MS],
        gaps in prop::collection::vec(prop_oneof![0u64..400, 0u64..=MAX_WINDOW_MS], 1..60),
        costs in prop::collection::vec(prop_oneof![1u32..8, 1u32..=u32::MAX], 1..60),
    ) {
        let mut rate = rate(limit, window_ms);
        if !algorithm.admits(rate) {
            // GCRA's bound: the largest limit this window allows.
            rate.limit = (MAX_GCRA_PRODUCT / window_ms).min(u64::from(u32::MAX)) as u32;
        }
        prop_assert!(algorithm.admits(rate));
        let limit = rate.limit;
        let mut state = None;
        let mut now = T0;
        for (gap, cost) in gaps.iter().zip(costs.iter().cycle()) {
            now += gap;
            let (verdict, next) = algorithm.check(rate, state, now, *cost);
            prop_assert!(u64::from(verdict.remaining) <= u64::from(limit));
            if verdict.allowed {
                prop_assert!(next.is_some());
                state = next;
                continue;
            }
            prop_assert!(next.is_none());
            match verdict.retry_ms {
                None => prop_assert!(*cost > limit),
                Some(retry) => {
                    prop_assert!(retry > 0);
                    prop_assert!(algorithm.check(rate, state, now + retry, *cost).0.allowed);
                    prop_assert!(!algorithm.check(rate, state, now + retry - 1, *cost).0.allowed);
                }
            }
        }
    }

    // A clock that goes back (another node's, a failover's) never opens a window again:
    // a fixed window admits at most its limit whatever the order of the times.
    #[test]
    fn a_clock_going_back_never_admits_more(
        limit in 1u32..20,
        window_ms in 1u64..2_000,
        steps in prop::collection::vec((0u64..400, 0u64..3_000, 1u32..4), 1..120),
    ) {
        let rate = rate(limit, window_ms);
        let mut state = None;
        let mut now = T0;
        let mut admitted = std::collections::HashMap::<u64, u64>::new();
        for (forward, back, cost) in steps {
            now += forward;
            let at = now.saturating_sub(back);
            let (verdict, next) = Algorithm::FixedWindow.check(rate, state, at, cost);
            if let Some(State::Fixed { window, .. }) = next {
                *admitted.entry(window).or_default() += u64::from(cost);
                prop_assert!(admitted[&window] <= u64::from(limit));
                prop_assert!(verdict.allowed);
                state = next;
            }
        }
    }

    // After `reset_ms` with nothing counted, the whole limit fits again.
    #[test]
    fn the_whole_limit_is_back_at_reset(
        algorithm in algorithm(),
        limit in 1u32..50,
        window_ms in 1u64..5_000,
        gaps in prop::collection::vec(0u64..400, 1..40),
    ) {
        let rate = rate(limit, window_ms);
        let mut state = None;
        let mut now = T0;
        for gap in gaps {
            now += gap;
            let (verdict, next) = algorithm.check(rate, state, now, 1);
            state = next.or(state);
            let back = algorithm.check(rate, state, now + verdict.reset_ms, limit).0;
            prop_assert!(back.allowed, "{verdict:?}");
        }
    }

    // GCRA never lets more than the limit through in any stretch shorter than the time
    // the limit takes to drain, one interval: a burst, then the pace.
    #[test]
    fn gcra_never_exceeds_its_burst_plus_its_pace(
        limit in 1u32..30,
        window_ms in 1u64..3_000,
        gaps in prop::collection::vec(0u64..200, 1..120),
    ) {
        let rate = rate(limit, window_ms);
        let mut state = None;
        let mut now = T0;
        let mut admitted = Vec::new();
        for gap in gaps {
            now += gap;
            let (verdict, next) = Algorithm::Gcra.check(rate, state, now, 1);
            if verdict.allowed {
                admitted.push(now);
                state = next;
            }
        }
        // In any span of `d` ms, at most `limit + d * limit / window` units.
        for (i, &start) in admitted.iter().enumerate() {
            for (j, &end) in admitted.iter().enumerate().skip(i) {
                let count = (j - i + 1) as u64;
                let pace = (end - start) * u64::from(limit) / window_ms;
                prop_assert!(count <= u64::from(limit) + pace, "{count} in {} ms", end - start);
            }
        }
    }
}
