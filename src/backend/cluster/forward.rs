//! Asking a key's owner, and what to answer when it cannot say.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::topology::Peer;
use super::ClusterBackend;
use crate::backend::guarded::Guard;
use crate::backend::{Check, RemoteFuture};
use crate::clock::Clock;
use crate::policy::Algorithm;
use crate::protocol::PeerAnswer;
use crate::Decision;

impl<C: Clock> ClusterBackend<C> {
    /// Forwards the check to `owner` (`peer`) if its circuit lets it through.
    pub(super) fn forward(
        &self,
        owner: &str,
        peer: &Peer,
        key: &str,
        cost: NonZeroU32,
    ) -> Check<RemoteFuture> {
        let guard = Guard {
            circuit: &peer.circuit,
            target: owner,
            mode: self.failure,
            local: &self.local,
        };
        let policy = self.local.policy_ref();
        let limit = policy.limit();
        let (horizon, fixed) = (
            policy.longest_reset(),
            policy.algorithm() == Algorithm::FixedWindow,
        );
        // All nodes share the epoch-aligned windows, so the reset is known here too.
        let reset = self.local.reset_now();
        let (local, denied) = (Arc::clone(&self.local), Arc::clone(&self.denied));
        guard.call(
            key,
            cost,
            // One copy of the key, shared by the queued check and the fallback.
            || Arc::<str>::from(key),
            |key| peer.queue.check(Arc::clone(key), cost.get()),
            move |answer, key| {
                let decision = decision(answer, limit, cost.get(), reset).bounded(horizon);
                if !decision.allowed && fixed {
                    // Never remembered past this node's own window: a new window starts
                    // afresh whatever the owner said.
                    let until = decision.reset.min(local.reset_now());
                    denied.remember(key, decision.remaining, until, local.now_ms());
                }
                decision
            },
        )
    }
}

/// The owner's answer as a decision. An owner may send no counter state: on an
/// allowed answer assume the best.
fn decision(answer: PeerAnswer, limit: u32, cost: u32, reset: Duration) -> Decision {
    let remaining = match answer.state.remaining {
        // Bounded by the limit with the rest of the answer (`Decision::bounded`).
        Some(remaining) => remaining,
        None if answer.allowed => limit.saturating_sub(cost),
        None => 0,
    };
    Decision {
        allowed: answer.allowed,
        limit,
        remaining,
        reset: answer.state.reset.unwrap_or(reset),
    }
}
