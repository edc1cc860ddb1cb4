//! The check script on one shared, multiplexed connection to Redis (to a Redis Cluster,
//! the cluster client's, and one of its own to each master), made lazily so that a node
//! starts (and answers per its failure mode) while Redis is down: loaded once, reloaded
//! on `NOSCRIPT`, called alone or as a pipeline of calls.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::{ErrorKind, IntoConnectionInfo, RedisResult, Script, ServerErrorKind, Value};
use tokio::time::Instant;

use super::live::{LazyCluster, Live};
use super::scripts::CheckScript;
use super::slot_owners::SlotMap;
use crate::backend::within;
use crate::BackendError;

/// Where the counters live, and whether the check script has been loaded there.
#[derive(Clone)]
pub(super) struct Connection {
    target: Target,
    script: Arc<CheckScript>,
    /// Set once `SCRIPT LOAD` has succeeded, so that concurrent first checks do not each
    /// pay a `NOSCRIPT` round trip.
    loaded: Arc<tokio::sync::OnceCell<()>>,
}

#[derive(Clone)]
enum Target {
    /// One server, through the connection manager: one multiplexed connection shared by
    /// all checks, re-established in the background after Redis restarts.
    Single(ConnectionManager),
    /// A cluster, through the cluster client (one multiplexed connection per master),
    /// and the slot map with a connection of its own to each master (for pipelines).
    Cluster(Arc<LazyCluster>),
}

