//! Who is in the ring: the ring itself and a circuit per peer, replaced as one piece when
//! membership changes.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use http::uri::Authority;

use super::peer_client::PeerClient;
use super::peer_queue::PeerQueue;
use super::ClusterError;
use crate::circuit::{Circuit, CircuitPolicy};
use crate::observe::{Remote, RemoteMetrics};
use crate::Ring;

#[derive(Debug)]
pub(super) struct Topology {
    pub(super) ring: Ring,
    peers: HashMap<Box<str>, Arc<Peer>>,
}

/// What this node keeps for each other member: its circuit and its forwarding queue.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) circuit: Arc<Circuit>,
    pub(super) queue: PeerQueue,
}

impl Topology {
    /// Checks `ring` for node `me` (unless it is `leaving`: then it is not a member) and
    /// gives every other member a circuit and a queue, keeping those of `previous` for
    /// members that stay.
    pub(super) fn new(
        me: &str,
        ring: Ring,
        policy: CircuitPolicy,
        client: &PeerClient,
        previous: Option<&Topology>,
        leaving: bool,
    ) -> Result<Self, ClusterError> {
        if !leaving && !ring.contains(me) {
            let members = ring.members().collect::<Vec<_>>().join(", ");
            return Err(ClusterError::NotAMember {
                me: me.to_owned(),
                members,
            });
        }
        if let Some(bad) = ring.members().find(|m| Authority::from_str(m).is_err()) {
            return Err(ClusterError::BadMember(bad.to_owned()));
        }
        let peers = ring
            .members()
            .filter(|&m| m != me)
            .map(|m| {
                let kept = previous.and_then(|p| p.peers.get(m)).cloned();
                let peer = kept.unwrap_or_else(|| {
                    let metrics = Arc::new(RemoteMetrics::new(Remote::Peer, m));
                    Arc::new(Peer {
                        circuit: Arc::new(Circuit::new(m, policy, Arc::clone(&metrics))),
                        queue: PeerQueue::to_peer(m, client.clone(), metrics),
                    })
                });
                (m.into(), peer)
            })
            .collect();
        Ok(Self { ring, peers })
    }

    /// Peer `member` (every member but this node is one).
    pub(super) fn peer(&self, member: &str) -> &Peer {
        &self.peers[member]
    }

    /// Peer `member`, if it is one.
    pub(super) fn peer_of(&self, member: &str) -> Option<&Peer> {
        self.peers.get(member).map(|peer| &**peer)
    }
}
