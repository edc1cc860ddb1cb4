//! In-memory check cost (as the layer makes it: the backend's own set): ringlimit's `MemoryBackend` against governor's keyed limiter, on
//! the same keys, one hot key and 100k keys, one and two threads.
//!
//! `cargo bench --bench memory_check`
//!
//! Both limiters are given a limit no run can reach, so every check is an allowed,
//! counted request (the common case on a protected API).

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{bench_checks, key_sets, warmed};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn bench(c: &mut Criterion) {
    for (name, keys) in &key_sets() {
        let mut group = c.benchmark_group(*name);
        for threads in [1, 2] {
            let (backend, governor) = warmed(keys);
            let id = BenchmarkId::new("ringlimit", threads);
            let own = ringlimit::Backend::policies(&*backend).clone();
            bench_checks(&mut group, id, threads, keys, move |key| {
                black_box(backend.decide_all(key, &own).unwrap());
            });
            let id = BenchmarkId::new("governor", threads);
            bench_checks(&mut group, id, threads, keys, move |key| {
                let _ = black_box(governor.check_key(key));
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
