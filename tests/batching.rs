//! Batched forwards between ringlimit nodes, and the cache of denied keys.
#![cfg(feature = "cluster")]

mod common;
use common::CheckAt;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use common::{
    hourly, key_owned_by, keys_owned_by, listeners, mid_window_clock, start_node, HttpClient,
};
use http::{Request, Response};
use hyper::body::Incoming;
use ringlimit::endpoint::{serve, PeerEndpoint};
use ringlimit::protocol::PeerSecret;
use ringlimit::{Check, ClusterBackend, ManualClock, Ring};
use tower::ServiceExt;

const LIMIT: u32 = 2;

type Counts = Arc<Mutex<HashMap<String, usize>>>;

/// Node `name` serving its endpoint behind a counter of requests per method and path.
fn counted_node(
    listener: tokio::net::TcpListener,
    name: &str,
    members: &[String],
    clock: &ManualClock,
    secret: Option<&PeerSecret>,
) -> (Arc<ClusterBackend<ManualClock>>, Counts) {
    let (backend, counts, _) = counted_node_until(
        listener,
        name,
        members,
        clock,
        secret,
        std::future::pending(),
    );
    (backend, counts)
}

/// The same, serving until `stop` completes; the task ends once it has shut down.
fn counted_node_until(
    listener: tokio::net::TcpListener,
    name: &str,
    members: &[String],
    clock: &ManualClock,
    secret: Option<&PeerSecret>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> (
    Arc<ClusterBackend<ManualClock>>,
    Counts,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let ring = Ring::new(members.to_vec()).unwrap();
    let mut backend = ClusterBackend::builder(hourly(LIMIT), name, ring);
    if let Some(secret) = secret {
        backend = backend.peer_secret(secret);
    }
    let backend = Arc::new(backend.clock(clock.clone()).build().unwrap());
    let mut endpoint = PeerEndpoint::new(backend.clone());
    if let Some(secret) = secret {
        endpoint = endpoint.peer_secret(secret);
    }
    let counts = Counts::default();
    let seen = counts.clone();
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let key = format!("{} {}", request.method(), request.uri().path());
        *seen.lock().unwrap().entry(key).or_default() += 1;
        let endpoint = endpoint.clone();
        async move {
            let response: Response<_> = endpoint.oneshot(request).await?;
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let serving = tokio::spawn(serve(listener, service, stop));
    (backend, counts, serving)
}

/// A node and a counted owner of half the keys, in one ring.
async fn node_and_counted_owner(
    clock: &ManualClock,
) -> (
    common::Node,
    String,
    Arc<ClusterBackend<ManualClock>>,
    Counts,
) {
    let mut bound = listeners(2).await;
    let (owner_listener, owner) = bound.pop().unwrap();
    let (listener, me) = bound.pop().unwrap();
    let members = [me.clone(), owner.clone()];
    let (owner_backend, counts) = counted_node(owner_listener, &owner, &members, clock, None);
    let node = start_node(listener, &me, &members, hourly(LIMIT), clock);
    (node, owner, owner_backend, counts)
}

fn count(counts: &Counts, what: &str) -> usize {
    counts.lock().unwrap().get(what).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_forwards_leave_in_batches_and_stay_exact() {
    let clock = mid_window_clock();
    let (node, owner, owner_backend, counts) = node_and_counted_owner(&clock).await;

    let keys = keys_owned_by(&node.backend.ring(), &owner, 100, |i| format!("user {i}/é"));
    let client = HttpClient::new();
    let mut tasks = Vec::new();
    for round in 0..3 {
        for key in &keys {
            let (client, url, key) = (client.clone(), node.check_url(key), key.clone());
            tasks.push(tokio::spawn(async move {
                let reply = client.get(&url, &[]).await;
                (key, round, reply.status.as_u16())
            }));
        }
    }
    let mut allowed = HashMap::<String, u32>::new();
    for task in tasks {
        let (key, _, status) = task.await.unwrap();
        assert!(status == 200 || status == 429, "{status}");
        if status == 200 {
            *allowed.entry(key).or_default() += 1;
        }
    }
    assert!(allowed.values().all(|&n| n == LIMIT), "{allowed:?}");
    assert_eq!(allowed.len(), keys.len());
    for key in &keys {
        assert_eq!(
            owner_backend.local().used(key),
            LIMIT,
            "{key:?} at its owner"
        );
    }
    let batches = count(&counts, "POST /check");
    let singles = count(&counts, "GET /check");
    assert!(batches > 0, "some checks were batched");
    assert!(
        batches + singles < 300,
        "{batches} batches and {singles} singles for 300 checks"
    );
}

#[tokio::test]
async fn a_lone_check_leaves_at_once_as_a_batch_of_one() {
    let clock = mid_window_clock();
    let (node, owner, _, counts) = node_and_counted_owner(&clock).await;
    let key = &key_owned_by(&node.backend.ring(), &owner);
    let reply = HttpClient::new().get(&node.check_url(key), &[]).await;
    assert_eq!(reply.status, 200);
    // On the peer's kept connection, as batches go: no wait, and no pooled connection's
    // task in between.
    assert_eq!(count(&counts, "POST /check"), 1);
    assert_eq!(count(&counts, "GET /check"), 0);
}

#[tokio::test]
async fn a_denied_key_is_not_forwarded_again_until_its_window_ends() {
    let clock = mid_window_clock();
    let (node, owner, _, counts) = node_and_counted_owner(&clock).await;
    let key = &key_owned_by(&node.backend.ring(), &owner);
    let client = HttpClient::new();

    for expected in [200, 200, 429] {
        assert_eq!(client.get(&node.check_url(key), &[]).await.status, expected);
    }
    assert_eq!(count(&counts, "POST /check"), 3);
    for _ in 0..10 {
        let reply = client.get(&node.check_url(key), &[]).await;
        assert_eq!(reply.status, 429);
        assert_eq!(reply.headers["retry-after"], "1800");
    }
    assert_eq!(
        count(&counts, "POST /check"),
        3,
        "denied here, without asking the owner"
    );

    clock.advance(std::time::Duration::from_secs(1800));
    assert_eq!(client.get(&node.check_url(key), &[]).await.status, 200);
    assert_eq!(
        count(&counts, "POST /check"),
        4,
        "a new window: asked again"
    );
}

#[tokio::test]
async fn the_batch_endpoint_serves_marked_posts_only() {
    let clock = mid_window_clock();
    let secret = PeerSecret::new("s3cret").unwrap();
    let (listener, me) = listeners(1).await.pop().unwrap();
    let address = listener.local_addr().unwrap();
    let (backend, _) = counted_node(
        listener,
        &me,
        std::slice::from_ref(&me),
        &clock,
        Some(&secret),
    );
    // Batches are `POST /check`; `/check/batch` is where older nodes send them.
    let url = format!("http://{address}/check");
    let post = |headers: &[(&str, &str)], body: &str| {
        let mut request = Request::post(&url).header("content-type", "text/plain");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_owned(),
            )))
            .unwrap()
    };
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let send = |request| async {
        let response = http.request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    };
    let marked = [
        ("x-ringlimit-forwarded", "1"),
        ("authorization", "Bearer s3cret"),
    ];

    let (status, body) = send(post(
        &marked,
        "1 alice\n1 a%26b\n1 alice\n1 alice\nnonsense\n0 zero\n",
    ))
    .await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 6, "{body}");
    assert!(lines[0].starts_with("200 1 "), "{body}");
    assert!(lines[1].starts_with("200 1 "));
    assert!(lines[2].starts_with("200 0 "));
    assert!(lines[3].starts_with("429 0 "));
    assert_eq!(&lines[4..], ["400 0 0", "400 0 0"]);
    assert_eq!(backend.local().used("alice"), 2);
    assert_eq!(backend.local().used("a&b"), 1);

    assert_eq!(send(post(&[], "1 bob\n")).await.0, 400, "unmarked");
    let no_secret = [("x-ringlimit-forwarded", "1")];
    assert_eq!(send(post(&no_secret, "1 bob\n")).await.0, 401);
    assert_eq!(backend.local().used("bob"), 0);
    let legacy = Request::post(format!("http://{address}/check/batch"))
        .header("x-ringlimit-forwarded", "1")
        .header("authorization", "Bearer s3cret")
        .body(http_body_util::Full::new(bytes::Bytes::from("1 carol\n")))
        .unwrap();
    let (status, body) = send(legacy).await;
    assert_eq!((status, body.split(' ').next()), (200, Some("200")));
    let too_big = format!("1 {}\n", "x".repeat(2_000_000));
    assert_eq!(send(post(&marked, &too_big)).await.0, 413);

    let get = HttpClient::new()
        .get(&format!("http://{address}/check/batch"), &marked)
        .await;
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "POST");
}

