//! Who is in this node's ring: the members it is given (`set_members`), less those that
//! said they are leaving until they say they are back; and this node's own leaving and
//! joining. Every change of the ring hands counters over (see `handoff`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use super::handoff::{Handoff, Transition};
use super::peer_client::PeerClient;
use super::topology::Topology;
use super::{ClusterBackend, ClusterError};
use crate::clock::Clock;
use crate::protocol::HandoffOp;
use crate::BackendError;
use crate::Ring;

/// The members as given, and what this node has heard of them.
#[derive(Debug, Default)]
pub(super) struct Members {
    given: Vec<String>,
    /// Members that said they are leaving, and have not said they are back.
    departed: HashSet<String>,
    /// Whether this node is leaving.
    leaving: bool,
}

impl Members {
    pub(super) fn new(ring: &Ring) -> Self {
        Self {
            given: ring.members().map(str::to_owned).collect(),
            ..Self::default()
        }
    }

    /// Whether `member` is one of the members given (it may ask for and hand counters).
    pub(super) fn knows(&self, member: &str) -> bool {
        self.given.iter().any(|m| m == member)
    }

    /// Whether this node is leaving the ring.
    pub(super) fn leaving(&self) -> bool {
        self.leaving
    }

    /// The members of the ring now.
    fn in_ring<'a>(&'a self, me: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.given.iter().filter(move |m| {
            let left = self.departed.contains(*m);
            let leaving = self.leaving && *m == me;
            !left && !leaving
        })
    }
}

