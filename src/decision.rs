//! The outcome of one check: a [`Decision`] per policy, and [`Decisions`] for the set.

use std::fmt;
use std::time::Duration;

use crate::policy::PolicySet;
use crate::Policy;

/// What one policy decided for one request, and the counter state that goes into the
/// `RateLimit` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request was counted and may proceed. (Under a policy in shadow mode a
    /// request proceeds either way; this says whether the policy would have let it.)
    pub allowed: bool,
    /// Units allowed per window.
    pub limit: u32,
    /// Units that would still fit after this request.
    pub remaining: u32,
    /// For an allowed request, the time until the policy has all its units again if
    /// nothing more is counted (a fixed window: until it ends; a sliding window: up to two
    /// windows). For a denied one, the time until this request's cost fits again.
    pub reset: Duration,
}

impl Decision {
    /// A decision with these numbers.
    pub fn new(allowed: bool, limit: u32, remaining: u32, reset: Duration) -> Self {
        Self {
            allowed,
            limit,
            remaining,
            reset,
        }
    }

    /// Seconds until reset, rounded up and at least 1: the value of `Retry-After` and of
    /// the `t` parameter of `RateLimit`.
    pub fn reset_secs(&self) -> u64 {
        let secs = self
            .reset
            .as_secs()
            .saturating_add(u64::from(self.reset.subsec_nanos() > 0));
        secs.max(1)
    }

    /// This decision, made elsewhere (an owner node, Redis), with its numbers bounded by
    /// this node's policy: a `remaining` above the limit or a reset later than the
    /// policy's `longest` is never believed.
    #[cfg(any(feature = "cluster", feature = "redis"))]
    pub(crate) fn bounded(self, longest: Duration) -> Self {
        Self {
            remaining: self.remaining.min(self.limit),
            reset: self.reset.min(longest),
            ..self
        }
    }
}

/// What a backend decided for one request under a [`PolicySet`]: a [`Decision`] per
/// policy, in the set's order.
///
/// The layer puts it into the extensions of every response it lets through or rejects,
/// so handlers further out can read it.
///
/// A policy that had room for a request another policy denied says `allowed`, with what
/// would have remained had it been counted; nothing was.
#[derive(Clone)]
pub struct Decisions {
    allowed: bool,
    len: u8,
    /// Bit `i`: whether policy `i` allowed it.
    allowed_each: u8,
    /// Bit `i`: whether policy `i` is in shadow mode.
    shadow_each: u8,
    /// The first two policies' decisions, inline, and the others' (sets of three or more
    /// only) on the heap: a check's decisions are moved several times on the request
    /// path, so they are kept small for the common one or two policies.
    first: [Packed; INLINE],
    more: Option<Box<[Packed]>>,
    /// The failure mode that decided, when the owner could not.
    #[cfg(any(feature = "cluster", feature = "redis"))]
    failure_mode: Option<crate::backend::FailureMode>,
}

/// Policies whose decisions are kept inline.
const INLINE: usize = 2;

/// One [`Decision`] without its `allowed` (in `allowed_each`), the reset in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Packed {
    reset_ns: u64,
    remaining: u32,
    limit: u32,
}

impl Decisions {
    /// The decisions of `set`'s policies, in order: allowed if every policy not in shadow
    /// mode allowed it.
    ///
    /// # Panics
    ///
    /// If `each` does not have one decision per policy of `set`.
    pub fn new(set: &PolicySet, each: &[Decision]) -> Self {
        assert_eq!(set.len(), each.len(), "one decision per policy");
        Self::from_fn(set, |i, _| each[i])
    }

    /// The decisions of `set`'s policies, `decide(index, policy)` each, in order.
    pub(crate) fn from_fn(
        set: &PolicySet,
        mut decide: impl FnMut(usize, &Policy) -> Decision,
    ) -> Self {
        let mut decisions = Self::with_room(set.len());
        for (i, policy) in set.iter().enumerate() {
            decisions.push(policy, decide(i, policy));
        }
        decisions
    }

    /// The decision of a set of one policy, `policy`.
    #[inline]
    pub(crate) fn one(policy: &Policy, decision: Decision) -> Self {
        let mut decisions = Self::with_room(1);
        decisions.push(policy, decision);
        decisions
    }

    /// No decision yet, with room for `policies`.
    #[inline]
    fn with_room(policies: usize) -> Self {
        let more = policies.checked_sub(INLINE).filter(|&n| n > 0);
        Self {
            allowed: true,
            len: 0,
            allowed_each: 0,
            shadow_each: 0,
            first: [Packed::default(); INLINE],
            more: more.map(|n| vec![Packed::default(); n].into_boxed_slice()),
            #[cfg(any(feature = "cluster", feature = "redis"))]
            failure_mode: None,
        }
    }

