//! A peer whose numbers are wrong (a lie, or a node started with a longer window): a
//! node bounds them by its own policy before using them.
#![cfg(feature = "cluster")]

mod common;
use common::CheckAt;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use common::{key_owned_by, keys_owned_by, serve};
use http::StatusCode;
use ringlimit::{Check, ClusterBackend, Decision, ManualClock, Policy, Ring};

const LIMIT: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// This node's name: only its peer's keys are checked, so nothing listens there.
const ME: &str = "127.0.0.1:1";

/// A peer that denies everything with an absurd reset while `lying` (and, in batches, an
/// absurd remaining count), and allows everything (with no counter state, as the
/// reference does) once it stops. Unless it `takes_batches`, it answers single checks
/// only (`405` to a batch), so each check is asked alone, with `GET`.
struct Liar {
    name: String,
    lying: Arc<AtomicBool>,
    asked: Arc<AtomicUsize>,
}

async fn liar(reset_secs: u64, takes_batches: bool) -> Liar {
    let lying = Arc::new(AtomicBool::new(true));
    let asked = Arc::new(AtomicUsize::new(0));
    let single = {
        let (lying, asked) = (lying.clone(), asked.clone());
        move || async move {
            asked.fetch_add(1, Ordering::SeqCst);
            match lying.load(Ordering::SeqCst) {
                true => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("ratelimit", format!("\"default\";r=0;t={reset_secs}"))],
                    "RATE LIMIT EXCEEDED",
                ),
                false => (StatusCode::OK, [("x-honest", String::new())], "ALLOWED"),
            }
        }
    };
    let batch = {
        let asked = asked.clone();
        move |body: String| async move {
            asked.fetch_add(1, Ordering::SeqCst);
            let reset_ms = reset_secs.saturating_mul(1000);
            body.lines()
                .map(|_| format!("429 0 4000000 {reset_ms}\n"))
                .collect::<String>()
        }
    };
    let app = match takes_batches {
        true => Router::new().route("/check", get(single).post(batch)),
        false => Router::new().route("/check", get(single)),
    };
    let address = serve(app).await;
    Liar {
        name: address.to_string(),
        lying,
        asked,
    }
}

/// A node named `me` on a ring with `peer`, its clock at the start of a window.
fn node(me: &str, peer: &str) -> (ClusterBackend<ManualClock>, ManualClock) {
    let clock = ManualClock::new(Duration::from_secs(1_800_000_000));
    let policy = Policy::per_window(NonZeroU32::new(LIMIT).unwrap(), WINDOW);
    let ring = Ring::new([me, peer]).unwrap();
    let backend = ClusterBackend::builder(policy, me, ring)
        .clock(clock.clone())
        .build()
        .unwrap();
    (backend, clock)
}

async fn decide(backend: &ClusterBackend<ManualClock>, key: &str) -> Decision {
    match backend.check_at(key, NonZeroU32::MIN) {
        Check::Ready(result) => result.unwrap().get(0).unwrap(),
        Check::Pending(future) => future.await.unwrap().get(0).unwrap(),
    }
}

fn assert_bounded(decision: &Decision) {
    assert!(!decision.allowed, "{decision:?}");
    assert!(decision.remaining <= LIMIT, "{decision:?}");
    assert!(decision.reset <= WINDOW, "{decision:?}");
    assert!(decision.reset_secs() <= WINDOW.as_secs(), "{decision:?}");
}

// Regression: `t=4000000000` made a node deny the user by itself for 126 years
// (`Retry-After: 3999999999`), still after the peer was healthy again; `t` near
// `u64::MAX` wrapped.
#[tokio::test]
async fn a_peers_reset_and_remaining_are_bounded_by_this_nodes_policy() {
    for reset_secs in [4_000_000_000, u64::MAX / 1000, u64::MAX] {
        let peer = liar(reset_secs, false).await;
        let (backend, clock) = node(ME, &peer.name);
        let key = key_owned_by(&backend.ring(), &peer.name);

        let told = decide(&backend, &key).await;
        assert_bounded(&told);
        assert_eq!(peer.asked.load(Ordering::SeqCst), 1);

        // Remembered for the rest of this node's window at most, not for the lie's.
        peer.lying.store(false, Ordering::SeqCst);
        clock.advance(Duration::from_secs(30));
        assert_bounded(&decide(&backend, &key).await);
        assert_eq!(peer.asked.load(Ordering::SeqCst), 1, "answered from memory");
        clock.advance(Duration::from_secs(30));
        assert!(
            decide(&backend, &key).await.allowed,
            "a new window: asked again"
        );
        assert_eq!(peer.asked.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn a_batch_answer_with_absurd_numbers_is_bounded_too() {
    let peer = liar(u64::MAX, true).await;
    let (backend, _) = node(ME, &peer.name);
    let keys = keys_owned_by(&backend.ring(), &peer.name, 20, |i| format!("user-{i}"));
    // Queued before any is awaited: they leave in batches.
    let checks: Vec<_> = keys
        .iter()
        .map(|key| backend.check_at(key, NonZeroU32::MIN))
        .collect();
    for check in checks {
        let decision = match check {
            Check::Ready(result) => result.unwrap().get(0).unwrap(),
            Check::Pending(future) => future.await.unwrap().get(0).unwrap(),
        };
        assert_bounded(&decision);
    }
    assert!(peer.asked.load(Ordering::SeqCst) < keys.len(), "batched");
}
