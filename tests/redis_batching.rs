//! Checks that arrive together at a Redis backend go together: by default as one pipeline
//! of script calls (one call per check), with `RedisBuilder::batch_checks(true)` as one script
//! call. Each stays exact; against real `redis-server` processes started by the tests.
#![cfg(all(feature = "redis", feature = "cluster"))]

mod common;
use common::CheckAt;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::redis::{available, RedisServer};
use common::{allowed_per_user, hung_peer, visits_round_robin};
use ringlimit::backend::{FailureMode, RedisBackend, RedisBuilder, RemoteFuture};
use ringlimit::endpoint::{serve, PeerEndpoint};
use ringlimit::{Backend, BackendError, Check, Decision, Policy};
use tokio::task::JoinSet;

fn hourly(limit: u32) -> Policy {
    Policy::per_window(NonZeroU32::new(limit).unwrap(), Duration::from_secs(3600))
}

/// A batching backend on `server` with `limit` per hour.
fn batching(server: &RedisServer, limit: u32) -> RedisBackend {
    grouped(&server.url(), limit, true)
}

/// A backend on `url` with `limit` per hour: with `batch_checks` if `one_call`, else the
/// default (each check its own call, concurrent calls pipelined).
fn grouped(url: &str, limit: u32, one_call: bool) -> RedisBackend {
    builder(url, limit, one_call).build().unwrap()
}

fn builder(url: &str, limit: u32, one_call: bool) -> RedisBuilder {
    RedisBackend::builder(hourly(limit), url).batch_checks(one_call)
}

/// Starts every check first (so they queue together), then waits for all: the answers in
/// the order of `checks`.
async fn all_at_once<B: Backend<Future = RemoteFuture>>(
    backend: &B,
    checks: &[(&str, u32)],
) -> Vec<Result<Decision, BackendError>> {
    let mut running = JoinSet::new();
    for (i, &(key, cost)) in checks.iter().enumerate() {
        let check = backend.check_at(key, NonZeroU32::new(cost).unwrap());
        running.spawn(async move {
            let result = match check {
                Check::Ready(result) => result,
                Check::Pending(future) => future.await,
            };
            (i, result)
        });
    }
    let mut answers: Vec<_> = (0..checks.len()).map(|_| None).collect();
    while let Some(done) = running.join_next().await {
        let (i, result) = done.unwrap();
        answers[i] = Some(result);
    }
    answers
        .into_iter()
        .map(|answer| answer.unwrap().map(|d| d.get(0).unwrap()))
        .collect()
}

