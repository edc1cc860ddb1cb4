//! Counters follow their keys when the ring changes.
//!
//! How, in short (the whole story is in the crate's README, "Through deploys"):
//! - **Push.** After every ring change, each node takes out every key it holds that the
//!   new ring gives to another member, and gives the counters to that member
//!   (`POST /handoff?op=give`, a thousand keys a request), then tells every other member
//!   it is done (`done=1`), even when it had nothing for it.
//! - **Ask.** Until every member of the ring before has said it is done (or
//!   [`HANDOFF_DEADLINE`] has passed), a node decides a key it did not own before only
//!   after asking the key's owner on the ring before for its counters
//!   (`op=take`): a key's count never starts at zero while its counters are on the way.
//!   Checks of one key wait for one ask; a push and an ask that cross bring the counters
//!   once.
//! - **Moved.** A node that handed a key over remembers where it went for
//!   [`MOVED_FOR`]: its checks are sent on there, marked as relayed, and decided there,
//!   so a node that has not learnt of the new ring yet cannot count the key beside its
//!   new owner. A check relayed here already (by a node that had not heard this one
//!   was leaving) goes on once more, marked as relayed twice; one relayed twice is
//!   decided where it arrives, or refused there if the key moved on from there too
//!   (never counted on what is left behind). A check that was counting here while the
//!   key was taken out is sent on too; its unit went with the key, or is dropped here.
//! - **Leaving and joining.** A leaving node tells the others (`op=leaving`), which take
//!   it out of their ring, routes every check to the remaining members and pushes
//!   everything it holds. A node that starts (or restarts) tells the others it is back
//!   (`op=joining`): they put it back in their ring, push what they hold of its keys,
//!   and it asks for the keys it is checked for first.

mod answer;
mod client;
mod moved;
mod transition;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

pub(super) use self::moved::MovedKeys;
pub use self::moved::MOVED_FOR;
pub(super) use self::transition::Transition;
pub use self::transition::HANDOFF_DEADLINE;
use super::peer_client::PeerClient;
use crate::backend::{Held, MemoryBackend};
use crate::clock::Clock;
use crate::protocol::{encode_held, Relayed, MAX_HANDOFF_BYTES, MAX_HANDOFF_KEYS};
use crate::BackendError;
use crate::Ring;

/// What a node needs to hand keys over and take them in, shared with the tasks that do.
#[derive(Debug)]
pub(super) struct Handoff<C> {
    pub(super) me: Arc<str>,
    pub(super) local: Arc<MemoryBackend<C>>,
    pub(super) client: PeerClient,
    pub(super) moved: MovedKeys,
    /// The ring change this node is taking keys in from, if it is still in progress.
    pub(super) transition: ArcSwapOption<Transition>,
    /// Whether `transition` holds one: a check reads only this while it does not.
    pub(super) transitioning: AtomicBool,
    /// Held while `transition` and `transitioning` change together.
    pub(super) changing: Mutex<()>,
    /// The serial of the next key handed over (started from the clock, so that a node
    /// started again does not reuse its serials).
    pub(super) next_serial: AtomicU64,
    /// The keys taken in lately, as `(from, serial)`: counters sent twice (an ask that
    /// crossed a push) are taken in once. Held while they are, so a check never sees a
    /// key as received before its counters are in.
    /// (The sender is kept as its name's hash under `senders`: no copy of it per key.)
    pub(super) taken_in: Mutex<HashMap<(u64, u64), Instant, foldhash::fast::RandomState>>,
    pub(super) senders: foldhash::fast::RandomState,
}

impl<C: Clock> Handoff<C> {
    /// The ring change and the member to ask for `key`'s counters before deciding it
    /// here, if there is one.
    #[inline]
    pub(super) fn holder(&self, key: &str) -> Option<(Arc<Transition>, Box<str>)> {
        if !self.transitioning.load(Ordering::Acquire) {
            return None;
        }
        let current = self.transition.load();
        current.as_ref()?.holder(key)
    }

