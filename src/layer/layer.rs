use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::{RateLimit, Shared};
use super::{OnRejection, PlainTextRejection};
use crate::headers;
use crate::key::QueryKey;
use crate::Backend;

use crate::key::DEFAULT_MAX_KEY_LEN;

/// Applies a per-key rate limit to every request: a tower [`Layer`].
///
/// Defaults: the key is the `user_id` query parameter, at most
/// [`DEFAULT_MAX_KEY_LEN`] bytes; each request costs the backend policy's cost; rejections
/// are plain text.
///
/// # Examples
///
/// ```
/// use ringlimit::{key::HeaderKey, MemoryBackend, Policy, RateLimitLayer};
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
/// let layer = RateLimitLayer::new(MemoryBackend::new(policy))
///     .key(HeaderKey::from_static("x-user-id"))
///     .max_key_len(128);
/// # let _ = layer;
/// ```
#[must_use]
pub struct RateLimitLayer<B, K = QueryKey, R = PlainTextRejection> {
    backend: Arc<B>,
    key: K,
    on_rejection: R,
    max_key_len: usize,
}

impl<B: Backend> RateLimitLayer<B> {
    /// Limits requests with the counters of `backend`.
    pub fn new(backend: B) -> Self {
        Self::shared(Arc::new(backend))
    }

    /// Limits requests with a backend that is also used elsewhere (another layer, a peer
    /// endpoint), so they all count in the same place.
    pub fn shared(backend: Arc<B>) -> Self {
        Self {
            backend,
            key: QueryKey::default(),
            on_rejection: PlainTextRejection,
            max_key_len: DEFAULT_MAX_KEY_LEN,
        }
    }
}

impl<B: Backend> RateLimit<(), B, QueryKey, PlainTextRejection> {
    /// The layer that makes this service, as [`RateLimitLayer::new`](crate::RateLimitLayer::new).
    ///
    /// ```
    /// use ringlimit::{MemoryBackend, Policy, RateLimit};
    /// use std::{num::NonZeroU32, time::Duration};
    ///
    /// let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
    /// let layer = RateLimit::layer(MemoryBackend::new(policy));
    /// # let _ = layer;
    /// ```
    pub fn layer(backend: B) -> RateLimitLayer<B> {
        RateLimitLayer::new(backend)
    }
}

impl<B, K, R> RateLimitLayer<B, K, R> {
    /// Finds the key with `key` instead (see [`key`](crate::key)).
    pub fn key<K2>(self, key: K2) -> RateLimitLayer<B, K2, R> {
        RateLimitLayer {
            backend: self.backend,
            key,
            on_rejection: self.on_rejection,
            max_key_len: self.max_key_len,
        }
    }

    /// Builds rejection responses with `on_rejection` instead of plain text.
    pub fn on_rejection<R2: OnRejection>(self, on_rejection: R2) -> RateLimitLayer<B, K, R2> {
        RateLimitLayer {
            backend: self.backend,
            key: self.key,
            on_rejection,
            max_key_len: self.max_key_len,
        }
    }

    /// Answers keys longer than `bytes` with `400` (default [`DEFAULT_MAX_KEY_LEN`]).
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }
}

// By hand: the backend is shared through the `Arc`, so it need not be `Clone` itself.
impl<B, K: Clone, R: Clone> Clone for RateLimitLayer<B, K, R> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            key: self.key.clone(),
            on_rejection: self.on_rejection.clone(),
            max_key_len: self.max_key_len,
        }
    }
}

impl<S, B: Backend, K: Clone, R: Clone> Layer<S> for RateLimitLayer<B, K, R> {
    type Service = RateLimit<S, B, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        let policy = self.backend.policy();
        let shared = Shared {
            backend: self.backend.clone(),
            key: self.key.clone(),
            on_rejection: self.on_rejection.clone(),
            max_key_len: self.max_key_len,
            cost: policy.cost(),
            policy_header: headers::policy_value(&policy),
            shadow: policy.shadow(),
        };
        RateLimit::new(inner, Arc::new(shared))
    }
}

/// By hand: the rejection builder may be a closure, which has no `Debug`.
impl<B: fmt::Debug, K: fmt::Debug, R> fmt::Debug for RateLimitLayer<B, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("backend", &self.backend)
            .field("key", &self.key)
            .field("max_key_len", &self.max_key_len)
            .finish_non_exhaustive()
    }
}
