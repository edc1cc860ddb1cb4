use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::MemoryBackend;
use crate::{ManualClock, Policy};

fn backend(limit: u32, window_secs: u64) -> (MemoryBackend<ManualClock>, ManualClock) {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_040));
    let policy = Policy::per_window(
        NonZeroU32::new(limit).unwrap(),
        Duration::from_secs(window_secs),
    );
    (MemoryBackend::new(policy).with_clock(clock.clone()), clock)
}

#[test]
fn allows_the_limit_then_denies_until_the_window_rolls_over() {
    let (backend, clock) = backend(3, 60);
    let decisions: Vec<_> = (0..4).map(|_| backend.decide("alice", 1)).collect();
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
    assert!(!backend.decide("alice", 1).allowed);
    clock.advance(Duration::from_secs(1));
    let fresh = backend.decide("alice", 1);
    assert!(fresh.allowed);
    assert_eq!(fresh.remaining, 2);
    assert_eq!(fresh.reset, Duration::from_secs(60));
}

#[test]
fn used_reads_without_counting() {
    let (backend, clock) = backend(3, 60);
    assert_eq!(backend.used("alice"), 0);
    backend.decide("alice", 2);
    assert_eq!(backend.used("alice"), 2);
    assert_eq!(backend.used("alice"), 2);
    clock.advance(Duration::from_secs(60));
    assert_eq!(backend.used("alice"), 0);
}

#[test]
fn keys_are_counted_separately() {
    let (backend, _) = backend(1, 60);
    assert!(backend.decide("alice", 1).allowed);
    assert!(backend.decide("bob", 1).allowed);
    assert!(!backend.decide("alice", 1).allowed);
    assert!(backend.decide("alicE", 1).allowed);
}

#[test]
fn cost_uses_several_units() {
    let (backend, _) = backend(5, 60);
    assert_eq!(backend.decide("alice", 3).remaining, 2);
    let denied = backend.decide("alice", 3);
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 2);
    assert!(backend.decide("alice", 2).allowed);
}

#[test]
fn many_threads_on_one_key_never_admit_more_than_the_limit() {
    let (backend, _) = backend(1_000, 60);
    let backend = Arc::new(backend);
    let allowed = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (backend, allowed) = (backend.clone(), allowed.clone());
            std::thread::spawn(move || {
                for _ in 0..5_000 {
                    if backend.decide("hot", 1).allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 1_000);
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
                        if backend.decide(&format!("user{user}"), 1).allowed {
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

#[test]
fn expired_windows_are_reclaimed_by_later_requests() {
    let (backend, clock) = backend(5, 60);
    for i in 0..20_000 {
        backend.decide(&format!("old{i}"), 1);
    }
    assert_eq!(backend.tracked_keys(), 20_000);

    clock.advance(Duration::from_secs(60));
    for i in 0..2_000 {
        backend.decide(&format!("new{i}"), 1);
    }
    // Every shard has seen a request in the new window and dropped the old counters.
    assert_eq!(backend.tracked_keys(), 2_000);
}
