//! What the metrics cost a check through the layer: a request built, checked by the
//! layer (memory backend, one policy that never limits) and answered by an inner service
//! that does nothing.
//!
//! Built without the feature `metrics`, it times that check (there are no metrics to
//! record). Built with it, it times, in alternating rounds on the same keys and threads,
//! a layer recording into a Prometheus recorder (`metrics-exporter-prometheus`) against
//! one whose handles were taken before any recorder was installed (they record nothing):
//! the cost of recording. Compare the builds' figures for the cost of the feature itself
//! (`bash bench/metrics_cost.sh` alternates them).
//!
//! `cargo bench --bench layer_metrics [--features metrics]` (ROUNDS=N, 15 by default;
//! CHECKS=N per thread per run, 1,000,000 by default). For instruction counts, which a
//! noisy machine does not move, `ONLY=recorded` times the Prometheus layer alone (see
//! `bench/metrics_cost.sh`).

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use ringlimit::{MemoryBackend, Policy, RateLimitLayer};
use tower::{Layer, Service};

/// Checks per thread per timed run, unless `CHECKS` says otherwise.
fn checks() -> usize {
    static CHECKS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CHECKS.get_or_init(|| env_or("CHECKS", 1_000_000))
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

type Inner = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<()>, std::convert::Infallible>>,
>;

type Limited = ringlimit::RateLimit<
    Inner,
    MemoryBackend,
    ringlimit::key::QueryKey,
    ringlimit::layer::PlainTextRejection,
>;

fn inner() -> Inner {
    fn answer(
        _: Request<()>,
    ) -> std::future::Ready<Result<Response<()>, std::convert::Infallible>> {
        std::future::ready(Ok(Response::new(())))
    }
    tower::service_fn(answer as fn(_) -> _)
}

/// A layered service over a fresh memory backend, its set's metric handles taken now.
fn layered() -> Limited {
    let policy = Policy::per_window(NonZeroU32::MAX, Duration::from_secs(3600));
    let service = RateLimitLayer::new(MemoryBackend::new(policy)).layer(inner());
    // The first check registers the set's counters with the recorder installed now.
    check(&mut service.clone(), &"/?user_id=warm".parse().unwrap());
    service
}

fn check(service: &mut Limited, uri: &Uri) {
    let request = Request::builder().uri(uri.clone()).body(()).unwrap();
    let future = pin!(service.call(request));
    let mut context = Context::from_waker(Waker::noop());
    match future.poll(&mut context) {
        Poll::Ready(response) => {
            black_box(response.unwrap());
        }
        Poll::Pending => unreachable!("a memory check and a ready inner service"),
    }
}

/// Nanoseconds per check of `service` over `uris` on `threads` threads (each its own
/// clone of the service and of the URIs).
fn timed(service: &Limited, uris: &[Uri], threads: usize) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (mut service, uris) = (service.clone(), uris.to_vec());
            scope.spawn(move || {
                for i in (t * 7919..).take(checks()) {
                    check(&mut service, &uris[i % uris.len()]);
                }
            });
        }
    });
    started.elapsed().as_nanos() as f64 / checks() as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rounds = env_or("ROUNDS", 15);
    let key_sets: [(&str, Vec<Uri>); 2] = [
        ("one_hot_key", vec!["/?user_id=hot-user".parse().unwrap()]),
        (
            "100k_keys",
            (0..100_000)
                .map(|i| format!("/?user_id=user-{i}").parse().unwrap())
                .collect(),
        ),
    ];
    let plain = layered();
    #[cfg(feature = "metrics")]
    let recorded = {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("a recorder");
        layered()
    };
    #[cfg(feature = "metrics")]
    let only_recorded = std::env::var("ONLY").is_ok_and(|only| only == "recorded");
    // The one layer timed first (and alone, with `ONLY=recorded`).
    #[cfg(feature = "metrics")]
    let timed_alone = if only_recorded { &recorded } else { &plain };
    #[cfg(not(feature = "metrics"))]
    let timed_alone = &plain;
    println!("{rounds} rounds; ns per check through the layer (median of the rounds)");
    for (name, uris) in &key_sets {
        for threads in [1, 2] {
            // Every key known, as in the steady state.
            timed(timed_alone, uris, 1);
            #[cfg(not(feature = "metrics"))]
            {
                let mut ns: Vec<f64> = (0..rounds).map(|_| timed(&plain, uris, threads)).collect();
                println!(
                    "{name}/{threads} thread(s), built without metrics: {:.1} ns",
                    median(&mut ns)
                );
            }
            #[cfg(feature = "metrics")]
            if only_recorded {
                let mut ns: Vec<f64> = (0..rounds)
                    .map(|_| timed(timed_alone, uris, threads))
                    .collect();
                println!(
                    "{name}/{threads} thread(s), Prometheus alone: {:.1} ns",
                    median(&mut ns)
                );
            } else {
                timed(&recorded, uris, 1);
                let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
                for round in 0..rounds {
                    let (a, b) = if round % 2 == 0 {
                        let a = timed(&plain, uris, threads);
                        (a, timed(&recorded, uris, threads))
                    } else {
                        let b = timed(&recorded, uris, threads);
                        (timed(&plain, uris, threads), b)
                    };
                    off.push(a);
                    on.push(b);
                    ratios.push(b / a);
                }
                println!(
                    "{name}/{threads} thread(s), built with metrics: no recorder {:.1} ns, Prometheus {:.1} ns, ratio {:.3}",
                    median(&mut off),
                    median(&mut on),
                    median(&mut ratios)
                );
            }
        }
    }
}
