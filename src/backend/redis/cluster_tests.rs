//! The Redis backend on a real three-master cluster: a queue per master, each sending the
//! keys its master serves; a stale slot map costs a redirect, not a count; a master that
//! stops answering holds up its own checks only.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio::time::Instant;

use super::slot_owners::slot_of;
use super::test_server::{available, RedisCluster, RedisServer};
use super::RedisBackend;
use crate::policy::PolicyName;
use crate::{Backend, BackendError, Check, Decisions, Policy, PolicySet};

fn policy(limit: u32) -> Policy {
    Policy::per_window(NonZeroU32::new(limit).unwrap(), Duration::from_secs(3600))
}

fn backend(cluster: &RedisCluster) -> Arc<RedisBackend> {
    let backend = RedisBackend::cluster_builder(policy(10), &cluster.urls())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    Arc::new(backend)
}

/// `user`'s check against `set`, from a task of its own.
fn check(
    backend: &Arc<RedisBackend>,
    user: &str,
    set: &PolicySet,
) -> tokio::task::JoinHandle<Result<Decisions, BackendError>> {
    let (backend, user, set) = (Arc::clone(backend), user.to_owned(), set.clone());
    tokio::spawn(async move {
        match backend.check(&user, &set) {
            Check::Ready(decided) => decided,
            Check::Pending(decided) => decided.await,
        }
    })
}

/// Checks every user of `users` at once, twice each, and expects Redis to allow each.
async fn check_twice_each(backend: &Arc<RedisBackend>, users: &[String], set: &PolicySet) {
    let checks: Vec<_> = users
        .iter()
        .chain(users)
        .map(|user| check(backend, user, set))
        .collect();
    for check in checks {
        let decided = check.await.unwrap().expect("Redis answered");
        assert!(decided.allowed());
    }
}

