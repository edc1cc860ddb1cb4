//! In-memory check cost of a set of one, two and three policies, per algorithm, against
//! governor's GCRA (one policy), on one hot key and on 100k keys, one thread: the steady
//! state of an allowed request, counted under every policy of its set. `-decide` is
//! `MemoryBackend::decide` (one policy, no set), the baseline of the same run.
//!
//! `cargo bench --bench policy_sets`

mod common;

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::{bench_checks, bench_governor, key_sets};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringlimit::policy::{Algorithm, PolicyName};
use ringlimit::{MemoryBackend, Policy, PolicySet};

/// `n` policies of `algorithm`, with limits no run reaches and windows of an hour and
/// less (GCRA takes `limit × window` up to 2^53).
fn set(algorithm: Algorithm, n: usize) -> PolicySet {
    let limit = NonZeroU32::new(1_000_000_000).unwrap();
    PolicySet::new((0..n).map(|i| {
        let window = Duration::from_secs(3600 - 600 * i as u64);
        Policy::per_window(limit, window)
            .with_algorithm(algorithm)
            .with_name(PolicyName::new(&format!("p{i}")).unwrap())
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    for (name, keys) in &key_sets() {
        let mut group = c.benchmark_group(*name);
        for (label, algorithm) in [
            ("fixed", Algorithm::FixedWindow),
            ("sliding", Algorithm::SlidingWindow),
            ("gcra", Algorithm::Gcra),
        ] {
            // The single-policy call of before sets, as the baseline of this run.
            let one = set(algorithm, 1);
            let backend = Arc::new(MemoryBackend::new(one));
            for key in keys.iter() {
                backend.decide(key, NonZeroU32::MIN);
            }
            let id = BenchmarkId::new(format!("ringlimit-{label}-decide"), 1);
            bench_checks(&mut group, id, 1, keys, move |key| {
                black_box(backend.decide(key, NonZeroU32::MIN));
            });
            for n in 1..=3 {
                let policies = set(algorithm, n);
                let backend = Arc::new(MemoryBackend::new(policies.clone()));
                for key in keys.iter() {
                    backend.decide_all(key, &policies).unwrap();
                }
                let policies = ringlimit::Backend::policies(&*backend).clone();
                let id = BenchmarkId::new(format!("ringlimit-{label}"), n);
                bench_checks(&mut group, id, 1, keys, move |key| {
                    black_box(backend.decide_all(key, &policies).unwrap());
                });
            }
        }
        bench_governor(&mut group, BenchmarkId::new("governor-gcra", 1), keys);
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
