//! The embedded in-memory backend (the default).

mod builder;
mod capacity;
mod counter;
#[cfg(feature = "cluster")]
mod handoff;
mod retired;
mod shard;
mod state_word;
mod store;
mod stored_key;
mod table;

use std::fmt;
use std::future::Ready;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use crossbeam_utils::sync::ShardedLock;

pub use self::builder::MemoryBuilder;
pub use self::capacity::DEFAULT_MAX_KEYS;
#[cfg(feature = "cluster")]
pub(crate) use self::handoff::Held;
#[cfg(feature = "cluster")]
use self::handoff::HeldKeys;
use self::store::Store;
use super::{Backend, BackendError, Check};
use crate::clock::{Clock, SystemClock};
#[cfg(feature = "cluster")]
use crate::policy::millis;
use crate::policy::{PolicySet, MAX_POLICIES};
use crate::{Decision, Decisions, Policy};

/// Counters in this process's memory.
///
/// Exact under concurrency: each key's counter is one atomic word updated by
/// compare-and-swap, so no number of tasks can admit more than the limit. Keys are spread
/// over many shards, each with its own read-write lock; a key that already has a counter
/// takes a shared lock and allocates nothing. The shared side of each lock is itself split
/// by thread (crossbeam's `ShardedLock`), so threads checking the same hot key do not pass
/// a lock word between cores: only the key's counter moves.
///
/// Memory is bounded two ways, with no cleanup call:
/// - **Past windows**: the first request to reach a shard in a new window swaps in an
///   empty table; the old one is dropped 16 entries per request that reaches the shard
///   after it, so no request pays for dropping millions of keys at a window boundary (a
///   shard no request reaches keeps its old table until one does). Under the sliding
///   window and GCRA, whose state outlives a window, the table of the window just before
///   is kept whole until the next one starts (a key that comes back moves out of it), so
///   keys are held for a window more, outside the cap.
/// - **A cap on tracked keys** ([`MemoryBuilder::max_keys`], default
///   [`DEFAULT_MAX_KEYS`]), split evenly over the shards. A new key that finds its shard
///   full evicts the oldest key counted for one request at most, so a flood of one-request
///   ids evicts its own ids and a user who comes back keeps an exact count (with a limit
///   of one request, a user at the limit looks like one seen once). Keys found
///   counted more than once are set aside, and only when no key seen once is left does
///   one of them go: the least used of the 8 set aside longest, which may then be allowed
///   its evicted units again in this window. Evictions are counted
///   ([`evicted_keys`](Self::evicted_keys)) and the first of each window is logged at
///   `warn`.
///
/// # Examples
///
/// ```
/// use ringlimit::policy::PolicyName;
/// use ringlimit::{ManualClock, MemoryBackend, Policy, PolicySet};
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Duration::from_secs(600));
/// let per = |limit, secs, name| {
///     Policy::per_window(NonZeroU32::new(limit).unwrap(), Duration::from_secs(secs))
///         .with_name(PolicyName::new(name).unwrap())
/// };
/// // At most 2 a minute, and 3 an hour.
/// let policies = PolicySet::new([per(2, 60, "minute"), per(3, 3600, "hour")]).unwrap();
/// let backend = MemoryBackend::builder(policies.clone()).clock(clock.clone()).build();
/// let allowed = |backend: &MemoryBackend<_>| backend.decide_all("alice", &policies).unwrap().allowed();
///
/// assert!(allowed(&backend) && allowed(&backend));
/// // The minute is full: denied, and the hour counts nothing for it.
/// assert!(!allowed(&backend));
/// clock.advance(Duration::from_secs(60));
/// assert!(allowed(&backend));
/// assert!(!allowed(&backend), "3 in the hour");
/// ```
pub struct MemoryBackend<C = SystemClock> {
    policies: PolicySet,
    clock: C,
    hasher: foldhash::fast::RandomState,
    /// The counters of `policies`, in order: a check of the backend's own set finds them
    /// without a search.
    own: Box<[Arc<Store>]>,
    /// The counters of every policy checked here, `own` first; a policy not yet seen
    /// (another set, or one a peer sent) gets its own, up to [`MAX_STORES`].
    stores: ShardedLock<Vec<Arc<Store>>>,
    max_keys: usize,
    /// When a check was last refused for want of room for its policies (s), for the log.
    refusal_logged: AtomicU64,
}

/// The most policies (distinct names, algorithms and windows) one backend keeps counters
/// for: each costs up to a MiB of shards and up to [`MemoryBuilder::max_keys`] keys, and
/// peers choose the policies they send.
pub const MAX_STORES: usize = 64;

/// How many of [`MAX_STORES`] checks forwarded by other nodes may make: the rest stay for
/// this node's own sets.
const MAX_PEER_STORES: usize = 48;

impl MemoryBackend {
    /// Counters for `policies`, on the system clock, with the default cap on keys.
    pub fn new(policies: impl Into<PolicySet>) -> Self {
        Self::builder(policies).build()
    }

