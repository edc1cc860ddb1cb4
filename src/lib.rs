#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
//! Per-user rate limits that hold across a cluster of nodes, as a tower middleware.
//!
//! [`RateLimitLayer`] extracts a key (the user id) from each request, counts it under its
//! [`Policy`] (a fixed window by default; a sliding window or GCRA), and answers `429 Too Many Requests` before the inner service runs once
//! the key is over its limit. Counters live in a [`Backend`]: in this process's memory
//! ([`MemoryBackend`], the default), or, in a cluster, on the node that owns the key on a
//! consistent-hash [`Ring`].
//!
//! # Examples
//!
//! With axum:
//!
//! ```
//! use axum::{body::Body, routing::get, Router};
//! use http::{Request, StatusCode};
//! use ringlimit::{key::HeaderKey, MemoryBackend, Policy, RateLimitLayer};
//! use std::{num::NonZeroU32, time::Duration};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // 5 requests per user per minute, the user named by the `x-user-id` header.
//! let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
//! let app = Router::new()
//!     .route("/hello", get(|| async { "hello" }))
//!     .layer(RateLimitLayer::new(MemoryBackend::new(policy)).key(HeaderKey::from_static("x-user-id")));
//!
//! let request = || Request::get("/hello").header("x-user-id", "alice").body(Body::empty()).unwrap();
//! for _ in 0..5 {
//!     assert_eq!(app.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! }
//! let sixth = app.oneshot(request()).await.unwrap();
//! assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(sixth.headers()["ratelimit"].to_str().unwrap().split(';').nth(1), Some("r=0"));
//! # }
//! ```
//!
//! With plain hyper, through hyper-util's `TowerToHyperService`:
//!
//! ```no_run
//! use hyper::{body::Incoming, server::conn::http1, Request, Response};
//! use hyper_util::{rt::TokioIo, service::TowerToHyperService};
//! use ringlimit::{MemoryBackend, Policy, RateLimitLayer};
//! use std::{convert::Infallible, num::NonZeroU32, time::Duration};
//! use tower::{service_fn, Layer};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
//! let limited = RateLimitLayer::new(MemoryBackend::new(policy)).layer(service_fn(
//!     |_: Request<Incoming>| async { Ok::<_, Infallible>(Response::new(String::from("hello"))) },
//! ));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let service = TowerToHyperService::new(limited.clone());
//!     tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
//! }
//! # }
//! ```
//!
//! # Behaviour
//!
//! - **Windows** are aligned to the Unix epoch (`start = now - now % window`), so all
//!   nodes agree on them; a policy counts in fixed windows unless it says otherwise
//!   ([`policy::Algorithm`]).
//! - **Keys**: the `user_id` query parameter by default; see [`key`] for headers and
//!   closures. A request without a usable key gets `400` with the reason, never a free pass.
//! - **Headers** (draft-ietf-httpapi-ratelimit-headers-11): `RateLimit-Policy` and
//!   `RateLimit` on every limited response, plus `Retry-After` on `429`; see [`headers`].
//! - **Rejections** are responses, not errors, and are pluggable ([`OnRejection`]); the
//!   [`Decisions`] (a [`Decision`] per policy) are in every limited response's extensions.
//!
//! # Modules
//!
//! - [`layer`]: the middleware; [`key`]: where the key comes from; [`policy`]: named
//!   policies and [`PolicySet`]s; [`resolve`]: which set each request is checked
//!   against; [`headers`]: the `RateLimit` headers.
//! - [`backend`]: where counters live, and how each backend is built
//!   ([`MemoryBackend::builder`], `ClusterBackend::builder`, `RedisBackend::builder`).
//! - `ring`, `protocol` and `endpoint` (feature `cluster`): the consistent-hash ring, the wire
//!   protocol between nodes (no I/O), and the peer endpoint with `serve`. The cluster
//!   backend asks owners; the server answers them; both speak the protocol.
//! - `membership` (feature `cluster`): where a node's members come from (a list, a file,
//!   DNS, your own source), applied to its ring as they change.
//!
//! # Cargo features
//!
//! - `cluster` (default): a ring of nodes, with hyper's HTTP client and server. Without
//!   it the crate is the in-memory layer alone, with no HTTP client or server and no
//!   tokio.
//! - `redis`: [`RedisBackend`](backend::RedisBackend).
//! - `axum`: [`PeerIpKey`](key::PeerIpKey) reads axum's `ConnectInfo<SocketAddr>`.
//! - `metrics`: counters, gauges and histograms through the `metrics` facade, for the
//!   exporter you install (see [`observe`]).

mod algorithm;
pub mod backend;
#[cfg(any(feature = "cluster", feature = "redis"))]
mod circuit;
mod clock;
#[cfg(any(feature = "cluster", feature = "redis"))]
mod coalesce;
mod decision;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod endpoint;
mod error;
pub mod headers;
pub mod key;
pub mod layer;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod membership;
pub mod observe;
mod plain_text;
pub mod policy;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod protocol;
#[cfg(feature = "cluster")]
mod read_body;
pub mod resolve;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod ring;

/// The README's examples, compiled and run as doctests (they use the cluster).
#[cfg(all(doctest, feature = "cluster"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "cluster")]
pub use backend::ClusterBackend;
pub use backend::{Backend, Check, MemoryBackend};
pub use clock::{Clock, ManualClock, PreciseClock, SystemClock};
pub use decision::{Decision, Decisions};
pub use error::BackendError;
pub use key::{KeyError, KeyExtractor};
pub use layer::{OnRejection, RateLimit, RateLimitLayer, Rejection};
pub use policy::{Policy, PolicySet};
#[cfg(feature = "cluster")]
pub use ring::Ring;