/// The decisions of `keys` checked together: queued before any is awaited, so they leave
/// as one batch.
async fn check_together(backend: &ClusterBackend<ManualClock>, keys: &[String]) -> Vec<bool> {
    let checks: Vec<_> = keys
        .iter()
        .map(|key| backend.check_at(key, NonZeroU32::MIN))
        .collect();
    let mut allowed = Vec::new();
    for check in checks {
        let decision = match check {
            Check::Ready(result) => result,
            Check::Pending(future) => future.await,
        };
        allowed.push(decision.expect("an answer").allowed());
    }
    allowed
}

/// A node (not serving) and, in its ring, an owner not started yet.
struct BesideOwner {
    /// Denies when the owner cannot answer, so that a failed batch shows.
    node: ClusterBackend<ManualClock>,
    owner_listener: tokio::net::TcpListener,
    owner: String,
    members: [String; 2],
    ring: Ring,
}

async fn beside_owner(clock: &ManualClock) -> BesideOwner {
    let mut bound = listeners(2).await;
    let (owner_listener, owner) = bound.pop().unwrap();
    let (_, me) = bound.pop().unwrap();
    let members = [me.clone(), owner.clone()];
    let ring = Ring::new(members.to_vec()).unwrap();
    let node = ClusterBackend::builder(hourly(LIMIT), &me, ring.clone())
        .failure_mode(ringlimit::backend::FailureMode::Deny)
        .clock(clock.clone())
        .build()
        .unwrap();
    BesideOwner {
        node,
        owner_listener,
        owner,
        members,
        ring,
    }
}