    /// Counters for `policies`, set up with [`MemoryBuilder`]'s options.
    pub fn builder(policies: impl Into<PolicySet>) -> MemoryBuilder {
        MemoryBuilder::new(policies.into())
    }
}

impl<C: Clock> MemoryBackend<C> {
    /// The backend a builder describes: the stores of its own policies made once, here.
    fn build(policies: PolicySet, clock: C, max_keys: usize) -> Self {
        let now = clock.now();
        let own: Box<[Arc<Store>]> = policies
            .iter()
            .map(|policy| Arc::new(Store::new(policy, max_keys, now)))
            .collect();
        Self {
            policies,
            clock,
            hasher: foldhash::fast::RandomState::default(),
            stores: ShardedLock::new(own.to_vec()),
            own,
            max_keys,
            refusal_logged: AtomicU64::new(0),
        }
    }

    /// The cap on tracked keys in force, per policy ([`MemoryBuilder::max_keys`]).
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Keys evicted at the cap since the backend was made, under every policy.
    pub fn evicted_keys(&self) -> u64 {
        self.each_store(|store| store.capacity.evicted())
    }

    /// Sets the gauges that are read rather than counted: `ringlimit_memory_keys` (as
    /// [`tracked_keys`](Self::tracked_keys)) and `ringlimit_memory_evicted_keys_total`.
    /// Call it where you render metrics: it visits every shard, so the request path
    /// never does. Nothing without the feature `metrics`.
    pub fn record_metrics(&self) {
        crate::observe::memory(self.tracked_keys(), self.evicted_keys());
    }

    /// How many counters there are, under every policy, including counters of past
    /// windows not yet dropped.
    pub fn tracked_keys(&self) -> usize {
        self.each_store(|store| store.tracked_keys() as u64) as usize
    }

    /// Units `key` holds now under the backend's first policy, without counting
    /// anything: those used in the current window (a fixed window), those of the current
    /// and the previous window (the sliding window, unweighted), or the bucket's level,
    /// rounded up (GCRA).
    pub fn used(&self, key: &str) -> u32 {
        let hash = self.hasher.hash_one(key);
        self.own[0].used(key, hash, self.first(), self.clock.now())
    }

    /// Counts `cost` for `key` now under the backend's first policy alone, and says
    /// whether it fit. For a denial of a policy other than a fixed window, `reset` is
    /// when this cost fits again. [`decide_all`](Self::decide_all) checks a whole set.
    pub fn decide(&self, key: &str, cost: NonZeroU32) -> Decision {
        let hash = self.hasher.hash_one(key);
        let now = self.clock.now();
        self.own[0]
            .decide(key, hash, self.first(), cost.get(), now)
            .0
    }

    /// Checks `key` against every policy of `policies` at once: counted under all of
    /// them if every policy not in shadow mode has room (and under each shadow policy
    /// that has room), under none otherwise.
    ///
    /// Each policy's count is one atomic word: the policies are counted one after the
    /// other and, when one denies, the others' units are taken back (from the window they
    /// were counted in) before this returns. No policy ever admits more than its limit; a
    /// check of the same key racing this one may find a policy full for the instant
    /// between the two, and be denied.
    ///
    /// A policy this backend has not seen yet (another set's, or one a peer sent) gets
    /// counters of its own on its first check: a name, an algorithm and a window make
    /// one, and each holds up to [`max_keys`](Self::max_keys) keys.
    ///
    /// # Errors
    ///
    /// [`BackendError::TooManyPolicies`] when `policies` would make this backend keep
    /// counters for more than [`MAX_STORES`] policies; nothing is made or counted then.
    #[inline]
    pub fn decide_all(&self, key: &str, policies: &PolicySet) -> Result<Decisions, BackendError> {
        self.decide_within(key, policies, MAX_STORES)
    }

    /// [`decide_all`](Self::decide_all) for a check another node forwarded: it may make
    /// counters for new policies only while fewer than 48 of the 64 exist, so that peers
    /// can never take the room of this node's own sets.
    pub fn decide_forwarded(
        &self,
        key: &str,
        policies: &PolicySet,
    ) -> Result<Decisions, BackendError> {
        self.decide_within(key, policies, MAX_PEER_STORES)
    }

    #[inline]
    fn decide_within(
        &self,
        key: &str,
        policies: &PolicySet,
        most: usize,
    ) -> Result<Decisions, BackendError> {
        let hash = self.hasher.hash_one(key);
        let now = self.clock.now();
        if policies == &self.policies {
            return Ok(decide_in(&self.own, key, hash, policies, now));
        }
        loop {
            {
                let stores = self.stores.read().unwrap_or_else(PoisonError::into_inner);
                let mut found: [Option<&Store>; MAX_POLICIES] = [None; MAX_POLICIES];
                for (slot, policy) in found.iter_mut().zip(policies) {
                    *slot = stores.iter().find(|s| s.holds(policy)).map(|s| &**s);
                }
                if found[..policies.len()].iter().all(Option::is_some) {
                    let found = found.map(|store| store.unwrap_or(&self.own[0]));
                    return Ok(decide_in(
                        &found[..policies.len()],
                        key,
                        hash,
                        policies,
                        now,
                    ));
                }
            }
            self.make_stores(policies, most)?;
        }
    }

