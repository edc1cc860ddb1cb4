//! The cluster backend: the ring says who owns a key; the owner counts it in memory;
//! every other node asks the owner over kept-alive HTTP.

mod batch_http;
mod builder;
mod denied;
mod error;
mod forward;
mod handoff;
mod health;
mod kept_connections;
#[cfg(test)]
mod kept_connections_tests;
mod members;
mod peer_client;
mod peer_queue;
mod strangers;
mod topology;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

pub use self::builder::ClusterBuilder;
use self::denied::DeniedCache;
pub use self::error::ClusterError;
use self::forward::Route;
use self::handoff::Handoff;
pub use self::handoff::{HANDOFF_DEADLINE, MOVED_FOR};
pub use self::health::{ClusterHealth, NodeState, PeerHealth};
use self::members::Members;
use self::peer_client::PeerClient;
use self::strangers::Strangers;
use self::topology::Topology;
use super::{Backend, Check, FailureMode, MemoryBackend, Owner, RemoteFuture};
use crate::circuit::CircuitPolicy;
use crate::clock::{Clock, SystemClock};
use crate::policy::PolicySet;
use crate::protocol::Relayed;
use crate::{Decisions, Ring};

/// How long a node waits for a key's owner by default.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_millis(250);

/// Counters spread over a ring of nodes: each key is counted only by its owner, so the
/// limit holds across the whole cluster.
///
/// Keys this node owns are decided in memory, synchronously. Others are forwarded to
/// their owner's peer endpoint ([`PeerEndpoint`](crate::endpoint::PeerEndpoint)) over
/// keep-alive connections, marked so that the owner decides them (a node that handed the
/// key on sends them on to its counters, three hops at most): at most two
/// batches to an owner at once (a second only while the first carries few checks), and
/// the checks that queue up behind them leave together.
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
/// let backend = ClusterBackend::builder(policy, "10.0.0.1:7000", ring.clone())
///     .peer_timeout(Duration::from_millis(100))
///     .failure_mode(FailureMode::Deny)
///     .build()?;
/// assert_eq!(backend.me(), "10.0.0.1:7000");
///
/// // A node that is not a member would forward everything, maybe to itself: refused.
/// let error = ClusterBackend::new(policy, "10.0.0.3:7000", ring).unwrap_err();
/// assert_eq!(error.to_string(), "this node (10.0.0.3:7000) is not a ring member: 10.0.0.1:7000, 10.0.0.2:7000");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClusterBackend<C = SystemClock> {
    me: Arc<str>,
    /// Replaced whole on a membership change; read without locking.
    topology: ArcSwap<Topology>,
    /// The members given, and those that left; changed only with the ring.
    members: Mutex<Members>,
    /// Counters handed over and taken in when the ring changes.
    handoff: Arc<Handoff<C>>,
    local: Arc<MemoryBackend<C>>,
    client: PeerClient,
    failure: FailureMode,
    circuit: CircuitPolicy,
    /// Keys owners denied for the rest of their window: not forwarded again.
    denied: Arc<DeniedCache>,
    /// How many `join`s have not finished telling the others.
    joining: Arc<AtomicUsize>,
    /// Whether `leave` was called (and `join` not since): the node is stopping.
    stopping: AtomicBool,
    /// Circuits of nodes checks are relayed to that are not members here (yet).
    strangers: Strangers,
}

impl ClusterBackend {
    /// The backend of node `me` (its `host:port` exactly as listed in `ring`), with the
    /// default options.
    ///
    /// # Errors
    ///
    /// If `me` is not a member of `ring`, or a member is not a `host:port`.
    pub fn new(
        policy: impl Into<PolicySet>,
        me: impl Into<String>,
        ring: Ring,
    ) -> Result<Self, ClusterError> {
        Self::builder(policy, me, ring).build()
    }

    /// The backend of node `me` in `ring`, set up with [`ClusterBuilder`]'s options.
    pub fn builder(
        policy: impl Into<PolicySet>,
        me: impl Into<String>,
        ring: Ring,
    ) -> ClusterBuilder {
        ClusterBuilder::new(policy.into(), me.into(), ring)
    }
}

