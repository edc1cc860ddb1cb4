//! Real HTTP on loopback for the integration tests: serve a router on `127.0.0.1:0`, and a
//! pooled client to talk to it.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Serves `app` on a fresh loopback port until the test's runtime ends.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

#[derive(Clone)]
pub struct HttpClient(Client<HttpConnector, Empty<Bytes>>);

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl HttpClient {
    pub fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    /// The status of `GET url`, or `None` if no answer came (a node stopping).
    pub async fn try_get(&self, url: &str) -> Option<u16> {
        let request = Request::get(url).body(Empty::new()).ok()?;
        let response = self.0.request(request).await.ok()?;
        let status = response.status().as_u16();
        response.into_body().collect().await.ok()?;
        Some(status)
    }

    /// `GET url` with the given headers.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .0
            .request(request.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// A ring node served in this process: its peer endpoint on a loopback port.
pub struct Node {
    pub address: SocketAddr,
    pub name: String,
    pub backend: std::sync::Arc<ringlimit::ClusterBackend<ringlimit::ManualClock>>,
}

impl Node {
    /// `http://<address>/check?user_id=<id, percent-encoded>`.
    pub fn check_url(&self, user_id: &str) -> String {
        check_url(self.address, user_id)
    }
}

pub fn check_url(address: SocketAddr, user_id: &str) -> String {
    let encoded =
        percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC);
    format!("http://{address}/check?user_id={encoded}")
}

/// Binds `n` loopback listeners, so that every node's name is known before the ring is.
pub async fn listeners(n: usize) -> Vec<(tokio::net::TcpListener, String)> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let name = listener.local_addr().unwrap().to_string();
        listeners.push((listener, name));
    }
    listeners
}

/// Starts a node named `name` on `listener`, routing by `members`.
pub fn start_node(
    listener: tokio::net::TcpListener,
    name: &str,
    members: &[String],
    policy: ringlimit::Policy,
    clock: &ringlimit::ManualClock,
) -> Node {
    let ring = ringlimit::Ring::new(members.to_vec()).unwrap();
    let backend = ringlimit::ClusterBackend::builder(policy, name, ring)
        .clock(clock.clone())
        .build()
        .unwrap();
    serve_node(listener, backend, std::future::pending())
}