impl Connection {
    /// A lazy connection to the server at `url`.
    ///
    /// Must be called within a Tokio runtime (the manager's reconnection task runs there).
    pub(super) fn single(url: &str, script: CheckScript) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let manager = client.get_connection_manager_lazy(manager_config())?;
        Ok(Self::new(Target::Single(manager), script))
    }

    /// A lazy connection to the cluster that `urls` (some of its nodes) belong to.
    pub(super) fn cluster(
        urls: &[String],
        timeout: Duration,
        script: CheckScript,
    ) -> RedisResult<Self> {
        let client = ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1)
            .build()?;
        // How to reach each master on a connection of its own: as the first node given.
        let base = urls
            .first()
            .map_or("", String::as_str)
            .into_connection_info()?;
        let target = Target::Cluster(Arc::new(LazyCluster::new(client, base)));
        Ok(Self::new(target, script))
    }

    fn new(target: Target, script: CheckScript) -> Self {
        Self {
            target,
            script: Arc::new(script),
            loaded: Arc::default(),
        }
    }

    /// The same server or cluster, and its connection, calling `script` instead.
    pub(super) fn with_script(&self, script: CheckScript) -> Self {
        Self {
            target: self.target.clone(),
            script: Arc::new(script),
            loaded: Arc::default(),
        }
    }

    /// Whether this is a cluster's connection.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// Which master serves each slot, as last read (none on a single server, nor on a
    /// cluster before the first read).
    pub(super) fn slot_map(&self) -> Option<Arc<SlotMap>> {
        match &self.target {
            Target::Single(_) => None,
            Target::Cluster(cluster) => cluster.owners().current(),
        }
    }

    /// The master that serves `slot` in the slot map as last read, with that map (none
    /// on a single server, before the first read, or for a slot the map does not know).
    /// Borrowed, not counted: every check of a cluster reads it.
    pub(super) fn master_of(
        &self,
        slot: u16,
    ) -> Option<(arc_swap::Guard<Option<Arc<SlotMap>>>, u16)> {
        let Target::Cluster(cluster) = &self.target else {
            return None;
        };
        let map = cluster.owners().borrowed();
        let master = map.as_deref()?.master_of(slot)?;
        Some((map, master))
    }

    /// Keeps the slot map of a `CLUSTER SLOTS` reply, as if just read.
    #[cfg(test)]
    pub(super) fn store_slot_map(&self, reply: &Value) {
        let Target::Cluster(cluster) = &self.target else {
            panic!("a single server has no slot map");
        };
        cluster.owners().store(reply).expect("a map of masters");
    }

    /// Reads the cluster's slot map again soon (see [`LazyCluster::refresh_slots`]).
    pub(super) fn refresh_slot_map(&self) {
        if let Target::Cluster(cluster) = &self.target {
            cluster.refresh_slots();
        }
    }

    /// Whether the script answers `{allowed, used, ms}` per key (see `scripts`).
    pub(super) fn per_key_reply(&self) -> bool {
        self.script.per_key_reply
    }

    /// The check script's call on `keys` keys, without its keys and arguments yet:
    /// built straight from them, without an intermediate invocation. `key_bytes` (the
    /// keys' length in all) sizes it once, so adding the arguments does not regrow it.
    pub(super) fn evalsha(&self, keys: usize, key_bytes: usize) -> redis::Cmd {
        // EVALSHA, the hash, the key count, the keys, window and limit, a cost per key;
        // numbers take at most 20 bytes.
        let args = 5 + 2 * keys;
        let mut evalsha = redis::Cmd::with_capacity(args, 7 + 40 + key_bytes + 20 * (3 + keys));
        evalsha
            .arg("EVALSHA")
            .arg(self.script.script.get_hash())
            .arg(keys);
        evalsha
    }

    /// Runs `evalsha` until `deadline`, with its failure as a [`BackendError`] of `target`
    /// (`timeout` being what the deadline allowed). It goes as a pipeline of one, so that
    /// one path handles `NOSCRIPT` and broken connections for every call.
    pub(super) async fn run_until(
        &self,
        evalsha: redis::Cmd,
        deadline: Instant,
        target: &str,
        timeout: Duration,
    ) -> Result<Vec<i64>, BackendError> {
        let mut alone = Self::pipeline(1);
        alone.add_command(evalsha);
        let mut answers = self
            .run_each_until(&alone, None, deadline, target, timeout)
            .await?;
        match answers.pop() {
            Some(answer) => answer.map_err(|error| BackendError::unavailable(target, error)),
            None => Err(BackendError::unavailable(target, "no answer to the call")),
        }
    }

    /// An empty pipeline for [`run_each_until`](Self::run_each_until): it answers each
    /// call on its own, errors included.
    pub(super) fn pipeline(calls: usize) -> redis::Pipeline {
        let mut pipeline = redis::Pipeline::with_capacity(calls);
        pipeline.ignore_errors();
        pipeline
    }

    /// Runs each call of `calls` (a [`pipeline`](Self::pipeline) of
    /// [`evalsha`](Self::evalsha)s) until `deadline`: one write and one round trip for all
    /// of them, and each call's own answer. On a cluster, `on` is the connection of the
    /// master to send them to ([`SlotMap::connection`]); without it they must share a slot.
    pub(super) async fn run_each_until(
        &self,
        calls: &redis::Pipeline,
        on: Option<ConnectionManager>,
        deadline: Instant,
        target: &str,
        timeout: Duration,
    ) -> Result<Vec<RedisResult<Vec<i64>>>, BackendError> {
        within(
            deadline,
            timeout,
            target.to_owned(),
            self.run_each(calls, on),
        )
        .await
    }

    async fn run_each(
        &self,
        calls: &redis::Pipeline,
        on: Option<ConnectionManager>,
    ) -> RedisResult<Vec<RedisResult<Vec<i64>>>> {
        let mut connection = self.live(on.clone()).await?;
        match self
            .call_each(&self.script.script, calls, &mut connection)
            .await
        {
            Err(error) if is_broken(&error) => {
                let mut connection = self.live(on).await?;
                self.call_each(&self.script.script, calls, &mut connection)
                    .await
            }
            answers => answers,
        }
    }

    /// Sends `calls` as one pipeline; those the server answers `NOSCRIPT` (it lost the
    /// script: none of them ran) go again, once, after loading it. The others ran and
    /// counted, so they are not repeated.
    async fn call_each(
        &self,
        script: &Script,
        calls: &redis::Pipeline,
        connection: &mut Live,
    ) -> RedisResult<Vec<RedisResult<Vec<i64>>>> {
        self.load_once(script, connection).await?;
        let answers: Vec<Value> = calls.query_async(connection).await?;
        let mut answers: Vec<RedisResult<Vec<i64>>> = answers.into_iter().map(numbers).collect();
        let lost: Vec<usize> = (0..answers.len())
            .filter(|&i| matches!(&answers[i], Err(error) if is_no_script(error)))
            .collect();
        if !lost.is_empty() {
            // The other calls ran: whatever happens now, their answers are kept (an error
            // here would send them all again, and count them twice).
            let calls: Vec<&redis::Cmd> = calls.cmd_iter().collect();
            let mut again = Self::pipeline(lost.len());
            for &i in &lost {
                again.add_command(calls[i].clone());
            }
            let loaded = script.prepare_invoke().load_async(connection).await;
            let again: RedisResult<Vec<Value>> = match loaded {
                Ok(_) => again.query_async(connection).await,
                Err(error) => Err(error),
            };
            match again {
                Ok(again) => {
                    for (&i, answer) in lost.iter().zip(again) {
                        answers[i] = numbers(answer);
                    }
                }
                Err(error) => {
                    for &i in &lost {
                        answers[i] = Err(error.clone());
                    }
                }
            }
        }
        Ok(answers)
    }

    /// The connection to use now: the manager's, a cluster master's (`on`), or the
    /// cluster's (made if need be).
    async fn live(&self, on: Option<ConnectionManager>) -> RedisResult<Live> {
        Ok(match (&self.target, on) {
            (Target::Single(manager), _) => Live::Single(manager.clone()),
            (Target::Cluster(_), Some(master)) => Live::Single(master),
            (Target::Cluster(cluster), None) => Live::Cluster(cluster.connection().await?),
        })
    }

    /// Loads `script` the first time; later `NOSCRIPT`s are handled by
    /// [`call_each`](Self::call_each).
    async fn load_once(&self, script: &Script, connection: &mut Live) -> RedisResult<()> {
        self.loaded
            .get_or_try_init(|| async {
                script
                    .prepare_invoke()
                    .load_async(connection)
                    .await
                    .map(drop)
            })
            .await
            .copied()
    }
}