/// The backend's slot map, once it has been read (at most 5 s).
async fn read_map(backend: &RedisBackend) {
    let connection = &backend.queue.sender().connection;
    let until = Instant::now() + Duration::from_secs(5);
    while connection.slot_map().is_none() {
        assert!(Instant::now() < until, "the slot map was never read");
        connection.refresh_slot_map();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many times `server` answered `error` (`MOVED`, say) since it started.
fn errors(server: &RedisServer, error: &str) -> u64 {
    let stats = server.cli(&["INFO", "errorstats"]).unwrap_or_default();
    let prefix = format!("errorstat_{error}:count=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether `server` serves `key` itself (a cluster node answers `MOVED` otherwise).
fn serves(server: &RedisServer, key: &str) -> bool {
    let reply = server.cli(&["TYPE", key]).unwrap_or_default();
    matches!(reply.trim(), "none" | "hash")
}

/// The one server of `cluster` that serves `key`.
fn server_of<'a>(cluster: &'a RedisCluster, key: &str) -> &'a RedisServer {
    let mut serving = cluster.servers.iter().filter(|server| serves(server, key));
    let server = serving.next().expect("a master serves every key");
    assert!(serving.next().is_none(), "one master per key");
    server
}

fn range(start: i64, end: i64, port: u16) -> Value {
    let master = vec![
        Value::BulkString(b"127.0.0.1".to_vec()),
        Value::Int(port.into()),
    ];
    Value::Array(vec![
        Value::Int(start),
        Value::Int(end),
        Value::Array(master),
    ])
}

#[tokio::test]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn each_master_has_a_queue_for_the_keys_it_serves() {
    if !available("each_master_has_a_queue_for_the_keys_it_serves") {
        return;
    }
    let cluster = RedisCluster::start();
    // The slots are the cluster's own, hash tags and all.
    for key in [
        "foo",
        "{}foo",
        "a{foo",
        "a{b}c{d}",
        "ringlimit:{x}y}",
        "{{x}}",
    ] {
        let theirs = cluster.servers[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .unwrap();
        assert_eq!(theirs.trim(), slot_of(key.as_bytes()).to_string(), "{key}");
    }
    let backend = backend(&cluster);
    read_map(&backend).await;
    let mut masters = HashSet::new();
    for user in 0..60 {
        let key = backend.key_of(&format!("user-{user}"));
        let (map, master) = backend.queue.master_of(slot_of(key.as_bytes())).unwrap();
        let (_, port) = map.address(master);
        assert_eq!(server_of(&cluster, &key).port, *port, "{key}");
        masters.insert(master);
    }
    assert_eq!(masters.len(), 3, "a queue for each of three masters");
}

// A stale map sends calls to a master that no longer serves their slot: it answers
// MOVED without running them, and they must go again where they belong, counted once
// (not failed, which would hand them to the failure mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn a_stale_map_costs_a_redirect_not_a_count() {
    if !available("a_stale_map_costs_a_redirect_not_a_count") {
        return;
    }
    let cluster = RedisCluster::start();
    let backend = backend(&cluster);
    // Every slot on the first master, as if the others had just taken theirs.
    let stale = Value::Array(vec![range(0, 16383, cluster.servers[0].port)]);
    backend.queue.sender().connection.store_slot_map(&stale);

    let users: Vec<String> = (0..30).map(|u| format!("user-{u}")).collect();
    check_twice_each(&backend, &users, &PolicySet::from(policy(10))).await;
    assert_eq!(
        backend.local().tracked_keys(),
        0,
        "nothing fell back to local"
    );
    for user in &users {
        let key = backend.key_of(user);
        let counted = server_of(&cluster, &key).counter(&key);
        assert_eq!(
            counted.as_deref(),
            Some("2"),
            "{key} counted twice, on its master"
        );
    }
    assert!(
        errors(&cluster.servers[0], "MOVED") > 0,
        "sent to the first master"
    );
    for server in &cluster.servers[1..] {
        let keys: u32 = server.cli(&["DBSIZE"]).unwrap().trim().parse().unwrap();
        assert!(keys > 0, "redirected from the first master and counted");
    }
    // The redirects had the map read again: three masters in it.
    let connection = &backend.queue.sender().connection;
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let map = connection.slot_map().unwrap();
        let masters: HashSet<_> = (0..60)
            .map(|u| map.master_of(slot_of(backend.key_of(&format!("user-{u}")).as_bytes())))
            .collect();
        if masters.len() == 3 {
            break;
        }
        assert!(Instant::now() < until, "the map was not read again");
        connection.refresh_slot_map();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// A set's calls go to the master of its keys (`<prefix>{<user id>}...`), not of the bare
// user id: with braces in an id the two differ, and a wrong guess would cost a redirect
// per check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn set_checks_go_to_the_master_of_their_keys() {
    if !available("set_checks_go_to_the_master_of_their_keys") {
        return;
    }
    let cluster = RedisCluster::start();
    let backend = backend(&cluster);
    read_map(&backend).await;
    let hourly = policy(10).with_name(PolicyName::new("hourly").unwrap());
    let burst = Policy::per_window(NonZeroU32::new(3).unwrap(), Duration::from_secs(60))
        .with_name(PolicyName::new("burst").unwrap());
    let set = PolicySet::new([hourly, burst]).unwrap();
    let mut users: Vec<String> = (0..40).map(|u| format!("{{{u}}}x}}{u}")).collect();
    // Ids that would leave the hash tag empty (`{}`: Redis then hashes each whole key,
    // and a set's keys would fall in different slots), and ids that start with the
    // escape that prevents it.
    users.extend(["", "}", "}}", "=", "=}"].map(String::from));
    users.extend((0..10).map(|u| format!("}}{u}")));
    users.extend((0..10).map(|u| format!("={u}")));
    check_twice_each(&backend, &users, &set).await;
    assert_eq!(
        backend.local().tracked_keys(),
        0,
        "nothing fell back to local"
    );
    for server in &cluster.servers {
        assert_eq!(errors(server, "MOVED"), 0, "every call went to its master");
    }
    for user in &users {
        let key = backend.set_key_of(user, &burst);
        let counted = server_of(&cluster, &key).cli(&["HGET", &key, "n"]).unwrap();
        assert_eq!(counted.trim(), "2", "{key}");
    }
}

// Each master has a queue of its own: while one master does not answer (stopped, its
// connection open), checks of the others' keys are answered, not held behind its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn a_master_that_stops_answering_holds_up_its_own_checks_only() {
    if !available("a_master_that_stops_answering_holds_up_its_own_checks_only") {
        return;
    }
    let cluster = RedisCluster::start();
    // A timeout the held check never reaches: it is answered once its master continues.
    let backend = RedisBackend::cluster_builder(policy(10), &cluster.urls())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let backend = Arc::new(backend);
    read_map(&backend).await;
    let set = PolicySet::from(policy(10));
    // Users of each master, and a check of each so that every connection is made.
    let users: Vec<String> = (0..30).map(|u| format!("user-{u}")).collect();
    let on = |server: &RedisServer| -> Vec<String> {
        let on_it = |user: &&String| server_of(&cluster, &backend.key_of(user)).port == server.port;
        users.iter().filter(on_it).cloned().collect()
    };
    let (stopped, answering) = (
        on(&cluster.servers[0]),
        [on(&cluster.servers[1]), on(&cluster.servers[2])].concat(),
    );
    assert!(!stopped.is_empty() && !answering.is_empty());
    for user in &users {
        check(&backend, user, &set)
            .await
            .unwrap()
            .expect("Redis answered");
    }

    let pid = cluster.servers[0].pid().to_string();
    let signal = |name: &str| {
        // The shell's own `kill`: no procps needed.
        let kill = format!("kill {name} {pid}");
        let status = std::process::Command::new("sh")
            .args(["-c", &kill])
            .status();
        assert!(status.unwrap().success(), "kill {name}");
    };
    signal("-STOP");
    let held = check(&backend, &stopped[0], &set);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for user in &answering {
        let decided = check(&backend, user, &set).await.unwrap();
        assert!(decided.expect("the other masters answer").allowed());
    }
    let still_held = !held.is_finished();
    signal("-CONT");
    assert!(
        still_held,
        "the stopped master's check was answered before the others'"
    );
    let decided = held
        .await
        .unwrap()
        .expect("answered once its master continues");
    assert!(decided.allowed());
    assert_eq!(
        backend.local().tracked_keys(),
        0,
        "every check answered by Redis"
    );
}

