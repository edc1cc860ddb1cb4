//! Three ringlimit nodes in one process on loopback: requests for a few users are spread
//! round-robin over all nodes, and each user still gets exactly the limit.
//!
//! ```text
//! cargo run --release --example cluster_demo
//! ```

mod support;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ringlimit::endpoint::{serve, PeerEndpoint};
use ringlimit::{ClusterBackend, Policy, Ring};
use support::shutdown_signal;

const NODES: usize = 3;
const LIMIT: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "a&user_id=b é"];
const REQUESTS_PER_USER: usize = 8;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_logging();
    // Bind first, so every node's address is known before the ring is built.
    let mut listeners = Vec::new();
    for _ in 0..NODES {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    }
    let members: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    let ring = Ring::new(members.clone())?;
    let policy = Policy::per_window(NonZeroU32::new(LIMIT).unwrap(), WINDOW);
    for (listener, me) in listeners.into_iter().zip(&members) {
        let backend = Arc::new(ClusterBackend::new(policy, me.as_str(), ring.clone())?);
        tokio::spawn(serve(
            listener,
            PeerEndpoint::new(backend),
            shutdown_signal(),
        ));
    }
    println!("ring of {NODES} nodes: {}", members.join(", "));
    println!(
        "policy: {LIMIT} requests per user per {} s\n",
        WINDOW.as_secs()
    );

    wait_for_a_fresh_window().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    println!(
        "{:<16} {:<17} {:>7} {:>6}  answers, node by node",
        "user", "owner", "allowed", "429s"
    );
    for user in USERS {
        let (mut allowed, mut denied, mut trail) = (0, 0, String::new());
        for i in 0..REQUESTS_PER_USER {
            let node = &members[i % NODES];
            let encoded =
                percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC);
            let uri = format!("http://{node}/check?user_id={encoded}").parse()?;
            let status = client.get(uri).await?.status();
            match status.as_u16() {
                200 => allowed += 1,
                429 => denied += 1,
                other => return Err(format!("unexpected status {other}").into()),
            }
            trail.push_str(&format!("n{}:{} ", i % NODES + 1, status.as_u16()));
        }
        let verdict = if allowed == LIMIT {
            "exactly the limit"
        } else {
            "NOT the limit"
        };
        println!(
            "{user:<16} {:<17} {allowed:>7} {denied:>6}  {trail}  {verdict}",
            ring.owner(user)
        );
    }

    println!("\nThe nodes keep serving until Ctrl-C. Try:");
    for node in &members {
        println!("  curl -i 'http://{node}/check?user_id=zoe'");
    }
    shutdown_signal().await;
    Ok(())
}

/// Sleeps into the next window if the current one is about to end, so that the demo's
/// requests all fall in one window.
async fn wait_for_a_fresh_window() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let into_window = Duration::from_millis((now.as_millis() % WINDOW.as_millis()) as u64);
    let left = WINDOW - into_window;
    if left < Duration::from_secs(3) {
        println!("(waiting {} ms for a fresh window)\n", left.as_millis());
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}
