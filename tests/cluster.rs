//! Real nodes on loopback ports, talking the peer wire contract to each other.
#![cfg(feature = "cluster")]

mod common;
use common::CheckAt;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    allowed_per_user, hourly, key_owned_by, keys_owned_by, listeners, mid_window_clock,
    start_cluster, start_node, HttpClient, Visit,
};
use ringlimit::{ClusterBackend, Ring};

const LIMIT: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_gets_exactly_the_limit_across_three_nodes() {
    let clock = mid_window_clock();
    let nodes = start_cluster(3, hourly(LIMIT), &clock).await;
    let users = 120;
    // Request i of every user goes to node i % 3: each user is seen by every node.
    let visits = (0..9)
        .flat_map(|i| (0..users).map(move |u| (i, format!("user-{u}"))))
        .map(|(i, user)| Visit {
            url: nodes[i % nodes.len()].check_url(&user),
            user,
            header: None,
        })
        .collect();
    let allowed = allowed_per_user(visits, 64).await;
    assert_eq!(allowed.len(), users);
    for (user, count) in &allowed {
        assert_eq!(*count, LIMIT, "{user}");
    }
    // Each user was counted by exactly one node: its owner.
    let counted: usize = nodes.iter().map(|n| n.backend.local().tracked_keys()).sum();
    assert_eq!(counted, users);
}

#[tokio::test]
async fn odd_user_ids_keep_their_identity_across_a_forward() {
    let clock = mid_window_clock();
    let nodes = start_cluster(3, hourly(LIMIT), &clock).await;
    let client = HttpClient::new();
    let ids = [
        "a&user_id=b",
        "x=y",
        "#fragment",
        "100%",
        "%41",
        "two words",
        "plus+sign",
        "é",
        "日本語",
        "a/b?c;d",
    ];
    for id in ids {
        let owner_name = nodes[0].backend.ring().owner(id).to_owned();
        let owner = nodes.iter().find(|n| n.name == owner_name).unwrap();
        let other = nodes.iter().find(|n| n.name != owner_name).unwrap();
        let counted_elsewhere = other.backend.local().tracked_keys();
        for remaining in (0..LIMIT).rev() {
            let reply = client.get(&other.check_url(id), &[]).await;
            assert_eq!(reply.status, 200, "{id:?}");
            assert_eq!(
                reply.headers["ratelimit"],
                format!("\"default\";r={remaining};t=1800").as_str(),
                "{id:?}"
            );
        }
        // The owner counted the same id: it is now over the limit there too.
        let reply = client.get(&owner.check_url(id), &[]).await;
        assert_eq!(reply.status, 429, "{id:?} at its owner");
        assert_eq!(
            other.backend.local().tracked_keys(),
            counted_elsewhere,
            "{id:?} counted off its owner"
        );
    }
    // Ids that a careless decoder would confuse with the ones above were never counted.
    for lookalike in ["a", "A", "two", "plus sign", "x"] {
        let reply = client.get(&nodes[0].check_url(lookalike), &[]).await;
        assert_eq!(reply.status, 200, "{lookalike:?}");
        assert_eq!(
            reply.headers["ratelimit"],
            format!("\"default\";r={};t=1800", LIMIT - 1).as_str(),
            "{lookalike:?}"
        );
    }
}