#[tokio::test]
async fn batches_after_the_owner_restarted_go_on_a_new_connection() {
    let clock = mid_window_clock();
    let BesideOwner {
        node,
        owner_listener,
        owner,
        members,
        ring,
    } = beside_owner(&clock).await;
    let keys = keys_owned_by(&ring, &owner, 6, |i| format!("restart {i}"));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let (_, counts, serving) =
        counted_node_until(owner_listener, &owner, &members, &clock, None, stopped);
    assert_eq!(check_together(&node, &keys[..3]).await, [true; 3]);
    assert_eq!(count(&counts, "POST /check"), 1);

    // The owner stops, closing the connection the batch came on, and comes back on the
    // same port.
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    let listener = tokio::net::TcpListener::bind(&owner).await.unwrap();
    let (_, counts) = counted_node(listener, &owner, &members, &clock, None);
    assert_eq!(check_together(&node, &keys[3..]).await, [true; 3]);
    assert_eq!(count(&counts, "POST /check"), 1);
}

#[tokio::test]
async fn batches_reach_an_owner_that_closes_each_connection_after_one_answer() {
    let clock = mid_window_clock();
    let BesideOwner {
        node,
        owner_listener,
        owner,
        ring,
        ..
    } = beside_owner(&clock).await;
    let owner_backend = Arc::new(
        ClusterBackend::builder(hourly(LIMIT), &owner, ring.clone())
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    // Answers with `connection: close`, then closes: every batch needs a new connection,
    // and the answer that came with the close still counts.
    let endpoint = PeerEndpoint::new(owner_backend.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = owner_listener.accept().await.unwrap();
            let service = hyper_util::service::TowerToHyperService::new(endpoint.clone());
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::spawn(connection);
        }
    });
    let keys = keys_owned_by(&ring, &owner, 6, |i| format!("closing {i}"));
    for pair in keys.chunks(2) {
        assert_eq!(check_together(&node, pair).await, [true; 2]);
    }
    for key in &keys {
        assert_eq!(owner_backend.local().used(key), 1, "{key:?} at its owner");
    }
}

// Regression: mounted as the README shows (`route_service("/check", ..)`), a node answered
// batches (then sent to `/check/batch`) with 404, and its peers silently asked it one
// check at a time for the rest of the process.
// One thread: the checks are all queued before the dispatcher first runs, so they leave
// as one batch, whatever the machine's load.
#[tokio::test]
async fn nodes_mounted_as_the_readme_shows_still_send_batches() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let clock = mid_window_clock();
    let bound = listeners(2).await;
    let members: Vec<String> = bound.iter().map(|(_, name)| name.clone()).collect();
    let singles = Arc::new(AtomicUsize::new(0));
    let mut backends = Vec::new();
    for (listener, me) in bound {
        let ring = Ring::new(members.clone()).unwrap();
        let backend = ClusterBackend::builder(hourly(LIMIT), me.as_str(), ring)
            .clock(clock.clone())
            .build()
            .unwrap();
        let backend = Arc::new(backend);
        let counter = singles.clone();
        let count_gets = move |request: Request<axum::body::Body>| {
            if request.method() == http::Method::GET {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            request
        };
        let app = axum::Router::new()
            .route("/hello", axum::routing::get(|| async { "hello" }))
            .layer(ringlimit::RateLimitLayer::shared(backend.clone()))
            .route_service("/check", PeerEndpoint::new(backend.clone()))
            .layer(tower::util::MapRequestLayer::new(count_gets));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        backends.push(backend);
    }
    let keys = keys_owned_by(&backends[0].ring(), &members[1], 50, |i| {
        format!("user-{i}")
    });
    for _ in 0..2 {
        assert!(check_together(&backends[0], &keys).await.iter().all(|&a| a));
    }
    for key in &keys {
        assert_eq!(backends[1].local().used(key), 2, "{key}");
    }
    assert_eq!(
        singles.load(Ordering::SeqCst),
        0,
        "no check went one at a time"
    );
}