impl<C: Clock> ClusterBackend<C> {
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

    /// Sets the gauges that are read rather than counted (the keys held in memory, the
    /// keys evicted at the cap, the ring's members) and hands over the counts of checks: call it where you render metrics.
    /// Nothing without the feature `metrics`.
    pub fn record_metrics(&self) {
        self.local.record_metrics();
        crate::observe::ring::members_now(self.topology.load().ring.members().count());
    }

    /// The failure mode in force ([`ClusterBuilder::failure_mode`]).
    pub fn failure_mode(&self) -> FailureMode {
        self.failure
    }

    /// How long an owner's answer is waited for ([`ClusterBuilder::peer_timeout`]).
    pub fn peer_timeout(&self) -> Duration {
        self.client.timeout()
    }
}

impl<C: Clock> Backend for ClusterBackend<C> {
    type Future = RemoteFuture;

    fn policies(&self) -> &PolicySet {
        self.local.policies()
    }

    fn check(&self, key: &str, policies: &PolicySet) -> Check<RemoteFuture> {
        let topology = self.topology.load();
        let owner = topology.ring.owner(key);
        if owner == &*self.me {
            return self.decide_here(key, policies, Origin::Client);
        }
        if let Some(denial) = self.remembered_denial(key, policies) {
            return Check::Ready(Ok(denial));
        }
        let peer = topology.peer(owner);
        self.forward(
            owner,
            &peer.circuit,
            Route::Queued(&peer.queue),
            key,
            policies,
        )
    }
}

impl<C: Clock> ClusterBackend<C> {
    /// Decides `key` with this node's own counters (a key it owns, or a check forwarded
    /// here, as `from` says): once its counters are here, if the ring just changed (see
    /// `handoff`); sent on to the node it was handed to, if it was ([`Self::send_on`]).
    #[inline]
    fn decide_here(&self, key: &str, policies: &PolicySet, from: Origin) -> Check<RemoteFuture> {
        if let Some((transition, holder)) = self.handoff.holder(key) {
            let (handoff, key, set) = (
                Arc::clone(&self.handoff),
                Box::<str>::from(key),
                policies.clone(),
            );
            let mode = self.failure;
            return Check::Pending(RemoteFuture::new(async move {
                match handoff.ask(&transition, &holder, &key).await {
                    // Handed on while it was asked for (a ring that changed again):
                    // decided where it went.
                    Ok(()) if handoff.moved.to(&key).is_some() => match from.sent_on() {
                        Some(mark) => handoff.relay_now(&key, &set, mode, mark).await,
                        None => Err(handed_on(&handoff.me)),
                    },
                    Ok(()) => from.decide(&handoff.local, &key, &set),
                    // No counters to go on: the failure mode decides, as for an owner
                    // that cannot answer.
                    Err(error) => super::failure::fail(mode, &handoff.local, &key, &set, error),
                }
            }));
        }
        if from == Origin::Peer {
            // Sent here by a node whose ring is not this one's: if another node owns the
            // key here, and this node holds nothing of it (it was handed over, or was
            // never here), the check goes on to that owner.
            let topology = self.topology.load();
            let owner = topology.ring.owner(key);
            if owner != &*self.me && !self.local.holds(key) {
                return self.relay(owner, key, policies, Relayed::Once);
            }
        }
        let moved = &self.handoff.moved;
        if let Some(to) = moved.to(key) {
            return self.send_on(&to, key, policies, from);
        }
        let decided = from.decide(&self.local, key, policies);
        if moved.any() {
            if let Some(to) = moved.to(key) {
                // Handed over while this check counted: its unit went with the key (and
                // the new owner counts it again), or is dropped here with what is left.
                let _ = self.local.take(key);
                return self.send_on(&to, key, policies, from);
            }
        }
        Check::Ready(decided)
    }

