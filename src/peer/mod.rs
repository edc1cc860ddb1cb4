//! Between nodes: the peer endpoint other nodes ask, the client that asks them (pooled
//! connections for single checks, one kept connection per peer for batches), and the wire
//! contract they share with the original Python node (see `docs/PROTOCOL.md`).
//!
//! # Examples
//!
//! A node's app and its peer endpoint in one axum router, sharing one backend:
//!
//! ```
//! use axum::{body::Body, routing::get, Router};
//! use http::{Request, StatusCode};
//! use ringlimit::{backend::ClusterBackend, peer::PeerEndpoint, Policy, RateLimitLayer, Ring};
//! use std::{num::NonZeroU32, sync::Arc, time::Duration};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::per_window(NonZeroU32::new(1).unwrap(), Duration::from_secs(60));
//! let ring = Ring::new(["127.0.0.1:7000"])?;
//! let backend = Arc::new(ClusterBackend::new(policy, "127.0.0.1:7000", ring)?);
//! let app = Router::new()
//!     .route("/hello", get(|| async { "hello" }))
//!     .layer(RateLimitLayer::shared(backend.clone()))
//!     // Mounted after `.layer`, so other nodes' checks are not limited twice.
//!     .route_service("/check", PeerEndpoint::new(backend));
//!
//! let check = || Request::get("/check?user_id=alice").body(Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(check()).await?.status(), StatusCode::OK);
//! assert_eq!(app.oneshot(check()).await?.status(), StatusCode::TOO_MANY_REQUESTS);
//! # Ok(())
//! # }
//! ```

pub mod batch;
mod batch_connection;
mod batch_endpoint;
mod batcher;
mod client;
mod endpoint;
mod read_body;
mod secret;
mod serve;
pub mod wire;

pub use crate::circuit::CircuitPolicy;
pub use batch_endpoint::{DEFAULT_BATCH_BODY_TIMEOUT, DEFAULT_MAX_BATCHES_READING};
pub(crate) use batcher::Batcher;
pub(crate) use client::{PeerAnswer, PeerClient};
pub use endpoint::{EndpointFuture, PeerEndpoint};
pub use secret::PeerSecret;
pub use serve::{serve, HEADER_READ_TIMEOUT, MAX_REQUEST_HEAD_BYTES, SHUTDOWN_GRACE};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
