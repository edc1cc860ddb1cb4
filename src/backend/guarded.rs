//! The one guarded remote call of the cluster and Redis backends: through the
//! destination's circuit, the answer turned into a decision, or, when there is none (the
//! circuit is open, the call failed or timed out), the failure mode's decision.

use std::future::Future;
use std::sync::Arc;

use super::failure::fail;
use super::{BackendError, Check, FailureMode, MemoryBackend, PeerFuture};
use crate::circuit::Circuit;
use crate::clock::Clock;
use crate::Decision;

/// Where a remote call goes and what answers when it cannot.
pub(crate) struct Guard<'a, C> {
    pub(crate) circuit: &'a Arc<Circuit>,
    /// The destination, as errors name it.
    pub(crate) target: &'a str,
    pub(crate) mode: FailureMode,
    /// Counts under [`FailureMode::Local`].
    pub(crate) local: &'a Arc<MemoryBackend<C>>,
}

impl<C: Clock> Guard<'_, C> {
    /// Checks `cost` for the user `fallback_key` names through `ask` (called only if the
    /// circuit lets the call through), its answer made a decision by `decide`.
    pub(crate) fn call<A, K, F>(
        &self,
        fallback_key: K,
        cost: u32,
        ask: impl FnOnce(&K) -> F,
        decide: impl FnOnce(A, &K) -> Decision + Send + 'static,
    ) -> Check<PeerFuture>
    where
        K: AsRef<str> + Send + 'static,
        F: Future<Output = Result<A, BackendError>> + Send + 'static,
    {
        let Some(attempt) = self.circuit.attempt() else {
            let error = BackendError::CircuitOpen {
                target: self.target.to_owned(),
            };
            let decided = fail(self.mode, self.local, fallback_key.as_ref(), cost, error);
            return Check::Ready(decided);
        };
        let answer = ask(&fallback_key);
        let (local, mode) = (Arc::clone(self.local), self.mode);
        Check::Pending(Box::pin(async move {
            match answer.await {
                Ok(answer) => {
                    attempt.succeeded();
                    Ok(decide(answer, &fallback_key))
                }
                Err(error) => {
                    attempt.failed();
                    fail(mode, &local, fallback_key.as_ref(), cost, error)
                }
            }
        }))
    }
}
