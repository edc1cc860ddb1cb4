use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::retired::PER_CHECK;
use super::{MemoryBackend, DEFAULT_MAX_KEYS};
use crate::{ManualClock, Policy};

fn backend(limit: u32, window_secs: u64) -> (MemoryBackend<ManualClock>, ManualClock) {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_040));
    (built(limit, window_secs, &clock, DEFAULT_MAX_KEYS), clock)
}

/// A backend tracking at most `max_keys` keys.
fn capped(limit: u32, window_secs: u64, max_keys: usize) -> MemoryBackend<ManualClock> {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_040));
    built(limit, window_secs, &clock, max_keys)
}

fn built(
    limit: u32,
    window_secs: u64,
    clock: &ManualClock,
    max_keys: usize,
) -> MemoryBackend<ManualClock> {
    let policy = Policy::per_window(
        NonZeroU32::new(limit).unwrap(),
        Duration::from_secs(window_secs),
    );
    MemoryBackend::builder(policy)
        .max_keys(max_keys)
        .clock(clock.clone())
        .build()
}

#[test]
fn allows_the_limit_then_denies_until_the_window_rolls_over() {
    let (backend, clock) = backend(3, 60);
    let decisions: Vec<_> = (0..4)
        .map(|_| backend.decide("alice", NonZeroU32::MIN))
        .collect();
    assert_eq!(
        decisions
            .iter()
            .map(|d| (d.allowed, d.remaining))
            .collect::<Vec<_>>(),
        [(true, 2), (true, 1), (true, 0), (false, 0)]
    );
    // 1_700_000_040 % 60 == 0: the window started now and resets in 60 s.
    assert_eq!(decisions[3].reset, Duration::from_secs(60));

    clock.advance(Duration::from_secs(59));
    assert!(!backend.decide("alice", NonZeroU32::MIN).allowed);
    clock.advance(Duration::from_secs(1));
    let fresh = backend.decide("alice", NonZeroU32::MIN);
    assert!(fresh.allowed);
    assert_eq!(fresh.remaining, 2);
    assert_eq!(fresh.reset, Duration::from_secs(60));
}

#[test]
fn used_reads_without_counting() {
    let (backend, clock) = backend(3, 60);
    assert_eq!(backend.used("alice"), 0);
    backend.decide("alice", NonZeroU32::new(2).unwrap());
    assert_eq!(backend.used("alice"), 2);
    assert_eq!(backend.used("alice"), 2);
    clock.advance(Duration::from_secs(60));
    assert_eq!(backend.used("alice"), 0);
}

#[test]
fn keys_are_counted_separately() {
    let (backend, _) = backend(1, 60);
    assert!(backend.decide("alice", NonZeroU32::MIN).allowed);
    assert!(backend.decide("bob", NonZeroU32::MIN).allowed);
    assert!(!backend.decide("alice", NonZeroU32::MIN).allowed);
    assert!(backend.decide("alicE", NonZeroU32::MIN).allowed);
}

#[test]
fn cost_uses_several_units() {
    let (backend, _) = backend(5, 60);
    assert_eq!(
        backend
            .decide("alice", NonZeroU32::new(3).unwrap())
            .remaining,
        2
    );
    let denied = backend.decide("alice", NonZeroU32::new(3).unwrap());
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 2);
    assert!(backend.decide("alice", NonZeroU32::new(2).unwrap()).allowed);
}

#[test]
fn many_threads_on_one_key_never_admit_more_than_the_limit() {
    let (backend, _) = backend(1_000, 60);
    assert_eq!(hot_key_from_threads(backend, 8, 5_000), 1_000);
}

