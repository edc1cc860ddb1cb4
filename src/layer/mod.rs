//! The tower middleware: [`RateLimitLayer`], the [`RateLimit`] service and its future.
//!
//! For each request the layer extracts the key, asks the backend, and either calls the
//! inner service (adding the `RateLimit` headers to its response) or answers itself:
//! `429` over the limit, `400` without a usable key, `503` when the backend cannot decide.
//! The inner service is never called for a rejected request.
//!
//! # Examples
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use ringlimit::{MemoryBackend, Policy, RateLimitLayer};
//! use std::{convert::Infallible, num::NonZeroU32, time::Duration};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # tokio_test();
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn tokio_test() {
//! let policy = Policy::per_window(NonZeroU32::new(1).unwrap(), Duration::from_secs(60));
//! let service = RateLimitLayer::new(MemoryBackend::new(policy)).layer(service_fn(
//!     |_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::from("hi"))) },
//! ));
//!
//! let request = || Request::get("/?user_id=alice").body(String::new()).unwrap();
//! let first = service.clone().oneshot(request()).await.unwrap();
//! assert_eq!(first.status(), StatusCode::OK);
//! assert_eq!(first.headers()["ratelimit-policy"], "\"default\";q=1;w=60");
//! let second = service.clone().oneshot(request()).await.unwrap();
//! assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(second.headers().contains_key("retry-after"));
//!
//! let anonymous = Request::get("/").body(String::new()).unwrap();
//! let third = service.oneshot(anonymous).await.unwrap();
//! assert_eq!(third.status(), StatusCode::BAD_REQUEST);
//! # }
//! ```

mod body;
mod future;
mod grpc;
mod grpc_details;
#[allow(clippy::module_inception)]
mod layer;
mod reject;
mod service;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use grpc::GrpcRejection;
pub use layer::RateLimitLayer;
pub use reject::{OnRejection, PlainTextRejection, Rejection};
pub use service::RateLimit;

#[cfg(test)]
mod tests;
