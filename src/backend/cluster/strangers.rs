//! Circuits of nodes that are not members of this node's ring, kept so that a check
//! relayed to one (a node that asked for a key before this one learnt of it) does not
//! make a circuit, and register its metrics, per check; and so that its failures open
//! the circuit and are logged once, as a member's are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::circuit::{Circuit, CircuitPolicy};

/// The most strangers kept; past it, all are forgotten (they are rare and short-lived:
/// members-to-be during a ring change).
const MOST: usize = 64;

#[derive(Debug, Default)]
pub(super) struct Strangers(Mutex<HashMap<Box<str>, Arc<Circuit>>>);

impl Strangers {
    /// The circuit of node `to`, made with `policy` the first time.
    pub(super) fn circuit(&self, to: &str, policy: CircuitPolicy) -> Arc<Circuit> {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(circuit) = known.get(to) {
            return Arc::clone(circuit);
        }
        if known.len() >= MOST {
            known.clear();
        }
        let circuit = Arc::new(Circuit::to_peer(to, policy));
        known.insert(to.into(), Arc::clone(&circuit));
        circuit
    }
}
