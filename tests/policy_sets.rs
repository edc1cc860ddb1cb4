//! Several policies per request, as a user sets them up: checked together and all or
//! nothing in memory, between two nodes configured differently (the policies travel with
//! the check) and in Redis; chosen per request by tiers; reported in the headers.
#![cfg(feature = "cluster")]

mod common;

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use ringlimit::policy::PolicyName;
use ringlimit::resolve::tiers;
use ringlimit::{Backend, Check, Decisions, MemoryBackend, Policy, PolicySet, RateLimitLayer};
use tower::{service_fn, Layer, ServiceExt};

use common::{decided, key_owned_by, listeners, mid_window_clock, start_cluster, start_node};

fn per(limit: u32, window: Duration, name: &str) -> Policy {
    Policy::per_window(NonZeroU32::new(limit).unwrap(), window)
        .with_name(PolicyName::new(name).unwrap())
}

/// 2 a minute and 3 an hour.
fn minute_and_hour() -> PolicySet {
    PolicySet::new([
        per(2, Duration::from_secs(60), "minute"),
        per(3, Duration::from_secs(3600), "hour"),
    ])
    .unwrap()
}

/// Every check's decisions, the checks all issued before any is awaited (so that those
/// to one peer queue up and leave together).
async fn all(checks: Vec<Check<ringlimit::backend::RemoteFuture>>) -> Vec<Decisions> {
    let waiting: Vec<_> = checks
        .into_iter()
        .map(|check| tokio::spawn(decided(check)))
        .collect();
    let mut decisions = Vec::new();
    for one in waiting {
        decisions.push(one.await.unwrap());
    }
    decisions
}

/// Allowed and denied answers for `backend` over a minute and then the next: a denial by
/// the minute must count nothing under the hour.
async fn minute_then_next<B: Backend>(backend: &B, clock: &ringlimit::ManualClock, key: &str) {
    let set = minute_and_hour();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(decided(backend.check(key, &set)).await.allowed());
    }
    assert_eq!(seen, [true, true, false, false], "the minute's limit");
    clock.advance(Duration::from_secs(60));
    let next = decided(backend.check(key, &set)).await;
    assert!(next.allowed(), "the two denials cost the hour nothing");
    assert_eq!(next.get(1).unwrap().remaining, 0, "3 of 3 in the hour");
    let over = decided(backend.check(key, &set)).await;
    assert!(!over.allowed());
    assert!(
        over.get(0).unwrap().allowed,
        "the minute had room: the hour denied"
    );
}

#[tokio::test]
async fn a_set_is_all_or_nothing_in_memory() {
    let clock = mid_window_clock();
    let backend = MemoryBackend::builder(minute_and_hour())
        .clock(clock.clone())
        .build();
    minute_then_next(&backend, &clock, "alice").await;
}

#[tokio::test]
async fn the_policies_travel_to_an_owner_configured_otherwise() {
    let clock = mid_window_clock();
    // Node b knows only a generous policy of its own; node a asks under its set.
    let nodes = start_cluster(2, per(1000, Duration::from_secs(1), "x"), &clock).await;
    let (node_a, node_b) = (&nodes[0], &nodes[1]);
    let key = key_owned_by(&node_a.backend.ring(), &node_b.name);
    minute_then_next(&*node_a.backend, &clock, &key).await;
    // Counted at the owner, under the policies that came with the checks.
    let set = minute_and_hour();
    let at_owner = decided(node_b.backend.check(&key, &set)).await;
    assert!(!at_owner.allowed(), "b holds the hour's count");
}

