//! One schedule of checks, run on the in-memory backend, on a two-node ring (every check
//! forwarded over HTTP to the key's owner) and on Redis: for each algorithm, the three
//! give the same decisions, remaining units and reset times (which differ from one
//! algorithm to another). Redis keeps time by its own clock, so the in-memory and ring
//! clocks are set to it; the schedule runs within milliseconds, in an hour-long window,
//! away from its edge. That the algorithms agree over time, across window edges, is the
//! property tests' part (memory against the arithmetic, the arithmetic against its Lua
//! twin).
#![cfg(all(feature = "redis", feature = "cluster"))]

mod common;
use common::CheckAt;

use std::num::NonZeroU32;
use std::time::Duration;

use ringlimit::backend::{RedisBackend, RemoteFuture};
use ringlimit::policy::Algorithm;
use ringlimit::{Check, Decision, ManualClock, MemoryBackend, Policy};

use common::redis::{available, RedisServer};
use common::{decided, key_owned_by, start_cluster};

async fn run<
    F: std::future::Future<Output = Result<ringlimit::Decisions, ringlimit::BackendError>>,
>(
    check: Check<F>,
) -> Decision {
    match check {
        Check::Ready(result) => result.unwrap().get(0).unwrap(),
        Check::Pending(future) => future.await.unwrap().get(0).unwrap(),
    }
}

