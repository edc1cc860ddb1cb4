//! How a [`RedisBackend`] is set up: options gathered first, then the lazy connection,
//! the circuit and the queue made once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::RedisResult;

use super::check_set::{SetKeys, SetSender};
use super::connection::Connection;
use super::masters::Masters;
use super::queues::{Queues, Shared};
use super::scripts::CheckScript;
use super::sender::{Grouping, RedisSender};
use super::{RedisBackend, DEFAULT_PREFIX, DEFAULT_REDIS_TIMEOUT};
use crate::backend::{FailureMode, MemoryBackend, MemoryBuilder};
use crate::circuit::{Circuit, CircuitPolicy};
use crate::clock::{Clock, SystemClock};
use crate::observe::{redacted, Remote, RemoteMetrics};
use crate::PolicySet;

/// Where the counters are.
#[derive(Clone, Debug)]
pub(super) enum Server {
    /// One server, at this URL.
    Single(String),
    /// A Redis Cluster, reached first through these nodes' URLs.
    Cluster(Vec<String>),
}

/// The options of a [`RedisBackend`], from [`RedisBackend::builder`] or
/// [`RedisBackend::cluster_builder`]; nothing is connected or made until
/// [`build`](Self::build).
///
/// # Examples
///
/// ```no_run
/// use ringlimit::backend::{FailureMode, RedisBackend};
/// use ringlimit::Policy;
/// use std::{num::NonZeroU32, time::Duration};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
/// let backend = RedisBackend::builder(policy, "redis://127.0.0.1:6379")
///     .prefix("myapp:")
///     .timeout(Duration::from_millis(100))
///     .failure_mode(FailureMode::Deny)
///     .build()?;
/// # let _ = backend; Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until built"]
pub struct RedisBuilder<C = SystemClock> {
    server: Server,
    local: MemoryBuilder<C>,
    prefix: String,
    timeout: Duration,
    /// `None`: the default (batched on a single server; a cluster takes one key per call,
    /// pipelined per master).
    batch_checks: Option<bool>,
    failure_mode: FailureMode,
    circuit: CircuitPolicy,
}

impl RedisBuilder {
    pub(super) fn new(policy: PolicySet, server: Server) -> Self {
        Self {
            server,
            local: MemoryBackend::builder(policy),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            batch_checks: None,
            failure_mode: FailureMode::default(),
            circuit: CircuitPolicy::default(),
        }
    }
}

/// Whether `prefix` holds a `{` with a `}` after it: the hash tag of every key.
fn tags_every_key(prefix: &str) -> bool {
    prefix
        .find('{')
        .is_some_and(|open| prefix[open..].contains('}'))
}

impl<C: Clock> RedisBuilder<C> {
    /// Starts every key with `prefix` (default [`DEFAULT_PREFIX`]).
    ///
    /// On a Redis Cluster keep `{` and `}` out of it: a key's first `{...}` picks its
    /// slot, and must be the user id's, so that a user's keys share a slot (`{}` would
    /// split them, and `{app}` would put every user on one master); a cluster backend
    /// built with such a prefix logs a warning.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// Waits at most `timeout` for Redis on each check, queueing included (default
    /// [`DEFAULT_REDIS_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether checks that arrive while a script call is in flight go together in the
    /// next call (up to 128 keys per call), or each has a call of its own (concurrent
    /// calls then share a pipeline).
    ///
    /// On by default on a single server: under load one script call does the work of
    /// many, and each key is still decided atomically inside it, exact; a lone check
    /// still goes at once, and each waits at most the timeout, queueing included. On a
    /// Redis Cluster one call's keys must share a slot, so a cluster backend keeps one
    /// key per call (and logs a warning if asked to batch): the calls that queue for
    /// one master go to it as one pipeline.
    pub fn batch_checks(mut self, batch: bool) -> Self {
        self.batch_checks = Some(batch);
        self
    }

    /// What to answer when Redis cannot (default [`FailureMode::Local`]).
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// When the circuit to Redis opens and how long it stays open (default
    /// [`CircuitPolicy::default`]). On a cluster each master has a circuit of its own
    /// (and the checks sent before the slot map is read, one more).
    pub fn circuit(mut self, policy: CircuitPolicy) -> Self {
        self.circuit = policy;
        self
    }

