//! Hostile input and the peer secret: clear 4xx answers, nothing counted, no panic, and
//! the node keeps serving.
#![cfg(feature = "cluster")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{check_url, hourly, listeners, mid_window_clock, HttpClient};
use ringlimit::endpoint::{serve, PeerEndpoint};
use ringlimit::protocol::PeerSecret;
use ringlimit::{ClusterBackend, ManualClock, Ring};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: u32 = 3;

/// Sends raw bytes and returns the raw answer (up to the server closing or 64 KiB).
async fn raw(address: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The server may refuse before reading everything: a failed write is part of that.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 || answer.len() > 65_536 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    });
    let _ = read.await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

async fn single_node(
    secret: Option<&PeerSecret>,
) -> (std::net::SocketAddr, Arc<ClusterBackend<ManualClock>>) {
    let (listener, me) = listeners(1).await.pop().unwrap();
    let ring = Ring::new([me.clone()]).unwrap();
    let mut backend = ClusterBackend::builder(hourly(LIMIT), me.as_str(), ring);
    if let Some(secret) = secret {
        backend = backend.peer_secret(secret);
    }
    let backend = Arc::new(backend.clock(mid_window_clock()).build().unwrap());
    let mut endpoint = PeerEndpoint::new(backend.clone());
    if let Some(secret) = secret {
        endpoint = endpoint.peer_secret(secret);
    }
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, endpoint, std::future::pending()));
    (address, backend)
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_and_count_nothing() {
    let (address, backend) = single_node(None).await;
    let client = HttpClient::new();
    let url = |query: &str| format!("http://{address}/check?{query}");
    let long = "x".repeat(257);
    for (query, status, body) in [
        (url(""), 400, "missing query parameter `user_id`\n"),
        (url("user_id="), 400, "empty query parameter `user_id`\n"),
        (
            url("user_id=%zz"),
            400,
            "invalid query parameter `user_id`: bad percent-encoding\n",
        ),
        (
            url("user_id=%"),
            400,
            "invalid query parameter `user_id`: bad percent-encoding\n",
        ),
        (
            url("user_id=%C3"),
            400,
            "invalid query parameter `user_id`: not UTF-8\n",
        ),
        (
            url(&format!("user_id={long}")),
            400,
            "rate-limit key longer than 256 bytes\n",
        ),
        // Regression: the first of two was counted, an app reading the last served
        // another user, and rotating the first got 30 of 30 allowed.
        (
            url("user_id=a&user_id=b"),
            400,
            "query parameter `user_id` given more than once\n",
        ),
        (
            format!("http://{address}/nope?user_id=a"),
            404,
            "not found\n",
        ),
    ] {
        let reply = client.get(&query, &[]).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (status, body),
            "{query}"
        );
    }
    let answer = raw(
        address,
        b"DELETE /check?user_id=a HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert_eq!(status_line(&answer), "HTTP/1.1 405 Method Not Allowed");
    assert!(answer.to_ascii_lowercase().contains("allow: get"));
    assert_eq!(backend.local().tracked_keys(), 0);

    // A key of exactly the maximum is fine.
    let reply = client.get(&check_url(address, &"y".repeat(256)), &[]).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn oversized_and_garbage_requests_are_refused_and_the_node_keeps_serving() {
    let (address, backend) = single_node(None).await;
    let huge_header = format!(
        "GET /check?user_id=a HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = raw(address, huge_header.as_bytes()).await;
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );

    let huge_line = format!(
        "GET /check?user_id={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = raw(address, huge_line.as_bytes()).await;
    assert!(
        status_line(&answer).starts_with("HTTP/1.1 4"),
        "refused: {:?}",
        status_line(&answer)
    );

    for garbage in [
        &b"\x00\x01\x02\xff\xfe\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /check?user_id=a HTTP/9.9\r\n\r\n",
        b"GET /check?user_id=a HTTP/1.1\r\nbad header line\r\n\r\n",
        b"GET /check?user_id=\xff\xfe HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /check?user_id=a HTTP/1.1\r\ncontent-length: -1\r\n\r\n",
    ] {
        let answer = raw(address, garbage).await;
        assert!(
            answer.is_empty() || status_line(&answer).starts_with("HTTP/1.1 4"),
            "{garbage:?} got {:?}",
            status_line(&answer)
        );
    }
    assert_eq!(backend.local().tracked_keys(), 0);

    let reply = HttpClient::new()
        .get(&check_url(address, "after"), &[])
        .await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "ALLOWED")
    );
}

