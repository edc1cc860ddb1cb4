//! One node over real HTTP: an axum app behind the layer with the in-memory backend.
#![cfg(feature = "cluster")]

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use axum::{routing::get, Router};
use common::{allowed_per_user, serve, HttpClient, Visit};
use ringlimit::{key::HeaderKey, ManualClock, MemoryBackend, Policy, RateLimitLayer};

const LIMIT: u32 = 5;

async fn app() -> std::net::SocketAddr {
    // A clock stopped half-way through a window, so no run can straddle two windows.
    let clock = ManualClock::new(Duration::from_secs(1_800_000_000 + 1800));
    let policy = Policy::per_window(NonZeroU32::new(LIMIT).unwrap(), Duration::from_secs(3600));
    let backend = MemoryBackend::builder(policy).clock(clock).build();
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(backend).key(HeaderKey::from_static("x-user-id")));
    serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_get_exactly_the_limit_per_user() {
    let address = app().await;
    let users = 120;
    // Every user's 9 requests are interleaved across all 64 clients.
    let visits = (0..9)
        .flat_map(|_| 0..users)
        .map(|u| Visit {
            user: format!("user-{u}"),
            url: format!("http://{address}/hello"),
            header: Some(("x-user-id", format!("user-{u}"))),
        })
        .collect();
    let allowed = allowed_per_user(visits, 64).await;
    assert_eq!(allowed.len(), users);
    for (user, count) in &allowed {
        assert_eq!(*count, LIMIT, "{user}");
    }
}

#[tokio::test]
async fn responses_carry_the_headers_and_rejections_are_clear() {
    let address = app().await;
    let client = HttpClient::new();
    let url = format!("http://{address}/hello");

    let first = client.get(&url, &[("x-user-id", "carol")]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, "hello");
    assert_eq!(first.headers["ratelimit-policy"], "\"default\";q=5;w=3600");
    assert_eq!(first.headers["ratelimit"], "\"default\";r=4;t=1800");

    for _ in 1..LIMIT {
        assert_eq!(
            client.get(&url, &[("x-user-id", "carol")]).await.status,
            200
        );
    }
    let denied = client.get(&url, &[("x-user-id", "carol")]).await;
    assert_eq!(denied.status, 429);
    assert_eq!(denied.body, "rate limit exceeded\n");
    assert_eq!(denied.headers["retry-after"], "1800");

    let anonymous = client.get(&url, &[]).await;
    assert_eq!(anonymous.status, 400);
    assert_eq!(anonymous.body, "missing header `x-user-id`\n");
    // Regression: the first of two headers was counted; the app may read the other.
    let twice = client
        .get(&url, &[("x-user-id", "dave"), ("x-user-id", "carol")])
        .await;
    assert_eq!(twice.status, 400);
    assert_eq!(twice.body, "header `x-user-id` given more than once\n");
    assert_eq!(
        anonymous.headers["content-type"],
        "text/plain; charset=utf-8"
    );
}

#[tokio::test]
async fn the_peer_ip_key_limits_by_client_address_over_real_http() {
    use ringlimit::key::PeerIpKey;
    let policy = Policy::per_window(NonZeroU32::new(2).unwrap(), Duration::from_secs(3600));
    let backend = MemoryBackend::builder(policy)
        .clock(ManualClock::new(Duration::from_secs(1_800_000_000 + 1800)))
        .build();
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(backend).key(PeerIpKey::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(ringlimit::endpoint::serve(
        listener,
        app,
        std::future::pending(),
    ));

    let client = HttpClient::new();
    let url = format!("http://{address}/hello");
    // A client's own X-Forwarded-For is ignored: no proxy is trusted.
    let forged = [("x-forwarded-for", "6.6.6.6")];
    let statuses = [
        client.get(&url, &[]).await.status,
        client.get(&url, &forged).await.status,
        client.get(&url, &[]).await.status,
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 200, 429]);
}

// Regression: under `axum::serve` with connect info, every request got `400` with a body
// that told the client how the server was set up.
#[tokio::test]
async fn the_peer_ip_key_reads_the_client_address_under_axum_serve() {
    use ringlimit::key::PeerIpKey;
    let policy = Policy::per_window(NonZeroU32::new(2).unwrap(), Duration::from_secs(3600));
    let app = |backend: MemoryBackend<ManualClock>| {
        Router::new()
            .route("/hello", get(|| async { "hello" }))
            .layer(RateLimitLayer::new(backend).key(PeerIpKey::new()))
    };
    let clock = ManualClock::new(Duration::from_secs(1_800_000_000 + 1800));
    let client = HttpClient::new();

    // axum's connect info is read with the `axum` feature.
    #[cfg(feature = "axum")]
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let served = app(MemoryBackend::builder(policy).clock(clock.clone()).build());
        let served = served.into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
        let url = format!("http://{address}/hello");
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(client.get(&url, &[]).await.status.as_u16());
        }
        assert_eq!(statuses, [200, 200, 429]);
    }

    // Served without connect info, the server has no address to give: its fault, `500`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = app(MemoryBackend::builder(policy).clock(clock).build());
    tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
    let reply = client.get(&format!("http://{address}/hello"), &[]).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.body, "internal server error\n");
}