// Each master has a circuit of its own: a master whose checks time out opens its own, and
// the others' checks still go to Redis (with one circuit for the cluster, they would all
// go to the failure mode for its cooldown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn a_master_that_fails_opens_its_own_circuit_only() {
    if !available("a_master_that_fails_opens_its_own_circuit_only") {
        return;
    }
    let cluster = RedisCluster::start();
    // The default circuit: open after 3 failures in a row, for 1 s.
    let backend = RedisBackend::cluster_builder(policy(10), &cluster.urls())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let backend = Arc::new(backend);
    read_map(&backend).await;
    let set = PolicySet::from(policy(10));
    let users: Vec<String> = (0..40).map(|u| format!("user-{u}")).collect();
    // Each user's master, found before one stops (redis-cli would wait for it).
    let homes: Vec<&RedisServer> = users
        .iter()
        .map(|user| server_of(&cluster, &backend.key_of(user)))
        .collect();
    let on_first = |home: &&RedisServer| home.port == cluster.servers[0].port;
    let stopped: Vec<&String> = users
        .iter()
        .zip(&homes)
        .filter(|(_, h)| on_first(h))
        .map(|(u, _)| u)
        .collect();
    let answering: Vec<(&String, &RedisServer)> = users
        .iter()
        .zip(homes.iter().copied())
        .filter(|(_, home)| !on_first(home))
        .collect();
    assert!(stopped.len() >= 4 && !answering.is_empty());
    for user in &users {
        check(&backend, user, &set)
            .await
            .unwrap()
            .expect("Redis answered");
    }

    let pid = cluster.servers[0].pid();
    let signal = |name: &str| {
        let kill = format!("kill {name} {pid}");
        let status = std::process::Command::new("sh")
            .args(["-c", &kill])
            .status();
        assert!(status.unwrap().success(), "kill {name}");
    };
    signal("-STOP");
    // Four checks time out on the stopped master: its circuit opens.
    let held: Vec<_> = stopped[..4]
        .iter()
        .map(|user| check(&backend, user, &set))
        .collect();
    for check in held {
        let decided = check.await.unwrap().expect("the failure mode answers");
        assert!(decided.failure_mode().is_some(), "{decided:?}");
    }
    for (user, home) in &answering {
        let decided = check(&backend, user, &set)
            .await
            .unwrap()
            .expect("answered");
        assert_eq!(
            decided.failure_mode(),
            None,
            "{user}: Redis answered, not the failure mode"
        );
        let key = backend.key_of(user);
        assert_eq!(home.counter(&key).as_deref(), Some("2"), "{key}");
    }
    signal("-CONT");
}
