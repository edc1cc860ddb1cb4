//! The Redis backend against real `redis-server` processes started by the tests.
#![cfg(all(feature = "redis", feature = "cluster"))]

mod common;
use common::CheckAt;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::redis::{available, RedisCluster, RedisServer};
use common::{allowed_per_user, visits_round_robin};
use ringlimit::backend::CircuitPolicy;
use ringlimit::backend::{FailureMode, RedisBackend, RemoteFuture};
use ringlimit::endpoint::{serve, PeerEndpoint};
use ringlimit::{BackendError, Check, Decision, Policy};
use tokio::sync::Mutex;

const LIMIT: u32 = 5;

fn policy(limit: u32, window: Duration) -> Policy {
    Policy::per_window(NonZeroU32::new(limit).unwrap(), window)
}

async fn run(check: Check<RemoteFuture>) -> Result<Decision, BackendError> {
    match check {
        Check::Ready(result) => result.map(|d| d.get(0).unwrap()),
        Check::Pending(future) => future.await.map(|d| d.get(0).unwrap()),
    }
}

/// Waits, if needed, until at least `margin` is left in the server's current window.
async fn fresh_window(server: &RedisServer, window: Duration, margin: Duration) {
    let time = server.cli(&["TIME"]).unwrap();
    let mut parts = time.split_whitespace().map(|p| p.parse::<u128>().unwrap());
    let now_ms = parts.next().unwrap() * 1000 + parts.next().unwrap() / 1000;
    let left = window.as_millis() - now_ms % window.as_millis();
    if left < margin.as_millis() {
        tokio::time::sleep(Duration::from_millis(left as u64 + 20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn sixty_four_clients_over_three_nodes_get_exactly_the_limit() {
    if !available("sixty_four_clients_over_three_nodes_get_exactly_the_limit") {
        return;
    }
    let server = RedisServer::start();
    let window = Duration::from_secs(3600);
    let mut addresses = Vec::new();
    for _ in 0..3 {
        // A call per check (not the default), to count them: one EVALSHA each.
        let backend = RedisBackend::builder(policy(LIMIT, window), &server.url())
            .batch_checks(false)
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addresses.push(listener.local_addr().unwrap());
        let endpoint = PeerEndpoint::new(Arc::new(backend));
        tokio::spawn(serve(listener, endpoint, std::future::pending()));
    }
    fresh_window(&server, window, Duration::from_secs(60)).await;
    let evalsha_before = server.calls("evalsha");

    let users = 120;
    let visits = visits_round_robin(&addresses, users, 9);
    let checks = visits.len() as u64;
    let allowed = allowed_per_user(visits, 64).await;
    assert_eq!(allowed.len(), users);
    assert!(allowed.values().all(|&n| n == LIMIT), "{allowed:?}");

    // One round trip per check: one EVALSHA each (plus, at most, one NOSCRIPT per node).
    let evalsha = server.calls("evalsha") - evalsha_before;
    assert!(
        (checks..=checks + 3).contains(&evalsha),
        "{evalsha} EVALSHA for {checks} checks"
    );
    // One shared connection per node, not one per request (redis-cli itself is one more).
    let clients = server.cli(&["INFO", "clients"]).unwrap();
    let connected: u32 = clients
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(connected <= 4, "{connected} connections");
}

#[tokio::test]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn a_window_expires_with_its_key() {
    if !available("a_window_expires_with_its_key") {
        return;
    }
    let server = RedisServer::start();
    // Windows follow the Redis server's clock, which a test cannot move: a 1 s window.
    let window = Duration::from_secs(1);
    let backend = RedisBackend::builder(policy(2, window), &server.url())
        .prefix("test:")
        .build()
        .unwrap();
    fresh_window(&server, window, Duration::from_millis(500)).await;
    assert!(
        run(backend.check_at("alice", NonZeroU32::MIN))
            .await
            .unwrap()
            .allowed
    );
    let second = run(backend.check_at("alice", NonZeroU32::MIN))
        .await
        .unwrap();
    assert!(second.allowed);
    assert_eq!(second.remaining, 0);
    let denied = run(backend.check_at("alice", NonZeroU32::MIN))
        .await
        .unwrap();
    assert!(!denied.allowed);
    assert!(denied.reset <= window);

    // Regression: the script wrote `<key>:<window start>`, a key it did not declare.
    let keys = server.cli(&["KEYS", "test:*"]).unwrap();
    assert_eq!(keys.trim(), "test:{alice}", "only the declared key");
    let key = "test:{alice}";
    let start = server.cli(&["HGET", key, "s"]).unwrap();
    let start: u64 = start.trim().parse().unwrap();
    assert_eq!(start % 1000, 0, "the key holds its window start: {start}");
    assert_eq!(server.counter(key).as_deref(), Some("2"));
    let ttl: i64 = server.cli(&["PTTL", key]).unwrap().trim().parse().unwrap();
    assert!(
        (1..=1000).contains(&ttl),
        "expires with its window: {ttl} ms"
    );

    tokio::time::sleep(denied.reset + Duration::from_millis(20)).await;
    let fresh = run(backend.check_at("alice", NonZeroU32::MIN))
        .await
        .unwrap();
    assert!(fresh.allowed);
    assert_eq!(fresh.remaining, 1);
}

#[tokio::test]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn redis_down_gets_each_failure_mode_and_nodes_start_anyway() {
    if !available("redis_down_gets_each_failure_mode_and_nodes_start_anyway") {
        return;
    }
    // Port 1: nothing listens there, and no test's redis-server can take it (a free
    // port picked here could be taken by another test's server before this one uses it).
    let dead = "redis://127.0.0.1:1".to_owned();
    let hourly = policy(2, Duration::from_secs(3600));
    let backend = |mode| {
        RedisBackend::builder(hourly, &dead)
            .timeout(Duration::from_millis(100))
            .failure_mode(mode)
            .build()
            .expect("a node starts while Redis is down")
    };

    let allow = backend(FailureMode::Allow);
    for _ in 0..3 {
        assert!(
            run(allow.check_at("bob", NonZeroU32::MIN))
                .await
                .unwrap()
                .allowed
        );
    }
    assert_eq!(allow.local().used("bob"), 0);

    let deny = backend(FailureMode::Deny);
    assert!(run(deny.check_at("bob", NonZeroU32::MIN)).await.is_err());

    let local = backend(FailureMode::Local);
    let mut allowed = 0;
    for _ in 0..4 {
        if run(local.check_at("bob", NonZeroU32::MIN))
            .await
            .unwrap()
            .allowed
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 2, "the same policy, counted on this node");
    assert_eq!(local.local().used("bob"), 2);

    // Regression: a failed call fell back on the escaped id (`=}x`), not the user's own.
    let escaped = backend(FailureMode::Local);
    for user in ["}x", "=}x", "=x"] {
        assert!(
            run(escaped.check_at(user, NonZeroU32::MIN))
                .await
                .unwrap()
                .allowed
        );
        assert_eq!(escaped.local().used(user), 1, "{user} counted as itself");
    }
}

#[tokio::test]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn counting_resumes_in_redis_after_a_restart() {
    if !available("counting_resumes_in_redis_after_a_restart") {
        return;
    }
    let mut server = RedisServer::start();
    let backend = RedisBackend::builder(policy(1000, Duration::from_secs(3600)), &server.url())
        .timeout(Duration::from_millis(200))
        .circuit(CircuitPolicy {
            threshold: 3,
            cooldown: Duration::from_millis(50),
        })
        .build()
        .unwrap();
    assert!(
        run(backend.check_at("carol", NonZeroU32::MIN))
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(backend.local().used("carol"), 0, "counted in Redis");

    server.stop();
    for _ in 0..5 {
        assert!(
            run(backend.check_at("carol", NonZeroU32::MIN))
                .await
                .unwrap()
                .allowed
        );
    }
    assert!(
        backend.local().used("carol") > 0,
        "counted locally while Redis is down"
    );

    server.restart();
    let evalsha = || server.calls("evalsha");
    // Bounded: the connection comes back within a few attempts.
    for _ in 0..100 {
        let _ = run(backend.check_at("carol", NonZeroU32::MIN)).await;
        if evalsha() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let keys = server.cli(&["KEYS", "ringlimit:{carol}"]).unwrap();
    assert_eq!(keys.lines().count(), 1, "counting in Redis again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn a_three_master_cluster_counts_exactly_across_slots() {
    if !available("a_three_master_cluster_counts_exactly_across_slots") {
        return;
    }
    let cluster = RedisCluster::start();
    let backend =
        RedisBackend::cluster_builder(policy(3, Duration::from_secs(3600)), &cluster.urls())
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
    fresh_window(
        &cluster.servers[0],
        Duration::from_secs(3600),
        Duration::from_secs(60),
    )
    .await;
    let backend = Arc::new(backend);
    let users: Vec<String> = (0..200).map(|u| format!("user-{u}")).collect();
    let allowed = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let (backend, users, allowed) = (backend.clone(), users.clone(), allowed.clone());
            tokio::spawn(async move {
                for round in 0..5 {
                    for user in users.iter().skip((t + round) % 64).step_by(64) {
                        if run(backend.check_at(user, NonZeroU32::MIN))
                            .await
                            .unwrap()
                            .allowed
                        {
                            *allowed.lock().await.entry(user.clone()).or_default() += 1;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let allowed = allowed.lock().await;
    assert_eq!(allowed.len(), users.len());
    assert!(allowed.values().all(|&n| n == 3), "{allowed:?}");
    assert_eq!(
        backend.local().tracked_keys(),
        0,
        "nothing fell back to local counting"
    );
    for server in &cluster.servers {
        let keys: u32 = server.cli(&["DBSIZE"]).unwrap().trim().parse().unwrap();
        assert!(keys > 0, "every master holds some users' counters");
    }
}

#[tokio::test]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn a_node_started_while_redis_is_down_uses_it_once_it_is_up() {
    if !available("a_node_started_while_redis_is_down_uses_it_once_it_is_up") {
        return;
    }
    let port = common::redis::free_port();
    let backend = RedisBackend::builder(
        policy(100, Duration::from_secs(3600)),
        &format!("redis://127.0.0.1:{port}"),
    )
    .timeout(Duration::from_millis(200))
    .circuit(CircuitPolicy {
        threshold: 3,
        cooldown: Duration::from_millis(50),
    })
    .build()
    .unwrap();
    assert!(
        run(backend.check_at("dora", NonZeroU32::MIN))
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(
        backend.local().used("dora"),
        1,
        "counted locally while Redis is down"
    );

    let server = RedisServer::start_on(port, false);
    // Bounded: a few attempts until the lazy connection is made.
    for _ in 0..100 {
        let _ = run(backend.check_at("dora", NonZeroU32::MIN)).await;
        if server.calls("evalsha") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let keys = server.cli(&["KEYS", "ringlimit:{dora}"]).unwrap();
    assert_eq!(keys.lines().count(), 1, "counting in Redis once it is up");
}

// Regression: after Redis restarted, each idle node's first check failed on its dead
// connection and was counted on the node (failure mode `local`): 7 allowed of 5.
#[tokio::test]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn a_restart_of_redis_does_not_grant_the_limit_again() {
    if !available("a_restart_of_redis_does_not_grant_the_limit_again") {
        return;
    }
    let mut server = RedisServer::start();
    let backend = RedisBackend::new(policy(5, Duration::from_secs(3600)), &server.url()).unwrap();
    assert!(
        run(backend.check_at("warm", NonZeroU32::MIN))
            .await
            .unwrap()
            .allowed
    );

    server.restart();
    let mut allowed = 0;
    for _ in 0..7 {
        allowed += u32::from(
            run(backend.check_at("erin", NonZeroU32::MIN))
                .await
                .unwrap()
                .allowed,
        );
    }
    assert_eq!(allowed, 5, "exactly the limit, all counted in Redis");
    assert_eq!(
        backend.local().used("erin"),
        0,
        "nothing counted on the node"
    );
    assert_eq!(server.counter("ringlimit:{erin}").as_deref(), Some("5"));
}