/// Serves `backend`'s peer endpoint on `listener` until `stop` completes (requests in
/// flight finish).
pub fn serve_node(
    listener: tokio::net::TcpListener,
    backend: ringlimit::ClusterBackend<ringlimit::ManualClock>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Node {
    let backend = std::sync::Arc::new(backend);
    let address = listener.local_addr().unwrap();
    let endpoint = ringlimit::endpoint::PeerEndpoint::new(backend.clone());
    tokio::spawn(ringlimit::endpoint::serve(listener, endpoint, stop));
    Node {
        address,
        name: backend.me().to_owned(),
        backend,
    }
}

/// Starts `n` nodes that agree on the ring.
pub async fn start_cluster(
    n: usize,
    policy: ringlimit::Policy,
    clock: &ringlimit::ManualClock,
) -> Vec<Node> {
    let listeners = listeners(n).await;
    let members: Vec<String> = listeners.iter().map(|(_, name)| name.clone()).collect();
    listeners
        .into_iter()
        .map(|(listener, name)| start_node(listener, &name, &members, policy, clock))
        .collect()
}

/// A clock stopped half-way through an hour-long window, so no run straddles two windows.
pub fn mid_window_clock() -> ringlimit::ManualClock {
    ringlimit::ManualClock::new(std::time::Duration::from_secs(1_800_000_000 + 1800))
}

/// `limit` requests per hour.
pub fn hourly(limit: u32) -> ringlimit::Policy {
    ringlimit::Policy::per_window(
        std::num::NonZeroU32::new(limit).unwrap(),
        std::time::Duration::from_secs(3600),
    )
}

/// Real `redis-server`s, from the crate's own test support (self-contained).
#[path = "../../src/backend/redis/test_server.rs"]
pub mod redis;

/// `n` user ids named `name(i)` that `ring` places on `member`.
pub fn keys_owned_by(
    ring: &ringlimit::Ring,
    member: &str,
    n: usize,
    name: impl Fn(usize) -> String,
) -> Vec<String> {
    let keys: Vec<String> = (0..1_000_000)
        .map(name)
        .filter(|k| ring.owner(k) == member)
        .take(n)
        .collect();
    assert_eq!(keys.len(), n, "not enough keys owned by {member}");
    keys
}

/// A user id `user-<i>` that `ring` places on `member`.
pub fn key_owned_by(ring: &ringlimit::Ring, member: &str) -> String {
    keys_owned_by(ring, member, 1, |i| format!("user-{i}")).remove(0)
}

/// One request of a load test: whose it is, where it goes, and an optional header.
pub struct Visit {
    pub user: String,
    pub url: String,
    pub header: Option<(&'static str, String)>,
}

/// `rounds` visits of each of `users` users (ids `user N&x`, which need escaping), the
/// rounds spread over `nodes` in turn.
pub fn visits_round_robin(nodes: &[SocketAddr], users: usize, rounds: usize) -> Vec<Visit> {
    (0..rounds)
        .flat_map(|i| (0..users).map(move |u| (i, format!("user {u}&x"))))
        .map(|(i, user)| Visit {
            url: check_url(nodes[i % nodes.len()], &user),
            user,
            header: None,
        })
        .collect()
}

/// Sends every visit through `clients` concurrent clients and counts, per user, the
/// allowed (`200`) answers. `429` is expected; any other status fails the test.
pub async fn allowed_per_user(
    visits: Vec<Visit>,
    clients: usize,
) -> std::collections::HashMap<String, u32> {
    count_allowed(visits, clients, false).await
}

/// As [`allowed_per_user`], with `503` (a failure mode that denies) expected too.
pub async fn allowed_per_user_any_status(
    visits: Vec<Visit>,
    clients: usize,
) -> std::collections::HashMap<String, u32> {
    count_allowed(visits, clients, true).await
}

async fn count_allowed(
    visits: Vec<Visit>,
    clients: usize,
    unavailable_expected: bool,
) -> std::collections::HashMap<String, u32> {
    use std::collections::HashMap;
    use std::sync::Arc;
    use tokio::sync::Mutex;

    let visits = Arc::new(Mutex::new(visits));
    let allowed = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let client = HttpClient::new();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, visits, allowed) = (client.clone(), visits.clone(), allowed.clone());
            tokio::spawn(async move {
                loop {
                    let next = visits.lock().await.pop();
                    let Some(visit) = next else { break };
                    let headers: Vec<(&str, &str)> =
                        visit.header.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    let reply = client.get(&visit.url, &headers).await;
                    match reply.status.as_u16() {
                        200 => *allowed.lock().await.entry(visit.user).or_default() += 1,
                        429 => {}
                        503 if unavailable_expected => {}
                        other => panic!("unexpected status {other}: {}", reply.body),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let allowed = allowed.lock().await;
    allowed.clone()
}

/// A peer (or Redis) that accepts connections and never answers; counts the connections.
pub async fn hung_peer() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let name = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (name, accepted)
}

/// A check of a backend's own policies, each at `cost`: what `check` was before a check
/// carried its policies.
pub trait CheckAt: ringlimit::Backend {
    fn check_at(&self, key: &str, cost: std::num::NonZeroU32) -> ringlimit::Check<Self::Future> {
        let set = ringlimit::PolicySet::new(self.policies().iter().map(|p| p.with_cost(cost)))
            .expect("the names of a valid set");
        self.check(key, &set)
    }
}

impl<B: ringlimit::Backend> CheckAt for B {}

/// The decisions of a check, waiting for them if they come from elsewhere; a backend
/// error fails the test.
pub async fn decided<F>(check: ringlimit::Check<F>) -> ringlimit::Decisions
where
    F: std::future::Future<Output = Result<ringlimit::Decisions, ringlimit::BackendError>>,
{
    match check {
        ringlimit::Check::Ready(result) => result.unwrap(),
        ringlimit::Check::Pending(future) => future.await.unwrap(),
    }
}

/// The log lines of the current thread (a `#[tokio::test]` runs its tasks on it), kept
/// while the guard lives.
pub struct CapturedLogs {
    lines: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl CapturedLogs {
    pub fn install() -> Self {
        Self::install_at(tracing::Level::INFO)
    }

    /// Captures lines up to `level`.
    pub fn install_at(level: tracing::Level) -> Self {
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || SharedWriter(writer.clone()))
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        Self {
            lines,
            _guard: guard,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned()
    }
}

struct SharedWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
