//! In-memory check cost: ringlimit's `MemoryBackend` against governor's keyed limiter, on
//! the same keys, one hot key and 100k keys, one and two threads.
//!
//! `cargo bench --bench memory_check`
//!
//! Both limiters are given a limit no run can reach, so every check is an allowed,
//! counted request (the common case on a protected API).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ringlimit::{MemoryBackend, Policy};

const KEYS: usize = 100_000;

fn ringlimit_backend() -> Arc<MemoryBackend> {
    let policy = Policy::per_window(NonZeroU32::MAX, Duration::from_secs(3600));
    Arc::new(MemoryBackend::new(policy))
}

fn governor_limiter() -> Arc<DefaultKeyedRateLimiter<String>> {
    Arc::new(RateLimiter::keyed(Quota::per_hour(NonZeroU32::MAX)))
}

/// Runs `check` over `keys`, split across `threads` threads, `iters` checks in all, and
/// returns the wall time.
fn timed<F>(threads: usize, iters: u64, keys: &Arc<Vec<String>>, check: F) -> Duration
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

fn bench(c: &mut Criterion) {
    let hot = Arc::new(vec![String::from("hot-user")]);
    let many = Arc::new((0..KEYS).map(|i| format!("user-{i}")).collect::<Vec<_>>());

    for (name, keys) in [("one_hot_key", &hot), ("100k_keys", &many)] {
        let mut group = c.benchmark_group(name);
        for threads in [1, 2] {
            let backend = ringlimit_backend();
            let governor = governor_limiter();
            // Warm both up so every key already has its state (the steady state).
            for key in keys.iter() {
                backend.decide(key, 1);
                let _ = governor.check_key(key);
            }
            group.bench_function(BenchmarkId::new("ringlimit", threads), |b| {
                b.iter_custom(|iters| {
                    let backend = backend.clone();
                    timed(threads, iters, keys, move |key| {
                        black_box(backend.decide(key, 1));
                    })
                })
            });
            group.bench_function(BenchmarkId::new("governor", threads), |b| {
                b.iter_custom(|iters| {
                    let governor = governor.clone();
                    timed(threads, iters, keys, move |key| {
                        let _ = black_box(governor.check_key(key));
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