#[tokio::test]
async fn nodes_that_disagree_on_members_cannot_bounce_a_request() {
    let clock = mid_window_clock();
    let mut bound = listeners(2).await;
    let (listener_b, b) = bound.pop().unwrap();
    let (listener_a, a) = bound.pop().unwrap();
    // B knows A under another name, so the two rings place some keys differently.
    let a_alias = a.replace("127.0.0.1", "localhost");
    let ring_a = Ring::new([a.clone(), b.clone()]).unwrap();
    let ring_b = Ring::new([b.clone(), a_alias.clone()]).unwrap();
    let key = (0..10_000)
        .map(|i| format!("user-{i}"))
        .find(|k| ring_a.owner(k) == b && ring_b.owner(k) == a_alias)
        .expect("some key is placed differently");

    let members_a = [a.clone(), b.clone()];
    let members_b = [b.clone(), a_alias];
    let node_a = start_node(listener_a, &a, &members_a, hourly(LIMIT), &clock);
    let node_b = start_node(listener_b, &b, &members_b, hourly(LIMIT), &clock);

    let client = HttpClient::new();
    let reply = client.get(&node_a.check_url(&key), &[]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "ALLOWED")
    );
    // A forwarded to B; B, holding nothing of a key its ring gives to A (by another
    // name), sent it on once, marked as relayed, and A decided it where it arrived: two
    // hops at most, counted once.
    let counted = node_a.backend.local().tracked_keys() + node_b.backend.local().tracked_keys();
    assert_eq!(counted, 1);
    assert_eq!(
        node_a.backend.local().used(&key),
        1,
        "decided by A, relayed by B"
    );
}

#[tokio::test]
async fn the_owner_is_asked_over_kept_connections_two_at_most() {
    let clock = mid_window_clock();
    let mut bound = listeners(2).await;
    let (owner_listener, owner) = bound.pop().unwrap();
    let (asker_listener, asker) = bound.pop().unwrap();
    let members = [asker.clone(), owner.clone()];

    // The owner's endpoint behind an accept loop that counts connections.
    let ring = Ring::new(members.clone()).unwrap();
    let owner_backend = Arc::new(
        ClusterBackend::builder(hourly(LIMIT), owner.as_str(), ring)
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let endpoint = ringlimit::endpoint::PeerEndpoint::new(owner_backend.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = owner_listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let service = hyper_util::service::TowerToHyperService::new(endpoint.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let node = start_node(asker_listener, &asker, &members, hourly(LIMIT), &clock);

    let keys = keys_owned_by(&node.backend.ring(), &owner, 50, |i| format!("user-{i}"));
    let client = HttpClient::new();
    for key in &keys {
        assert_eq!(client.get(&node.check_url(key), &[]).await.status, 200);
    }
    assert_eq!(owner_backend.local().tracked_keys(), 50);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one kept-alive connection"
    );

    // A burst from 64 clients: batches in flight take a connection each, two at most.
    let burst = keys_owned_by(&node.backend.ring(), &owner, 1_000, |i| {
        format!("burst-{i}")
    });
    let visits = burst
        .iter()
        .map(|user| Visit {
            url: node.check_url(user),
            user: user.clone(),
            header: None,
        })
        .collect();
    let allowed = allowed_per_user(visits, 64).await;
    assert!(allowed.values().all(|&n| n == 1), "each counted once");
    assert_eq!(owner_backend.local().tracked_keys(), 1_050);
    let connections = accepted.load(Ordering::SeqCst);
    assert!((1..=2).contains(&connections), "{connections} connections");
}

#[tokio::test]
async fn a_node_that_is_not_a_member_refuses_to_start() {
    let ring = Ring::new(["127.0.0.1:7001", "127.0.0.1:7002"]).unwrap();
    let error = ClusterBackend::new(hourly(LIMIT), "127.0.0.1:7003", ring).unwrap_err();
    assert_eq!(
        error.to_string(),
        "this node (127.0.0.1:7003) is not a ring member: 127.0.0.1:7001, 127.0.0.1:7002"
    );
    let ring = Ring::new(["127.0.0.1:7001", "not a host"]).unwrap();
    let error = ClusterBackend::new(hourly(LIMIT), "127.0.0.1:7001", ring).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ring member \"not a host\" is not a valid host:port"
    );
}

#[tokio::test]
async fn an_unreachable_owner_is_counted_locally_by_default() {
    let clock = mid_window_clock();
    let mut bound = listeners(2).await;
    // A port that was bound and released: nothing listens there (connection refused).
    let (dead_listener, dead) = bound.pop().unwrap();
    drop(dead_listener);
    let (listener, me) = bound.pop().unwrap();
    let members = [me.clone(), dead.clone()];
    let node = start_node(listener, &me, &members, hourly(LIMIT), &clock);
    let key = key_owned_by(&node.backend.ring(), &dead);

    let reply = HttpClient::new().get(&node.check_url(&key), &[]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "ALLOWED")
    );
    assert_eq!(
        node.backend.local().used(&key),
        1,
        "counted here while the owner is down"
    );
}