/// Checks of one key from `threads` threads, `each` apiece: how many were allowed.
fn hot_key_from_threads<C: crate::Clock>(
    backend: MemoryBackend<C>,
    threads: usize,
    each: usize,
) -> u32 {
    let backend = Arc::new(backend);
    let allowed = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..threads)
        .map(|_| {
            let (backend, allowed) = (backend.clone(), allowed.clone());
            std::thread::spawn(move || {
                for _ in 0..each {
                    if backend.decide("hot", NonZeroU32::MIN).allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    allowed.load(Ordering::Relaxed)
}

#[test]
fn many_threads_on_new_keys_admit_exactly_the_limit_each() {
    let (backend, _) = backend(3, 60);
    let backend = Arc::new(backend);
    let allowed = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (backend, allowed) = (backend.clone(), allowed.clone());
            std::thread::spawn(move || {
                for round in 0..5 {
                    for user in 0..2_000 {
                        let _ = round;
                        if backend
                            .decide(&format!("user{user}"), NonZeroU32::MIN)
                            .allowed
                        {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 2_000 * 3);
}

// Regression: the first request of a window dropped its whole shard's old counters at
// once (p99 245 ms across a boundary with 3M keys of 37 bytes).
#[test]
fn expired_windows_are_reclaimed_a_few_keys_per_later_request() {
    let (backend, clock) = backend(5, 60);
    for i in 0..20_000 {
        backend.decide(&format!("old-key-longer-than-inline-{i}"), NonZeroU32::MIN);
    }
    assert_eq!(backend.tracked_keys(), 20_000);
    let old_beside_first = backend.shard_of("first").0.len();

    clock.advance(Duration::from_secs(60));
    assert!(backend.decide("first", NonZeroU32::MIN).allowed);
    let dropped = PER_CHECK.min(old_beside_first);
    assert_eq!(backend.tracked_keys(), 20_000 + 1 - dropped);
    for i in 0..20_000 {
        assert!(
            backend
                .decide(&format!("old-key-longer-than-inline-{i}"), NonZeroU32::MIN)
                .allowed
        );
        assert!(
            backend.tracked_keys() <= 20_001,
            "old keys go faster than new ones come"
        );
    }
    assert_eq!(
        backend.tracked_keys(),
        20_001,
        "only this window's keys are left"
    );
}

#[test]
fn a_flood_of_one_request_ids_evicts_its_own_ids_and_a_returning_user_stays_exact() {
    let backend = capped(20, 60, 2_000);
    let cap = backend.max_keys();
    let mut allowed = 0;
    for i in 0..200_000 {
        backend.decide(&format!("flood-{i}"), NonZeroU32::MIN);
        if i % 50 == 0 {
            allowed += u32::from(backend.decide("honest", NonZeroU32::MIN).allowed);
        }
        if i % 1000 == 0 {
            assert!(backend.tracked_keys() <= cap);
        }
    }
    assert_eq!(allowed, 20, "the honest user got exactly the limit");
    assert_eq!(backend.used("honest"), 20);
    assert!(backend.evicted_keys() >= 190_000);
    assert!(backend.tracked_keys() <= cap);
}

#[test]
fn when_every_key_came_back_the_least_used_goes_and_the_heaviest_stays() {
    let backend = capped(100, 60, 256);
    for _ in 0..10 {
        backend.decide("heavy", NonZeroU32::MIN);
    }
    for i in 0..20_000 {
        backend.decide(&format!("repeat-{i}"), NonZeroU32::MIN);
        backend.decide(&format!("repeat-{i}"), NonZeroU32::MIN);
    }
    assert_eq!(
        backend.used("heavy"),
        10,
        "never the least used of its shard"
    );
    let tracked = backend.tracked_keys() as u64;
    assert_eq!(
        backend.evicted_keys() + tracked,
        20_001,
        "every key is tracked or evicted"
    );
    assert!(backend.tracked_keys() <= 256 + 256 / 32);
}

// Regression: a flood that followed users who had come back evicted them (only the 8
// oldest keys were looked at, and those were the users).
#[test]
fn users_who_came_back_before_a_flood_keep_their_counts_through_it() {
    let backend = capped(100, 60, 1024);
    let users: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    for user in &users {
        backend.decide(user, NonZeroU32::MIN);
        backend.decide(user, NonZeroU32::MIN);
    }
    for i in 0..100_000 {
        backend.decide(&format!("flood-{i}"), NonZeroU32::MIN);
    }
    for user in &users {
        assert_eq!(backend.used(user), 2, "{user}");
    }
    assert!(backend.tracked_keys() <= 1024 + 1024 / 32);
}

#[test]
fn the_cap_sets_how_many_shards_there_are() {
    for (cap, fewest_per_shard) in [(1, 1), (500, 64), (2_000, 64), (1_000_000, 64)] {
        let backend = capped(5, 60, cap);
        let per_shard = cap / backend.own[0].shard_count();
        assert!(per_shard >= fewest_per_shard, "{cap}: {per_shard}");
        assert!(per_shard <= 65_536, "{cap}: {per_shard}");
    }
    let capped = |cap| capped(5, 60, cap);
    let large = capped(100_000_000);
    assert!(100_000_000 / large.own[0].shard_count() <= 65_536);
    assert!(large.decide("alice", NonZeroU32::MIN).allowed);
    assert!(capped(usize::MAX - 1).own[0].shard_count() <= 16_384);
}

mod algorithms {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use proptest::prelude::*;

    use crate::algorithm::{Algorithm, Rate};
    use crate::{ManualClock, MemoryBackend, Policy};

    /// The start of a minute.
    const T0_MS: u64 = 1_800_000_000_000; // a multiple of 60,000

    fn backend(
        algorithm: Algorithm,
        limit: u32,
        window: Duration,
    ) -> (MemoryBackend<ManualClock>, ManualClock) {
        let clock = ManualClock::new(Duration::from_millis(T0_MS));
        let policy =
            Policy::per_window(NonZeroU32::new(limit).unwrap(), window).with_algorithm(algorithm);
        let backend = MemoryBackend::builder(policy).clock(clock.clone()).build();
        (backend, clock)
    }

    fn at(clock: &ManualClock, ms: u64) {
        clock.set(Duration::from_millis(T0_MS + ms));
    }

    #[test]
    fn a_sliding_window_carries_the_last_window_over_its_edge() {
        let (backend, clock) = backend(Algorithm::SlidingWindow, 10, Duration::from_secs(60));
        at(&clock, 59_999);
        let one = NonZeroU32::MIN;
        assert_eq!(
            (0..12).filter(|_| backend.decide("a", one).allowed).count(),
            10
        );
        at(&clock, 60_000);
        assert!(
            !backend.decide("a", one).allowed,
            "no second burst at the edge"
        );
        at(&clock, 90_000);
        assert_eq!(
            (0..8).filter(|_| backend.decide("a", one).allowed).count(),
            5,
            "half the last window still counts"
        );
    }

    #[test]
    fn gcra_keeps_its_bucket_across_window_edges() {
        let (backend, clock) = backend(Algorithm::Gcra, 4, Duration::from_secs(60));
        let one = NonZeroU32::MIN;
        at(&clock, 59_000);
        assert_eq!(
            (0..6).filter(|_| backend.decide("a", one).allowed).count(),
            4
        );
        let denied = backend.decide("a", one);
        assert_eq!(denied.reset, Duration::from_secs(15), "one unit every 15 s");
        at(&clock, 60_000); // a new window, a second later: the bucket is still full
        assert!(!backend.decide("a", one).allowed);
        at(&clock, 74_000);
        assert!(backend.decide("a", one).allowed);
        assert!(!backend.decide("a", one).allowed);
    }

    #[test]
    fn threads_sharing_a_key_get_the_burst_and_no_more() {
        for algorithm in [Algorithm::SlidingWindow, Algorithm::Gcra] {
            let (backend, clock) = backend(algorithm, 1_000, Duration::from_secs(60));
            at(&clock, 30_000);
            let allowed = super::hot_key_from_threads(backend, 4, 2_000);
            assert_eq!(allowed, 1_000, "{algorithm:?}");
        }
    }

    // Regression: `used` read a sliding window's or GCRA's word as a fixed window's.
    #[test]
    fn used_says_what_a_key_holds_under_each_algorithm() {
        let one = NonZeroU32::MIN;
        let (sliding, clock) = backend(Algorithm::SlidingWindow, 10, Duration::from_secs(60));
        at(&clock, 10_000);
        (0..3).for_each(|_| assert!(sliding.decide("a", one).allowed));
        assert_eq!(sliding.used("a"), 3);
        at(&clock, 70_000);
        assert_eq!(sliding.used("a"), 3, "last window's count, carried");
        assert_eq!(sliding.used("nobody"), 0);
        let (gcra, clock) = backend(Algorithm::Gcra, 4, Duration::from_secs(60));
        at(&clock, 10_000);
        (0..3).for_each(|_| assert!(gcra.decide("a", one).allowed));
        assert_eq!(gcra.used("a"), 3);
        at(&clock, 25_000);
        assert_eq!(gcra.used("a"), 2, "a unit drains every 15 s");
    }

    // Regression: under GCRA every key looked used more than once to the cap (its word's
    // low half is no count), so a flood was set aside instead of evicted: 1.89 times the
    // cap's memory.
    #[test]
    fn at_the_key_cap_a_flood_evicts_its_own_ids_under_each_algorithm() {
        for algorithm in [Algorithm::SlidingWindow, Algorithm::Gcra] {
            let clock = ManualClock::new(Duration::from_millis(T0_MS + 30_000));
            let policy = Policy::per_window(NonZeroU32::new(20).unwrap(), Duration::from_secs(60))
                .with_algorithm(algorithm);
            let backend = MemoryBackend::builder(policy)
                .max_keys(2_000)
                .clock(clock)
                .build();
            let mut allowed = 0;
            for i in 0..100_000 {
                backend.decide(&format!("flood-{i}"), NonZeroU32::MIN);
                if i % 200 == 0 {
                    allowed += u32::from(backend.decide("honest", NonZeroU32::MIN).allowed);
                }
            }
            assert_eq!(
                allowed, 20,
                "{algorithm:?}: the honest user got exactly the burst"
            );
            assert!(
                backend.tracked_keys() <= 2_000 + 2_000 / 31,
                "{algorithm:?}"
            );
            assert!(
                backend.evicted_keys() >= 97_000,
                "{algorithm:?}: {}",
                backend.evicted_keys()
            );
        }
    }

    // Regression: near the key cap, a shard's first check in a window dropped the whole
    // table of the window before, and every user's carried state with it.
    #[test]
    fn near_the_key_cap_users_keep_their_state_across_window_edges() {
        for algorithm in [Algorithm::SlidingWindow, Algorithm::Gcra] {
            let clock = ManualClock::new(Duration::from_millis(T0_MS));
            let policy = Policy::per_window(NonZeroU32::new(3).unwrap(), Duration::from_secs(60))
                .with_algorithm(algorithm);
            let backend = MemoryBackend::builder(policy)
                .max_keys(2_000)
                .clock(clock.clone())
                .build();
            // 1,200 users: with the window before, about twice a shard's share of 125 keys.
            let users: Vec<String> = (0..1_200).map(|i| format!("user-{i}")).collect();
            for window in 0..3u64 {
                // Each user spends the limit at the very end of a window...
                clock.set(Duration::from_millis(T0_MS + window * 60_000 + 59_999));
                for user in &users {
                    for _ in 0..3 {
                        backend.decide(user, NonZeroU32::MIN);
                    }
                }
                // ...and gets nothing more at the start of the next.
                clock.set(Duration::from_millis(T0_MS + (window + 1) * 60_000));
                let allowed = users
                    .iter()
                    .filter(|user| backend.decide(user, NonZeroU32::MIN).allowed)
                    .count();
                assert_eq!(allowed, 0, "{algorithm:?}, window {window}");
            }
        }
    }

    // Regression: a shard that skipped a window kept its old table as the one before,
    // so keys of long ago were held until the next window.
    #[test]
    fn tables_of_windows_long_gone_are_given_back() {
        for algorithm in [Algorithm::SlidingWindow, Algorithm::Gcra] {
            let (backend, clock) = backend(algorithm, 100, Duration::from_secs(60));
            for i in 0..5_000 {
                backend.decide(&format!("old-{i}"), NonZeroU32::MIN);
            }
            at(&clock, 3 * 60_000);
            for i in 0..20_000 {
                backend.decide(&format!("new-{}", i % 2_000), NonZeroU32::MIN);
            }
            let tracked = backend.tracked_keys();
            assert!(
                tracked <= 2_000,
                "{algorithm:?}: {tracked} (5,000 old keys, 2,000 new)"
            );
        }
    }

    /// A set of two policies, named `a` and `b`, as `(algorithm, limit, window ms,
    /// shadow)` each.
    fn two(policies: [(Algorithm, u32, u64, bool); 2]) -> crate::PolicySet {
        let names = ["a", "b"];
        crate::PolicySet::new(policies.iter().zip(names).map(
            |(&(algorithm, limit, window_ms, shadow), name)| {
                Policy::per_window(
                    NonZeroU32::new(limit).unwrap(),
                    Duration::from_millis(window_ms),
                )
                .with_algorithm(algorithm)
                .with_name(crate::policy::PolicyName::new(name).unwrap())
                .with_shadow(shadow)
            },
        ))
        .unwrap()
    }

    #[test]
    fn a_shadow_policy_in_a_set_counts_only_what_goes_through() {
        let set = two([
            (Algorithm::FixedWindow, 3, 3_600_000, false),
            (Algorithm::FixedWindow, 1, 3_600_000, true),
        ]);
        let clock = ManualClock::new(Duration::from_millis(T0_MS));
        let backend = MemoryBackend::builder(set.clone()).clock(clock).build();
        let decide = || backend.decide_all("u", &set).unwrap();
        let first = decide();
        assert!(first.allowed() && first.get(1).unwrap().allowed);
        let second = decide();
        assert!(second.allowed(), "a shadow policy never denies");
        assert!(!second.get(1).unwrap().allowed, "but says it would have");
        assert!(decide().allowed());
        let fourth = decide();
        assert!(!fourth.allowed(), "the enforced policy is full");
        let used = |name: &str, limit: u32| {
            let policy = set.iter().find(|p| p.name().as_str() == name).unwrap();
            let one = crate::PolicySet::from(policy.with_cost(NonZeroU32::MIN));
            let probe = backend.decide_all("u", &one).unwrap().get(0).unwrap();
            limit - probe.remaining - u32::from(probe.allowed)
        };
        assert_eq!(
            used("b", 1),
            1,
            "the shadow policy counted its first request only"
        );
        assert_eq!(
            used("a", 3),
            3,
            "the enforced one counted three, not the denied fourth"
        );
    }

    #[test]
    fn a_refund_goes_to_the_window_the_check_counted_in() {
        use crate::backend::memory::store::Store;
        let at_ms = |ms: u64| Duration::from_millis(T0_MS + ms);
        for algorithm in [
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
            Algorithm::Gcra,
        ] {
            let policy = Policy::per_window(NonZeroU32::new(4).unwrap(), Duration::from_secs(60))
                .with_algorithm(algorithm);
            let store = Store::new(&policy, 1_000, at_ms(0));
            let units = |now| {
                let (d, _) = store.decide("k", 7, &policy, 0, now);
                4 - d.remaining
            };
            // Counted in the first window, refunded after the key was carried into the
            // next: the units come back from where they weigh now.
            let (_, counted) = store.decide("k", 7, &policy, 2, at_ms(59_000));
            let (_, _) = store.decide("other", 9, &policy, 1, at_ms(61_000));
            let before = units(at_ms(61_000));
            store.refund("k", 7, &policy, 2, counted, at_ms(61_000));
            let after = units(at_ms(61_000));
            match algorithm {
                // The window it was counted in is over: nothing of it is left to take.
                Algorithm::FixedWindow => assert_eq!((before, after), (0, 0)),
                _ => assert!(after < before, "{algorithm:?}: {before} then {after}"),
            }
            // Refunded while the key is still in the table kept from the window before
            // (no check of it since the window turned): the units come back there.
            if algorithm != Algorithm::FixedWindow {
                let twin = Store::new(&policy, 1_000, at_ms(0));
                let refunded = Store::new(&policy, 1_000, at_ms(0));
                for store in [&twin, &refunded] {
                    let (_, counted) = store.decide("p", 5, &policy, 3, at_ms(59_500));
                    store.decide("other", 9, &policy, 1, at_ms(60_500));
                    if std::ptr::eq(store, &refunded) {
                        store.refund("p", 5, &policy, 3, counted, at_ms(60_500));
                    }
                }
                let held =
                    |store: &Store| 4 - store.decide("p", 5, &policy, 0, at_ms(60_500)).0.remaining;
                assert!(held(&refunded) < held(&twin), "{algorithm:?}");
            }
            // A reader lagging behind one that moved the store on counts in the newer
            // window, and its refund finds the units there.
            let (_, newer) = store.decide("k2", 11, &policy, 1, at_ms(121_000));
            let (lagging, counted) = store.decide("k2", 11, &policy, 1, at_ms(119_000));
            assert!(lagging.allowed);
            assert!(counted >= newer, "{algorithm:?} counted in an older window");
            store.refund("k2", 11, &policy, 1, counted, at_ms(119_000));
            let (left, _) = store.decide("k2", 11, &policy, 0, at_ms(121_000));
            assert_eq!(left.remaining, 3, "{algorithm:?}: one unit left counted");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        // The memory backend decides as the algorithm does on its own, across window
        // edges and for several keys at once.
        #[test]
        fn the_memory_backend_decides_as_the_algorithm(
            algorithm in prop_oneof![Just(Algorithm::SlidingWindow), Just(Algorithm::Gcra)],
            limit in 1u32..20,
            window_ms in 1u64..2_000,
            steps in prop::collection::vec((0u64..700, 0usize..3, 1u32..5), 1..150),
        ) {
            let (backend, clock) = backend(algorithm, limit, Duration::from_millis(window_ms));
            let rate = Rate { limit, window_ms };
            let mut states = [None; 3];
            let mut now = 0;
            for (gap, key, cost) in steps {
                now += gap;
                at(&clock, now);
                let decided = backend.decide(&format!("user-{key}"), NonZeroU32::new(cost).unwrap());
                let (verdict, next) = algorithm.check(rate, states[key], T0_MS + now, cost);
                states[key] = next.or(states[key]);
                prop_assert_eq!(decided.allowed, verdict.allowed, "at {} ms, key {}", now, key);
                prop_assert_eq!(decided.remaining, verdict.remaining);
                let reset = if verdict.allowed { verdict.reset_ms } else { verdict.retry_ms.unwrap_or(verdict.reset_ms) };
                prop_assert_eq!(decided.reset, Duration::from_millis(reset));
            }
        }

        // A key handed to another node mid-way (taken out of one, absorbed by the other)
        // is decided there as if it had never moved, under every algorithm; nothing of
        // it stays behind.
        #[cfg(feature = "cluster")]
        #[test]
        fn a_handed_key_decides_as_if_it_never_moved(
            algorithms in prop::array::uniform2(prop_oneof![
                Just(Algorithm::FixedWindow), Just(Algorithm::SlidingWindow), Just(Algorithm::Gcra)
            ]),
            limits in prop::array::uniform2(1u32..8),
            windows in prop::array::uniform2(1u64..1_500),
            steps in prop::collection::vec((0u64..500, 1u32..3), 1..80),
            moved_at in 0usize..80,
        ) {
            let set = two([
                (algorithms[0], limits[0], windows[0], false),
                (algorithms[1], limits[1], windows[1], false),
            ]);
            let clock = ManualClock::new(Duration::from_millis(T0_MS));
            let node = || MemoryBackend::builder(set.clone()).clock(clock.clone()).build();
            let (unmoved, before, after) = (node(), node(), node());
            let mut now = 0;
            for (step, (gap, cost)) in steps.into_iter().enumerate() {
                now += gap;
                at(&clock, now);
                if step == moved_at {
                    let held = before.take("u");
                    after.absorb("u", &held);
                    prop_assert!(before.take("u").is_empty(), "taken whole");
                }
                let holder = if step < moved_at { &before } else { &after };
                let set = crate::PolicySet::new(set.iter().map(|p| p.with_cost(NonZeroU32::new(cost).unwrap()))).unwrap();
                let expected = unmoved.decide_all("u", &set).unwrap();
                let decided = holder.decide_all("u", &set).unwrap();
                for i in 0..2 {
                    let (e, d) = (expected.get(i).unwrap(), decided.get(i).unwrap());
                    prop_assert_eq!((d.allowed, d.remaining), (e.allowed, e.remaining), "policy {} at {} ms, step {}", i, now, step);
                }
            }
        }

        // A set of two policies decides as the algorithms do together: counted under both
        // when every enforced one allows, under none otherwise.
        #[test]
        fn a_set_decides_as_its_algorithms_together(
            algorithms in prop::array::uniform2(prop_oneof![
                Just(Algorithm::FixedWindow), Just(Algorithm::SlidingWindow), Just(Algorithm::Gcra)
            ]),
            limits in prop::array::uniform2(1u32..8),
            windows in prop::array::uniform2(1u64..1_500),
            shadow in any::<bool>(),
            steps in prop::collection::vec((0u64..500, 1u32..3), 1..120),
        ) {
            let policies = [
                (algorithms[0], limits[0], windows[0], false),
                (algorithms[1], limits[1], windows[1], shadow),
            ];
            let set = two(policies);
            let clock = ManualClock::new(Duration::from_millis(T0_MS));
            let backend = MemoryBackend::builder(set.clone()).clock(clock.clone()).build();
            let mut states = [None; 2];
            let mut now = 0;
            for (gap, cost) in steps {
                now += gap;
                at(&clock, now);
                let set = crate::PolicySet::new(set.iter().map(|p| p.with_cost(NonZeroU32::new(cost).unwrap()))).unwrap();
                let decided = backend.decide_all("u", &set).unwrap();
                let checked: Vec<_> = (0..2).map(|i| {
                    let (algorithm, limit, window_ms, _) = policies[i];
                    algorithm.check(Rate { limit, window_ms }, states[i], T0_MS + now, cost)
                }).collect();
                let allowed = checked[0].0.allowed && (checked[1].0.allowed || shadow);
                prop_assert_eq!(decided.allowed(), allowed, "at {} ms", now);
                for i in 0..2 {
                    let (verdict, next) = checked[i];
                    prop_assert_eq!(decided.get(i).unwrap().allowed, verdict.allowed, "policy {} at {} ms", i, now);
                    prop_assert_eq!(decided.get(i).unwrap().remaining, verdict.remaining, "policy {} at {} ms", i, now);
                    if allowed {
                        states[i] = next.or(states[i]);
                    }
                }
            }
        }
    }
}