#[tokio::test]
async fn a_marked_check_needs_the_peer_secret() {
    let secret = PeerSecret::new("correct-horse").unwrap();
    let (address, backend) = single_node(Some(&secret)).await;
    let client = HttpClient::new();
    let url = check_url(address, "mallory");

    let forged = client.get(&url, &[("x-ringlimit-forwarded", "1")]).await;
    assert_eq!(forged.status, 401);
    assert_eq!(forged.body, "forwarded check without the peer secret\n");
    let wrong = [
        ("x-ringlimit-forwarded", "1"),
        ("authorization", "Bearer correct-hors"),
    ];
    assert_eq!(client.get(&url, &wrong).await.status, 401);
    assert_eq!(
        backend.local().tracked_keys(),
        0,
        "refused checks count nothing"
    );

    let right = [
        ("x-ringlimit-forwarded", "1"),
        ("authorization", "Bearer correct-horse"),
    ];
    assert_eq!(client.get(&url, &right).await.status, 200);
    // Clients without the mark need no secret.
    assert_eq!(client.get(&url, &[]).await.status, 200);
}

#[tokio::test]
async fn nodes_sharing_a_secret_forward_to_each_other() {
    let secret = PeerSecret::new("s3cret").unwrap();
    let clock = mid_window_clock();
    let bound = listeners(2).await;
    let members: Vec<String> = bound.iter().map(|(_, name)| name.clone()).collect();
    let mut nodes = Vec::new();
    for (listener, me) in bound {
        let ring = Ring::new(members.clone()).unwrap();
        let backend = ClusterBackend::builder(hourly(LIMIT), me.as_str(), ring)
            .peer_secret(&secret)
            .clock(clock.clone())
            .build()
            .unwrap();
        let backend = Arc::new(backend);
        let endpoint = PeerEndpoint::new(backend.clone()).peer_secret(&secret);
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, endpoint, std::future::pending()));
        nodes.push((address, backend));
    }
    let ring = nodes[0].1.ring();
    let key = common::key_owned_by(&ring, &members[1]);
    let client = HttpClient::new();
    for _ in 0..LIMIT {
        assert_eq!(
            client.get(&check_url(nodes[0].0, &key), &[]).await.status,
            200
        );
    }
    assert_eq!(
        client.get(&check_url(nodes[0].0, &key), &[]).await.status,
        429
    );
    assert_eq!(nodes[1].1.local().tracked_keys(), 1, "counted by the owner");
    assert_eq!(nodes[0].1.local().tracked_keys(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_ids_stays_under_the_key_cap_and_a_user_arriving_meanwhile_stays_exact()
{
    const CAP: usize = 500;
    const HONEST_LIMIT: u32 = 10;
    let (listener, me) = listeners(1).await.pop().unwrap();
    let ring = Ring::new([me.clone()]).unwrap();
    let backend = ClusterBackend::builder(hourly(HONEST_LIMIT), me.as_str(), ring)
        .max_keys(CAP)
        .clock(mid_window_clock())
        .build()
        .unwrap();
    let backend = Arc::new(backend);
    let address = listener.local_addr().unwrap();
    let endpoint = PeerEndpoint::new(backend.clone());
    tokio::spawn(serve(listener, endpoint, std::future::pending()));

    let client = HttpClient::new();
    let flooders: Vec<_> = (0..4)
        .map(|t| {
            let (client, backend) = (client.clone(), backend.clone());
            tokio::spawn(async move {
                for i in 0..2_500 {
                    let reply = client
                        .get(&check_url(address, &format!("flood-{t}-{i}")), &[])
                        .await;
                    assert_eq!(reply.status, 200, "every one-request id is answered");
                    assert!(backend.local().tracked_keys() <= CAP);
                }
            })
        })
        .collect();
    let mut honest_allowed = 0;
    let mut honest_requests = 0;
    while !flooders.iter().all(|f| f.is_finished()) {
        let reply = client.get(&check_url(address, "honest"), &[]).await;
        honest_allowed += u32::from(reply.status == 200);
        honest_requests += 1;
    }
    for flooder in flooders {
        flooder.await.unwrap();
    }
    assert!(
        honest_requests > HONEST_LIMIT * 2,
        "{honest_requests} requests during the flood"
    );
    assert_eq!(
        honest_allowed, HONEST_LIMIT,
        "limited exactly through the flood"
    );
    assert!(backend.local().tracked_keys() <= CAP);
    assert!(backend.local().evicted_keys() >= 10_000 - CAP as u64);
}
