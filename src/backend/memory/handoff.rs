//! A key's counters on the move when the ring changes: what this node holds of a key,
//! taken out whole for the key's next owner, and what another node held of a key, added
//! to what this one holds.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::PoisonError;

use super::{MemoryBackend, MAX_PEER_STORES};
use crate::algorithm::State;
use crate::clock::Clock;
use crate::policy::PolicySet;
use crate::Policy;

/// The keys held here, each once.
pub(super) type HeldKeys = HashSet<Box<str>, foldhash::fast::RandomState>;

/// What a node held of one key under one policy, as it is handed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    /// The policy whose counters held it (its limit is what the state is clamped to).
    pub(crate) policy: Policy,
    pub(crate) state: State,
}

impl<C: Clock> MemoryBackend<C> {
    /// Takes `key`'s state under every policy out of this node: nothing of it stays here.
    pub(crate) fn take(&self, key: &str) -> Vec<Held> {
        let hash = self.hasher.hash_one(key);
        let now = self.clock.now();
        let stores = self.stores.read().unwrap_or_else(PoisonError::into_inner);
        stores
            .iter()
            .filter_map(|store| {
                let state = store.take(key, hash, now)?;
                Some(Held {
                    policy: *store.policy(),
                    state,
                })
            })
            .collect()
    }

    /// Adds what another node held of `key` to this node's counters, policy by policy.
    /// A policy with no counters here gets them as a forwarded check's would, if there is
    /// room for a peer's; otherwise its units are dropped, and the refusal logged.
    pub(crate) fn absorb(&self, key: &str, held: &[Held]) {
        let hash = self.hasher.hash_one(key);
        let now = self.clock.now();
        for one in held {
            let store = self.store_of(&one.policy);
            let store = match store {
                Some(store) => store,
                None => {
                    let made = PolicySet::new([one.policy])
                        .ok()
                        .and_then(|set| self.make_stores(&set, MAX_PEER_STORES).ok());
                    match made.and_then(|()| self.store_of(&one.policy)) {
                        Some(store) => store,
                        None => continue,
                    }
                }
            };
            store.absorb(key, hash, one.state, now);
        }
    }

    /// Whether this node holds anything of `key`, under any policy.
    pub(crate) fn holds(&self, key: &str) -> bool {
        let hash = self.hasher.hash_one(key);
        let stores = self.stores.read().unwrap_or_else(PoisonError::into_inner);
        stores.iter().any(|store| store.holds_key(key, hash))
    }

    /// Every key held here, under any policy (for handing keys over; its cost grows with
    /// the keys held, so never on a request's path).
    pub(crate) fn held_keys(&self) -> Vec<Box<str>> {
        let stores = self
            .stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut keys = HeldKeys::default();
        for store in &stores {
            store.keys_into(&mut keys);
        }
        keys.into_iter().collect()
    }

    fn store_of(&self, policy: &Policy) -> Option<std::sync::Arc<super::Store>> {
        let stores = self.stores.read().unwrap_or_else(PoisonError::into_inner);
        stores.iter().find(|s| s.holds(policy)).cloned()
    }
}
