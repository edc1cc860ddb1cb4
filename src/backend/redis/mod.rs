//! The Redis backend (cargo feature `redis`): counters in Redis or Redis Cluster.

/// The Lua twin of the algorithms against the crate's own (the script is not yet the
/// check's: issue 16).
#[cfg(test)]
mod algorithms_match;
mod builder;
mod check_set;
/// The backend on a real Redis Cluster.
#[cfg(test)]
mod cluster_tests;
mod connection;
mod live;
mod masters;
mod pipelined;
mod queues;
mod scripts;
mod sender;
mod slot_owners;
/// Real `redis-server`s for the tests: the unit tests here, and the integration tests,
/// which include this file (it is self-contained).
#[cfg(test)]
#[allow(dead_code, unreachable_pub)]
mod test_server;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::RedisResult;

pub use self::builder::RedisBuilder;
use self::builder::Server;
use self::queues::Queues;
use self::sender::{Counted, Grouping, RedisSender};
use self::slot_owners::slot_of;
use super::guarded::Guard;
use super::{Backend, Check, FailureMode, MemoryBackend, RemoteFuture};
use crate::circuit::Circuit;
use crate::clock::{Clock, SystemClock};
use crate::policy::PolicySet;
use crate::Decisions;

/// How long a check waits for Redis by default.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// The default prefix of every key.
pub const DEFAULT_PREFIX: &str = "ringlimit:";

/// Counters kept in Redis (or a Redis Cluster), where users already trust
/// them: each check atomic, on one key, in one round trip. On a single server, checks
/// that arrive while a call is on the wire share the next script call (each key decided
/// atomically inside it); with [`batch_checks(false)`](RedisBuilder::batch_checks) each
/// check has a call of its own, and those that arrive together go in one pipeline. On a
/// Redis Cluster each check is a call of its own (a call's keys must share a slot there),
/// and each master has a queue whose calls go together as one pipeline.
///
/// The script runs on the server's clock (`TIME`), so nodes whose clocks disagree still
/// share each window. It is called by its SHA and reloaded if the server answers
/// `NOSCRIPT` (after a restart, say). Each check touches one key, the one it declares,
/// `<prefix>{<user id>}` (e.g. `ringlimit:{alice}`; an id that is empty or starts with
/// `}`, after any `=`s, gets one `=` more, see [`key_of`](Self::key_of)): a hash of the
/// window's start (`s`, ms) and the units used in it (`n`), given an expiry at the end of
/// its window on the window's first count. The hash tag keeps everything of one user in one slot, so the
/// same backend works on Redis Cluster and on servers that refuse undeclared keys. Under
/// the sliding window and GCRA the hash holds the algorithm's numbers in fields named for
/// it (`2a`, `2b`, `2c`; `3a`, `3b`), computed by a Lua twin of the crate's own
/// arithmetic, and expires once they no longer matter. Give each backend a prefix of its
/// own: two backends' own policies of one algorithm on one prefix would share a user's
/// state.
///
/// A check against a set of policies (see [`Backend`]) is one call of another script on
/// a key per policy, all with the user's hash tag, all or nothing: the backend's own
/// policy (its name, algorithm and window) on the key above, any other on
/// [`set_key_of`](Self::set_key_of). Set checks are pipelined the same way, each its own
/// call.
///
/// On a cluster, which master serves which slot is read from `CLUSTER SLOTS` when the
/// first checks arrive (they go alone meanwhile, routed by the cluster client), and
/// again, at most once a second, after a master's pipeline fails or a master answers
/// that a call's key is served elsewhere (`MOVED`, `ASK`, `READONLY`); that call did not
/// run, and goes again alone through the cluster client, which follows the redirect:
/// counted once. Each master has a queue and a connection of the backend's own (made as
/// the first URL says, at the master's address), beside the cluster client's, and a
/// circuit of its own: a master that does not answer holds up, and then opens the
/// circuit of, its own checks only.
///
/// All checks share one multiplexed connection (on a cluster, two per master: the
/// cluster client's and the backend's own), made lazily: a node
/// starts while Redis is down, and until Redis answers within the timeout (default
/// [`DEFAULT_REDIS_TIMEOUT`]) its [`FailureMode`] applies (default: count locally). After
/// repeated failures a circuit opens so that checks stop paying the timeout.
///
/// # Examples
///
/// ```no_run
/// use ringlimit::{backend::RedisBackend, Policy, RateLimitLayer};
/// use std::{num::NonZeroU32, time::Duration};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
/// let backend = RedisBackend::new(policy, "redis://127.0.0.1:6379")?;
/// let layer = RateLimitLayer::new(backend);
/// # let _ = layer; Ok(())
/// # }
/// ```
pub struct RedisBackend<C = SystemClock> {
    /// The queues that pipeline set checks.
    set_queue: Queues<check_set::SetSender>,
    /// How a set's keys are named (the prefix lives here).
    set_keys: check_set::SetKeys,
    target: Arc<str>,
    /// The queues that group concurrent checks.
    queue: Queues<RedisSender>,
    timeout: Duration,
    failure: FailureMode,
    /// The policy, the fallback counters of [`FailureMode::Local`], and the clock.
    local: Arc<MemoryBackend<C>>,
}

