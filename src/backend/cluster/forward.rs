//! Asking a key's owner, and what to answer when it cannot say.

use std::sync::Arc;
use std::time::Duration;

use super::peer_queue::PeerQueue;
use super::ClusterBackend;
use crate::backend::guarded::Guard;
use crate::backend::{Check, RemoteFuture};
use crate::circuit::Circuit;
use crate::clock::Clock;
use crate::policy::Algorithm;
use crate::policy::PolicySet;
use crate::protocol::{PeerAnswer, Relayed};
use crate::{Decision, Decisions, Policy};

/// How a check goes to its owner.
#[derive(Clone, Copy)]
pub(super) enum Route<'a> {
    /// With the others queued for the same owner (batched).
    Queued(&'a PeerQueue),
    /// Alone, sent on by a node that does not hold the key, marked so.
    Relayed(Relayed),
}

impl<C: Clock> ClusterBackend<C> {
    /// Asks `owner` (by `route`, behind `circuit`) to check `key` against `policies`.
    pub(super) fn forward(
        &self,
        owner: &str,
        circuit: &Arc<Circuit>,
        route: Route<'_>,
        key: &str,
        policies: &PolicySet,
    ) -> Check<RemoteFuture> {
        let guard = Guard {
            circuit,
            target: owner,
            mode: self.failure,
            local: &self.local,
        };
        let remember = self.remembers_denials(policies).is_some();
        let (local, denied, set) = (
            Arc::clone(&self.local),
            Arc::clone(&self.denied),
            policies.clone(),
        );
        let decide = move |answer, key: &Arc<str>| {
            let now = local.now();
            let decisions = decisions(answer, &set, now);
            if remember && !decisions.allowed() {
                // Never remembered past this node's own window: a new window starts
                // afresh whatever the owner said.
                let decision = decisions.get(0).unwrap();
                let until = decision.reset.min(set.as_slice()[0].reset_at(now));
                denied.remember(key, decision.remaining, until, local.now_ms());
            }
            decisions
        };
        // One copy of the key, shared by the check sent and the fallback.
        let owned = || Arc::<str>::from(key);
        match route {
            Route::Queued(queue) => {
                let ask = |key: &Arc<str>| queue.check(Arc::clone(key), policies.clone());
                guard.call(key, policies, owned, ask, decide)
            }
            Route::Relayed(mark) => {
                let deadline = tokio::time::Instant::now() + self.client.timeout();
                let ask = |key: &Arc<str>| {
                    self.client
                        .check(owner, key, policies, deadline, Some(mark))
                };
                guard.call(key, policies, owned, ask, decide)
            }
        }
    }

    /// The policy whose denials by the owner are remembered, when `policies` is this
    /// node's own single fixed-window policy (see `remembered_denial`).
    pub(super) fn remembers_denials<'p>(&self, policies: &'p PolicySet) -> Option<&'p Policy> {
        match policies.as_slice() {
            [policy]
                if policy == self.local.policy_ref()
                    && policy.algorithm() == Algorithm::FixedWindow =>
            {
                Some(policy)
            }
            _ => None,
        }
    }
}

/// The decisions an owner's `answer` stands for under `set`, each bounded by its own
/// policy. A ringlimit owner says what each policy decided; a node that says only
/// allowed or not (a Python node, which knows one policy) is taken at its word for every
/// policy, with what its `RateLimit` header says, or what is known here.
pub(super) fn decisions(answer: PeerAnswer, set: &PolicySet, now: Duration) -> Decisions {
    if let Some(decisions) = answer.told.and_then(|told| told.decisions(set)) {
        return decisions;
    }
    Decisions::from_fn(set, |_, policy| {
        let limit = policy.limit();
        let remaining = match answer.state.remaining {
            Some(remaining) => remaining,
            None if answer.allowed => limit.saturating_sub(policy.cost().get()),
            None => 0,
        };
        let reset = answer.state.reset.unwrap_or_else(|| policy.reset_at(now));
        Decision::new(answer.allowed, limit, remaining, reset).bounded(policy.longest_reset())
    })
}