    #[inline]
    fn push(&mut self, policy: &Policy, decision: Decision) {
        let i = usize::from(self.len);
        self.allowed &= decision.allowed || policy.shadow();
        self.allowed_each |= u8::from(decision.allowed) << i;
        self.shadow_each |= u8::from(policy.shadow()) << i;
        let packed = Packed {
            reset_ns: u64::try_from(decision.reset.as_nanos()).unwrap_or(u64::MAX),
            remaining: decision.remaining,
            limit: decision.limit,
        };
        match (self.first.get_mut(i), self.more.as_deref_mut()) {
            (Some(slot), _) => *slot = packed,
            (None, Some(more)) => more[i - INLINE] = packed,
            (None, None) => unreachable!("room is made for every policy of the set"),
        }
        self.len += 1;
    }

    /// The failure mode that made these decisions, because the key's owner (a peer node,
    /// or Redis) could not answer in time; `None` when the owner decided.
    #[cfg(any(feature = "cluster", feature = "redis"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "cluster", feature = "redis"))))]
    pub fn failure_mode(&self) -> Option<crate::backend::FailureMode> {
        self.failure_mode
    }

    /// The failure mode that decided, for `Debug` whatever the features.
    fn failure_mode_name(&self) -> Option<String> {
        #[cfg(any(feature = "cluster", feature = "redis"))]
        return self.failure_mode.map(|mode| mode.to_string());
        #[cfg(not(any(feature = "cluster", feature = "redis")))]
        None
    }

    /// These decisions, marked as made by failure mode `mode`.
    #[cfg(any(feature = "cluster", feature = "redis"))]
    pub(crate) fn decided_by(mut self, mode: crate::backend::FailureMode) -> Self {
        self.failure_mode = Some(mode);
        self
    }

    /// Whether the request was counted and may proceed: every policy not in shadow mode
    /// allowed it.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// How many policies decided (at least one).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Never: a set has at least one policy.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The decision of the set's `i`-th policy.
    pub fn get(&self, i: usize) -> Option<Decision> {
        (i < self.len()).then(|| self.unpacked(i))
    }

    /// Each policy's decision, in the set's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Decision> + '_ {
        (0..self.len()).map(|i| self.unpacked(i))
    }

    fn unpacked(&self, i: usize) -> Decision {
        let packed = match (self.first.get(i), self.more.as_deref()) {
            (Some(packed), _) => *packed,
            (None, Some(more)) => more[i - INLINE],
            (None, None) => unreachable!("only the decisions made are read"),
        };
        let allowed = self.allowed_each & (1 << i) != 0;
        let reset = Duration::from_nanos(packed.reset_ns);
        Decision::new(allowed, packed.limit, packed.remaining, reset)
    }

    /// Whether the request goes on, [`allowed`](Self::allowed), with a `debug` event
    /// for each policy of `set` in shadow mode over its limit (naming the policy, never
    /// the key).
    pub(crate) fn passes(&self, set: &PolicySet) -> bool {
        for (policy, decision) in set.iter().zip(self.iter()) {
            if policy.shadow() && !decision.allowed {
                tracing::debug!(
                    policy = policy.name().as_str(),
                    limit = decision.limit,
                    "ringlimit: a policy in shadow mode would have limited a request"
                );
            }
        }
        self.allowed
    }

    /// The index of the decision to report in `RateLimit`: for a denied request, the
    /// denying policy (not in shadow mode) that allows again last; otherwise the policy
    /// with the smallest share of its limit left (the first of equals).
    pub fn nearest(&self, set: &PolicySet) -> usize {
        if self.len() == 1 {
            return 0;
        }
        let enforced_denials = set
            .iter()
            .zip(self.iter())
            .enumerate()
            .filter(|(_, (policy, d))| !d.allowed && !policy.shadow());
        if !self.allowed {
            if let Some((i, _)) = enforced_denials.max_by_key(|(_, (_, d))| d.reset) {
                return i;
            }
        }
        // remaining / limit, compared without division: a/b < c/d ⇔ a·d < c·b.
        let share = |i| {
            let d = self.unpacked(i);
            (u64::from(d.remaining), u64::from(d.limit.max(1)))
        };
        (0..self.len())
            .min_by(|&a, &b| {
                let ((ra, la), (rb, lb)) = (share(a), share(b));
                (ra * lb).cmp(&(rb * la)).then(a.cmp(&b))
            })
            .unwrap_or(0)
    }

    /// What [`retry_after`](Self::retry_after) says, without the set: the decisions
    /// know which of their policies are in shadow mode. For a rejection that carries its
    /// own retry delay (see [`GrpcRejection`](crate::layer::GrpcRejection)).
    pub fn retry_delay(&self) -> Option<Duration> {
        (0..self.len())
            .filter(|&i| self.shadow_each & (1 << i) == 0)
            .map(|i| self.unpacked(i))
            .filter(|d| !d.allowed)
            .map(|d| d.reset)
            .max()
    }

    /// The time until every denying policy not in shadow mode allows again (the
    /// `Retry-After` of a 429); `None` when none denied.
    pub fn retry_after(&self, set: &PolicySet) -> Option<Duration> {
        debug_assert_eq!(set.len(), self.len(), "the set they were decided under");
        self.retry_delay()
    }
}

