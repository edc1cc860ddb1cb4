//! The policies one request is checked against, together.

use std::fmt;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;

use super::{Policy, PolicyName};
use crate::observe::CheckCounters;

/// The most policies one request is checked against.
pub const MAX_POLICIES: usize = 8;
// `Decisions` keeps each policy's verdict in a bit of a `u8`.
const _: () = assert!(MAX_POLICIES <= 8);

/// The policies a request is checked against, all or nothing: it is allowed only if every
/// policy not in shadow mode allows it, and a denied request counts under none of them.
/// Names are unique within a set; order is kept (it is the order of the headers and of
/// [`Decisions`](crate::Decisions)).
///
/// Made once, at configuration: a backend borrows it on every check, and a clone shares
/// it.
///
/// # Examples
///
/// ```
/// use ringlimit::policy::{PolicyName, PolicySet};
/// use ringlimit::Policy;
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let per = |limit, secs, name| {
///     Policy::per_window(NonZeroU32::new(limit).unwrap(), Duration::from_secs(secs))
///         .with_name(PolicyName::new(name).unwrap())
/// };
/// let set = PolicySet::new([per(10, 1, "burst"), per(1000, 3600, "hourly")]).unwrap();
/// assert_eq!(set.len(), 2);
/// assert!(PolicySet::new([per(10, 1, "a"), per(20, 1, "a")]).is_err(), "names are unique");
/// ```
#[derive(Clone)]
pub struct PolicySet(Arc<Inner>);

struct Inner {
    policies: Box<[Policy]>,
    /// `RateLimit-Policy` for this set, rendered on first use (a set decoded from a peer's
    /// check never needs it).
    header: OnceLock<HeaderValue>,
    /// This set as checks forwarded to its owner carry it, rendered on first use.
    #[cfg(feature = "cluster")]
    wire: OnceLock<Box<str>>,
    /// `ringlimit_checks_total` of this set's policies, registered on first use (with
    /// the feature `metrics`; without it, empty).
    check_counters: OnceLock<CheckCounters>,
}

/// Why a set of policies was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicySetError {
    /// No policy at all.
    Empty,
    /// More than [`MAX_POLICIES`].
    TooMany(usize),
    /// Two policies with one name.
    DuplicateName(PolicyName),
}

impl PolicySet {
    /// The set of `policies`, in the order given.
    ///
    /// # Errors
    ///
    /// If there is none, more than [`MAX_POLICIES`], or two share a name.
    pub fn new(policies: impl IntoIterator<Item = Policy>) -> Result<Self, PolicySetError> {
        let policies: Box<[Policy]> = policies.into_iter().collect();
        if policies.is_empty() {
            return Err(PolicySetError::Empty);
        }
        if policies.len() > MAX_POLICIES {
            return Err(PolicySetError::TooMany(policies.len()));
        }
        for (i, policy) in policies.iter().enumerate() {
            if policies[..i].iter().any(|p| p.name() == policy.name()) {
                return Err(PolicySetError::DuplicateName(policy.name()));
            }
        }
        Ok(Self(Arc::new(Inner {
            policies,
            header: OnceLock::new(),
            #[cfg(feature = "cluster")]
            wire: OnceLock::new(),
            check_counters: OnceLock::new(),
        })))
    }

    /// The policies, in order.
    pub fn as_slice(&self) -> &[Policy] {
        &self.0.policies
    }

    /// The policies, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Policy> {
        self.0.policies.iter()
    }

    /// How many policies (at least one).
    pub fn len(&self) -> usize {
        self.0.policies.len()
    }

    /// Never: a set has at least one policy.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether every policy is in shadow mode: nothing in the set ever rejects.
    pub fn all_shadow(&self) -> bool {
        self.iter().all(|policy| policy.shadow())
    }

    /// The rendered `RateLimit-Policy` value.
    pub(crate) fn header(&self) -> &HeaderValue {
        self.0
            .header
            .get_or_init(|| crate::headers::policy_list(&self.0.policies))
    }

    /// This set in its wire form (a forward carries it with every check): rendered by
    /// `render` the first time, kept after. The wire form is the protocol's to write
    /// (`policy` sits below it), so the protocol passes its renderer in.
    #[cfg(feature = "cluster")]
    pub(crate) fn wire_or_init(&self, render: impl FnOnce(&Self) -> Box<str>) -> &str {
        self.0.wire.get_or_init(|| render(self))
    }

    /// The counters of what became of the requests checked against this set.
    pub(crate) fn check_counters(&self) -> &CheckCounters {
        self.0
            .check_counters
            .get_or_init(|| CheckCounters::new(self))
    }
}

/// Sets are equal when their policies are, in order (a clone is equal at once).
impl PartialEq for PolicySet {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.policies == other.0.policies
    }
}

impl Eq for PolicySet {}

impl From<Policy> for PolicySet {
    fn from(policy: Policy) -> Self {
        Self::new([policy]).expect("one policy is a set")
    }
}

impl<'a> IntoIterator for &'a PolicySet {
    type Item = &'a Policy;
    type IntoIter = std::slice::Iter<'a, Policy>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.policies.iter()).finish()
    }
}

impl fmt::Display for PolicySetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("a policy set needs at least one policy"),
            Self::TooMany(n) => write!(f, "{n} policies in one set; at most {MAX_POLICIES}"),
            Self::DuplicateName(name) => write!(f, "two policies are named {name:?}"),
        }
    }
}

impl std::error::Error for PolicySetError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;
    use std::time::Duration;

    fn named(name: &str) -> Policy {
        Policy::per_window(NonZeroU32::MIN, Duration::from_secs(1))
            .with_name(PolicyName::new(name).unwrap())
    }

    #[test]
    fn a_set_is_one_to_eight_uniquely_named_policies() {
        assert_eq!(PolicySet::new([]), Err(PolicySetError::Empty));
        let nine = (0..9).map(|i| named(&format!("p{i}")));
        assert_eq!(PolicySet::new(nine), Err(PolicySetError::TooMany(9)));
        let eight = PolicySet::new((0..8).map(|i| named(&format!("p{i}")))).unwrap();
        assert_eq!(eight.len(), 8);
        assert_eq!(eight.as_slice()[3].name().as_str(), "p3");
        assert!(matches!(
            PolicySet::new([named("a"), named("b"), named("a")]),
            Err(PolicySetError::DuplicateName(n)) if n.as_str() == "a"
        ));
    }
}
