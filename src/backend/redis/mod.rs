//! The Redis backend (cargo feature `redis`): counters in Redis or Redis Cluster.

mod batch;
mod connection;
mod live;
/// Real `redis-server`s for the tests: the unit tests here, and the integration tests,
/// which include this file (it is self-contained).
#[cfg(test)]
#[allow(dead_code, unreachable_pub)]
mod test_server;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::RedisResult;
use tokio::time::Instant;

use self::batch::{Counted, Grouping, RedisSender};
use self::connection::Connection;
use super::guarded::Guard;
use super::{Backend, BackendError, Check, FailureMode, MemoryBackend, PeerFuture};
use crate::circuit::{Circuit, CircuitPolicy};
use crate::clock::{Clock, SystemClock};
use crate::coalesce::Coalescer;
use crate::{Decision, Policy};

/// How long a check waits for Redis by default.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// The default prefix of every key.
pub const DEFAULT_PREFIX: &str = "ringlimit:";

/// Fixed-window counters kept in Redis (or a Redis Cluster), where users already trust
/// them: one atomic script call per check, on one key, in one round trip. On a single
/// server, the calls of checks that arrive while others are on the wire go together in one
/// pipeline (one write, one round trip; each call still its own); with
/// [`batch_checks`](Self::batch_checks) they share one script call.
///
/// The script runs on the server's clock (`TIME`), so nodes whose clocks disagree still
/// share each window. It is called by its SHA and reloaded if the server answers
/// `NOSCRIPT` (after a restart, say). Each check touches one key, the one it declares,
/// `<prefix>{<user id>}` (e.g. `ringlimit:{alice}`): a hash of the window's start (`s`, ms)
/// and the units used in it (`n`), given an expiry at the end of its window on the
/// window's first count. The hash tag keeps everything of one user in one slot, so the
/// same backend works on Redis Cluster and on servers that refuse undeclared keys.
///
/// All checks share one multiplexed connection (per cluster master), made lazily: a node
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
/// let backend = RedisBackend::connect("redis://127.0.0.1:6379", policy)?;
/// let layer = RateLimitLayer::new(backend);
/// # let _ = layer; Ok(())
/// # }
/// ```
pub struct RedisBackend<C = SystemClock> {
    connection: Connection,
    target: Arc<str>,
    /// The queue that groups concurrent checks (a single server only; on a cluster each
    /// call goes on its own, routed to its key's master).
    queue: Option<Arc<Coalescer<RedisSender>>>,
    prefix: Arc<str>,
    timeout: Duration,
    failure: FailureMode,
    circuit: Arc<Circuit>,
    /// The policy, the fallback counters of [`FailureMode::Local`], and the clock.
    local: Arc<MemoryBackend<C>>,
}

impl RedisBackend {
    /// Counts in the Redis server at `url` (`redis://host:port[/db]`). Connects lazily,
    /// so Redis need not be up yet.
    ///
    /// # Errors
    ///
    /// If `url` is not a valid Redis URL.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn connect(url: &str, policy: Policy) -> RedisResult<Self> {
        let connection = Connection::single(url, DEFAULT_REDIS_TIMEOUT)?;
        Ok(Self::with_connection(connection, url, policy))
    }

    /// Counts in the Redis Cluster that the nodes at `urls` belong to. Connects lazily.
    ///
    /// # Errors
    ///
    /// If a URL is not a valid Redis URL.
    pub fn connect_cluster(urls: &[String], policy: Policy) -> RedisResult<Self> {
        let connection = Connection::cluster(urls, DEFAULT_REDIS_TIMEOUT)?;
        Ok(Self::with_connection(connection, &urls.join(","), policy))
    }

    fn with_connection(connection: Connection, target: &str, policy: Policy) -> Self {
        let backend = Self {
            connection,
            target: target.into(),
            queue: None,
            prefix: DEFAULT_PREFIX.into(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            failure: FailureMode::default(),
            circuit: Arc::new(Circuit::new(target, CircuitPolicy::default())),
            local: Arc::new(MemoryBackend::new(policy)),
        };
        if backend.connection.is_cluster() {
            backend
        } else {
            backend.grouped(Grouping::Pipelined)
        }
    }
}