#[cfg(feature = "redis")]
#[tokio::test]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn a_set_is_one_script_call_all_or_nothing_in_redis() {
    use common::redis::{available, RedisServer};
    if !available("a_set_is_one_script_call_all_or_nothing_in_redis") {
        return;
    }
    let server = RedisServer::start();
    let backend = ringlimit::backend::RedisBackend::new(
        per(1000, Duration::from_secs(1), "own"),
        &server.url(),
    )
    .unwrap();
    let set = minute_and_hour();
    let seen: Vec<bool> = {
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(decided(backend.check("alice", &set)).await.allowed());
        }
        seen
    };
    assert_eq!(seen, [true, true, false, false]);
    // Each policy's key expires with what it holds (the minute's within a minute).
    for (policy, most) in [(set.as_slice()[0], 60_000), (set.as_slice()[1], 3_600_000)] {
        let key = backend.set_key_of("alice", &policy);
        let ttl: i64 = server.cli(&["PTTL", &key]).unwrap().trim().parse().unwrap();
        assert!(ttl > 0 && ttl <= most, "{key}: {ttl}");
    }
    // One name, another window: a counter of its own, never the minute's or the hour's.
    let other_window = PolicySet::from(per(1, Duration::from_secs(7200), "hour"));
    assert!(decided(backend.check("alice", &other_window))
        .await
        .allowed());
    assert!(!decided(backend.check("alice", &other_window))
        .await
        .allowed());
    // The hour holds 2, not 4: the denials counted nothing (Redis's own clock decides
    // the minute, so only the hour is read back).
    let hour = PolicySet::from(per(3, Duration::from_secs(3600), "hour"));
    let read = decided(backend.check("alice", &hour)).await;
    assert!(read.allowed());
    assert_eq!(read.get(0).unwrap().remaining, 0, "2 + this one of 3");
}

#[cfg(feature = "redis")]
#[tokio::test]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn in_redis_the_backends_own_policy_counts_once_alone_or_in_a_set() {
    use common::redis::{available, RedisServer};
    if !available("in_redis_the_backends_own_policy_counts_once_alone_or_in_a_set") {
        return;
    }
    let server = RedisServer::start();
    for algorithm in [
        ringlimit::policy::Algorithm::FixedWindow,
        ringlimit::policy::Algorithm::SlidingWindow,
        ringlimit::policy::Algorithm::Gcra,
    ] {
        let own = per(3, Duration::from_secs(3600), "global").with_algorithm(algorithm);
        let backend = ringlimit::backend::RedisBackend::builder(own, &server.url())
            .prefix(&format!("{algorithm:?}:"))
            .build()
            .unwrap();
        let alone = backend.policies().clone();
        let with_login = PolicySet::new([own, per(100, Duration::from_secs(60), "login")]).unwrap();
        assert!(decided(backend.check("alice", &alone)).await.allowed());
        assert!(decided(backend.check("alice", &with_login)).await.allowed());
        let third = decided(backend.check("alice", &with_login)).await;
        assert!(third.allowed(), "{algorithm:?}");
        assert_eq!(
            third.get(0).unwrap().remaining,
            0,
            "{algorithm:?}: 3 of 3, on one key"
        );
        assert!(
            !decided(backend.check("alice", &alone)).await.allowed(),
            "{algorithm:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_on_one_key_never_pass_either_limit() {
    let set = PolicySet::new([
        per(50, Duration::from_secs(3600), "small"),
        per(80, Duration::from_secs(3600), "large"),
    ])
    .unwrap();
    let backend = Arc::new(MemoryBackend::new(set.clone()));
    let allowed = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (backend, set, allowed) = (backend.clone(), set.clone(), allowed.clone());
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if backend.decide_all("hot", &set).unwrap().allowed() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 50);
    let large_only = PolicySet::from(per(80, Duration::from_secs(3600), "large"));
    let large = backend.decide_all("hot", &large_only).unwrap();
    assert_eq!(
        large.get(0).unwrap().remaining,
        80 - 50 - 1,
        "denials took nothing back or more"
    );
}

