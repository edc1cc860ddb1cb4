//! Which user a request belongs to: the [`KeyExtractor`] trait and its implementations.
//!
//! A request whose key cannot be extracted is never let through silently: the layer
//! answers it with `400 Bad Request` and the [`KeyError`] as the reason (configurable with
//! [`RateLimitLayer::on_rejection`](crate::RateLimitLayer::on_rejection)).
//!
//! # Examples
//!
//! ```
//! use ringlimit::key::{HeaderKey, KeyExtractor, QueryKey};
//! use http::Request;
//!
//! let request = Request::get("/hello?user_id=alice%20b").header("x-user-id", "bob").body(()).unwrap();
//! assert_eq!(QueryKey::default().extract(&request).unwrap(), "alice b");
//! assert_eq!(HeaderKey::from_static("x-user-id").extract(&request).unwrap(), "bob");
//!
//! let missing = Request::get("/hello").body(()).unwrap();
//! let error = QueryKey::default().extract(&missing).unwrap_err();
//! assert_eq!(error.to_string(), "missing query parameter `user_id`");
//! ```

mod closure;
mod error;
mod header;
mod peer_ip;
pub(crate) mod query;

use std::borrow::Cow;

use http::Request;

pub use closure::{from_fn, KeyFn};
pub use error::KeyError;
pub use header::HeaderKey;
pub use peer_ip::{PeerAddr, PeerIpKey};
pub use query::QueryKey;

/// The longest key accepted by default (the layer's and the peer endpoint's
/// `max_key_len`); longer keys get `400`.
pub const DEFAULT_MAX_KEY_LEN: usize = 256;

/// Finds the rate-limit key (the user id) of a request.
///
/// Return a borrowed key where you can: the layer's request path then allocates nothing
/// for it.
pub trait KeyExtractor<B>: Send + Sync + 'static {
    /// The key of `request`, or why it has none.
    fn extract<'r>(&self, request: &'r Request<B>) -> Result<Cow<'r, str>, KeyError>;
}