/// Equal when they decide alike, policy by policy.
impl PartialEq for Decisions {
    fn eq(&self, other: &Self) -> bool {
        self.allowed == other.allowed && self.iter().eq(other.iter())
    }
}

impl Eq for Decisions {}

impl fmt::Debug for Decisions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decisions")
            .field("allowed", &self.allowed)
            .field("each", &self.iter().collect::<Vec<_>>())
            .field("failure_mode", &self.failure_mode_name())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn with_reset(reset: Duration) -> Decision {
        Decision {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset,
        }
    }

    #[test]
    fn reset_seconds_round_up_and_are_at_least_one() {
        assert_eq!(with_reset(Duration::from_millis(1)).reset_secs(), 1);
        assert_eq!(with_reset(Duration::ZERO).reset_secs(), 1);
        assert_eq!(with_reset(Duration::from_millis(36_001)).reset_secs(), 37);
        assert_eq!(with_reset(Duration::from_secs(37)).reset_secs(), 37);
        assert_eq!(with_reset(Duration::MAX).reset_secs(), u64::MAX);
    }

    #[test]
    #[cfg(any(feature = "cluster", feature = "redis"))]
    fn a_remote_decision_is_bounded_by_the_policy() {
        let told = Decision {
            allowed: false,
            limit: 5,
            remaining: 4_000_000,
            reset: Duration::from_secs(4_000_000_000),
        };
        let bounded = told.bounded(Duration::from_secs(60));
        assert_eq!(bounded.remaining, 5);
        assert_eq!(bounded.reset, Duration::from_secs(60));
        assert_eq!(bounded.reset_secs(), 60);
    }

    fn set_of(n: usize, shadow: &[usize]) -> PolicySet {
        PolicySet::new((0..n).map(|i| {
            Policy::per_window(NonZeroU32::new(10).unwrap(), Duration::from_secs(60))
                .with_name(crate::policy::PolicyName::new(&format!("p{i}")).unwrap())
                .with_shadow(shadow.contains(&i))
        }))
        .unwrap()
    }

    #[test]
    fn every_size_of_set_reads_back_each_decision() {
        for n in 1..=crate::policy::MAX_POLICIES {
            let set = set_of(n, &[]);
            let each: Vec<Decision> = (0..n)
                .map(|i| {
                    Decision::new(
                        i % 3 != 2,
                        10,
                        i as u32,
                        Duration::from_millis(1 + i as u64),
                    )
                })
                .collect();
            let decisions = Decisions::new(&set, &each);
            assert_eq!(decisions.len(), n);
            assert_eq!(decisions.iter().collect::<Vec<_>>(), each, "{n} policies");
            assert_eq!(decisions.get(n), None);
            assert_eq!(decisions.allowed(), n < 3, "{n}: the third denies");
            assert_eq!(decisions.clone(), decisions);
        }
    }

    #[test]
    fn the_nearest_and_the_retry_follow_the_enforced_policies() {
        let set = set_of(3, &[2]);
        let secs = Duration::from_secs;
        // Allowed: the smallest share left, the first of equals.
        let each = [
            Decision::new(true, 10, 5, secs(1)),
            Decision::new(true, 10, 2, secs(1)),
            Decision::new(true, 10, 2, secs(1)),
        ];
        let decisions = Decisions::new(&set, &each);
        assert_eq!(decisions.nearest(&set), 1);
        assert_eq!(decisions.retry_after(&set), None);
        // A shadow policy's denial lets the request through and sets no retry.
        let each = [
            Decision::new(true, 10, 5, secs(1)),
            Decision::new(true, 10, 2, secs(1)),
            Decision::new(false, 10, 0, secs(30)),
        ];
        let decisions = Decisions::new(&set, &each);
        assert!(decisions.allowed());
        assert_eq!(decisions.retry_after(&set), None);
        assert_eq!(
            decisions.retry_delay(),
            None,
            "a shadow policy's denial sets none"
        );
        // Denied by both enforced ones: the one that allows again last.
        let each = [
            Decision::new(false, 10, 0, secs(9)),
            Decision::new(false, 10, 0, secs(20)),
            Decision::new(false, 10, 0, secs(99)),
        ];
        let decisions = Decisions::new(&set, &each);
        assert!(!decisions.allowed());
        assert_eq!(decisions.nearest(&set), 1);
        assert_eq!(decisions.retry_after(&set), Some(secs(20)));
        assert_eq!(
            decisions.retry_delay(),
            Some(secs(20)),
            "without the set, the same"
        );
    }
}
