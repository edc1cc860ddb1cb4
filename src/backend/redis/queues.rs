//! The queues of a backend's checks: one on a single server; on a cluster, one per master
//! as the slot map names them, so that each master's checks form batches of their own
//! (one pipeline each) and a master that does not answer holds up its own checks only,
//! plus one for the checks of slots the map does not know (before it is first read),
//! each sent alone through the cluster client.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;

use super::connection::Connection;
use super::slot_owners::SlotMap;
use crate::coalesce::{Coalescer, SendBatch};
use crate::observe::RemoteMetrics;
use crate::{BackendError, PolicySet};

/// A sender that can be pointed at one master of a cluster.
pub(crate) trait ToMaster: SendBatch {
    /// The same sender, sending to `master` on its own connection.
    fn to_master(&self, master: ConnectionManager) -> Self;
}

/// The queues of one kind of check (single policy, or set).
pub(super) struct Queues<S: ToMaster> {
    /// A single server's queue; on a cluster, the one of slots the map does not know.
    first: Arc<Coalescer<S>>,
    connection: Connection,
    target: Arc<str>,
    timeout: Duration,
    metrics: Arc<RemoteMetrics>,
    /// A cluster's queue per master, for the map they were made for.
    per_master: ArcSwapOption<PerMaster<S>>,
    /// Held while the queues of a new map are made, so that they are made once.
    making: Mutex<()>,
}

struct PerMaster<S: SendBatch> {
    map: Arc<SlotMap>,
    /// Indexed as the map's masters.
    queues: Vec<Arc<Coalescer<S>>>,
}

impl<S: ToMaster> Queues<S> {
    /// The queues of checks sent by `sender` (to no master in particular) on `connection`.
    pub(super) fn new(
        connection: Connection,
        target: Arc<str>,
        timeout: Duration,
        sender: S,
        metrics: Arc<RemoteMetrics>,
    ) -> Self {
        let first = Arc::new(Coalescer::new(
            &target,
            timeout,
            sender,
            Arc::clone(&metrics),
        ));
        Self {
            first,
            connection,
            target,
            timeout,
            metrics,
            per_master: ArcSwapOption::empty(),
            making: Mutex::new(()),
        }
    }

    /// What sends a single server's batches (the backend reads its grouping from it).
    pub(super) fn sender(&self) -> &S {
        self.first.sender()
    }

    /// Whether the checks go to a cluster, and [`check`](Self::check) needs their slot.
    pub(super) fn is_cluster(&self) -> bool {
        self.connection.is_cluster()
    }

    /// Queues a check of `key` (whose call is in `slot`, on a cluster) on its queue and
    /// waits for its answer.
    pub(super) fn check(
        &self,
        slot: Option<u16>,
        key: Arc<str>,
        policies: PolicySet,
    ) -> impl Future<Output = Result<S::Answer, BackendError>> + Send + 'static {
        let master = match (slot, self.connection.slot_map()) {
            (Some(slot), Some(map)) => map.master_of(slot).map(|master| (map, master)),
            _ => None,
        };
        let Some((map, master)) = master else {
            return self.first.check(key, policies);
        };
        let current = self.per_master.load();
        match current.as_deref() {
            Some(made) if Arc::ptr_eq(&made.map, &map) => {
                made.queues[usize::from(master)].check(key, policies)
            }
            _ => self.made_for(&map).queues[usize::from(master)].check(key, policies),
        }
    }

    /// The queues of `map`'s masters, made now if need be: those of masters already
    /// known are kept (with their dispatchers and batches in flight).
    fn made_for(&self, map: &Arc<SlotMap>) -> Arc<PerMaster<S>> {
        let _making = self.making.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = self.per_master.load_full();
        if let Some(made) = previous.as_ref().filter(|made| Arc::ptr_eq(&made.map, map)) {
            return Arc::clone(made);
        }
        let known = |master: u16| {
            let made = previous.as_deref()?;
            let address = map.address(master);
            let i = (0..made.map.masters()).find(|&i| made.map.address(i) == address)?;
            Some(Arc::clone(&made.queues[usize::from(i)]))
        };
        let queues = (0..map.masters())
            .map(|master| {
                known(master).unwrap_or_else(|| {
                    let sender = self.first.sender().to_master(map.connection(master));
                    let metrics = Arc::clone(&self.metrics);
                    Arc::new(Coalescer::new(&self.target, self.timeout, sender, metrics))
                })
            })
            .collect();
        let made = Arc::new(PerMaster {
            map: Arc::clone(map),
            queues,
        });
        self.per_master.store(Some(Arc::clone(&made)));
        made
    }

    /// The index of the queue that a check of `slot` goes to (`None`: the first).
    #[cfg(test)]
    pub(super) fn master_of(&self, slot: u16) -> Option<(Arc<SlotMap>, u16)> {
        let map = self.connection.slot_map()?;
        let master = map.master_of(slot)?;
        let made = self.made_for(&map);
        assert_eq!(
            made.queues.len(),
            usize::from(map.masters()),
            "a queue per master"
        );
        Some((map, master))
    }
}
