//! A circuit breaker per destination (a peer node, or Redis): after consecutive failures,
//! stop paying the timeout. Shared by the cluster and Redis backends.
//!
//! Closed: every check is sent. After `threshold` consecutive failures the circuit opens
//! for `cooldown`: checks for that peer fail at once. Then one probe is let through; its
//! success closes the circuit, its failure opens it again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

// Tokio's clock (the system's outside a runtime), so that tests can pause and advance it.
use tokio::time::Instant;

use crate::backend::FailureMode;
use crate::observe::RemoteMetrics;
use crate::BackendError;

/// When a circuit opens and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive failures that open the circuit; 0 never opens it (every check then
    /// waits for its target, however often it fails).
    pub threshold: u32,
    /// How long an open circuit refuses checks before one probe is let through.
    pub cooldown: Duration,
}

impl Default for CircuitPolicy {
    /// Opens after 3 consecutive failures, probes again after 1 s.
    fn default() -> Self {
        Self {
            threshold: 3,
            cooldown: Duration::from_secs(1),
        }
    }
}

/// The circuit of one destination (a peer node, or Redis).
#[derive(Debug)]
pub(crate) struct Circuit {
    target: Box<str>,
    policy: CircuitPolicy,
    born: Instant,
    failures: AtomicU32,
    /// Milliseconds after `born` until which the circuit is open; 0 while closed.
    open_until: AtomicU64,
    probing: AtomicBool,
    /// Whether the failure mode decides this target's checks now (logged once each way).
    failing: AtomicBool,
    metrics: Arc<RemoteMetrics>,
}

/// Leave to send one check. Dropped without an outcome (the caller went away), it frees
/// the probe slot so the circuit cannot stay stuck open.
#[derive(Debug)]
pub(crate) struct Attempt {
    circuit: Arc<Circuit>,
    probe: bool,
    settled: bool,
}

impl Circuit {
    pub(crate) fn new(target: &str, policy: CircuitPolicy, metrics: Arc<RemoteMetrics>) -> Self {
        Self {
            target: target.into(),
            policy,
            born: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            metrics,
        }
    }

    /// The circuit of peer `target`, with metrics of its own (a peer asked without its
    /// queue: one that is not a member of this node's ring).
    #[cfg(any(test, feature = "cluster"))]
    pub(crate) fn to_peer(target: &str, policy: CircuitPolicy) -> Self {
        let metrics = RemoteMetrics::new(crate::observe::Remote::Peer, target);
        Self::new(target, policy, Arc::new(metrics))
    }

    /// The failure mode `mode` decided a check of this target, which could not (`error`):
    /// logged at `warn` the first time, until the target answers again.
    pub(crate) fn failure_mode_decides(&self, mode: FailureMode, error: &BackendError) {
        // Read first: while the target is down, every check comes here.
        if !self.failing.load(Ordering::Acquire) && !self.failing.swap(true, Ordering::AcqRel) {
            let noun = self.metrics.kind.noun();
            tracing::warn!(
                remote = %self.target,
                failure_mode = %mode,
                %error,
                "ringlimit: {noun} cannot answer: failure mode {mode} decides its checks until it does"
            );
        }
    }

    fn now_ms(&self) -> u64 {
        // Shifted by 1, so that 0 can mean "closed".
        u64::try_from(self.born.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Leave to send a check now, or `None` while the circuit is open.
    pub(crate) fn attempt(self: &Arc<Self>) -> Option<Attempt> {
        let open_until = self.open_until.load(Ordering::Acquire);
        let probe = open_until != 0;
        if probe {
            let cooled = self.now_ms() >= open_until;
            let first = cooled
                && self
                    .probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            if !first {
                return None;
            }
        }
        Some(Attempt {
            circuit: self.clone(),
            probe,
            settled: false,
        })
    }

    /// Closes the circuit: its target said it is back (a node that restarted).
    #[cfg(feature = "cluster")]
    pub(crate) fn close(&self) {
        if self.open_until.load(Ordering::Acquire) != 0 {
            self.succeeded();
        }
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Release);
        let noun = self.metrics.kind.noun();
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            self.metrics.circuit_open.set(0.0);
            tracing::warn!(remote = %self.target, "ringlimit: {noun} answers again: circuit closed");
        }
        // Read first: a successful call, the common case, writes nothing shared.
        if self.failing.load(Ordering::Acquire) && self.failing.swap(false, Ordering::AcqRel) {
            tracing::warn!(remote = %self.target, "ringlimit: {noun} answers again: it decides its checks");
        }
        self.probing.store(false, Ordering::Release);
    }