    /// A check of `key`, which this node handed to `to`, sent on there: marked one more
    /// time than it came (`from`). One sent on twice already is not sent on again (two
    /// nodes may point at each other while counters cross), and the empty counter left
    /// here cannot decide it: refused, counted nowhere.
    fn send_on(
        &self,
        to: &str,
        key: &str,
        policies: &PolicySet,
        from: Origin,
    ) -> Check<RemoteFuture> {
        match from.sent_on() {
            Some(mark) => self.relay(to, key, policies, mark),
            None => Check::Ready(Err(handed_on(&self.me))),
        }
    }

    /// Sends a check of `key` on to `to`, which holds its counters, marked `mark`, to be
    /// decided there.
    fn relay(
        &self,
        to: &str,
        key: &str,
        policies: &PolicySet,
        mark: Relayed,
    ) -> Check<RemoteFuture> {
        let topology = self.topology.load();
        match topology.peer_of(to) {
            Some(peer) => self.forward(to, &peer.circuit, Route::Relayed(mark), key, policies),
            // Not a member on this node's ring (yet: it asked for the key before this
            // node learnt of it): a circuit kept for it among a few such nodes.
            None => {
                let circuit = self.strangers.circuit(to, self.circuit);
                self.forward(to, &circuit, Route::Relayed(mark), key, policies)
            }
        }
    }

    /// A denial the owner already gave, still standing. Only for this node's own set
    /// when it is one fixed-window policy: a fixed window's count only grows until the
    /// window ends, so a denial stands till then; under the other algorithms a smaller
    /// cost may fit sooner, and other sets count under other policies.
    fn remembered_denial(&self, key: &str, policies: &PolicySet) -> Option<Decisions> {
        let policy = self.remembers_denials(policies)?;
        let now_ms = self.local.now_ms();
        let denial = self
            .denied
            .get(key, policy.cost().get(), policy.limit(), now_ms)?;
        Some(Decisions::one(policy, denial))
    }
}

/// A forwarded check is decided here, by this node's own counters, whoever owns the key
/// on this node's ring.
impl<C: Clock> Owner for ClusterBackend<C> {
    fn check_forwarded(&self, key: &str, policies: &PolicySet) -> Check<RemoteFuture> {
        self.decide_here(key, policies, Origin::Peer)
    }

    fn check_relayed(&self, key: &str, policies: &PolicySet) -> Check<RemoteFuture> {
        self.decide_here(key, policies, Origin::Relay)
    }

    fn check_relayed_twice(&self, key: &str, policies: &PolicySet) -> Check<RemoteFuture> {
        self.decide_here(key, policies, Origin::RelayTwice)
    }

    fn answer_handoff(&self, query: &str, body: &str) -> Option<Result<String, String>> {
        Some(ClusterBackend::answer_handoff(self, query, body))
    }
}

/// Where a check decided here comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// This node's own request: its sets may make counters up to [`MAX_STORES`](super::MAX_STORES).
    Client,
    /// Forwarded by another node: it may make fewer (`decide_forwarded`).
    Peer,
    /// Sent on once by a node that holds nothing of the key: decided here, or sent on
    /// once more if this node handed the key on too.
    Relay,
    /// Sent on twice: decided here, never sent on again.
    RelayTwice,
}

impl Origin {
    fn decide<C: Clock>(
        self,
        local: &MemoryBackend<C>,
        key: &str,
        policies: &PolicySet,
    ) -> Result<Decisions, super::BackendError> {
        match self {
            Self::Client => local.decide_all(key, policies),
            Self::Peer | Self::Relay | Self::RelayTwice => local.decide_forwarded(key, policies),
        }
    }

    /// How a check from here is marked if this node sends it on; `None` if it may not
    /// be sent on again.
    fn sent_on(self) -> Option<Relayed> {
        match self {
            Self::Client | Self::Peer => Some(Relayed::Once),
            Self::Relay => Some(Relayed::Twice),
            Self::RelayTwice => None,
        }
    }
}

/// Why node `me` refuses a check sent on twice for a key it handed on as well.
fn handed_on(me: &str) -> super::BackendError {
    tracing::warn!(
        "ringlimit: a check sent on twice reached a node that handed its key on too \
         (the ring changed again while it travelled): refused, counted nowhere"
    );
    super::BackendError::Refused {
        target: me.to_owned(),
        reason: "the key was handed on from here while the check travelled".to_owned(),
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
