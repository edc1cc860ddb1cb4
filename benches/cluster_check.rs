//! What the cluster backend adds to a check of a key this node owns, against the memory
//! backend alone: the ring lookup, and (since handoffs) the look for a ring change in
//! progress and for keys handed over. One thread, one hot key and 100k keys, no ring
//! change in progress: the steady state of every check a node decides itself.
//!
//! `cargo bench --bench cluster_check`

mod common;

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::{bench_checks, key_sets};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringlimit::{Backend, Check, ClusterBackend, MemoryBackend, Policy, Ring};

fn bench(c: &mut Criterion) {
    let policy = Policy::per_window(
        NonZeroU32::new(1_000_000_000).unwrap(),
        Duration::from_secs(3600),
    );
    for (name, keys) in &key_sets() {
        let mut group = c.benchmark_group(*name);
        let memory = Arc::new(MemoryBackend::new(policy));
        let own = memory.policies().clone();
        bench_checks(
            &mut group,
            BenchmarkId::new("memory", "own key"),
            1,
            keys,
            {
                let own = own.clone();
                move |key| {
                    black_box(memory.decide_all(key, &own).unwrap());
                }
            },
        );
        // A ring of this node alone: every key is its own.
        let ring = Ring::new(["127.0.0.1:1"]).unwrap();
        let cluster = Arc::new(ClusterBackend::new(policy, "127.0.0.1:1", ring).unwrap());
        bench_checks(
            &mut group,
            BenchmarkId::new("cluster", "own key"),
            1,
            keys,
            {
                move |key| match cluster.check(key, &own) {
                    Check::Ready(decided) => {
                        black_box(decided.unwrap());
                    }
                    Check::Pending(_) => unreachable!("a key of its own is decided at once"),
                }
            },
        );
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