    /// Asks `holder` for `key`'s counters and takes them in; checks of the same key
    /// wait for the same ask. A holder that cannot be reached is not asked again: the
    /// keys it held start from zero here, as after a crash. One that is slow or busy is
    /// asked again by the next check, and this one gets the error (its failure mode
    /// decides).
    pub(super) async fn ask(
        &self,
        transition: &Transition,
        holder: &str,
        key: &str,
    ) -> Result<(), BackendError> {
        let ask = transition.ask_of(key);
        let asked = ask
            .get_or_try_init(|| async {
                let handed = self.client.take(holder, &self.me, key).await?;
                if let Some((serial, held)) = handed {
                    self.receive(holder, key, serial, &held, None);
                }
                transition.received(key);
                Ok::<_, BackendError>(())
            })
            .await;
        let Err(error) = asked else {
            return Ok(());
        };
        transition.forget_ask(key);
        let unreachable = matches!(error, BackendError::Unavailable { .. });
        tracing::warn!(
            peer = holder,
            %error,
            unreachable,
            "ringlimit: cannot take counters from a key's owner on the ring before \
             (unreachable: the keys it held start from zero here; else asked again)"
        );
        if unreachable {
            transition.done(holder);
        }
        Err(error.clone())
    }

    /// Sends a check of `key` on to where it was handed, now, marked `mark`, and decides
    /// by the answer (or by `mode`, if there is none): for a check that waited for the
    /// key's counters while the key moved on.
    pub(super) async fn relay_now(
        &self,
        key: &str,
        set: &crate::PolicySet,
        mode: crate::backend::FailureMode,
        mark: Relayed,
    ) -> Result<crate::Decisions, BackendError> {
        let fail = |error| crate::backend::failure::fail(mode, &self.local, key, set, error);
        let Some(to) = self.moved.to(key) else {
            return self.local.decide_forwarded(key, set);
        };
        let deadline = Instant::now() + self.client.timeout();
        match self.client.check(&to, key, set, deadline, Some(mark)).await {
            Ok(answer) => Ok(super::forward::decisions(answer, set, self.local.now())),
            Err(error @ BackendError::Refused { .. }) => Err(error),
            Err(error) => fail(error),
        }
    }

    /// Takes in `key`'s counters `held`, handed over by `from` as `serial`, unless they
    /// were taken in already; then marks the key received by `awaiting`, the ring change
    /// that waits for it, if any.
    pub(super) fn receive(
        &self,
        from: &str,
        key: &str,
        serial: u64,
        held: &[Held],
        awaiting: Option<&Transition>,
    ) {
        let sender = std::hash::BuildHasher::hash_one(&self.senders, from);
        let mut taken_in = self.taken_in.lock().unwrap_or_else(PoisonError::into_inner);
        if taken_in.insert((sender, serial), Instant::now()).is_none() {
            self.local.absorb(key, held);
            self.moved.clear(key);
            crate::observe::ring::taken_in();
        }
        if let Some(transition) = awaiting {
            transition.received(key);
        }
    }

    /// Takes `key`'s counters out of this node for `to`, remembered as moved there:
    /// the serial of this handing over, and what went. If it went to `to` already, the
    /// same goes again (a push and an ask that cross: `to` takes it in once).
    pub(super) fn hand(&self, key: &str, to: &Arc<str>) -> (u64, Vec<Held>) {
        if let Some(moved) = self.moved.get(key).filter(|moved| moved.to == *to) {
            return (moved.serial, moved.held);
        }
        // Marked before it is taken: a check counting meanwhile finds the mark after
        // counting, and is sent on (see `ClusterBackend::decide_here`).
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        if !self.moved.mark(key, to, serial) {
            // No room to remember where it went: it stays here (its checks still come
            // here from the nodes that route by the ring before).
            tracing::warn!("ringlimit: too many keys handed over lately; one stays here");
            return (serial, Vec::new());
        }
        let held = self.local.take(key);
        self.moved.record(key, held.clone());
        (serial, held)
    }