impl<C: Clock> ClusterBackend<C> {
    /// Replaces the members while the node serves: keys move to their new owners, and
    /// their counters with them (this node hands over the keys it no longer owns, and
    /// asks for a key it now owns before deciding it, see the README's "Through deploys"),
    /// without blocking any check in progress. Fails, keeping the old members, if this
    /// node is not among the new ones: to leave, call [`leave`](Self::leave). Peers that
    /// stay keep their circuits.
    ///
    /// Nodes that briefly disagree about the members do not count a key twice: a node
    /// that handed a key over sends its checks on to the key's new owner.
    ///
    /// Counters are handed over by a task on the current Tokio runtime; called outside
    /// one, the ring changes and nothing is handed over.
    pub fn set_members<I, M>(&self, members: I) -> Result<(), ClusterError>
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        let ring = Ring::new(members)?;
        if !ring.contains(&self.me) {
            let members = ring.members().collect::<Vec<_>>().join(", ");
            return Err(ClusterError::NotAMember {
                me: self.me.to_string(),
                members,
            });
        }
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let before = std::mem::replace(&mut *members, Members::new(&ring));
        members.departed = before.departed;
        members.departed.retain(|m| ring.contains(m));
        members.leaving = before.leaving;
        self.change_ring(&members)
    }

    /// Leaves the ring: tells the other members, which stop sending checks here, sends
    /// every check from now on to the remaining members, and hands every counter held
    /// here to its key's new owner; how many keys were handed over. Checks that still
    /// arrive (from a node that has not heard) are sent on to their key's new owner.
    /// Keep serving a moment after it returns, then stop: requests in flight finish.
    ///
    /// A ring of this node alone has no one to hand over to: nothing happens but that
    /// its [health](Self::health) says it is leaving.
    pub async fn leave(&self) -> usize {
        self.stopping.store(true, Ordering::Release);
        self.leave_ring().await
    }

    /// Leaves the ring, as [`leave`](Self::leave) says, without saying it stops.
    async fn leave_ring(&self) -> usize {
        let ring = {
            let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
            let others = members.in_ring(&self.me).filter(|m| **m != *self.me);
            let Ok(ring) = Ring::new(others.cloned()) else {
                tracing::warn!(
                    "ringlimit: leaving a ring of this node alone: nothing to hand over"
                );
                return 0;
            };
            members.leaving = true;
            ring
        };
        let others: Vec<String> = ring.members().map(str::to_owned).collect();
        announce(&self.client, &self.handoff.me, &others, HandoffOp::Leaving).await;
        {
            let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
            // The handing over is awaited here, not spawned.
            if let Err(error) = self.switch_to(&members, false) {
                tracing::warn!(%error, "ringlimit: cannot leave the ring");
                return 0;
            }
        }
        let handed = self.handoff.hand_over(&ring).await;
        tracing::info!(keys = handed, "ringlimit: left the ring");
        handed
    }

    /// Leaves the ring for `members` (a list without this node, as a membership source
    /// gives it): as [`leave`](Self::leave), to those of them that are members now.
    pub(crate) async fn leave_to(&self, members: Vec<String>) -> usize {
        {
            let mut given = self.members.lock().unwrap_or_else(PoisonError::into_inner);
            given.given = members;
        }
        self.leave_ring().await
    }

    /// Comes back into the ring of `members` (a list with this node again, as a
    /// membership source gives it) after leaving it: routes by it and [joins](Self::join).
    pub(crate) async fn rejoin(&self, members: Vec<String>) -> Result<(), ClusterError> {
        // Joining from now, not serving first.
        let _joining = Joining::start(&self.joining);
        {
            let mut given = self.members.lock().unwrap_or_else(PoisonError::into_inner);
            given.leaving = false;
        }
        self.set_members(members)?;
        self.join().await;
        Ok(())
    }

    /// Tells the other members that this node is (back) in the ring, at start: they put
    /// it back in their ring if it had left, and hand over what they hold of its keys.
    /// From the moment this is called (before the returned future is polled), until they
    /// have handed over (at most [`HANDOFF_DEADLINE`](crate::backend::HANDOFF_DEADLINE)),
    /// a key this node is checked for is first asked for; the future tells them. A member
    /// that cannot be reached hands nothing over; one that does not list this node yet
    /// hands over once it does.
    pub fn join(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let ring = self.ring();
        let others: Vec<String> = ring
            .members()
            .filter(|&m| m != &*self.me)
            .map(str::to_owned)
            .collect();
        let transition = Ring::new(others.iter().cloned()).ok().map(|before| {
            let earlier = self.handoff.transition.load_full();
            Arc::new(Transition::new(before, &ring, &self.handoff.me, earlier))
        });
        if let Some(transition) = &transition {
            self.handoff.begin(Arc::clone(transition));
        }
        let (client, handoff) = (self.client.clone(), Arc::clone(&self.handoff));
        self.stopping.store(false, Ordering::Release);
        // Joining until the future ends, or is dropped.
        let joining = Joining::start(&self.joining);
        async move {
            let _joining = joining;
            let Some(transition) = transition else {
                return; // a ring of this node alone
            };
            let reached = announce(&client, &handoff.me, &others, HandoffOp::Joining).await;
            for (member, reached) in others.iter().zip(reached) {
                if !reached {
                    transition.done(member);
                }
            }
            tokio::spawn(async move { handoff.tidy_later().await });
        }
    }

    /// `member` says it leaves the ring (`leaving`) or is back (`joining`).
    pub(super) fn heard(&self, member: &str, op: HandoffOp) -> Result<(), ClusterError> {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = match op {
            HandoffOp::Leaving => members.departed.insert(member.to_owned()),
            _ => {
                // It answers again: no need to wait for a probe.
                if let Some(peer) = self.topology.load().peer_of(member) {
                    peer.circuit.close();
                }
                members.departed.remove(member)
            }
        };
        if changed {
            return self.change_ring(&members);
        }
        if op == HandoffOp::Leaving {
            return Ok(()); // said again: it is out already
        }
        // Back without having left (a restart after a crash): what is held here of its
        // keys (counted by the failure mode) goes to it all the same.
        self.spawn_hand_over(self.ring());
        Ok(())
    }

    /// Routes by the ring `members` make now, and hands counters over for it.
    fn change_ring(&self, members: &Members) -> Result<(), ClusterError> {
        if self.switch_to(members, true)? {
            self.spawn_hand_over(self.ring());
        }
        Ok(())
    }

    /// Routes by the ring `members` make, if it differs; with `take_in`, keys this node
    /// did not own before are asked for first (not while it leaves). Whether it changed.
    fn switch_to(&self, members: &Members, take_in: bool) -> Result<bool, ClusterError> {
        let ring = Ring::new(members.in_ring(&self.me).cloned())?;
        let current = self.topology.load();
        if current.ring.members().eq(ring.members()) {
            return Ok(false);
        }
        let next = Topology::new(
            &self.me,
            ring,
            self.circuit,
            &self.client,
            Some(&current),
            members.leaving,
        )?;
        if take_in && !members.leaving {
            let earlier = self.handoff.transition.load_full();
            let transition =
                Transition::new(current.ring.clone(), &next.ring, &self.handoff.me, earlier);
            self.handoff.begin(Arc::new(transition));
        }
        crate::observe::ring::changed(next.ring.members().count());
        self.topology.store(Arc::new(next));
        Ok(true)
    }

    /// Hands counters over for `ring` in a task, if there is a runtime to run it on.
    fn spawn_hand_over(&self, ring: Ring) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "ringlimit: the ring changed outside a Tokio runtime: no counters are handed over"
            );
            return;
        };
        let handoff: Arc<Handoff<C>> = Arc::clone(&self.handoff);
        runtime.spawn(async move {
            handoff.hand_over(&ring).await;
            handoff.tidy_later().await;
        });
    }
}

/// Tells every member of `members` that node `me` `op`, all at once; whether each was
/// reached, in order.
async fn announce(
    client: &PeerClient,
    me: &Arc<str>,
    members: &[String],
    op: HandoffOp,
) -> Vec<bool> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, member) in members.iter().enumerate() {
        let (client, me, member) = (client.clone(), Arc::clone(me), member.clone());
        tasks.spawn(async move {
            let result = client.announce(&member, &me, op).await;
            if let Err(error) = &result {
                tracing::warn!(peer = member, %error, "ringlimit: could not tell a member");
            }
            // A member that answered, even to refuse (it does not list this node yet),
            // hands over once it learns of the ring: only one that cannot be reached
            // will not.
            let reached =
                !matches!(result, Err(ref e) if !matches!(e, BackendError::Refused { .. }));
            (i, reached)
        });
    }
    let mut reached = vec![false; members.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, ok)) = done {
            reached[i] = ok;
        }
    }
    reached
}

/// One `join` in progress, counted in the backend's `joining` while it lives.
struct Joining(Arc<AtomicUsize>);

impl Joining {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(count))
    }
}

impl Drop for Joining {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
