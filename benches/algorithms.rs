//! In-memory check cost per algorithm (fixed window, sliding window, GCRA) against
//! governor's GCRA, on one hot key and on 100k keys, one thread: the steady state of an
//! allowed, counted request.
//!
//! `cargo bench --bench algorithms`

mod common;

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::{bench_checks, bench_governor, key_sets};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringlimit::policy::Algorithm;
use ringlimit::{MemoryBackend, Policy};

fn bench(c: &mut Criterion) {
    for (name, keys) in &key_sets() {
        let mut group = c.benchmark_group(*name);
        for (label, algorithm) in [
            ("fixed", Algorithm::FixedWindow),
            ("sliding", Algorithm::SlidingWindow),
            ("gcra", Algorithm::Gcra),
        ] {
            // A limit no run reaches, within what GCRA takes for an hour.
            let limit = NonZeroU32::new(1_000_000_000).unwrap();
            let policy =
                Policy::per_window(limit, Duration::from_secs(3600)).with_algorithm(algorithm);
            let backend = Arc::new(MemoryBackend::new(policy));
            for key in keys.iter() {
                backend.decide(key, NonZeroU32::MIN);
            }
            let id = BenchmarkId::new("ringlimit", label);
            bench_checks(&mut group, id, 1, keys, move |key| {
                black_box(backend.decide(key, NonZeroU32::MIN));
            });
        }
        bench_governor(&mut group, BenchmarkId::new("governor", "gcra"), keys);
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
