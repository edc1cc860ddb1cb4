//! What a cluster's backend keeps per master, by address, shared by its queues (single
//! policies and sets): the master's metrics (labelled by its `host:port`) and its
//! circuit, so that a master that fails opens its own and the others' checks still go.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use super::slot_owners::{Address, SlotMap};
use crate::circuit::{Circuit, CircuitPolicy};
use crate::observe::{Remote, RemoteMetrics};

/// One master's metrics and circuit.
#[derive(Clone)]
pub(super) struct Master {
    /// Its `host:port`, as errors and metrics name it.
    pub(super) name: Arc<str>,
    pub(super) metrics: Arc<RemoteMetrics>,
    pub(super) circuit: Arc<Circuit>,
}

/// The masters of the current map, by address.
pub(super) struct Masters {
    policy: CircuitPolicy,
    known: Mutex<HashMap<Address, Master>>,
}

impl Masters {
    /// No master yet; their circuits open as `policy` says.
    pub(super) fn new(policy: CircuitPolicy) -> Self {
        Self {
            policy,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Each of `map`'s masters, in its order: kept for the masters already known, made
    /// for the others. Masters no longer in the map are forgotten (bounded by the map).
    pub(super) fn of(&self, map: &SlotMap) -> Vec<Master> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let addresses: Vec<&Address> = (0..map.masters()).map(|i| map.address(i)).collect();
        let current: HashSet<&Address> = addresses.iter().copied().collect();
        known.retain(|address, _| current.contains(address));
        addresses
            .into_iter()
            .map(|address| {
                let master = known.entry(address.clone()).or_insert_with(|| {
                    let name = format!("{}:{}", address.0, address.1);
                    let metrics = Arc::new(RemoteMetrics::new(Remote::Redis, &name));
                    let circuit = Circuit::new(&name, self.policy, Arc::clone(&metrics));
                    Master {
                        name: name.into(),
                        metrics,
                        circuit: Arc::new(circuit),
                    }
                });
                master.clone()
            })
            .collect()
    }
}