#[tokio::test]
async fn tiers_pick_the_set_and_an_allow_list_needs_no_key() {
    let free = PolicySet::from(per(1, Duration::from_secs(60), "free"));
    let pro = minute_and_hour();
    let resolver = tiers(|request: &Request<()>| {
        if request.uri().path() == "/health" {
            return Some("internal");
        }
        request.headers().get("x-tier")?.to_str().ok()
    })
    .tier("pro", pro)
    .not_limited("internal")
    .otherwise(free);
    let inner = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let service = RateLimitLayer::new(MemoryBackend::new(per(
        1000,
        Duration::from_secs(60),
        "own",
    )))
    .policies(resolver)
    .layer(inner);
    let ask = |uri: &str, tier: &str| {
        let request = Request::get(uri).header("x-tier", tier).body(()).unwrap();
        service.clone().oneshot(request)
    };
    let ratelimit =
        |response: &Response<_>| response.headers()["ratelimit"].to_str().unwrap().to_owned();

    let pro_first = ask("/?user_id=p", "pro").await.unwrap();
    assert_eq!(pro_first.status(), StatusCode::OK);
    assert_eq!(
        pro_first.headers()["ratelimit-policy"],
        "\"minute\";q=2;w=60, \"hour\";q=3;w=3600"
    );
    assert!(
        ratelimit(&pro_first).starts_with("\"minute\";"),
        "2 of 2 is nearer than 3 of 3"
    );
    assert_eq!(
        ask("/?user_id=p", "pro").await.unwrap().status(),
        StatusCode::OK
    );
    let pro_third = ask("/?user_id=p", "pro").await.unwrap();
    assert_eq!(pro_third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(ratelimit(&pro_third).starts_with("\"minute\";r=0"));

    // No tier, or an unknown one: the free set.
    assert_eq!(
        ask("/?user_id=f", "gold").await.unwrap().status(),
        StatusCode::OK
    );
    let free_second = ask("/?user_id=f", "gold").await.unwrap();
    assert_eq!(free_second.status(), StatusCode::TOO_MANY_REQUESTS);

    // Not limited: no key needed, no headers. A limited route without a key: 400.
    let health = ask("/health", "").await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(!health.headers().contains_key("ratelimit"));
    let keyless = ask("/", "pro").await.unwrap();
    assert_eq!(keyless.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn two_stacked_layers_keep_both_fields() {
    let inner = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let login = RateLimitLayer::new(MemoryBackend::new(per(5, Duration::from_secs(60), "login")));
    let global = RateLimitLayer::new(MemoryBackend::new(per(
        100,
        Duration::from_secs(60),
        "global",
    )));
    let service = global.layer(login.layer(inner));
    let response = service
        .oneshot(Request::get("/?user_id=a").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"login\";q=5;w=60, \"global\";q=100;w=60"
    );
    let ratelimit = response.headers()["ratelimit"].to_str().unwrap();
    assert!(ratelimit.starts_with("\"login\";r=4;t="), "{ratelimit}");
    assert!(ratelimit.contains(", \"global\";r=99;t="), "{ratelimit}");
}

#[tokio::test]
async fn batches_carry_their_policies_end_to_end() {
    let clock = mid_window_clock();
    let nodes = start_cluster(2, per(1000, Duration::from_secs(1), "x"), &clock).await;
    let (node_a, b) = (&nodes[0], &nodes[1].name);
    let keys = common::keys_owned_by(&node_a.backend.ring(), b, 30, |i| format!("u{i}"));
    let set = minute_and_hour();
    // Checked at once: they leave in batches.
    for round in 0..4 {
        let checks = keys
            .iter()
            .map(|key| node_a.backend.check(key, &set))
            .collect();
        let allowed: Vec<bool> = all(checks).await.iter().map(Decisions::allowed).collect();
        let expected = round < 2;
        assert!(
            allowed.iter().all(|&a| a == expected),
            "round {round}: {allowed:?}"
        );
    }
}

#[tokio::test]
async fn an_older_ringlimit_peer_is_asked_one_check_at_a_time_with_its_cost() {
    use axum::routing::get;
    // A ringlimit node from before policies travelled: batch lines `<cost> <id>` only
    // (a `P` line is a bad one: `400 0 0`), single checks read `cost`.
    let costs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let single = {
        let costs = costs.clone();
        move |uri: http::Uri| async move {
            let query = uri.query().unwrap_or_default();
            let cost = query.split('&').find_map(|p| p.strip_prefix("cost="));
            costs.lock().unwrap().push(cost.map(str::to_owned));
            "ALLOWED"
        }
    };
    let batch = |body: String| async move {
        body.lines()
            .map(|line| match line.split_once(' ') {
                Some((cost, _)) if cost.parse::<u32>().is_ok() => "200 9 1000\n",
                _ => "400 0 0\n",
            })
            .collect::<String>()
    };
    let old = common::serve(axum::Router::new().route("/check", get(single).post(batch))).await;
    let old = old.to_string();
    let clock = mid_window_clock();
    let (listener, me) = listeners(1).await.remove(0);
    let members = [me.clone(), old.clone()];
    let node = start_node(
        listener,
        &me,
        &members,
        per(5, Duration::from_secs(60), "x"),
        &clock,
    );
    let keys = common::keys_owned_by(&node.backend.ring(), &old, 20, |i| format!("u{i}"));
    let costly = PolicySet::from(
        per(5, Duration::from_secs(60), "x").with_cost(NonZeroU32::new(2).unwrap()),
    );
    let checks = keys
        .iter()
        .map(|key| node.backend.check(key, &costly))
        .collect();
    let decisions = all(checks).await;
    assert!(
        decisions.iter().all(Decisions::allowed),
        "answered, not failed"
    );
    let costs = costs.lock().unwrap();
    assert_eq!(
        costs.len(),
        keys.len(),
        "every check asked singly in the end"
    );
    assert!(
        costs.iter().all(|cost| cost.as_deref() == Some("2")),
        "{costs:?}"
    );
}

#[tokio::test]
async fn peers_cannot_take_a_nodes_room_for_policies() {
    let backend = MemoryBackend::new(per(5, Duration::from_secs(60), "own"));
    let made_up = |i: u32| PolicySet::from(per(5, Duration::from_secs(60), &format!("p{i}")));
    // The own store is one; peers may bring 47 more.
    for i in 0..47 {
        assert!(backend.decide_forwarded("u", &made_up(i)).is_ok(), "{i}");
    }
    let refused = backend.decide_forwarded("u", &made_up(47));
    assert!(matches!(
        refused,
        Err(ringlimit::BackendError::TooManyPolicies { most: 48 })
    ));
    // A set is made whole or not at all: nothing of it was kept.
    let two_new = PolicySet::new([
        per(5, Duration::from_secs(60), "q1"),
        per(5, Duration::from_secs(60), "q2"),
    ])
    .unwrap();
    assert!(backend.decide_forwarded("u", &two_new).is_err());
    // The node's own sets keep their room.
    for i in 100..116 {
        assert!(backend.decide_all("u", &made_up(i)).is_ok(), "{i}");
    }
    assert!(backend.decide_all("u", &made_up(116)).is_err(), "64 in all");
    assert!(backend.decide_all("u", backend.policies()).is_ok());
}

#[tokio::test]
async fn an_owner_out_of_room_for_policies_answers_400() {
    let clock = mid_window_clock();
    let (listener, me) = listeners(1).await.remove(0);
    let node = start_node(
        listener,
        &me,
        std::slice::from_ref(&me),
        per(5, Duration::from_secs(60), "x"),
        &clock,
    );
    let client = common::HttpClient::new();
    let marked = [("x-ringlimit-forwarded", "1")];
    let url = |i: u32| {
        format!(
            "{}&policies=p{i}%3Bfixed%3B5%3B60000%3B1",
            node.check_url("alice")
        )
    };
    for i in 0..47 {
        assert_eq!(
            client.get(&url(i), &marked).await.status,
            StatusCode::OK,
            "{i}"
        );
    }
    let refused = client.get(&url(47), &marked).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
}

#[tokio::test]
async fn an_owners_refusal_is_final_and_keeps_its_circuit_closed() {
    let clock = mid_window_clock();
    let nodes = start_cluster(2, per(5, Duration::from_secs(60), "x"), &clock).await;
    let (node_a, node_b) = (&nodes[0], &nodes[1]);
    // Node b has room for no more policies from peers.
    let made_up = |i: u32| PolicySet::from(per(5, Duration::from_secs(60), &format!("p{i}")));
    for i in 0..47 {
        node_b
            .backend
            .local()
            .decide_forwarded("u", &made_up(i))
            .unwrap();
    }
    let key = key_owned_by(&node_a.backend.ring(), &node_b.name);
    for attempt in 0..5 {
        let refused = match node_a.backend.check(&key, &made_up(100 + attempt)) {
            Check::Pending(future) => future.await,
            Check::Ready(result) => result,
        };
        assert!(
            matches!(refused, Err(ringlimit::BackendError::Refused { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        node_a.backend.local().tracked_keys(),
        0,
        "no failure mode counted it here"
    );
    // Five refusals, and the circuit to b is closed: a policy b keeps is asked there.
    let asked = node_a.backend.check(&key, &made_up(3));
    assert!(
        matches!(asked, Check::Pending(_)),
        "asked, not failed at once"
    );
    assert!(decided(asked).await.allowed());
}
