use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::{RateLimit, Shared};
use super::{OnRejection, PlainTextRejection};
use crate::key::QueryKey;
use crate::resolve::OwnPolicies;
use crate::Backend;

use crate::key::DEFAULT_MAX_KEY_LEN;

/// Applies a per-key rate limit to every request: a tower [`Layer`].
///
/// Defaults: the key is the `user_id` query parameter, at most
/// [`DEFAULT_MAX_KEY_LEN`] bytes; each request is checked against the backend's own
/// policies ([`policies`](Self::policies) picks others), at each policy's cost;
/// rejections are plain text.
///
/// Several limits on one request belong in one [`PolicySet`](crate::PolicySet), checked
/// all or nothing. Two stacked layers are two checks: each adds its items to the
/// `RateLimit-Policy` and `RateLimit` lists (give their policies different names), the
/// outer one's [`Decisions`](crate::Decisions) replace the inner one's in the extensions,
/// and a request the inner layer denies stays counted by the outer one.
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
pub struct RateLimitLayer<B, K = QueryKey, R = PlainTextRejection, P = OwnPolicies> {
    backend: Arc<B>,
    key: K,
    on_rejection: R,
    max_key_len: usize,
    policies: P,
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
            policies: OwnPolicies,
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

impl<B, K, R, P> RateLimitLayer<B, K, R, P> {
    /// Finds the key with `key` instead (see [`key`](crate::key)).
    pub fn key<K2>(self, key: K2) -> RateLimitLayer<B, K2, R, P> {
        RateLimitLayer {
            backend: self.backend,
            key,
            on_rejection: self.on_rejection,
            max_key_len: self.max_key_len,
            policies: self.policies,
        }
    }

    /// Builds rejection responses with `on_rejection` instead of plain text.
    pub fn on_rejection<R2: OnRejection>(self, on_rejection: R2) -> RateLimitLayer<B, K, R2, P> {
        RateLimitLayer {
            backend: self.backend,
            key: self.key,
            on_rejection,
            max_key_len: self.max_key_len,
            policies: self.policies,
        }
    }

    /// Picks each request's policies with `resolver` (a [`PolicySet`](crate::PolicySet)
    /// for every request, or [`tiers`](crate::resolve::tiers) chosen per request)
    /// instead of the backend's own. The backend counts under whatever policies it is
    /// given.
    pub fn policies<P2>(self, resolver: P2) -> RateLimitLayer<B, K, R, P2> {
        RateLimitLayer {
            backend: self.backend,
            key: self.key,
            on_rejection: self.on_rejection,
            max_key_len: self.max_key_len,
            policies: resolver,
        }
    }

    /// Answers keys longer than `bytes` with `400` (default [`DEFAULT_MAX_KEY_LEN`]).
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }
}

// By hand: the backend is shared through the `Arc`, so it need not be `Clone` itself.
impl<B, K: Clone, R: Clone, P: Clone> Clone for RateLimitLayer<B, K, R, P> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            key: self.key.clone(),
            on_rejection: self.on_rejection.clone(),
            max_key_len: self.max_key_len,
            policies: self.policies.clone(),
        }
    }
}

impl<S, B: Backend, K: Clone, R: Clone, P: Clone> Layer<S> for RateLimitLayer<B, K, R, P> {
    type Service = RateLimit<S, B, K, R, P>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = Shared {
            backend: self.backend.clone(),
            key: self.key.clone(),
            on_rejection: self.on_rejection.clone(),
            max_key_len: self.max_key_len,
            policies: self.policies.clone(),
        };
        RateLimit::new(inner, Arc::new(shared))
    }
}

/// By hand: the rejection builder may be a closure, which has no `Debug`.
impl<B: fmt::Debug, K: fmt::Debug, R, P: fmt::Debug> fmt::Debug for RateLimitLayer<B, K, R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("backend", &self.backend)
            .field("key", &self.key)
            .field("max_key_len", &self.max_key_len)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}
