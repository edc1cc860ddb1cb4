//! Dead and hung owners, failure modes and circuits, against real sockets on loopback.
#![cfg(feature = "cluster")]

mod common;
use common::CheckAt;

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{hourly, hung_peer, listeners, mid_window_clock, start_node, HttpClient};
use ringlimit::backend::CircuitPolicy;
use ringlimit::backend::FailureMode;
use ringlimit::{BackendError, Check, ClusterBackend, Decision, ManualClock, Ring};

const LIMIT: u32 = 2;

/// A loopback port nothing listens on (bound, then released).
async fn dead_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Node `me` in a ring with `peer`, and a key that `peer` owns.
fn node_with_peer(peer: &str, mode: FailureMode) -> (ClusterBackend<ManualClock>, String) {
    let me = "127.0.0.1:1";
    let ring = Ring::new([me, peer]).unwrap();
    let key = common::key_owned_by(&ring, peer);
    let backend = ClusterBackend::builder(hourly(LIMIT), me, ring)
        .peer_timeout(Duration::from_millis(100))
        .failure_mode(mode)
        .circuit(CircuitPolicy {
            threshold: 3,
            cooldown: Duration::from_millis(50),
        })
        .clock(mid_window_clock())
        .build()
        .unwrap();
    (backend, key)
}

/// Runs a check to its end, saying whether it needed a future (a wait on the network).
async fn run(
    check: Check<ringlimit::backend::RemoteFuture>,
) -> (bool, Result<Decision, BackendError>) {
    match check {
        Check::Ready(result) => (false, result.map(|d| d.get(0).unwrap())),
        Check::Pending(future) => (true, future.await.map(|d| d.get(0).unwrap())),
    }
}

#[tokio::test]
async fn a_dead_owner_gets_each_failure_mode() {
    let dead = dead_port().await;

    let (allow, key) = node_with_peer(&dead, FailureMode::Allow);
    for _ in 0..LIMIT + 1 {
        let (_, result) = run(allow.check_at(&key, NonZeroU32::MIN)).await;
        assert!(result.unwrap().allowed, "fail open");
    }
    assert_eq!(allow.local().tracked_keys(), 0, "allow counts nothing");

    let (deny, key) = node_with_peer(&dead, FailureMode::Deny);
    let (_, result) = run(deny.check_at(&key, NonZeroU32::MIN)).await;
    assert!(matches!(result, Err(BackendError::Unavailable { ref target, .. }) if *target == dead));

    let (local, key) = node_with_peer(&dead, FailureMode::Local);
    let mut allowed = 0;
    for _ in 0..LIMIT + 3 {
        if run(local.check_at(&key, NonZeroU32::MIN))
            .await
            .1
            .unwrap()
            .allowed
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, LIMIT, "local keeps the same policy");
    assert_eq!(local.local().tracked_keys(), 1);
}

#[tokio::test]
async fn a_dead_owners_circuit_opens_then_a_probe_closes_it() {
    let dead = dead_port().await;
    let (backend, key) = node_with_peer(&dead, FailureMode::Deny);
    for _ in 0..3 {
        let (waited, result) = run(backend.check_at(&key, NonZeroU32::MIN)).await;
        assert!(waited);
        assert!(matches!(result, Err(BackendError::Unavailable { .. })));
    }
    // Open: the failure mode applies at once, with no network wait and no future.
    let (waited, result) = run(backend.check_at(&key, NonZeroU32::MIN)).await;
    assert!(!waited);
    assert!(matches!(result, Err(BackendError::CircuitOpen { .. })));

    // The owner comes back on its port; after the cooldown one probe closes the circuit.
    let listener = tokio::net::TcpListener::bind(&dead).await.unwrap();
    let clock = mid_window_clock();
    let members = ["127.0.0.1:1".to_owned(), dead.clone()];
    let _owner = start_node(listener, &dead, &members, hourly(LIMIT), &clock);
    // The cooldown passes on tokio's clock, moved on rather than waited for.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(50)).await;
    tokio::time::resume();
    let (waited, result) = run(backend.check_at(&key, NonZeroU32::MIN)).await;
    assert!(waited, "the probe goes to the owner");
    assert!(result.unwrap().allowed);
    let (waited, result) = run(backend.check_at(&key, NonZeroU32::MIN)).await;
    assert!(waited, "closed again: checks go to the owner");
    assert!(result.unwrap().allowed);
}

#[tokio::test]
async fn a_hung_owner_stops_costing_the_timeout_once_its_circuit_opens() {
    let (hung, accepted) = hung_peer().await;
    let (backend, key) = node_with_peer(&hung, FailureMode::Local);
    for _ in 0..3 {
        let (waited, result) = run(backend.check_at(&key, NonZeroU32::MIN)).await;
        assert!(waited);
        assert!(result.is_ok(), "answered locally after the timeout");
    }
    let asked = accepted.load(Ordering::SeqCst);
    assert!(asked >= 1);
    // Open: answered locally at once, and the hung peer is not asked again.
    for _ in 0..5 {
        let (waited, _) = run(backend.check_at(&key, NonZeroU32::MIN)).await;
        assert!(!waited, "no wait once the circuit is open");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), asked);
    assert_eq!(backend.local().tracked_keys(), 1);
}

#[tokio::test]
async fn over_http_a_hung_owner_gets_503_under_deny() {
    let (hung, _) = hung_peer().await;
    let mut bound = listeners(1).await;
    let (listener, me) = bound.pop().unwrap();
    let ring = Ring::new([me.clone(), hung.clone()]).unwrap();
    let key = common::key_owned_by(&ring, &hung);
    let backend = ClusterBackend::builder(hourly(LIMIT), me.as_str(), ring)
        .peer_timeout(Duration::from_millis(50))
        .failure_mode(FailureMode::Deny)
        .build()
        .unwrap();
    let endpoint = ringlimit::endpoint::PeerEndpoint::new(Arc::new(backend));
    let address = listener.local_addr().unwrap();
    tokio::spawn(ringlimit::endpoint::serve(
        listener,
        endpoint,
        std::future::pending(),
    ));

    let client = HttpClient::new();
    for _ in 0..5 {
        let reply = client.get(&common::check_url(address, &key), &[]).await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, "owner unavailable\n");
    }
}