    /// Counters for each policy of `policies` that has none yet, if there is room for all
    /// within `most`.
    fn make_stores(&self, policies: &PolicySet, most: usize) -> Result<(), BackendError> {
        let now = self.clock.now();
        let mut stores = self.stores.write().unwrap_or_else(PoisonError::into_inner);
        // Counters no check has needed for two windows go first: what they held no
        // longer matters, and peers that renamed their policies leave such behind. This
        // node's own stay.
        let own = |store: &Arc<Store>| self.own.iter().any(|o| Arc::ptr_eq(o, store));
        stores.retain(|store| own(store) || !store.idle(now));
        let missing: Vec<&Policy> = policies
            .iter()
            .filter(|policy| !stores.iter().any(|s| s.holds(policy)))
            .collect();
        if stores.len() + missing.len() > most {
            if self.refusal_not_logged_lately(now) {
                tracing::warn!(
                    most,
                    kept = stores.len(),
                    "ringlimit: refusing checks of more distinct policies than this node keeps \
                     (logged once a minute)"
                );
            }
            return Err(BackendError::TooManyPolicies { most });
        }
        for policy in missing {
            stores.push(Arc::new(Store::new(policy, self.max_keys, now)));
        }
        Ok(())
    }

    /// Whether a refusal for want of room has gone unlogged for a minute.
    fn refusal_not_logged_lately(&self, now: std::time::Duration) -> bool {
        let (now, last) = (now.as_secs(), self.refusal_logged.load(Ordering::Relaxed));
        now.abs_diff(last) >= 60
            && self
                .refusal_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// `f` summed over every store.
    fn each_store(&self, f: impl Fn(&Store) -> u64) -> u64 {
        let stores = self.stores.read().unwrap_or_else(PoisonError::into_inner);
        stores.iter().map(|store| f(store)).sum()
    }

    fn first(&self) -> &Policy {
        &self.policies.as_slice()[0]
    }

    /// The first of the backend's own policies, borrowed: the ring reads it on every
    /// forwarded check of its own single policy.
    #[cfg(feature = "cluster")]
    pub(crate) fn policy_ref(&self) -> &Policy {
        self.first()
    }

    /// The clock's time, in ms since the epoch.
    #[cfg(feature = "cluster")]
    pub(crate) fn now_ms(&self) -> u64 {
        millis(self.clock.now())
    }

    /// The clock's time.
    #[cfg(any(feature = "cluster", feature = "redis"))]
    pub(crate) fn now(&self) -> std::time::Duration {
        self.clock.now()
    }

    #[cfg(test)]
    fn shard_of(&self, key: &str) -> (&shard::Shard, u64) {
        let hash = self.hasher.hash_one(key);
        (self.own[0].shard(hash), hash)
    }
}

/// Checks `policies` against their `stores` (one each, in order), all or nothing.
#[inline]
fn decide_in<S: std::ops::Deref<Target = Store>>(
    stores: &[S],
    key: &str,
    hash: u64,
    policies: &PolicySet,
    now: std::time::Duration,
) -> Decisions {
    let set = policies.as_slice();
    let cost = |policy: &Policy| policy.cost().get();
    if let ([store], [policy]) = (stores, set) {
        let (decision, _) = store.decide(key, hash, policy, cost(policy), now);
        return Decisions::one(policy, decision);
    }
    let mut counted_in = [0; MAX_POLICIES];
    let decisions = Decisions::from_fn(policies, |i, policy| {
        let (decision, window) = stores[i].decide(key, hash, policy, cost(policy), now);
        counted_in[i] = window;
        decision
    });
    // Denied: what was counted goes back. (Allowed: a shadow policy that denied counted
    // nothing, and the rest stays counted.)
    if !decisions.allowed() {
        for (i, policy) in set.iter().enumerate() {
            if decisions.get(i).unwrap().allowed {
                stores[i].refund(key, hash, policy, cost(policy), counted_in[i], now);
            }
        }
    }
    decisions
}

impl<C: Clock> Backend for MemoryBackend<C> {
    type Future = Ready<Result<Decisions, BackendError>>;

    fn policies(&self) -> &PolicySet {
        &self.policies
    }

    #[inline]
    fn check(&self, key: &str, policies: &PolicySet) -> Check<Self::Future> {
        Check::Ready(self.decide_all(key, policies))
    }
}

/// Counts every check itself: a forwarded check is a check (that may make fewer new
/// counters, see [`MemoryBackend::decide_forwarded`]).
#[cfg(feature = "cluster")]
impl<C: Clock> super::Owner for MemoryBackend<C> {
    fn check_forwarded(&self, key: &str, policies: &PolicySet) -> Check<Self::Future> {
        Check::Ready(self.decide_forwarded(key, policies))
    }
}

impl<C: fmt::Debug> fmt::Debug for MemoryBackend<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("policies", &self.policies)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
