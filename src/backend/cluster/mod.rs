//! The cluster backend: the ring says who owns a key; the owner counts it in memory;
//! every other node asks the owner over pooled HTTP.

mod denied;
mod error;
mod forward;
mod topology;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use self::denied::DeniedCache;
pub use self::error::ClusterError;
use self::topology::Topology;
use super::{Backend, BackendError, Check, FailureMode, MemoryBackend};
use crate::circuit::CircuitPolicy;
use crate::clock::{Clock, SystemClock};
use crate::peer::{PeerClient, PeerSecret};
use crate::{Decision, Policy, Ring};

/// How long a node waits for a key's owner by default.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_millis(250);

/// The future of a check forwarded to another node.
pub type PeerFuture = Pin<Box<dyn Future<Output = Result<Decision, BackendError>> + Send>>;

/// Counters spread over a ring of nodes: each key is counted only by its owner, so the
/// limit holds across the whole cluster.
///
/// Keys this node owns are decided in memory, synchronously. Others are forwarded to
/// their owner's peer endpoint ([`PeerEndpoint`](crate::peer::PeerEndpoint)) over pooled
/// keep-alive connections, marked so that the owner never forwards them again.
///
/// When the owner cannot answer within the peer timeout (default
/// [`DEFAULT_PEER_TIMEOUT`]), the [`FailureMode`] decides (default: count locally). After
/// repeated failures the owner's circuit opens ([`CircuitPolicy`]) and its keys get the
/// failure mode at once, without waiting, until a probe succeeds.
///
/// # Examples
///
/// ```
/// use ringlimit::{backend::{ClusterBackend, FailureMode}, Policy, Ring};
/// use std::{num::NonZeroU32, time::Duration};
///
/// let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
/// let ring = Ring::new(["10.0.0.1:7000", "10.0.0.2:7000"])?;
/// let backend = ClusterBackend::new(policy, "10.0.0.1:7000", ring.clone())?
///     .peer_timeout(Duration::from_millis(100))
///     .failure_mode(FailureMode::Deny);
/// assert_eq!(backend.me(), "10.0.0.1:7000");
///
/// // A node that is not a member would forward everything, maybe to itself: refused.
/// let error = ClusterBackend::new(policy, "10.0.0.3:7000", ring).unwrap_err();
/// assert_eq!(error.to_string(), "this node (10.0.0.3:7000) is not a ring member: 10.0.0.1:7000, 10.0.0.2:7000");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClusterBackend<C = SystemClock> {
    me: Box<str>,
    /// Replaced whole on a membership change; read without locking.
    topology: ArcSwap<Topology>,
    local: Arc<MemoryBackend<C>>,
    client: PeerClient,
    failure: FailureMode,
    circuit: CircuitPolicy,
    /// Keys owners denied for the rest of their window: not forwarded again.
    denied: Arc<DeniedCache>,
}

impl ClusterBackend {
    /// The backend of node `me` (its `host:port` exactly as listed in the ring).
    pub fn new(policy: Policy, me: impl Into<String>, ring: Ring) -> Result<Self, ClusterError> {
        let me: String = me.into();
        let circuit = CircuitPolicy::default();
        let client = PeerClient::new(DEFAULT_PEER_TIMEOUT);
        let topology = Topology::new(&me, ring, circuit, &client, None)?;
        Ok(Self {
            me: me.into(),
            topology: ArcSwap::from_pointee(topology),
            local: Arc::new(MemoryBackend::new(policy)),
            client,
            failure: FailureMode::default(),
            circuit,
            denied: Arc::new(DeniedCache::new()),
        })
    }
}

