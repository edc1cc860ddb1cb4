//! The server side of a cluster: the peer endpoint that answers other nodes' checks (and
//! clients', since it is a plain `/check`), and [`serve`], which serves it, or a whole app,
//! on a listener. What it speaks is in [`protocol`](crate::protocol); the side that asks
//! is the cluster backend's.
//!
//! # Examples
//!
//! A node's app and its peer endpoint in one axum router, sharing one backend:
//!
//! ```
//! use axum::{body::Body, routing::get, Router};
//! use http::{Request, StatusCode};
//! use ringlimit::{backend::ClusterBackend, endpoint::PeerEndpoint, Policy, RateLimitLayer, Ring};
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

mod answer_batch;
mod answer_handoff;
mod endpoint_future;
mod peer_endpoint;
mod refusal;
mod serve;

pub use answer_batch::{DEFAULT_BATCH_BODY_TIMEOUT, DEFAULT_MAX_BATCHES_READING};
pub use endpoint_future::EndpointFuture;
pub use peer_endpoint::PeerEndpoint;
pub use serve::{serve, HEADER_READ_TIMEOUT, MAX_REQUEST_HEAD_BYTES, SHUTDOWN_GRACE};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
