//! How a [`ClusterBackend`] is set up: options gathered first, then checked and put
//! together once (the ring against this node, a circuit and a queue per peer).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use super::denied::DeniedCache;
use super::handoff::{Handoff, MovedKeys};
use super::members::Members;
use super::peer_client::PeerClient;
use super::strangers::Strangers;
use super::topology::Topology;
use super::{ClusterBackend, ClusterError, DEFAULT_PEER_TIMEOUT};
use crate::backend::{FailureMode, MemoryBackend, MemoryBuilder};
use crate::circuit::CircuitPolicy;
use crate::clock::{Clock, SystemClock};
use crate::protocol::PeerSecret;
use crate::{PolicySet, Ring};

/// The options of a [`ClusterBackend`], from [`ClusterBackend::builder`]; nothing is
/// checked or made until [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until built"]
pub struct ClusterBuilder<C = SystemClock> {
    me: String,
    ring: Ring,
    local: MemoryBuilder<C>,
    peer_timeout: Duration,
    failure_mode: FailureMode,
    circuit: CircuitPolicy,
    peer_secret: Option<PeerSecret>,
}

impl ClusterBuilder {
    pub(super) fn new(policy: PolicySet, me: String, ring: Ring) -> Self {
        Self {
            me,
            ring,
            local: MemoryBackend::builder(policy),
            peer_timeout: DEFAULT_PEER_TIMEOUT,
            failure_mode: FailureMode::default(),
            circuit: CircuitPolicy::default(),
            peer_secret: None,
        }
    }
}

impl<C: Clock> ClusterBuilder<C> {
    /// Waits at most `timeout` for an owner's answer (default [`DEFAULT_PEER_TIMEOUT`]).
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.peer_timeout = timeout;
        self
    }

    /// What to answer when an owner cannot (default [`FailureMode::Local`]).
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// When a peer's circuit opens and how long it stays open (default
    /// [`CircuitPolicy::default`]).
    pub fn circuit(mut self, policy: CircuitPolicy) -> Self {
        self.circuit = policy;
        self
    }

    /// Sends `secret` with every forwarded check; give the same secret to every node's
    /// [`PeerEndpoint`](crate::endpoint::PeerEndpoint).
    pub fn peer_secret(mut self, secret: &PeerSecret) -> Self {
        self.peer_secret = Some(secret.clone());
        self
    }

    /// Tracks at most `max_keys` keys on this node (default
    /// [`DEFAULT_MAX_KEYS`](crate::backend::DEFAULT_MAX_KEYS)): the keys it owns, and the
    /// keys it counts itself under [`FailureMode::Local`]. See
    /// [`MemoryBuilder::max_keys`] for what happens at the cap.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.local = self.local.max_keys(max_keys);
        self
    }

    /// Reads the time from `clock` (default [`SystemClock`]; for tests,
    /// [`ManualClock`](crate::ManualClock)).
    pub fn clock<C2: Clock>(self, clock: C2) -> ClusterBuilder<C2> {
        ClusterBuilder {
            me: self.me,
            ring: self.ring,
            local: self.local.clock(clock),
            peer_timeout: self.peer_timeout,
            failure_mode: self.failure_mode,
            circuit: self.circuit,
            peer_secret: self.peer_secret,
        }
    }

    /// The backend.
    ///
    /// # Errors
    ///
    /// If this node is not a member of the ring (it would forward everything, maybe to
    /// itself), or a member is not a `host:port`.
    pub fn build(self) -> Result<ClusterBackend<C>, ClusterError> {
        let mut client = PeerClient::new(self.peer_timeout);
        if let Some(secret) = &self.peer_secret {
            client = client.with_secret(secret);
        }
        let members = Members::new(&self.ring);
        let topology = Topology::new(&self.me, self.ring, self.circuit, &client, None, false)?;
        crate::observe::ring::members_now(topology.ring.members().count());
        let local = Arc::new(self.local.build());
        let me: Arc<str> = self.me.into();
        let handoff = Handoff {
            me: Arc::clone(&me),
            local: Arc::clone(&local),
            client: client.clone(),
            moved: MovedKeys::default(),
            transition: ArcSwapOption::empty(),
            transitioning: AtomicBool::new(false),
            changing: Mutex::default(),
            next_serial: AtomicU64::new(serial_start()),
            taken_in: Mutex::default(),
            senders: foldhash::fast::RandomState::default(),
        };
        Ok(ClusterBackend {
            me,
            topology: ArcSwap::from_pointee(topology),
            members: Mutex::new(members),
            handoff: Arc::new(handoff),
            local,
            client,
            failure: self.failure_mode,
            circuit: self.circuit,
            denied: Arc::new(DeniedCache::new()),
            joining: Arc::default(),
            stopping: AtomicBool::new(false),
            strangers: Strangers::default(),
        })
    }
}

/// Where a node's serials of keys handed over start: the time in ns, so that a node
/// started again (under the same name) does not hand keys over under serials its peers
/// took in from it before.
fn serial_start() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}
