//! The queues of a backend's checks: one on a single server; on a cluster, one per master
//! as the slot map names them, each with the master's own circuit and metrics (see
//! `masters`), so that each master's checks form batches of their own (one pipeline
//! each) and a master that does not answer holds up, and opens the circuit of, its own
//! checks only; plus one, under the backend's circuit, for the checks of slots the map
//! does not know (before it is first read), each sent alone through the cluster client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;

use super::connection::Connection;
use super::masters::{Master, Masters};
use super::slot_owners::SlotMap;
use crate::circuit::Circuit;
use crate::coalesce::{Coalescer, SendBatch};
use crate::observe::RemoteMetrics;

/// A sender that can be pointed at one master of a cluster.
pub(crate) trait ToMaster: SendBatch {
    /// The same sender, sending to `master` on its own connection.
    fn to_master(&self, master: ConnectionManager) -> Self;
}

/// What the queues of one backend share.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) target: Arc<str>,
    pub(super) timeout: Duration,
    /// The backend's metrics and circuit: a single server's, or, on a cluster, those of
    /// the checks of unknown slots.
    pub(super) metrics: Arc<RemoteMetrics>,
    pub(super) circuit: Arc<Circuit>,
    /// A cluster's masters' metrics and circuits.
    pub(super) masters: Arc<Masters>,
}

/// The queues of one kind of check (single policy, or set).
pub(super) struct Queues<S: ToMaster> {
    /// A single server's queue; on a cluster, the one of slots the map does not know.
    first: Coalescer<S>,
    connection: Connection,
    shared: Shared,
    /// A cluster's queue per master, for the map they were made for.
    per_master: ArcSwapOption<PerMaster<S>>,
    /// Held while the queues of a new map are made, so that they are made once.
    making: Mutex<()>,
}

struct PerMaster<S: SendBatch> {
    map: Arc<SlotMap>,
    /// Indexed as the map's masters.
    queues: Vec<(Arc<Coalescer<S>>, Master)>,
}

/// Where one check goes: a queue, and the circuit that guards it.
pub(super) enum Route<'a, S: SendBatch> {
    /// The first queue, under the backend's circuit.
    First(&'a Coalescer<S>, &'a Arc<Circuit>),
    /// A master's queue, under its circuit.
    Master(Arc<Coalescer<S>>, Arc<Circuit>),
}

impl<S: SendBatch> Route<'_, S> {
    pub(super) fn queue(&self) -> &Coalescer<S> {
        match self {
            Self::First(queue, _) => queue,
            Self::Master(queue, _) => queue,
        }
    }

    pub(super) fn circuit(&self) -> &Arc<Circuit> {
        match self {
            Self::First(_, circuit) => circuit,
            Self::Master(_, circuit) => circuit,
        }
    }
}

impl<S: ToMaster> Queues<S> {
    /// The queues of checks sent by `sender` (to no master in particular) on `connection`.
    pub(super) fn new(connection: Connection, sender: S, shared: Shared) -> Self {
        let metrics = Arc::clone(&shared.metrics);
        Self {
            first: Coalescer::new(&shared.target, shared.timeout, sender, metrics),
            connection,
            shared,
            per_master: ArcSwapOption::empty(),
            making: Mutex::new(()),
        }
    }

    /// What sends a single server's batches (the backend reads its grouping from it).
    pub(super) fn sender(&self) -> &S {
        self.first.sender()
    }

    /// Whether the checks go to a cluster, and [`route`](Self::route) needs their slot.
    pub(super) fn is_cluster(&self) -> bool {
        self.connection.is_cluster()
    }