#[tokio::test]
async fn a_hung_owner_times_out_after_the_peer_timeout() {
    a_hung_owner_times_out().await;
}

// On worker threads a forwarded check has no timer of its own: the batch's is its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_worker_threads_a_hung_owner_times_out_after_the_peer_timeout() {
    let bounded = tokio::time::timeout(Duration::from_secs(10), a_hung_owner_times_out());
    bounded
        .await
        .expect("the check is answered, not left waiting");
}

async fn a_hung_owner_times_out() {
    let clock = mid_window_clock();
    let mut bound = listeners(1).await;
    let (listener, me) = bound.pop().unwrap();
    // A peer that accepts connections and never answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_name = hung.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hung.accept().await {
            held.push(stream);
        }
    });
    let ring = Ring::new([me.clone(), hung_name.clone()]).unwrap();
    let backend = ClusterBackend::builder(hourly(LIMIT), me.as_str(), ring)
        .peer_timeout(Duration::from_millis(100))
        .failure_mode(ringlimit::backend::FailureMode::Deny)
        .clock(clock)
        .build()
        .unwrap();
    let key = key_owned_by(&backend.ring(), &hung_name);
    let ringlimit::Check::Pending(check) = backend.check_at(&key, NonZeroU32::MIN) else {
        panic!("a key owned by a peer must be forwarded");
    };
    match check.await {
        Err(ringlimit::BackendError::Timeout { target, after }) => {
            assert_eq!(target, hung_name);
            assert_eq!(after, Duration::from_millis(100));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    drop(listener);
}

/// A stand-in for the original Python node: answers the wire contract with
/// bare bodies and no `RateLimit` headers, counting per decoded `user_id`.
fn reference_node(listener: tokio::net::TcpListener, limit: u32) {
    let counts = Arc::new(std::sync::Mutex::new(HashMap::<String, u32>::new()));
    let service = tower::service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let counts = counts.clone();
        async move {
            let query = request.uri().query().unwrap_or("").replace('+', " ");
            let user = query.strip_prefix("user_id=").map(|v| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            });
            let (status, body) = match user {
                Some(user) if !user.is_empty() => {
                    let mut counts = counts.lock().unwrap();
                    let count = counts.entry(user).or_default();
                    if *count < limit {
                        *count += 1;
                        (200, "ALLOWED")
                    } else {
                        (429, "RATE LIMIT EXCEEDED")
                    }
                }
                _ => (400, "missing user_id"),
            };
            let response = http::Response::builder()
                .status(status)
                .header("content-type", "text/plain")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    tokio::spawn(ringlimit::endpoint::serve(
        listener,
        service,
        std::future::pending(),
    ));
}

/// A ringlimit node and a reference node, in one ring; the reference's name.
async fn node_and_reference(clock: &ringlimit::ManualClock) -> (common::Node, String) {
    let mut bound = listeners(2).await;
    let (reference_listener, reference) = bound.pop().unwrap();
    let (listener, me) = bound.pop().unwrap();
    reference_node(reference_listener, LIMIT);
    let members = [me.clone(), reference.clone()];
    let node = start_node(listener, &me, &members, hourly(LIMIT), clock);
    (node, reference)
}

#[tokio::test]
async fn a_reference_peer_without_ratelimit_headers_is_understood() {
    let clock = mid_window_clock();
    let (node, reference) = node_and_reference(&clock).await;
    // An id that needs encoding, so the reference's decoder is exercised too.
    let key = keys_owned_by(&node.backend.ring(), &reference, 1, |i| {
        format!("user {i} & co=é")
    })
    .remove(0);

    let client = HttpClient::new();
    for _ in 0..LIMIT {
        let reply = client.get(&node.check_url(&key), &[]).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, "ALLOWED")
        );
    }
    let denied = client.get(&node.check_url(&key), &[]).await;
    assert_eq!(denied.status, 429);
    assert_eq!(denied.body, "RATE LIMIT EXCEEDED");
    // The reset comes from the shared epoch-aligned window, not from the peer.
    assert_eq!(denied.headers["retry-after"], "1800");
    assert_eq!(denied.headers["ratelimit"], "\"default\";r=0;t=1800");
    assert_eq!(node.backend.local().tracked_keys(), 0);
}

