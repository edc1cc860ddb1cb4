//! A node's side of a ring change it takes keys in from: until each member of the ring
//! before has handed over what it held, a key this node did not own then is not decided
//! here before its counters are asked for.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::Ring;

type Hasher = foldhash::fast::RandomState;

/// How long a node waits for the members of the ring before to hand over: past it, keys
/// not handed over start from zero here (as after a crash).
pub const HANDOFF_DEADLINE: Duration = Duration::from_secs(10);

/// One ring change, as the node taking keys in sees it.
#[derive(Debug)]
pub(crate) struct Transition {
    /// The ring before: who held each key.
    previous: Ring,
    /// The ring after, as [`Ring::fingerprint`] says: a member's word that it is done is
    /// for the ring it handed over for, and a word for another ring (one that came
    /// late, from a change before) is not for this change.
    next: u64,
    me: Arc<str>,
    /// Members of the ring before that have not said they handed everything over.
    pending: Mutex<HashSet<Box<str>, Hasher>>,
    pending_count: AtomicUsize,
    /// Keys whose counters came from their owner on the ring before (or that it had
    /// none of): not asked for again.
    received: Mutex<HashSet<Box<str>, Hasher>>,
    /// Asks in progress, one per key: checks of a key wait for the same one.
    asks: Mutex<HashMap<Box<str>, Arc<OnceCell<()>>, Hasher>>,
    deadline: Instant,
    started: Instant,
    /// The change before, if it was still in progress when this one came: keys it was
    /// waiting for are still asked for (a rolling restart changes the ring again and
    /// again).
    earlier: Option<Arc<Transition>>,
}

impl Transition {
    /// The change from `previous` to `next`, at node `me`: every other member of
    /// `previous` has yet to hand over; `earlier`, the change before, if it is still in
    /// progress.
    pub(crate) fn new(
        previous: Ring,
        next: &Ring,
        me: &Arc<str>,
        earlier: Option<Arc<Transition>>,
    ) -> Self {
        let pending: HashSet<Box<str>, Hasher> = previous
            .members()
            .filter(|&m| m != &**me)
            .map(Box::from)
            .collect();
        let now = Instant::now();
        Self {
            pending_count: AtomicUsize::new(pending.len()),
            pending: Mutex::new(pending),
            previous,
            next: next.fingerprint(),
            me: Arc::clone(me),
            received: Mutex::default(),
            asks: Mutex::default(),
            deadline: now + HANDOFF_DEADLINE,
            started: now,
            earlier: earlier.filter(|earlier| earlier.in_progress()),
        }
    }

    /// Whether members have yet to hand over, and there is still time to wait for them.
    #[inline]
    pub(crate) fn in_progress(&self) -> bool {
        self.pending_count.load(Ordering::Acquire) > 0 && Instant::now() < self.deadline
    }

    /// The change and the member to ask for `key`'s counters before deciding it here,
    /// if any: its owner on the ring before, if that was another node, which has not
    /// handed everything over yet, and has not handed this key; or, for a key this node
    /// owned then, what the change before says.
    pub(crate) fn holder(self: &Arc<Self>, key: &str) -> Option<(Arc<Self>, Box<str>)> {
        if !self.in_progress() {
            return self.earlier.as_ref()?.holder(key);
        }
        let before = self.previous.owner(key);
        if before == &*self.me {
            let earlier = self.earlier.as_ref()?;
            return earlier.holder(key);
        }
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if !pending.contains(before) {
            return None;
        }
        drop(pending);
        let received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        (!received.contains(key)).then(|| (Arc::clone(self), before.into()))
    }

    /// The change (this one or one before) that waits for `key`'s counters from
    /// `from`, if any.
    pub(crate) fn awaiting(&self, key: &str, from: &str) -> Option<&Self> {
        match self.previous.owner(key) {
            owner if owner == from => Some(self),
            owner if owner == &*self.me => self.earlier.as_ref()?.awaiting(key, from),
            _ => None,
        }
    }

    /// Notes that `key`'s counters are here: it is not asked for again.
    pub(crate) fn received(&self, key: &str) {
        let mut received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        received.insert(key.into());
    }

    /// Forgets the ask of `key` that failed: the next check asks again.
    pub(crate) fn forget_ask(&self, key: &str) {
        let mut asks = self.asks.lock().unwrap_or_else(PoisonError::into_inner);
        asks.remove(key);
    }

    /// The ask of `key`'s counters that checks of it wait for.
    pub(crate) fn ask_of(&self, key: &str) -> Arc<OnceCell<()>> {
        let mut asks = self.asks.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(asks.entry(key.into()).or_default())
    }

    /// `member` says it handed over everything it had for this node under the ring of
    /// fingerprint `ring`: done for the change to that ring (and those before it).
    pub(crate) fn done_for(&self, member: &str, ring: u64) {
        if self.next == ring {
            self.done(member);
        } else if let Some(earlier) = &self.earlier {
            earlier.done_for(member, ring);
        }
    }

    /// `member` handed over everything it had for this node (or cannot be asked): keys it
    /// held are decided here without asking it, in this change and those before.
    pub(crate) fn done(&self, member: &str) {
        if let Some(earlier) = &self.earlier {
            earlier.done(member);
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if !pending.remove(member) {
            return;
        }
        self.pending_count.store(pending.len(), Ordering::Release);
        // What was received is kept until the change is forgotten (`Handoff::tidy_later`): an
        // ask answered after its member's push still brings counters taken in already.
        if pending.is_empty() {
            tracing::info!(
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                "ringlimit: every member of the ring before has handed its counters over"
            );
        }
    }
}