    /// Where a check whose call is in `slot` (on a cluster) goes.
    pub(super) fn route(&self, slot: Option<u16>) -> Route<'_, S> {
        let first = Route::First(&self.first, &self.shared.circuit);
        let Some((map, master)) = slot.and_then(|slot| self.connection.master_of(slot)) else {
            return first;
        };
        let made = self.per_master.load();
        if let (Some(made), Some(map)) = (made.as_deref(), map.as_ref()) {
            if Arc::ptr_eq(&made.map, map) {
                return Self::to(&made.queues[usize::from(master)]);
            }
        }
        drop((made, map));
        // A map new to these queues: theirs made (for the map current then), and the
        // check routed by it.
        let Some(made) = self.made_for_current() else {
            return first;
        };
        match slot.and_then(|slot| made.map.master_of(slot)) {
            Some(master) => Self::to(&made.queues[usize::from(master)]),
            None => first,
        }
    }

    fn to<'a>((queue, master): &(Arc<Coalescer<S>>, Master)) -> Route<'a, S> {
        Route::Master(Arc::clone(queue), Arc::clone(&master.circuit))
    }

    /// The queues of the current map's masters, made now if need be: those of masters
    /// already known are kept (with their dispatchers and batches in flight). Always for
    /// the map current under the lock, so that an older map never replaces a newer one.
    fn made_for_current(&self) -> Option<Arc<PerMaster<S>>> {
        let _making = self.making.lock().unwrap_or_else(PoisonError::into_inner);
        let map = self.connection.slot_map()?;
        let previous = self.per_master.load_full();
        if let Some(made) = previous
            .as_ref()
            .filter(|made| Arc::ptr_eq(&made.map, &map))
        {
            return Some(Arc::clone(made));
        }
        let known: HashMap<&(String, u16), &Arc<Coalescer<S>>> = match previous.as_deref() {
            Some(made) => (0..made.map.masters())
                .map(|i| (made.map.address(i), &made.queues[usize::from(i)].0))
                .collect(),
            None => HashMap::new(),
        };
        let queues = self
            .shared
            .masters
            .of(&map)
            .into_iter()
            .zip(0..map.masters())
            .map(|(master, i)| {
                let queue = match known.get(map.address(i)) {
                    Some(queue) => Arc::clone(queue),
                    None => {
                        let sender = self.first.sender().to_master(map.connection(i));
                        let metrics = Arc::clone(&master.metrics);
                        let timeout = self.shared.timeout;
                        Arc::new(Coalescer::new(&master.name, timeout, sender, metrics))
                    }
                };
                (queue, master)
            })
            .collect();
        let made = Arc::new(PerMaster { map, queues });
        self.per_master.store(Some(Arc::clone(&made)));
        Some(made)
    }

    /// The master whose queue a check of `slot` goes to, in the map the queues are made
    /// for (`None`: the first queue).
    #[cfg(test)]
    pub(super) fn master_of(&self, slot: u16) -> Option<(Arc<SlotMap>, u16)> {
        let made = self.made_for_current()?;
        let masters = usize::from(made.map.masters());
        assert_eq!(made.queues.len(), masters, "a queue per master");
        let master = made.map.master_of(slot)?;
        Some((Arc::clone(&made.map), master))
    }

    /// The queue of `slot`'s master, to compare (`None`: the first queue).
    #[cfg(test)]
    pub(super) fn queue_of(&self, slot: u16) -> Option<Arc<Coalescer<S>>> {
        match self.route(Some(slot)) {
            Route::Master(queue, _) => Some(queue),
            Route::First(..) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Arc;
    use std::time::Duration;

    use redis::Value;

    use super::super::RedisBackend;
    use crate::Policy;

    fn range(start: i64, end: i64, port: i64) -> Value {
        let master = vec![Value::BulkString(b"127.0.0.1".to_vec()), Value::Int(port)];
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(master),
        ])
    }

    #[tokio::test]
    async fn a_master_keeps_its_queue_through_a_new_map_and_unknown_slots_share_one() {
        // Nothing listens on these ports: connections are made lazily, on first use.
        let urls = ["redis://127.0.0.1:1".to_owned()];
        let policy = Policy::per_window(NonZeroU32::MIN, Duration::from_secs(1));
        let backend = RedisBackend::cluster_builder(policy, &urls)
            .build()
            .unwrap();
        let (queues, connection) = (&backend.queue, &backend.queue.sender().connection);
        assert!(queues.queue_of(0).is_none(), "no map yet: the first queue");

        connection.store_slot_map(&Value::Array(vec![
            range(0, 8191, 1),
            range(8192, 16000, 2),
        ]));
        let (low, high) = (queues.queue_of(0).unwrap(), queues.queue_of(9000).unwrap());
        assert!(!Arc::ptr_eq(&low, &high), "a queue per master");
        assert!(Arc::ptr_eq(&low, &queues.queue_of(8191).unwrap()));
        assert!(
            queues.queue_of(16001).is_none(),
            "a slot of no master: the first"
        );

        // The master at port 2 moves to 3; the one at port 1 keeps its queue.
        connection.store_slot_map(&Value::Array(vec![
            range(0, 8191, 1),
            range(8192, 16383, 3),
        ]));
        assert!(Arc::ptr_eq(&low, &queues.queue_of(0).unwrap()), "kept");
        assert!(
            !Arc::ptr_eq(&high, &queues.queue_of(9000).unwrap()),
            "a new master"
        );
    }
}