impl<C: Clock> ClusterBackend<C> {
    /// Waits at most `timeout` for an owner's answer (default [`DEFAULT_PEER_TIMEOUT`]).
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_timeout(timeout);
        self.renew_peers()
    }

    /// What to answer when an owner cannot (default [`FailureMode::Local`]).
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure = mode;
        self
    }

    /// Tracks at most `max_keys` keys on this node (default
    /// [`DEFAULT_MAX_KEYS`](crate::backend::DEFAULT_MAX_KEYS)): the keys it owns, and the
    /// keys it counts itself under [`FailureMode::Local`]. See
    /// [`MemoryBackend::max_keys`] for what happens at the cap.
    ///
    /// # Panics
    ///
    /// If the backend has already been used (set it when building the backend).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        MemoryBackend::arc_max_keys(&mut self.local, max_keys);
        self
    }

    /// When a peer's circuit opens and how long it stays open (default
    /// [`CircuitPolicy::default`]).
    pub fn circuit(mut self, policy: CircuitPolicy) -> Self {
        self.circuit = policy;
        self.renew_peers()
    }

    /// Sends `secret` with every forwarded check; give the same secret to every node's
    /// [`PeerEndpoint`](crate::peer::PeerEndpoint).
    pub fn peer_secret(mut self, secret: &PeerSecret) -> Self {
        self.client = self.client.with_secret(secret);
        self.renew_peers()
    }

    /// Gives every peer a fresh circuit and queue, for a changed client or circuit policy.
    fn renew_peers(self) -> Self {
        let topology = Topology::new(&self.me, self.ring(), self.circuit, &self.client, None)
            .expect("the ring was already checked for this node");
        self.topology.store(Arc::new(topology));
        self
    }

    /// Reads the time from `clock` instead (for tests).
    ///
    /// # Panics
    ///
    /// If the backend is already shared (call it before wrapping the backend in an `Arc`).
    pub fn with_clock<C2: Clock>(self, clock: C2) -> ClusterBackend<C2> {
        ClusterBackend {
            me: self.me,
            topology: self.topology,
            local: MemoryBackend::arc_with_clock(self.local, clock),
            client: self.client,
            failure: self.failure,
            circuit: self.circuit,
            denied: self.denied,
        }
    }

    /// Replaces the members while the node serves: keys move to their new owners at once,
    /// without blocking any check in progress. Fails, keeping the old members, if this
    /// node is not among the new ones. Peers that stay keep their circuits.
    ///
    /// Nodes that briefly disagree about the members cannot bounce a check between them:
    /// a forwarded check is never forwarded again.
    pub fn set_members<I, M>(&self, members: I) -> Result<(), ClusterError>
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        let ring = Ring::new(members)?;
        let current = self.topology.load();
        let next = Topology::new(&self.me, ring, self.circuit, &self.client, Some(&current))?;
        self.topology.store(Arc::new(next));
        Ok(())
    }

    /// This node's identity on the ring.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The ring this node routes by now.
    pub fn ring(&self) -> Ring {
        self.topology.load().ring.clone()
    }

    /// The counters of the keys this node has decided itself.
    pub fn local(&self) -> &MemoryBackend<C> {
        &self.local
    }

    /// The failure mode in force.
    pub fn failure(&self) -> FailureMode {
        self.failure
    }
}

impl<C: Clock> Backend for ClusterBackend<C> {
    type Future = PeerFuture;

    fn policy(&self) -> Policy {
        self.local.policy()
    }

    fn check(&self, key: &str, cost: u32) -> Check<PeerFuture> {
        let topology = self.topology.load();
        let owner = topology.ring.owner(key);
        if owner == &*self.me {
            return Check::Ready(Ok(self.local.decide(key, cost)));
        }
        let now_ms = self.local.now_ms();
        if let Some(denial) = self
            .denied
            .get(key, cost, self.local.policy_limit(), now_ms)
        {
            return Check::Ready(Ok(denial));
        }
        self.forward(owner, topology.peer(owner), key, cost)
    }

    fn check_forwarded(&self, key: &str, cost: u32) -> Check<PeerFuture> {
        Check::Ready(Ok(self.local.decide(key, cost)))
    }
}

impl<C: fmt::Debug> fmt::Debug for ClusterBackend<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterBackend")
            .field("me", &self.me)
            .field("ring", &self.topology.load().ring)
            .field("local", &self.local)
            .field("peer_timeout", &self.client.timeout())
            .field("failure", &self.failure)
            .field("circuit", &self.circuit)
            .finish_non_exhaustive()
    }
}
