//! Where counters live: the [`Backend`] trait and its implementations.
//!
//! A backend does one atomic check-and-increment per call. Local backends answer at once
//! with [`Check::Ready`], so the layer's request path allocates no future for them; remote
//! backends (a peer node, Redis) return [`Check::Pending`] with a future.
//!
//! # Examples
//!
//! ```
//! use ringlimit::{Backend, Check, MemoryBackend, Policy};
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//!
//! let backend = MemoryBackend::new(Policy::per_window(NonZeroU32::new(2).unwrap(), Duration::from_secs(60)));
//! let allowed = |check| matches!(check, Check::Ready(Ok(d)) if d.allowed);
//! assert!(allowed(backend.check("alice", 1)));
//! assert!(allowed(backend.check("alice", 1)));
//! assert!(!allowed(backend.check("alice", 1)));
//! assert!(allowed(backend.check("bob", 1)));
//! ```

mod cluster;
mod error;
mod failure;
mod guarded;
mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
mod redis;

use std::future::Future;
use std::sync::Arc;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisBackend, DEFAULT_PREFIX, DEFAULT_REDIS_TIMEOUT};
pub use cluster::{ClusterBackend, ClusterError, PeerFuture, DEFAULT_PEER_TIMEOUT};
pub(crate) use error::within;
pub use error::BackendError;
pub use failure::{FailureMode, UnknownFailureMode};
pub use memory::{MemoryBackend, DEFAULT_MAX_KEYS};

use crate::{Decision, Policy};

/// The result of [`Backend::check`]: ready now, or a future for a remote answer.
#[derive(Debug)]
pub enum Check<F> {
    /// The decision was made locally, without waiting.
    Ready(Result<Decision, BackendError>),
    /// The decision needs I/O; poll the future for it.
    Pending(F),
}

/// A store of fixed-window counters.
///
/// Every call to [`check`](Backend::check) is one atomic check-and-increment: if `cost`
/// more units fit in the key's current window they are counted and the request is allowed,
/// otherwise nothing is counted and it is denied.
pub trait Backend: Send + Sync + 'static {
    /// The future of a decision that needs I/O.
    type Future: Future<Output = Result<Decision, BackendError>> + Send + 'static;

    /// The policy this backend enforces (rendered into `RateLimit-Policy`).
    fn policy(&self) -> Policy;

    /// Counts `cost` units for `key` if they fit in its current window.
    fn check(&self, key: &str, cost: u32) -> Check<Self::Future>;

    /// Like [`check`](Backend::check), for a request another node forwarded here: it is
    /// answered where it is, never forwarded again (one hop at most, even while nodes
    /// disagree about the ring). Backends that never forward need not override it.
    fn check_forwarded(&self, key: &str, cost: u32) -> Check<Self::Future> {
        self.check(key, cost)
    }
}

impl<B: Backend + ?Sized> Backend for Arc<B> {
    type Future = B::Future;

    fn policy(&self) -> Policy {
        (**self).policy()
    }

    fn check(&self, key: &str, cost: u32) -> Check<Self::Future> {
        (**self).check(key, cost)
    }

    fn check_forwarded(&self, key: &str, cost: u32) -> Check<Self::Future> {
        (**self).check_forwarded(key, cost)
    }
}