    fn failed(&self, probe: bool) {
        self.metrics.errors.increment(1);
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if probe || failures == self.policy.threshold {
            let cooldown = u64::try_from(self.policy.cooldown.as_millis()).unwrap_or(u64::MAX);
            let until = self.now_ms().saturating_add(cooldown);
            self.open_until.store(until, Ordering::Release);
            if !probe {
                self.metrics.circuit_open.set(1.0);
                let noun = self.metrics.kind.noun();
                tracing::warn!(remote = %self.target, failures, "ringlimit: {noun} failing: circuit open, not asked for {cooldown} ms");
            }
        }
        if probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// Whether checks for this peer are being refused at once.
    #[cfg(any(test, feature = "cluster"))]
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

impl Attempt {
    /// The peer answered.
    pub(crate) fn succeeded(mut self) {
        self.settled = true;
        self.circuit.succeeded();
    }

    /// The peer did not answer, or answered nonsense.
    pub(crate) fn failed(mut self) {
        self.settled = true;
        self.circuit.failed(self.probe);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.circuit.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit(cooldown_ms: u64) -> Arc<Circuit> {
        Arc::new(Circuit::to_peer(
            "127.0.0.1:9",
            CircuitPolicy {
                threshold: 3,
                cooldown: Duration::from_millis(cooldown_ms),
            },
        ))
    }

    /// Lets the paused clock move past a cooldown of `ms`.
    async fn wait(ms: u64) {
        tokio::time::advance(Duration::from_millis(ms)).await;
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let c = circuit(60_000);
        c.attempt().unwrap().failed();
        c.attempt().unwrap().failed();
        c.attempt().unwrap().succeeded();
        c.attempt().unwrap().failed();
        c.attempt().unwrap().failed();
        assert!(!c.is_open());
        c.attempt().unwrap().failed();
        assert!(c.is_open());
        assert!(c.attempt().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_after_the_cooldown_closes_or_reopens() {
        let c = circuit(10);
        for _ in 0..3 {
            c.attempt().unwrap().failed();
        }
        assert!(c.attempt().is_none(), "cooling down");
        wait(10).await;
        let probe = c.attempt().expect("cooled down: one probe");
        assert!(c.attempt().is_none(), "only one probe at a time");
        probe.failed();
        assert!(c.is_open());
        wait(10).await;
        c.attempt().expect("probe again").succeeded();
        assert!(!c.is_open());
        assert!(c.attempt().is_some());
    }

    #[test]
    fn a_threshold_of_zero_never_opens_and_a_huge_cooldown_does_not_overflow() {
        let never = Arc::new(Circuit::to_peer(
            "127.0.0.1:9",
            CircuitPolicy {
                threshold: 0,
                cooldown: Duration::from_secs(1),
            },
        ));
        for _ in 0..10 {
            never.attempt().expect("never open").failed();
        }
        assert!(!never.is_open());
        let long = Arc::new(Circuit::to_peer(
            "127.0.0.1:9",
            CircuitPolicy {
                threshold: 1,
                cooldown: Duration::MAX,
            },
        ));
        long.attempt().unwrap().failed();
        assert!(long.attempt().is_none(), "open for good");
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_the_slot() {
        let c = circuit(10);
        for _ in 0..3 {
            c.attempt().unwrap().failed();
        }
        wait(10).await;
        drop(c.attempt().expect("probe"));
        assert!(c.attempt().is_some(), "a new probe may go");
    }
}