impl RedisBackend {
    /// Counts in the Redis server at `url` (`redis://host:port[/db]`), with the default
    /// options. Connects lazily, so Redis need not be up yet.
    ///
    /// # Errors
    ///
    /// If `url` is not a valid Redis URL.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn new(policy: impl Into<PolicySet>, url: &str) -> RedisResult<Self> {
        Self::builder(policy, url).build()
    }

    /// Counts in the Redis server at `url`, set up with [`RedisBuilder`]'s options.
    pub fn builder(policy: impl Into<PolicySet>, url: &str) -> RedisBuilder {
        RedisBuilder::new(policy.into(), Server::Single(url.to_owned()))
    }

    /// Counts in the Redis Cluster that the nodes at `urls` belong to, set up with
    /// [`RedisBuilder`]'s options.
    pub fn cluster_builder(policy: impl Into<PolicySet>, urls: &[String]) -> RedisBuilder {
        RedisBuilder::new(policy.into(), Server::Cluster(urls.to_vec()))
    }
}

impl<C: Clock> RedisBackend<C> {
    /// The failure mode in force ([`RedisBuilder::failure_mode`]).
    pub fn failure_mode(&self) -> FailureMode {
        self.failure
    }

    /// How long a check waits for Redis ([`RedisBuilder::timeout`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The counters used while Redis cannot answer ([`FailureMode::Local`]).
    pub fn local(&self) -> &MemoryBackend<C> {
        &self.local
    }

    /// The Redis key of `user_id` under the backend's own policy: `<prefix>{<user id>}`,
    /// or `<prefix>{=<user id>}` for an id that is empty or starts with `}`, after any
    /// `=`s (`ringlimit:{=}x}` for `}x`, `ringlimit:{==}x}` for `=}x`): so that the hash
    /// tag is never empty, and a user's keys share a slot on a cluster.
    pub fn key_of(&self, user_id: &str) -> String {
        self.set_keys.user(user_id)
    }
}

impl<C: Clock> Backend for RedisBackend<C> {
    type Future = RemoteFuture;

    fn policies(&self) -> &PolicySet {
        self.local.policies()
    }

    fn check(&self, key: &str, policies: &PolicySet) -> Check<RemoteFuture> {
        let policy = match (policies.as_slice(), self.local.policies().as_slice()) {
            ([policy], [own]) if own_script_fits(policy, own) => policy,
            _ => return self.check_set(key, policies),
        };
        let queue = &self.queue;
        let route = queue.route(
            queue
                .is_cluster()
                .then(|| slot_of(self.key_of(key).as_bytes())),
        );
        let guard = self.guard(route.circuit());
        // Shared by the call and the fallback: one copy of the key.
        let user = || UserOf::new(&self.set_keys, key);
        // Only `Copy` numbers inside: one decision for both ways of calling.
        let policy = *policy;
        let decide =
            move |counted: Counted, _: &UserOf| Decisions::one(&policy, counted.decision(&policy));
        guard.call(
            key,
            policies,
            user,
            |user| {
                let key = Arc::clone(&user.redis_key);
                route.queue().check(key, policies.clone())
            },
            decide,
        )
    }
}

/// Whether `policy` can be checked by the backend's own single-policy script, whose
/// queue sends the backend's own limit: it counts with the own policy and has its limit
/// (its cost and mode may differ).
fn own_script_fits(policy: &crate::Policy, own: &crate::Policy) -> bool {
    policy.counts_with(own) && policy.limit() == own.limit()
}