    /// Hands every key held here that `ring` gives to another member over to it, then
    /// tells every other member of `ring` that this node is done; how many keys went.
    pub(super) async fn hand_over(&self, ring: &Ring) -> usize {
        let started = Instant::now();
        let handed = self.hand_keys(ring, self.local.held_keys(), true).await;
        crate::observe::ring::handed_over(handed, started.elapsed());
        tracing::info!(
            keys = handed,
            members = ring.members().count().saturating_sub(1),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ringlimit: counters handed to their owners on the new ring"
        );
        handed
    }

    /// Hands `keys`, taken in here but owned by another member of `ring` (counters given
    /// to a node that is leaving), on to their owner.
    pub(super) async fn hand_on(&self, ring: &Ring, keys: Vec<Box<str>>) {
        self.hand_keys(ring, keys, false).await;
    }

    /// Hands those of `keys` that `ring` gives to another member over to it; with
    /// `done`, then tells every other member of `ring` that this node is done. How many
    /// keys went.
    async fn hand_keys(&self, ring: &Ring, keys: Vec<Box<str>>, done: bool) -> usize {
        let members: Vec<Arc<str>> = ring
            .members()
            .filter(|&m| m != &*self.me)
            .map(Arc::from)
            .collect();
        let mut bodies: HashMap<Arc<str>, (String, Vec<Box<str>>)> = HashMap::new();
        let mut handed = 0;
        for key in keys {
            let owner = ring.owner(&key);
            let Some(to) = members.iter().find(|m| &***m == owner) else {
                continue; // this node's own
            };
            let (serial, held) = self.hand(&key, to);
            if held.is_empty() {
                continue;
            }
            handed += 1;
            let (body, keys) = bodies.entry(Arc::clone(to)).or_default();
            encode_held(&key, serial, &held, body);
            keys.push(key);
            // Sent when full: in keys, or in bytes (long ids, many policies).
            if keys.len() == MAX_HANDOFF_KEYS || body.len() >= MAX_HANDOFF_BYTES / 2 {
                let (body, keys) = (std::mem::take(body), std::mem::take(keys));
                self.give(to, body, &keys, None).await;
            }
        }
        for to in &members {
            let (body, keys) = bodies.remove(to).unwrap_or_default();
            match done {
                true => self.give(to, body, &keys, Some(ring.fingerprint())).await,
                false if !keys.is_empty() => self.give(to, body, &keys, None).await,
                false => {}
            }
        }
        handed
    }

    /// Takes keys in from `transition` from now on.
    pub(super) fn begin(&self, transition: Arc<Transition>) {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        self.transition.store(Some(transition));
        self.transitioning.store(true, Ordering::Release);
    }

    /// After [`MOVED_FOR`]: forgets the keys handed over since, and the ring change
    /// taken in from, if it is over (what it received goes with it).
    pub(super) async fn tidy_later(&self) {
        tokio::time::sleep(MOVED_FOR).await;
        self.moved.expire();
        // Keys handed over on asks after this change are forgotten in their turn.
        while self.moved.any() {
            tokio::time::sleep(MOVED_FOR).await;
            self.moved.expire();
        }
        let mut taken_in = self.taken_in.lock().unwrap_or_else(PoisonError::into_inner);
        taken_in.retain(|_, at| at.elapsed() < MOVED_FOR);
        drop(taken_in);
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let over = self
            .transition
            .load()
            .as_ref()
            .is_some_and(|transition| !transition.in_progress());
        if over {
            self.transition.store(None);
            self.transitioning.store(false, Ordering::Release);
        }
    }

    /// Gives `to` the counters of `body`; a failure is logged (they are lost, as in a
    /// crash: `to` is down or refuses them).
    async fn give(&self, to: &str, body: String, keys: &[Box<str>], done: Option<u64>) {
        match self.client.give(to, &self.me, body, done).await {
            Ok(()) => {}
            Err(error) => tracing::warn!(
                peer = to,
                keys = keys.len(),
                %error,
                "ringlimit: could not hand counters to their new owner; they are lost"
            ),
        }
    }
}
