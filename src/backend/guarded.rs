//! The one guarded remote call of the cluster and Redis backends: through the
//! destination's circuit, the answer turned into a decision, or, when there is none (the
//! circuit is open, the call failed or timed out), the failure mode's decision.

use std::future::Future;
use std::sync::Arc;

use super::failure::fail;
use super::{BackendError, Check, FailureMode, MemoryBackend, RemoteFuture};
use crate::circuit::Circuit;
use crate::clock::Clock;
use crate::{Decisions, PolicySet};

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
    /// Checks `user` against `policies` through `ask` (called only if the circuit lets the call
    /// through), its answer made a decision by `decide`. `owned` makes the copy of the
    /// user that the call and its fallback share, only once the circuit has let it
    /// through: while a circuit is open, a check allocates nothing.
    pub(crate) fn call<A, K, F>(
        &self,
        user: &str,
        policies: &PolicySet,
        owned: impl FnOnce() -> K,
        ask: impl FnOnce(&K) -> F,
        decide: impl FnOnce(A, &K) -> Decisions + Send + 'static,
    ) -> Check<RemoteFuture>
    where
        K: AsRef<str> + Send + 'static,
        F: Future<Output = Result<A, BackendError>> + Send + 'static,
    {
        let Some(attempt) = self.circuit.attempt() else {
            let error = BackendError::CircuitOpen {
                target: self.target.to_owned(),
            };
            self.circuit.failure_mode_decides(self.mode, &error);
            return Check::Ready(fail(self.mode, self.local, user, policies, error));
        };
        let fallback_key = owned();
        let answer = ask(&fallback_key);
        let (local, mode, policies) = (Arc::clone(self.local), self.mode, policies.clone());
        let circuit = Arc::clone(self.circuit);
        Check::Pending(RemoteFuture::new(async move {
            match answer.await {
                Ok(answer) => {
                    attempt.succeeded();
                    Ok(decide(answer, &fallback_key))
                }
                // The owner answered, and said no: it is up, and no failure mode may count
                // what it refused.
                Err(error @ BackendError::Refused { .. }) => {
                    attempt.succeeded();
                    Err(error)
                }
                Err(error) => {
                    attempt.failed();
                    circuit.failure_mode_decides(mode, &error);
                    fail(mode, &local, fallback_key.as_ref(), &policies, error)
                }
            }
        }))
    }
}