// Regression: a ring that kept a reference node logged a warning for it every minute.
#[tokio::test]
async fn a_reference_peer_refusing_batches_is_a_warning_once() {
    let logs = common::CapturedLogs::install_at(tracing::Level::DEBUG);
    let clock = mid_window_clock();
    let (node, reference) = node_and_reference(&clock).await;
    let keys = keys_owned_by(&node.backend.ring(), &reference, 3, |i| format!("user-{i}"));
    let logged = |what: &str| logs.text().matches(what).count();
    let (warned, again) = (
        "peer refused a batch of checks (",
        "peer refused a batch of checks again",
    );
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            // Past the retry: this check is offered as a batch again, and refused again.
            tokio::time::pause();
            tokio::time::advance(Duration::from_secs(61)).await;
            tokio::time::resume();
        }
        // A client per request: the server closed the idle connection in the jump.
        let reply = HttpClient::new().get(&node.check_url(key), &[]).await;
        assert_eq!(reply.status, 200, "asked one check at a time");
        assert_eq!((logged(warned), logged(again)), (1, i), "{}", logs.text());
    }
    assert_eq!(
        node.backend.local().tracked_keys(),
        0,
        "nothing fell back to local counting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_to_a_reference_peer_are_sent_one_by_one() {
    let clock = mid_window_clock();
    let (node, reference) = node_and_reference(&clock).await;
    let keys = keys_owned_by(&node.backend.ring(), &reference, 40, |i| {
        format!("user-{i}")
    });
    let visits = (0..LIMIT + 2)
        .flat_map(|_| keys.iter())
        .map(|key| Visit {
            user: key.clone(),
            url: node.check_url(key),
            header: None,
        })
        .collect();
    let allowed = allowed_per_user(visits, 64).await;
    // The reference has no batch endpoint: every check still reached it and was counted.
    assert_eq!(allowed.len(), keys.len());
    assert!(allowed.values().all(|&n| n == LIMIT), "{allowed:?}");
    assert_eq!(
        node.backend.local().tracked_keys(),
        0,
        "nothing fell back to local counting"
    );
}

// Regression: a check forwarded alone went as `GET /check` without its cost, so the owner
// charged its own policy's cost (1) where a batched one cost what was asked. (A lone check
// now goes as a batch of one; `GET` is kept for peers that refuse batches.)
#[tokio::test]
async fn a_check_forwarded_alone_keeps_its_cost() {
    let clock = mid_window_clock();
    let nodes = start_cluster(2, hourly(10), &clock).await;
    let key = key_owned_by(&nodes[0].backend.ring(), &nodes[1].name);
    let decision = match nodes[0].backend.check_at(&key, NonZeroU32::new(3).unwrap()) {
        ringlimit::Check::Pending(future) => future.await.unwrap(),
        ringlimit::Check::Ready(_) => panic!("{key} is owned by the other node"),
    };
    assert_eq!(decision.get(0).unwrap().remaining, 7);
    assert_eq!(nodes[1].backend.local().used(&key), 3);

    // A client's own `cost` is not read: only forwarded checks carry one.
    let client = HttpClient::new();
    let url = format!("{}&cost=1000", nodes[1].check_url(&key));
    assert_eq!(client.get(&url, &[]).await.status, 200);
    assert_eq!(nodes[1].backend.local().used(&key), 4);
    let marked = [("x-ringlimit-forwarded", "1")];
    let bad = format!("{}&cost=0", nodes[1].check_url(&key));
    assert_eq!(client.get(&bad, &marked).await.status, 400);
    assert_eq!(nodes[1].backend.local().used(&key), 4);
}
