//! Who is in the ring: the ring itself and a circuit per peer, replaced as one piece when
//! membership changes.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use http::uri::Authority;

use super::ClusterError;
use crate::peer::{Circuit, CircuitPolicy};
use crate::Ring;

#[derive(Debug)]
pub(super) struct Topology {
    pub(super) ring: Ring,
    circuits: HashMap<Box<str>, Arc<Circuit>>,
}

impl Topology {
    /// Checks `ring` for node `me` and gives every other member a circuit, keeping those
    /// of `previous` for members that stay.
    pub(super) fn new(
        me: &str,
        ring: Ring,
        policy: CircuitPolicy,
        previous: Option<&Topology>,
    ) -> Result<Self, ClusterError> {
        if !ring.contains(me) {
            let members = ring.members().collect::<Vec<_>>().join(", ");
            return Err(ClusterError::NotAMember {
                me: me.to_owned(),
                members,
            });
        }
        if let Some(bad) = ring.members().find(|m| Authority::from_str(m).is_err()) {
            return Err(ClusterError::BadMember(bad.to_owned()));
        }
        let circuits = ring
            .members()
            .filter(|&m| m != me)
            .map(|m| {
                let kept = previous.and_then(|p| p.circuits.get(m)).cloned();
                let circuit = kept.unwrap_or_else(|| Arc::new(Circuit::new(m, policy)));
                (m.into(), circuit)
            })
            .collect();
        Ok(Self { ring, circuits })
    }

    /// The circuit of peer `member` (every member but this node has one).
    pub(super) fn circuit(&self, member: &str) -> &Arc<Circuit> {
        &self.circuits[member]
    }
}