/// Each answer's verdict and what remains; every check must have had one.
fn allowed_and_remaining(answers: &[Result<Decision, BackendError>]) -> Vec<(bool, u32)> {
    answers
        .iter()
        .map(|a| {
            let a = a.as_ref().expect("Redis answers");
            (a.allowed, a.remaining)
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn checks_queued_together_share_one_script_call_and_each_stays_exact() {
    if !available("checks_queued_together_share_one_script_call_and_each_stays_exact") {
        return;
    }
    for one_call in [true, false] {
        eleven_queued_checks(one_call).await;
    }
}

/// Eleven checks queued before the first is sent: the same exact answers whether they
/// share one script call (`one_call`) or go as a pipeline of eleven.
async fn eleven_queued_checks(one_call: bool) {
    let server = RedisServer::start();
    let backend = grouped(&server.url(), 3, one_call);
    // One runtime thread: all eleven are queued before the dispatcher first runs.
    let mut checks = vec![("alice", 1); 5];
    checks.extend([("bob", 2), ("bob", 2), ("carol", 4)]);
    checks.extend([("dave", 1); 3]);
    let answers = all_at_once(&backend, &checks).await;

    let summary = allowed_and_remaining(&answers);
    assert_eq!(
        summary,
        [
            // alice: three fit, in order; the rest are denied and take nothing.
            (true, 2),
            (true, 1),
            (true, 0),
            (false, 0),
            (false, 0),
            // bob: 2 fits, a second 2 would make 4.
            (true, 1),
            (false, 1),
            // carol: a cost over the limit never fits.
            (false, 3),
            // dave: exactly the limit.
            (true, 2),
            (true, 1),
            (true, 0),
        ],
        "one_call: {one_call}"
    );
    let calls = if one_call { 1 } else { 11 };
    assert_eq!(server.calls("evalsha"), calls, "one_call: {one_call}");
    assert_eq!(backend.local().used("alice"), 0, "counted in Redis");
    assert_eq!(server.counter("ringlimit:{alice}").as_deref(), Some("3"));
}

// The sliding window's and GCRA's script answers per key: queued checks, in one call or
// as a pipeline, each read from its own place in the reply.
#[tokio::test(flavor = "current_thread")]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn queued_checks_under_the_other_algorithms_are_each_exact() {
    if !available("queued_checks_under_the_other_algorithms_are_each_exact") {
        return;
    }
    use ringlimit::policy::Algorithm;
    let server = RedisServer::start();
    for algorithm in [Algorithm::SlidingWindow, Algorithm::Gcra] {
        for one_call in [true, false] {
            let prefix = format!("{algorithm:?}-{one_call}:");
            let backend = RedisBackend::builder(hourly(3).with_algorithm(algorithm), &server.url())
                .prefix(&prefix)
                .batch_checks(one_call)
                .build()
                .unwrap();
            let mut checks = vec![("alice", 1); 5];
            checks.extend([("bob", 2), ("bob", 2), ("carol", 4)]);
            let answers = all_at_once(&backend, &checks).await;
            let summary = allowed_and_remaining(&answers);
            assert_eq!(
                summary,
                [
                    (true, 2),
                    (true, 1),
                    (true, 0),
                    (false, 0),
                    (false, 0),
                    (true, 1),
                    (false, 1),
                    (false, 3),
                ],
                "{algorithm:?}, one_call: {one_call}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn sixty_four_clients_over_three_batching_nodes_get_exactly_the_limit() {
    if !available("sixty_four_clients_over_three_batching_nodes_get_exactly_the_limit") {
        return;
    }
    let server = RedisServer::start();
    let limit = 5;
    let mut addresses = Vec::new();
    for _ in 0..3 {
        let backend = batching(&server, limit);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addresses.push(listener.local_addr().unwrap());
        let endpoint = PeerEndpoint::new(Arc::new(backend));
        tokio::spawn(serve(listener, endpoint, std::future::pending()));
    }
    let users = 120;
    let visits = visits_round_robin(&addresses, users, 9);
    let checks = visits.len() as u64;
    let allowed = allowed_per_user(visits, 64).await;
    assert_eq!(allowed.len(), users);
    assert!(allowed.values().all(|&n| n == limit), "{allowed:?}");
    let calls = server.calls("evalsha");
    assert!(calls <= checks, "{calls} script calls for {checks} checks");
    println!("{checks} checks in {calls} script calls");
}

#[tokio::test(flavor = "current_thread")]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn a_batch_survives_the_server_losing_its_scripts() {
    // Both ways: all the calls of a pipeline answer NOSCRIPT, and go again once loaded.
    if !available("a_batch_survives_the_server_losing_its_scripts") {
        return;
    }
    for one_call in [true, false] {
        let server = RedisServer::start();
        survives_losing_scripts(&server, grouped(&server.url(), 10, one_call)).await;
    }
}

async fn survives_losing_scripts(server: &RedisServer, backend: RedisBackend) {
    let first = all_at_once(&backend, &[("erin", 1), ("erin", 1)]).await;
    assert!(first.iter().all(|a| a.as_ref().unwrap().allowed));
    server.cli(&["SCRIPT", "FLUSH"]).unwrap();
    let second = all_at_once(&backend, &[("erin", 1), ("erin", 1)]).await;
    let remaining: Vec<u32> = second
        .iter()
        .map(|a| a.as_ref().unwrap().remaining)
        .collect();
    assert_eq!(
        remaining,
        [7, 6],
        "reloaded on NOSCRIPT, still counting in Redis"
    );
    assert_eq!(backend.local().used("erin"), 0);
}

#[tokio::test(flavor = "current_thread")]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn batched_checks_get_the_failure_mode_when_redis_is_down_or_hung() {
    if !available("batched_checks_get_the_failure_mode_when_redis_is_down_or_hung") {
        return;
    }
    down_or_hung().await;
}

// On worker threads a queued check has no timer of its own: its batch's is its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn on_worker_threads_batched_checks_get_the_failure_mode_when_redis_is_down_or_hung() {
    if !available(
        "on_worker_threads_batched_checks_get_the_failure_mode_when_redis_is_down_or_hung",
    ) {
        return;
    }
    down_or_hung().await;
}

/// Every failure mode, against a Redis that is down and one that is hung.
async fn down_or_hung() {
    // Port 1: nothing listens there, and no test's redis-server can take it.
    let dead = "redis://127.0.0.1:1".to_owned();
    let (hung, _) = hung_peer().await;
    let hung = format!("redis://{hung}");
    for url in [dead, hung] {
        for one_call in [true, false] {
            failure_modes(&url, one_call).await;
        }
    }
}

/// Each failure mode, for checks that queue together while Redis at `url` cannot answer.
async fn failure_modes(url: &str, one_call: bool) {
    let backend = |mode| {
        builder(url, 2, one_call)
            .timeout(Duration::from_millis(100))
            .failure_mode(mode)
            .build()
            .unwrap()
    };
    let checks = [("frank", 1); 4];
    // Bounded so that a hang fails the test instead of stalling it.
    let bounded = |answers| tokio::time::timeout(Duration::from_secs(10), answers);

    let local = backend(FailureMode::Local);
    let answers = bounded(all_at_once(&local, &checks))
        .await
        .expect("answered");
    let allowed = answers
        .iter()
        .filter(|a| a.as_ref().unwrap().allowed)
        .count();
    assert_eq!(allowed, 2, "{url}: the same policy, counted on this node");
    assert_eq!(local.local().used("frank"), 2);

    let deny = backend(FailureMode::Deny);
    let answers = bounded(all_at_once(&deny, &checks))
        .await
        .expect("answered");
    assert!(answers.iter().all(Result::is_err), "{url}: {answers:?}");

    let allow = backend(FailureMode::Allow);
    let answers = bounded(all_at_once(&allow, &checks))
        .await
        .expect("answered");
    assert!(answers.iter().all(|a| a.as_ref().unwrap().allowed));
}
