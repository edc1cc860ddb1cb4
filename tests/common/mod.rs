//! Real HTTP on loopback for the integration tests: serve a router on `127.0.0.1:0`, and a
//! pooled client to talk to it.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

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
    let backend = ringlimit::ClusterBackend::new(policy, name, ring)
        .unwrap()
        .with_clock(clock.clone());
    let backend = std::sync::Arc::new(backend);
    let address = listener.local_addr().unwrap();
    let endpoint = ringlimit::peer::PeerEndpoint::new(backend.clone());
    tokio::spawn(ringlimit::peer::serve(
        listener,
        endpoint,
        std::future::pending(),
    ));
    Node {
        address,
        name: name.to_owned(),
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

pub mod redis;
