//! The cost of a handoff: the time from a node's leaving the ring to the last of its
//! keys handed to the other node, for 10,000 and 1,000,000 live keys, with real HTTP
//! between two nodes on loopback (one process). Not criterion: each size is one
//! handoff, run a few times, and every run is printed.
//!
//! `cargo bench --bench handoff` (`-- 10000` for one size).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringlimit::endpoint::{serve, PeerEndpoint};
use ringlimit::{Backend, ClusterBackend, Policy, Ring};

const RUNS: usize = 3;

fn main() {
    let sizes: Vec<usize> = match std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        Some(size) => vec![size],
        None => vec![10_000, 1_000_000],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for keys in sizes {
        for run in 1..=RUNS {
            let (took, handed, taken) = runtime.block_on(handoff(keys));
            println!(
                "{keys} keys, run {run}: {handed} handed over in {:.1} ms ({:.0} keys/s); the other node holds {taken}",
                took.as_secs_f64() * 1e3,
                handed as f64 / took.as_secs_f64()
            );
        }
    }
}

/// Two nodes; the first holds `keys` keys (counted once each), then leaves: how long
/// `leave` took, how many keys it handed over, and how many the other node holds then.
async fn handoff(keys: usize) -> (Duration, usize, usize) {
    let policy = Policy::per_window(NonZeroU32::new(100).unwrap(), Duration::from_secs(3600));
    let mut listeners = Vec::new();
    for _ in 0..2 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let names: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut nodes = Vec::new();
    for (listener, name) in listeners.into_iter().zip(&names) {
        let ring = Ring::new(names.clone()).unwrap();
        let backend = ClusterBackend::builder(policy, name.as_str(), ring)
            .max_keys(2 * keys)
            .build()
            .unwrap();
        let backend = Arc::new(backend);
        let endpoint = PeerEndpoint::new(backend.clone());
        tokio::spawn(serve(listener, endpoint, std::future::pending()));
        nodes.push(backend);
    }
    let (leaving, staying) = (&nodes[0], &nodes[1]);
    let own = leaving.policies().clone();
    for i in 0..keys {
        leaving
            .local()
            .decide_all(&format!("user-{i}"), &own)
            .unwrap();
    }
    let started = Instant::now();
    let handed = leaving.leave().await;
    (started.elapsed(), handed, staying.local().tracked_keys())
}