impl<C: Clock> RedisBackend<C> {
    /// Starts every key with `prefix` instead of [`DEFAULT_PREFIX`].
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Waits at most `timeout` for Redis (default [`DEFAULT_REDIS_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        match self.grouping() {
            Some(grouping) => self.grouped(grouping),
            None => self,
        }
    }

    /// Sends checks that arrive while a script call is in flight together, in the next
    /// call (up to 128 keys per call), instead of one call per check.
    ///
    /// Off by default (by default each check has its own call, and concurrent calls share
    /// a pipeline). Under load this also saves most of Redis's work per check: one script
    /// call instead of one per check. Each check stays atomic and exact, and a lone check
    /// still goes at once. Each check waits at most the timeout, queueing included. A
    /// single server only: on a Redis Cluster, one call's keys must share a slot, so a
    /// cluster backend keeps one key per call (and logs a warning if asked to batch).
    pub fn batch_checks(self) -> Self {
        if self.connection.is_cluster() {
            tracing::warn!(target = %self.target, "batched checks need a single Redis server: one key per call on a cluster");
            return self;
        }
        self.grouped(Grouping::OneCall)
    }

    /// Groups concurrent checks by `grouping`, with the current timeout.
    fn grouped(mut self, grouping: Grouping) -> Self {
        let policy = self.local.policy();
        let sender = RedisSender {
            connection: self.connection.clone(),
            grouping,
            target: self.target.clone(),
            window_ms: policy.window().as_millis() as u64,
            limit: policy.limit(),
            timeout: self.timeout,
        };
        self.queue = Some(Arc::new(Coalescer::new(&self.target, self.timeout, sender)));
        self
    }

    /// What to answer when Redis cannot (default [`FailureMode::Local`]).
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure = mode;
        self
    }

    /// Tracks at most `max_keys` keys in the local fallback of [`FailureMode::Local`]
    /// (default [`DEFAULT_MAX_KEYS`](crate::backend::DEFAULT_MAX_KEYS)); see
    /// [`MemoryBackend::max_keys`].
    ///
    /// # Panics
    ///
    /// If the backend has already been used (set it when building the backend).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        MemoryBackend::arc_max_keys(&mut self.local, max_keys);
        self
    }

    /// When the circuit to Redis opens and how long it stays open.
    pub fn circuit(mut self, policy: CircuitPolicy) -> Self {
        self.circuit = Arc::new(Circuit::new(&self.target, policy));
        self
    }

    /// Reads the local fallback's time from `clock` instead (for tests; the windows in
    /// Redis always follow the server's clock).
    ///
    /// # Panics
    ///
    /// If the backend is already shared.
    pub fn with_clock<C2: Clock>(self, clock: C2) -> RedisBackend<C2> {
        RedisBackend {
            connection: self.connection,
            target: self.target,
            queue: self.queue,
            prefix: self.prefix,
            timeout: self.timeout,
            failure: self.failure,
            circuit: self.circuit,
            local: MemoryBackend::arc_with_clock(self.local, clock),
        }
    }

    /// The counters used while Redis cannot answer ([`FailureMode::Local`]).
    pub fn local(&self) -> &MemoryBackend<C> {
        &self.local
    }

    /// The Redis key of `user_id`, before the window start: `<prefix>{<user id>}`.
    pub fn key_of(&self, user_id: &str) -> String {
        // Pushed piece by piece: this runs on every check, and `format!` showed in profiles.
        let mut key = String::with_capacity(self.prefix.len() + user_id.len() + 2);
        key.push_str(&self.prefix);
        key.push('{');
        key.push_str(user_id);
        key.push('}');
        key
    }
}

impl<C: Clock> Backend for RedisBackend<C> {
    type Future = PeerFuture;

    fn policy(&self) -> Policy {
        self.local.policy()
    }

    fn check(&self, key: &str, cost: u32) -> Check<PeerFuture> {
        let guard = Guard {
            circuit: &self.circuit,
            target: &self.target,
            mode: self.failure,
            local: &self.local,
        };
        // Shared by the call and the fallback: one copy of the key.
        let redis_key: Arc<str> = self.key_of(key).into();
        let user = UserOf {
            id: self.prefix.len() + 1..redis_key.len() - 1,
            redis_key,
        };
        let limit = self.local.policy_limit();
        let window = self.local.policy().window();
        // Only `Copy` numbers inside: one decision for both ways of calling.
        let decide = move |counted: Counted, _: &UserOf| {
            let used = u32::try_from(counted.used.max(0)).unwrap_or(u32::MAX);
            Decision {
                allowed: counted.allowed,
                limit,
                remaining: limit.saturating_sub(used),
                reset: Duration::from_millis(counted.reset_ms.max(0) as u64),
            }
            .bounded(window)
        };
        match &self.queue {
            Some(queue) => guard.call(
                user,
                cost,
                |user| queue.check(Arc::clone(&user.redis_key), cost),
                decide,
            ),
            None => guard.call(
                user,
                cost,
                |user| self.call_alone(&user.redis_key, cost),
                decide,
            ),
        }
    }
}

/// A user's Redis key, `<prefix>{<id>}`, read as the user id (for the local fallback).
struct UserOf {
    redis_key: Arc<str>,
    /// Where the id is in the key.
    id: std::ops::Range<usize>,
}

impl AsRef<str> for UserOf {
    fn as_ref(&self) -> &str {
        &self.redis_key[self.id.clone()]
    }
}

impl<C: Clock> RedisBackend<C> {
    /// One script call for this check alone (on a cluster).
    fn call_alone(
        &self,
        redis_key: &str,
        cost: u32,
    ) -> impl Future<Output = Result<Counted, BackendError>> + Send + 'static {
        let policy = self.local.policy();
        let mut evalsha = self.connection.evalsha(1, redis_key.len());
        evalsha
            .arg(redis_key)
            .arg(policy.window().as_millis() as u64)
            .arg(policy.limit())
            .arg(cost);
        let (connection, target, timeout) =
            (self.connection.clone(), self.target.clone(), self.timeout);
        async move {
            let deadline = Instant::now() + timeout;
            let reply = connection
                .run_until(evalsha, deadline, &target, timeout)
                .await?;
            Counted::from_reply(&reply, 0, &target)
        }
    }
}

impl<C> RedisBackend<C> {
    /// How concurrent checks are grouped: `None` on a cluster (one call at a time).
    fn grouping(&self) -> Option<Grouping> {
        self.queue.as_deref().map(|queue| queue.sender().grouping)
    }
}

impl<C: fmt::Debug> fmt::Debug for RedisBackend<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
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

    use super::{Grouping, RedisBackend};
    use crate::Policy;

    fn policy() -> Policy {
        Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn a_single_server_pipelines_batching_is_for_it_only_and_survives_a_new_timeout() {
        // Nothing listens on port 1: both connect lazily, so no server is needed here.
        let default = RedisBackend::connect("redis://127.0.0.1:1", policy()).unwrap();
        assert_eq!(
            default.grouping(),
            Some(Grouping::Pipelined),
            "one call per check"
        );

        let single = RedisBackend::connect("redis://127.0.0.1:1", policy())
            .unwrap()
            .batch_checks()
            .timeout(Duration::from_millis(40));
        assert_eq!(
            single.grouping(),
            Some(Grouping::OneCall),
            "a later timeout keeps batching on"
        );

        let urls = ["redis://127.0.0.1:1".to_owned()];
        let cluster = RedisBackend::connect_cluster(&urls, policy())
            .unwrap()
            .batch_checks();
        assert_eq!(cluster.grouping(), None, "one call at a time on a cluster");
    }
}