    /// Tracks at most `max_keys` keys in the local fallback of [`FailureMode::Local`]
    /// (default [`DEFAULT_MAX_KEYS`](crate::backend::DEFAULT_MAX_KEYS)); see
    /// [`MemoryBuilder::max_keys`].
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.local = self.local.max_keys(max_keys);
        self
    }

    /// Reads the local fallback's time from `clock` (default [`SystemClock`]; for tests:
    /// the windows in Redis always follow the server's clock).
    pub fn clock<C2: Clock>(self, clock: C2) -> RedisBuilder<C2> {
        RedisBuilder {
            server: self.server,
            local: self.local.clock(clock),
            prefix: self.prefix,
            timeout: self.timeout,
            batch_checks: self.batch_checks,
            failure_mode: self.failure_mode,
            circuit: self.circuit,
        }
    }

    /// The backend, with its connection made lazily: Redis need not be up yet.
    ///
    /// # Errors
    ///
    /// If a URL is not a valid Redis URL.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the connection's reconnecting task runs there).
    pub fn build(self) -> RedisResult<RedisBackend<C>> {
        // The connection's own timeouts stay at the default whatever the checks' timeout:
        // it bounds each check, not a connection made in the background (a short one
        // could keep a distant Redis from ever being reached).
        let algorithm = self.local.policies().as_slice()[0].algorithm();
        let script = || CheckScript::for_algorithm(algorithm);
        let (connection, target) = match &self.server {
            // What errors, logs and metrics name it by: never its password.
            Server::Single(url) => (Connection::single(url, script())?, redacted(url)),
            Server::Cluster(urls) => (
                Connection::cluster(urls, DEFAULT_REDIS_TIMEOUT, script())?,
                urls.iter()
                    .map(|url| redacted(url))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        };
        let target: Arc<str> = target.into();
        let metrics = Arc::new(RemoteMetrics::new(Remote::Redis, &target));
        let policy = self.local.policies().as_slice()[0];
        let grouping = match (&self.server, self.batch_checks.unwrap_or(true)) {
            (Server::Cluster(_), _) => {
                if self.batch_checks == Some(true) {
                    tracing::warn!(target = %target, "batched checks need a single Redis server: one key per call on a cluster, pipelined per master");
                }
                if tags_every_key(&self.prefix) {
                    tracing::warn!(target = %target, prefix = %self.prefix, "the key prefix holds a hash tag (`{{...}}`): on a cluster it, not the user id, picks every key's slot, so all users share one master (or, with `{{}}`, a user's keys are split and set checks fail)");
                }
                Grouping::Pipelined
            }
            (Server::Single(_), false) => Grouping::Pipelined,
            (Server::Single(_), true) => Grouping::OneCall,
        };
        let sender = RedisSender {
            connection: connection.clone(),
            master: None,
            grouping,
            target: target.clone(),
            window_ms: policy.window().as_millis() as u64,
            limit: policy.limit(),
            timeout: self.timeout,
        };
        let shared = Shared {
            target: target.clone(),
            timeout: self.timeout,
            circuit: Arc::new(Circuit::new(&target, self.circuit, Arc::clone(&metrics))),
            metrics,
            masters: Arc::new(Masters::new(self.circuit)),
        };
        let queue = Queues::new(connection.clone(), sender, shared.clone());
        let set_keys = SetKeys {
            prefix: self.prefix.into(),
            own: policy,
        };
        // Set checks are pipelined whatever `batch_checks` says: each is its own call,
        // atomic alone.
        let sets = connection.with_script(CheckScript::for_sets());
        let sender = SetSender {
            connection: sets.clone(),
            master: None,
            keys: set_keys.clone(),
            target: target.clone(),
            timeout: self.timeout,
        };
        let set_queue = Queues::new(sets, sender, shared);
        Ok(RedisBackend {
            set_queue,
            set_keys,
            target,
            queue,
            timeout: self.timeout,
            failure: self.failure_mode,
            local: Arc::new(self.local.build()),
        })
    }
}

/// By hand: a Redis URL may carry a password.
impl<C: fmt::Debug> fmt::Debug for RedisBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = match self.server {
            Server::Single(_) => "single server",
            Server::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisBuilder")
            .field("server", &server)
            .field("local", &self.local)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("batch_checks", &self.batch_checks)
            .field("failure_mode", &self.failure_mode)
            .field("circuit", &self.circuit)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::tags_every_key;

    #[test]
    fn a_prefix_with_a_whole_hash_tag_is_noticed() {
        for tagged in ["{app}:", "a{}:", "x{y}z{"] {
            assert!(tags_every_key(tagged), "{tagged}");
        }
        for plain in ["ringlimit:", "", "a{", "a}{", "}"] {
            assert!(!tags_every_key(plain), "{plain}");
        }
    }
}