/// How each connection to one server (or a cluster's master) is kept. No response
/// timeout: the backend already bounds each check, and a second timer per command would
/// only cost. Connecting is bounded by [`DEFAULT_REDIS_TIMEOUT`](super::DEFAULT_REDIS_TIMEOUT)
/// whatever the checks' own timeout: it is done in the background, and a shorter one
/// could keep a distant Redis from ever being reached.
pub(super) fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(super::DEFAULT_REDIS_TIMEOUT))
        .set_response_timeout(None)
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

/// Whether a cluster's master refused a call, without running it, because the call's key
/// is served elsewhere: `MOVED` or `ASK` (the slot map was stale), or `READONLY` (the
/// master became a replica). The cluster client, routing by the key, finds where. Calls
/// refused because the cluster cannot serve them yet (`TRYAGAIN`, `CLUSTERDOWN`, ...)
/// are not: the cluster client waits over a second before it asks again, longer than a
/// check may wait.
pub(super) fn did_not_run(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::ReadOnly
        )
    )
}

/// One call's answer in a pipeline: its numbers, or its own error (a server error, or a
/// reply that is not a list of numbers), which does not fail the other calls.
fn numbers(answer: Value) -> RedisResult<Vec<i64>> {
    redis::from_redis_value::<RedisResult<Vec<i64>>>(answer)?
}

/// Whether the connection was found broken (Redis restarted, say). The manager makes a
/// new one, and the call goes once more on it, within the same deadline, before the
/// failure mode decides: without that, every idle node's first check after a restart
/// was counted on the node, and a user got the limit again there. A server that
/// restarted lost the call with the connection; only a call that ran and then lost its
/// answer to a broken connection can be counted twice, and only by one. A refused
/// connection (Redis down) is not retried: it would only wait for the next attempt.
fn is_broken(error: &redis::RedisError) -> bool {
    error.is_connection_dropped() && !error.is_connection_refusal()
}