/// The Redis server's time, in ms since the epoch.
fn redis_now_ms(server: &RedisServer) -> u64 {
    let time = server.cli(&["TIME"]).unwrap();
    let mut parts = time.split_whitespace().map(|p| p.parse::<u64>().unwrap());
    parts.next().unwrap() * 1000 + parts.next().unwrap() / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn every_backend_decides_alike_under_each_algorithm() {
    if !available("every_backend_decides_alike_under_each_algorithm") {
        return;
    }
    let server = RedisServer::start();
    let window = Duration::from_secs(3600);
    // Costs of 1 to 3 against a limit of 10: allowed, then denied as the limit nears,
    // with what remains each time.
    let costs = [1, 2, 3, 1, 1, 2, 3, 1, 1, 3, 2, 1];
    for algorithm in [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
        Algorithm::Gcra,
    ] {
        let policy =
            Policy::per_window(NonZeroU32::new(10).unwrap(), window).with_algorithm(algorithm);
        // Away from a window's edge on Redis's clock (waiting only in the last 10 s of an
        // hour), and the same moment on the others'.
        let mut now = redis_now_ms(&server);
        if now % 3_600_000 > 3_590_000 {
            tokio::time::sleep(Duration::from_millis(3_600_000 - now % 3_600_000 + 100)).await;
            now = redis_now_ms(&server);
        }
        let clock = ManualClock::new(Duration::from_millis(now));

        let memory = MemoryBackend::builder(policy).clock(clock.clone()).build();
        let nodes = start_cluster(2, policy, &clock).await;
        let key = key_owned_by(&nodes[0].backend.ring(), &nodes[1].name);
        let redis = RedisBackend::builder(policy, &server.url())
            .prefix(&format!("{algorithm:?}:"))
            .build()
            .unwrap();

        let mut seen = Vec::new();
        for cost in costs {
            let cost = NonZeroU32::new(cost).unwrap();
            let in_memory = run(memory.check_at(&key, cost)).await;
            let on_ring = run(nodes[0].backend.check_at(&key, cost)).await;
            let in_redis = run::<RemoteFuture>(redis.check_at(&key, cost)).await;
            let view = |d: Decision| (d.allowed, d.remaining);
            assert_eq!(
                view(on_ring),
                view(in_memory),
                "{algorithm:?}, ring, after {seen:?}"
            );
            assert_eq!(
                view(in_redis),
                view(in_memory),
                "{algorithm:?}, Redis, after {seen:?}"
            );
            // Redis's clock has moved on by a few ms; the ring's answers say whole seconds.
            let redis_apart = in_redis.reset.abs_diff(in_memory.reset);
            assert!(
                redis_apart < Duration::from_millis(200),
                "{algorithm:?}: Redis reset {in_redis:?} vs {in_memory:?}"
            );
            let ring_apart = on_ring.reset.abs_diff(in_memory.reset);
            assert!(
                ring_apart <= Duration::from_secs(1),
                "{algorithm:?}: ring reset {on_ring:?} vs {in_memory:?}"
            );
            seen.push((cost.get(), in_memory.allowed));
        }
        let allowed: u32 = seen.iter().filter(|(_, a)| *a).map(|(c, _)| c).sum();
        assert_eq!(
            allowed, 10,
            "{algorithm:?}: the schedule fills the limit exactly"
        );
        // Each algorithm's own state is what Redis holds.
        let field = match algorithm {
            Algorithm::FixedWindow => "n",
            Algorithm::SlidingWindow => "2b",
            _ => "3b",
        };
        let redis_key = format!("{algorithm:?}:{{{key}}}");
        let held = server.cli(&["HGET", &redis_key, field]).unwrap();
        assert!(
            !held.trim().is_empty(),
            "{algorithm:?}: {redis_key} has no {field}"
        );
    }
}

/// A set of three policies, one per algorithm, on all three backends: the same decisions,
/// policy by policy, for the same schedule (every check carries the set; the ring's
/// owner and Redis count under it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn every_backend_decides_a_set_alike() {
    use ringlimit::policy::PolicyName;
    use ringlimit::{Backend, Decisions, PolicySet};
    if !available("every_backend_decides_a_set_alike") {
        return;
    }
    let server = RedisServer::start();
    let hour = Duration::from_secs(3600);
    let named = |limit, algorithm, name| {
        Policy::per_window(NonZeroU32::new(limit).unwrap(), hour)
            .with_algorithm(algorithm)
            .with_name(PolicyName::new(name).unwrap())
    };
    let policies = [
        named(10, Algorithm::FixedWindow, "fixed"),
        named(7, Algorithm::SlidingWindow, "sliding"),
        named(5, Algorithm::Gcra, "gcra"),
    ];
    let mut now = redis_now_ms(&server);
    if now % 3_600_000 > 3_590_000 {
        tokio::time::sleep(Duration::from_millis(3_600_000 - now % 3_600_000 + 100)).await;
        now = redis_now_ms(&server);
    }
    let clock = ManualClock::new(Duration::from_millis(now));
    // Every backend's own policy is another: the set travels with each check.
    let own = Policy::per_window(NonZeroU32::new(1000).unwrap(), hour);
    let memory = MemoryBackend::builder(own).clock(clock.clone()).build();
    let nodes = start_cluster(2, own, &clock).await;
    let key = key_owned_by(&nodes[0].backend.ring(), &nodes[1].name);
    let redis = RedisBackend::builder(own, &server.url())
        .prefix("sets:")
        .build()
        .unwrap();
    let all = |d: &Decisions| {
        let each: Vec<_> = d.iter().map(|d| (d.allowed, d.remaining)).collect();
        (d.allowed(), each)
    };
    let mut allowed = 0;
    for (step, cost) in [1, 2, 1, 1, 3, 1, 2, 1].into_iter().enumerate() {
        let cost = NonZeroU32::new(cost).unwrap();
        let set = PolicySet::new(policies.iter().map(|p| p.with_cost(cost))).unwrap();
        let in_memory = decided(memory.check(&key, &set)).await;
        let on_ring = decided(nodes[0].backend.check(&key, &set)).await;
        let in_redis = decided(redis.check(&key, &set)).await;
        assert_eq!(all(&on_ring), all(&in_memory), "ring, step {step}");
        assert_eq!(all(&in_redis), all(&in_memory), "Redis, step {step}");
        allowed += u32::from(in_memory.allowed()) * cost.get();
    }
    assert_eq!(allowed, 5, "GCRA's burst of 5 is the tightest");
}
