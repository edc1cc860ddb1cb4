//! Where counters live: the [`Backend`] trait and its implementations.
//!
//! A backend does one atomic check of a key against a set of policies per call. Local
//! backends answer at once
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
//! let policies = backend.policies().clone();
//! let allowed = |check| matches!(check, Check::Ready(Ok(d)) if d.allowed());
//! assert!(allowed(backend.check("alice", &policies)));
//! assert!(allowed(backend.check("alice", &policies)));
//! assert!(!allowed(backend.check("alice", &policies)));
//! assert!(allowed(backend.check("bob", &policies)));
//! ```

#[cfg(feature = "cluster")]
mod cluster;
#[cfg(any(feature = "cluster", feature = "redis"))]
mod failure;
#[cfg(any(feature = "cluster", feature = "redis"))]
mod guarded;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "cluster", feature = "redis"))]
mod remote_future;
#[cfg(any(feature = "cluster", feature = "redis"))]
mod within;

use std::future::Future;
use std::sync::Arc;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisBackend, RedisBuilder, DEFAULT_PREFIX, DEFAULT_REDIS_TIMEOUT};
#[cfg(any(feature = "cluster", feature = "redis"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "cluster", feature = "redis"))))]
pub use crate::circuit::CircuitPolicy;
pub use crate::error::BackendError;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use cluster::{
    ClusterBackend, ClusterBuilder, ClusterError, ClusterHealth, NodeState, PeerHealth,
    DEFAULT_PEER_TIMEOUT, HANDOFF_DEADLINE, MOVED_FOR,
};
#[cfg(any(feature = "cluster", feature = "redis"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "cluster", feature = "redis"))))]
pub use failure::{FailureMode, UnknownFailureMode};
#[cfg(feature = "cluster")]
pub(crate) use memory::Held;
pub use memory::{MemoryBackend, MemoryBuilder, DEFAULT_MAX_KEYS, MAX_STORES};
#[cfg(any(feature = "cluster", feature = "redis"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "cluster", feature = "redis"))))]
pub use remote_future::RemoteFuture;
#[cfg(any(feature = "cluster", feature = "redis"))]
pub(crate) use within::within;

use crate::policy::PolicySet;
use crate::Decisions;

/// The result of [`Backend::check`]: ready now, or a future for a remote answer.
#[derive(Debug)]
pub enum Check<F> {
    /// The decision was made locally, without waiting.
    Ready(Result<Decisions, BackendError>),
    /// The decision needs I/O; poll the future for it.
    Pending(F),
}

/// A store of counters, counted as each policy's [`Algorithm`](crate::policy::Algorithm) says.
///
/// Every call to [`check`](Backend::check) is one check of a key against a set of
/// policies, all or nothing: if each policy not in shadow mode has room for its cost now,
/// the request is counted under every policy (and each shadow policy with room) and
/// allowed; otherwise it is counted under none and denied. The policies travel with the
/// check: a backend counts under whatever policies it is given, keyed by name, algorithm
/// and window (so a changed limit keeps its counters).
pub trait Backend: Send + Sync + 'static {
    /// The future of a decision that needs I/O.
    type Future: Future<Output = Result<Decisions, BackendError>> + Send + 'static;

    /// The policies this backend was built with: the set a layer checks unless it is
    /// told otherwise, and the one the single-check wire form means.
    fn policies(&self) -> &PolicySet;

    /// Checks `key` against `policies`, counting under all of them or none.
    fn check(&self, key: &str, policies: &PolicySet) -> Check<Self::Future>;
}

/// A backend that can answer as a key's owner, for the peer endpoint
/// ([`PeerEndpoint`](crate::endpoint::PeerEndpoint)): a check another node forwarded here is
/// decided where it arrives, never forwarded again (one hop at most, even while nodes
/// disagree about the ring). For a backend that never forwards, that is its
/// [`check`](Backend::check).
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub trait Owner: Backend {
    /// Like [`check`](Backend::check), for a check another node forwarded here.
    fn check_forwarded(&self, key: &str, policies: &PolicySet) -> Check<Self::Future>;

    /// Like [`check_forwarded`](Owner::check_forwarded), for a check sent on by a node
    /// that holds nothing of the key (it handed the key over to this one, or its ring
    /// says this one owns it): decided here, unless this node handed the key on too;
    /// then it is sent on once more, as [relayed twice](Owner::check_relayed_twice).
    fn check_relayed(&self, key: &str, policies: &PolicySet) -> Check<Self::Future> {
        self.check_forwarded(key, policies)
    }

    /// Like [`check_relayed`](Owner::check_relayed), for a check sent on a second time
    /// (its key moved again while it travelled): decided here, never sent on again;
    /// refused ([`BackendError::Refused`]) if this node handed the key on as well, since
    /// what is left here cannot decide it.
    fn check_relayed_twice(&self, key: &str, policies: &PolicySet) -> Check<Self::Future> {
        self.check_relayed(key, policies)
    }

    /// Answers another node's handoff (`POST /handoff`, counters handed over when the
    /// ring changes, see the protocol): the answer's body, or why it is refused (`400`).
    /// `None` (the default) for a backend that hands nothing over: the endpoint answers
    /// `404`. The cluster backend's own; not meant to be implemented elsewhere.
    #[doc(hidden)]
    fn answer_handoff(&self, query: &str, body: &str) -> Option<Result<String, String>> {
        let _ = (query, body);
        None
    }
}

impl<B: Backend + ?Sized> Backend for Arc<B> {
    type Future = B::Future;

    fn policies(&self) -> &PolicySet {
        (**self).policies()
    }

    fn check(&self, key: &str, policies: &PolicySet) -> Check<Self::Future> {
        (**self).check(key, policies)
    }
}

#[cfg(feature = "cluster")]
impl<B: Owner + ?Sized> Owner for Arc<B> {
    fn check_forwarded(&self, key: &str, policies: &PolicySet) -> Check<Self::Future> {
        (**self).check_forwarded(key, policies)
    }

    fn check_relayed(&self, key: &str, policies: &PolicySet) -> Check<Self::Future> {
        (**self).check_relayed(key, policies)
    }

    fn check_relayed_twice(&self, key: &str, policies: &PolicySet) -> Check<Self::Future> {
        (**self).check_relayed_twice(key, policies)
    }

    fn answer_handoff(&self, query: &str, body: &str) -> Option<Result<String, String>> {
        (**self).answer_handoff(query, body)
    }
}