/// Whether the server has lost the script (after a restart or a `SCRIPT FLUSH`).
fn is_no_script(error: &redis::RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn only_a_key_served_elsewhere_is_sent_again() {
        let refused = |reply: &[u8]| {
            let value = redis::parse_redis_value(reply).unwrap();
            super::did_not_run(&super::numbers(value).unwrap_err())
        };
        assert!(refused(b"-MOVED 3999 127.0.0.1:6381\r\n"));
        assert!(refused(b"-ASK 3999 127.0.0.1:6381\r\n"));
        assert!(refused(
            b"-READONLY You can't write against a read only replica.\r\n"
        ));
        for ran_or_waits in [
            &b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"[..],
            b"-CLUSTERDOWN The cluster is down\r\n",
            b"-NOSCRIPT No matching script.\r\n",
            b"-ERR user_script:1: boom\r\n",
            b"-BUSY Redis is busy running a script.\r\n",
        ] {
            assert!(
                !refused(ran_or_waits),
                "{}",
                String::from_utf8_lossy(ran_or_waits)
            );
        }
        // A reply that is no list of numbers is no refusal either.
        assert!(!super::did_not_run(
            &super::numbers(redis::Value::Okay).unwrap_err()
        ));
    }

    use tokio::time::Instant;

    use super::super::test_server::{available, RedisServer};
    use super::Connection;

    #[tokio::test]
    #[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
    async fn a_pipeline_runs_again_only_the_calls_that_found_no_script() {
        if !available("a_pipeline_runs_again_only_the_calls_that_found_no_script") {
            return;
        }
        let server = RedisServer::start();
        let timeout = Duration::from_secs(5);
        let script = super::super::scripts::CheckScript::for_algorithm(
            crate::policy::Algorithm::FixedWindow,
        );
        let connection = Connection::single(&server.url(), script).unwrap();
        let check = |key: &str| {
            let mut evalsha = connection.evalsha(1, key.len());
            evalsha.arg(key).arg(60_000).arg(10).arg(1);
            evalsha
        };
        // The server loses the script in the middle of the pipeline: the first check has
        // counted by then, the last has not.
        let mut calls = Connection::pipeline(3);
        calls.add_command(check("{a}"));
        calls.add_command(redis::cmd("SCRIPT").arg("FLUSH").clone());
        calls.add_command(check("{b}"));
        let deadline = Instant::now() + timeout;
        let answers = connection
            .run_each_until(&calls, None, deadline, "redis", timeout)
            .await
            .expect("the pipeline ran");

        let used = |i: usize| answers[i].as_ref().map(|reply| reply[2]).ok();
        assert_eq!(used(0), Some(1), "{answers:?}");
        assert!(
            answers[1].is_err(),
            "OK is no check answer, and fails alone"
        );
        assert_eq!(used(2), Some(1), "run again once the script was loaded");
        for key in ["{a}", "{b}"] {
            assert_eq!(
                server.counter(key).as_deref(),
                Some("1"),
                "{key} counted once"
            );
        }
        assert_eq!(server.calls("evalsha"), 3, "{{b}} twice, {{a}} once");
    }

    // Regression: when loading the script again failed, the whole pipeline was answered
    // as failed (and, on a broken connection, sent again): the calls that had run were
    // counted, then decided by the failure mode, or counted twice.
    #[tokio::test]
    #[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
    async fn the_calls_that_ran_keep_their_answers_when_the_script_cannot_be_loaded_again() {
        if !available(
            "the_calls_that_ran_keep_their_answers_when_the_script_cannot_be_loaded_again",
        ) {
            return;
        }
        let server = RedisServer::start();
        let timeout = Duration::from_secs(5);
        let script = super::super::scripts::CheckScript::for_algorithm(
            crate::policy::Algorithm::FixedWindow,
        );
        let connection = Connection::single(&server.url(), script).unwrap();
        let check = |key: &str| {
            let mut evalsha = connection.evalsha(1, key.len());
            evalsha.arg(key).arg(60_000).arg(10).arg(1);
            evalsha
        };
        // The server loses the script, then the right to load it, in the middle.
        let mut calls = Connection::pipeline(4);
        calls.add_command(check("{a}"));
        calls.add_command(redis::cmd("SCRIPT").arg("FLUSH").clone());
        calls.add_command(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("default")
                .arg("-script|load")
                .clone(),
        );
        calls.add_command(check("{b}"));
        let deadline = Instant::now() + timeout;
        let answers = connection
            .run_each_until(&calls, None, deadline, "redis", timeout)
            .await
            .expect("the calls that ran are answered");
        assert_eq!(answers[0].as_ref().map(|reply| reply[2]).ok(), Some(1));
        assert!(answers[3].is_err(), "{{b}} never ran: {answers:?}");
        assert_eq!(
            server.counter("{a}").as_deref(),
            Some("1"),
            "{{a}} counted once"
        );
        assert_eq!(server.counter("{b}"), None);
    }
}
