//! What both in-memory benchmarks share: the two limiters, set up alike, and a timed run
//! over keys on several threads.
#![allow(dead_code)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ringlimit::{MemoryBackend, Policy};

/// Keys of the many-keys case.
pub const KEYS: usize = 100_000;

/// ringlimit's in-memory backend with a limit no run reaches.
pub fn ringlimit_backend() -> Arc<MemoryBackend> {
    let policy = Policy::per_window(NonZeroU32::MAX, Duration::from_secs(3600));
    Arc::new(MemoryBackend::new(policy))
}

/// governor's keyed limiter (DashMap) with a quota no run reaches.
pub fn governor_limiter() -> Arc<DefaultKeyedRateLimiter<String>> {
    Arc::new(RateLimiter::keyed(Quota::per_hour(NonZeroU32::MAX)))
}

/// Runs `check` over `keys`, split across `threads` threads, `iters` checks in all, and
/// returns the wall time.
pub fn timed<F>(threads: usize, iters: u64, keys: &Arc<Vec<String>>, check: F) -> Duration
where
    F: Fn(&String) + Send + Sync + Clone + 'static,
{
    let per_thread = iters / threads as u64 + 1;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (keys, check) = (keys.clone(), check.clone());
            std::thread::spawn(move || {
                // Threads start at different keys so they do not walk in lockstep.
                for i in (t * 7919..).take(per_thread as usize) {
                    check(&keys[i % keys.len()]);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    start.elapsed()
}

/// The two key sets: one hot key, and [`KEYS`] distinct keys.
pub fn key_sets() -> [(&'static str, Arc<Vec<String>>); 2] {
    let hot = Arc::new(vec![String::from("hot-user")]);
    let many = Arc::new((0..KEYS).map(|i| format!("user-{i}")).collect::<Vec<_>>());
    [("one_hot_key", hot), ("100k_keys", many)]
}

/// Both limiters, each already holding state for every key in `keys` (the steady state).
pub fn warmed(keys: &[String]) -> (Arc<MemoryBackend>, Arc<DefaultKeyedRateLimiter<String>>) {
    let (backend, governor) = (ringlimit_backend(), governor_limiter());
    for key in keys {
        backend.decide(key, NonZeroU32::MIN);
        let _ = governor.check_key(key);
    }
    (backend, governor)
}

/// Benchmarks `check` over `keys` on `threads` threads, as `id` in `group`.
pub fn bench_checks<F>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    threads: usize,
    keys: &Arc<Vec<String>>,
    check: F,
) where
    F: Fn(&String) + Send + Sync + Clone + 'static,
{
    group.bench_function(id, |b| {
        b.iter_custom(|iters| timed(threads, iters, keys, check.clone()))
    });
}

/// Benchmarks governor's keyed limiter on `keys`, one thread, already holding state for
/// each (the steady state), as `id` in `group`.
pub fn bench_governor(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    keys: &Arc<Vec<String>>,
) {
    let governor = governor_limiter();
    for key in keys.iter() {
        let _ = governor.check_key(key);
    }
    bench_checks(group, id, 1, keys, move |key| {
        let _ = std::hint::black_box(governor.check_key(key));
    });
}
