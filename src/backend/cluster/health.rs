//! What a node's health check reports: whether it serves, its ring, and whether each
//! peer answers. For an orchestrator's readiness probe (`/healthz` in the `node` example).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::ClusterBackend;
use crate::clock::Clock;

/// Where a node is in its life in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeState {
    /// [`join`](ClusterBackend::join) has not yet told every other member that this node
    /// is back: do not send it traffic yet, nor restart the next node of a rolling
    /// restart.
    Joining,
    /// In the ring and deciding its keys.
    Serving,
    /// [`leave`](ClusterBackend::leave) was called: its keys are going, or have gone, to
    /// the others, and it is about to stop.
    Leaving,
    /// Its members source no longer lists it: it owns no key and sends every check to
    /// the others, and comes back when listed again. It still answers, so it stays ready
    /// (a readiness probe failing here would keep a Kubernetes headless service from ever
    /// listing it again).
    OutOfRing,
}

impl NodeState {
    /// Whether the node should get traffic: it is [`Serving`](NodeState::Serving), or
    /// [`OutOfRing`](NodeState::OutOfRing) (it answers by sending checks on).
    pub fn is_serving(self) -> bool {
        matches!(self, Self::Serving | Self::OutOfRing)
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Joining => "joining",
            Self::Serving => "serving",
            Self::Leaving => "leaving",
            Self::OutOfRing => "out_of_ring",
        })
    }
}

/// One peer as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerHealth {
    /// Its `host:port` on the ring.
    pub member: String,
    /// Whether its circuit is open: recent asks failed, so its keys get the failure mode
    /// at once until a probe succeeds.
    pub circuit_open: bool,
}

/// A node's health: see [`ClusterBackend::health`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterHealth {
    /// Where the node is in its life in the ring.
    pub state: NodeState,
    /// The members of the ring it routes by, itself included (unless it is leaving).
    pub members: Vec<String>,
    /// Every other member, with its circuit.
    pub peers: Vec<PeerHealth>,
}

impl<C: Clock> ClusterBackend<C> {
    /// This node's health now: whether it serves, its ring and its peers' circuits.
    /// Cheap (no I/O), for a readiness probe.
    pub fn health(&self) -> ClusterHealth {
        let leaving = self
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .leaving();
        let state = if self.stopping.load(Ordering::Acquire) {
            NodeState::Leaving
        } else if self.joining.load(Ordering::Acquire) > 0 {
            NodeState::Joining
        } else if leaving {
            NodeState::OutOfRing
        } else {
            NodeState::Serving
        };
        let topology = self.topology.load();
        let members: Vec<String> = topology.ring.members().map(str::to_owned).collect();
        let peers = members
            .iter()
            .filter_map(|member| {
                let peer = topology.peer_of(member)?;
                Some(PeerHealth {
                    member: member.clone(),
                    circuit_open: peer.circuit.is_open(),
                })
            })
            .collect();
        ClusterHealth {
            state,
            members,
            peers,
        }
    }
}