impl<C: Clock> RedisBackend<C> {
    /// The guard of a call to Redis through `circuit` (the backend's, or a cluster
    /// master's), with the backend's failure mode.
    fn guard<'a>(&'a self, circuit: &'a Arc<Circuit>) -> Guard<'a, C> {
        Guard {
            circuit,
            target: &self.target,
            mode: self.failure,
            local: &self.local,
        }
    }
}

/// A user's Redis key, `<prefix>{<id>}`, read as the user id (for the local fallback).
struct UserOf {
    redis_key: Arc<str>,
    /// Where the id is in the key.
    id: std::ops::Range<usize>,
}

impl UserOf {
    /// `user_id`'s key as `keys` names it. The id is found from the key's end (it ends
    /// the key, before the closing `}`), whatever the prefix and escape before it.
    fn new(keys: &check_set::SetKeys, user_id: &str) -> Self {
        let redis_key: Arc<str> = keys.user(user_id).into();
        let end = redis_key.len() - 1;
        Self {
            id: end - user_id.len()..end,
            redis_key,
        }
    }
}

impl AsRef<str> for UserOf {
    fn as_ref(&self) -> &str {
        &self.redis_key[self.id.clone()]
    }
}

impl<C: Clock> RedisBackend<C> {
    /// Sets the gauges that are read rather than counted (the keys its failure mode
    /// counts in memory) and hands over the counts of checks: call it where you render
    /// metrics. Nothing without the feature `metrics`.
    pub fn record_metrics(&self) {
        self.local.record_metrics();
    }
}

/// Counts every check itself: a forwarded check is a check.
#[cfg(feature = "cluster")]
impl<C: Clock> super::Owner for RedisBackend<C> {
    fn check_forwarded(&self, key: &str, policies: &PolicySet) -> Check<RemoteFuture> {
        self.check(key, policies)
    }
}

impl<C> RedisBackend<C> {
    /// How concurrent checks are grouped.
    fn grouping(&self) -> Grouping {
        self.queue.sender().grouping
    }
}

impl<C: fmt::Debug> fmt::Debug for RedisBackend<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &self.target)
            .field("prefix", &self.set_keys.prefix)
            .field("grouping", &self.grouping())
            .field("timeout", &self.timeout)
            .field("failure", &self.failure)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::check_set::SetKeys;
    use super::{Grouping, RedisBackend, UserOf};
    use crate::Policy;

    fn policy() -> Policy {
        Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60))
    }

    // Regression: the fallback read an escaped id's `=` as part of the id.
    #[test]
    fn the_fallback_reads_each_id_back_from_its_key() {
        for prefix in ["ringlimit:", "", "a:b:"] {
            let keys = SetKeys {
                prefix: prefix.into(),
                own: policy(),
            };
            for id in ["", "}x", "=}x", "=x", "a}b", "alice", "é}"] {
                assert_eq!(UserOf::new(&keys, id).as_ref(), id, "{prefix}{id}");
            }
        }
    }

    #[tokio::test]
    async fn a_single_server_batches_by_default_pipelines_if_told_and_a_cluster_pipelines() {
        // Nothing listens on port 1: both connect lazily, so no server is needed here.
        let default = RedisBackend::new(policy(), "redis://127.0.0.1:1").unwrap();
        assert_eq!(
            default.grouping(),
            Grouping::OneCall,
            "checks that arrive together share a call"
        );
        let unbatched = RedisBackend::builder(policy(), "redis://127.0.0.1:1")
            .batch_checks(false)
            .build()
            .unwrap();
        assert_eq!(
            unbatched.grouping(),
            Grouping::Pipelined,
            "one call per check"
        );

        let single = RedisBackend::builder(policy(), "redis://127.0.0.1:1")
            .timeout(Duration::from_millis(40))
            .build()
            .unwrap();
        assert_eq!(
            single.grouping(),
            Grouping::OneCall,
            "a later timeout keeps batching on"
        );

        let urls = ["redis://127.0.0.1:1".to_owned()];
        let cluster = RedisBackend::cluster_builder(policy(), &urls)
            .build()
            .unwrap();
        assert_eq!(
            cluster.grouping(),
            Grouping::Pipelined,
            "a call per check on a cluster, pipelined per master"
        );
    }
}
