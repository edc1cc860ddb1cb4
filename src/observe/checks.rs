//! `ringlimit_checks_total{policy,outcome}`, and the debug span of a limited request:
//! what became of each request, recorded once, where it arrived.

use std::sync::Arc;

use super::handles::counter;
use super::striped::StripedCounters;
use crate::{BackendError, Decisions, PolicySet};

/// What became of a request under one policy of its set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed,
    Limited,
    ShadowLimited,
    BadKey,
    FailureAllow,
    FailureLocal,
    FailureDeny,
    Unavailable,
}

const OUTCOMES: [Outcome; 8] = [
    Outcome::Allowed,
    Outcome::Limited,
    Outcome::ShadowLimited,
    Outcome::BadKey,
    Outcome::FailureAllow,
    Outcome::FailureLocal,
    Outcome::FailureDeny,
    Outcome::Unavailable,
];

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Limited => "limited",
            Self::ShadowLimited => "shadow_limited",
            Self::BadKey => "bad_key",
            Self::FailureAllow => "failure_allow",
            Self::FailureLocal => "failure_local",
            Self::FailureDeny => "failure_deny",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A set's counters: one per policy and outcome, registered together the first time a
/// request is checked against the set (so every outcome shows, at zero until it happens).
#[derive(Debug)]
pub(crate) struct CheckCounters {
    each: Box<[Arc<StripedCounters<{ OUTCOMES.len() }>>]>,
}

impl CheckCounters {
    pub(crate) fn new(set: &PolicySet) -> Self {
        let each = set
            .iter()
            .map(|policy| {
                let name = policy.name();
                StripedCounters::new(OUTCOMES.map(|outcome| {
                    let labels = [("policy", name.as_str()), ("outcome", outcome.label())];
                    counter("ringlimit_checks_total", &labels)
                }))
            })
            .collect();
        Self { each }
    }

    #[inline]
    fn count(&self, policy: usize, outcome: Outcome) {
        // `Outcome` is the index into `OUTCOMES`.
        self.each[policy].add(outcome as usize, 1);
    }

    fn count_all(&self, outcome: Outcome) {
        (0..self.each.len()).for_each(|i| self.count(i, outcome));
    }
}

/// Records what `result` made of a request checked against `set`, and traces it if it
/// was limited.
#[inline]
pub(crate) fn record(set: &PolicySet, result: &Result<Decisions, BackendError>) {
    if let Ok(decisions) = result {
        if !decisions.allowed() {
            trace_limited(set, decisions);
        }
    }
    if !cfg!(feature = "metrics") {
        return;
    }
    let counters = set.check_counters();
    match result {
        Ok(decisions) => match failure_outcome(decisions) {
            Some(outcome) => counters.count_all(outcome),
            None => {
                for (i, (policy, decision)) in set.iter().zip(decisions.iter()).enumerate() {
                    let outcome = match (decision.allowed, policy.shadow()) {
                        (true, _) => Outcome::Allowed,
                        (false, false) => Outcome::Limited,
                        (false, true) => Outcome::ShadowLimited,
                    };
                    counters.count(i, outcome);
                }
            }
        },
        Err(error) if error.is_unreachable() => counters.count_all(Outcome::FailureDeny),
        Err(_) => counters.count_all(Outcome::Unavailable),
    }
}

/// Records a request without a usable key, checked against `set`.
pub(crate) fn bad_key(set: &PolicySet) {
    if cfg!(feature = "metrics") {
        set.check_counters().count_all(Outcome::BadKey);
    }
}

#[cfg(any(feature = "cluster", feature = "redis"))]
fn failure_outcome(decisions: &Decisions) -> Option<Outcome> {
    use crate::backend::FailureMode;
    decisions.failure_mode().map(|mode| match mode {
        FailureMode::Allow => Outcome::FailureAllow,
        FailureMode::Deny => Outcome::FailureDeny,
        FailureMode::Local => Outcome::FailureLocal,
    })
}

#[cfg(not(any(feature = "cluster", feature = "redis")))]
fn failure_outcome(_: &Decisions) -> Option<Outcome> {
    None
}

/// A debug span per limited request: the policy that refused it (the one that allows
/// again last), its limit, and when. The key is never in it.
fn trace_limited(set: &PolicySet, decisions: &Decisions) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let nearest = decisions.nearest(set);
    let (Some(policy), Some(decision)) = (set.as_slice().get(nearest), decisions.get(nearest))
    else {
        return;
    };
    let span = tracing::debug_span!(
        "ringlimit_limited",
        policy = policy.name().as_str(),
        limit = decision.limit,
        retry_after_secs = decision.reset_secs(),
    );
    span.in_scope(|| tracing::debug!("ringlimit: request limited"));
}

/// Records `checks` that other nodes forwarded here, answered as their owner.
#[cfg(feature = "cluster")]
#[inline]
pub(crate) fn answered(checks: usize) {
    if cfg!(feature = "metrics") {
        static ANSWERED: std::sync::OnceLock<Arc<StripedCounters<1>>> = std::sync::OnceLock::new();
        let answered = ANSWERED.get_or_init(|| {
            StripedCounters::new([counter("ringlimit_answered_checks_total", &[])])
        });
        answered.add(0, checks as u64);
    }
}
