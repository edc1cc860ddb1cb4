//! Checks that queue up while earlier ones are on the wire go to Redis together (see
//! [`crate::coalesce`]): by default as one pipeline of script calls, one call and one key
//! per check; with [`Grouping::OneCall`], as one call of the same script on all their keys
//! (a single server only: on a cluster the keys of one call must share a slot). The
//! pipelines are sent by [`Pipelined`]: on a cluster, by each master's own sender (see
//! `queues`).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::connection::Connection;
use super::pipelined::Pipelined;
use super::queues::ToMaster;
use crate::coalesce::{fail_all, Job, SendBatch};
use crate::BackendError;

/// Keys per script call at most: the call blocks Redis while it runs, so keep it short.
pub(crate) const MAX_REDIS_BATCH: usize = 128;

/// One check's answer from the script.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counted {
    pub(super) allowed: bool,
    /// Units used in the window, this check included if allowed.
    pub(super) used: i64,
    /// Milliseconds until the window resets (for a sliding window or GCRA: until the
    /// policy is whole again, or, for a denial, until this cost fits).
    pub(super) reset_ms: i64,
}

impl Counted {
    /// The answer of the script (run on `target`) for its `i`-th key; `per_key` for the
    /// scripts that answer `{allowed, used, ms}` per key (see `scripts`).
    pub(super) fn from_reply(
        reply: &[i64],
        i: usize,
        target: &str,
        per_key: bool,
    ) -> Result<Self, BackendError> {
        let answer = match per_key {
            true => (reply.get(3 * i + 2), reply.get(3 * i), reply.get(3 * i + 1)),
            false => (reply.first(), reply.get(1 + 2 * i), reply.get(2 + 2 * i)),
        };
        let (Some(&reset_ms), Some(&allowed), Some(&used)) = answer else {
            let why = format!("the check script answered {reply:?}");
            return Err(BackendError::unavailable(target, why));
        };
        Ok(Self {
            allowed: allowed == 1,
            used,
            reset_ms,
        })
    }

    /// The answer of the set script for its `i`-th key (its length already checked).
    pub(super) fn of_key(reply: &[i64], i: usize) -> Self {
        Self {
            allowed: reply[3 * i] == 1,
            used: reply[3 * i + 1],
            reset_ms: reply[3 * i + 2],
        }
    }

    /// The decision under `policy`, bounded by it: Redis is outside this process.
    pub(super) fn decision(&self, policy: &crate::Policy) -> crate::Decision {
        let limit = policy.limit();
        let used = u32::try_from(self.used.max(0)).unwrap_or(u32::MAX);
        let reset = std::time::Duration::from_millis(self.reset_ms.max(0) as u64);
        crate::Decision::new(self.allowed, limit, limit.saturating_sub(used), reset)
            .bounded(policy.longest_reset())
    }
}

/// How a batch of checks is put to Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grouping {
    /// One script call per check, all in one pipeline: one write and one round trip for
    /// the batch, and still one key per call (the default).
    Pipelined,
    /// One script call on all the batch's keys ([`batch_checks`](super::RedisBuilder::batch_checks)):
    /// also saves Redis the cost of a script call per check.
    OneCall,
}

/// Sends batches of checks to Redis (a server or a cluster).
#[derive(Clone)]
pub(crate) struct RedisSender {
    pub(super) connection: Connection,
    /// On a cluster, the master this sender's queue is for (see `queues`).
    pub(super) master: Option<ConnectionManager>,
    pub(super) grouping: Grouping,
    pub(super) target: Arc<str>,
    /// The script's fixed arguments: window length in ms, limit.
    pub(super) window_ms: u64,
    pub(super) limit: u32,
    pub(super) timeout: Duration,
}

impl SendBatch for RedisSender {
    type Answer = Counted;
    const MAX_BATCH: usize = MAX_REDIS_BATCH;
    /// One call in flight: two or more measured no better (BENCHMARKS.md), and the
    /// checks queued behind it share the next call.
    const IN_FLIGHT: usize = 1;

    async fn send(&self, batch: Vec<Job<Counted>>) {
        match self.grouping {
            Grouping::Pipelined => self.send_pipelined(batch).await,
            Grouping::OneCall => self.send_in_one_call(batch).await,
        }
    }
}

impl ToMaster for RedisSender {
    fn to_master(&self, master: ConnectionManager) -> Self {
        Self {
            master: Some(master),
            ..self.clone()
        }
    }
}

impl RedisSender {
    /// One script call on the keys of `jobs`.
    fn evalsha(&self, jobs: &[Job<Counted>]) -> redis::Cmd {
        let key_bytes = jobs.iter().map(|job| job.key.len()).sum();
        let mut evalsha = self.connection.evalsha(jobs.len(), key_bytes);
        for job in jobs {
            evalsha.arg(&*job.key);
        }
        evalsha.arg(self.window_ms).arg(self.limit);
        for job in jobs {
            evalsha.arg(job.policies.as_slice()[0].cost().get());
        }
        evalsha
    }

    async fn send_pipelined(&self, batch: Vec<Job<Counted>>) {
        let per_key = self.connection.per_key_reply();
        let pipelined = Pipelined {
            connection: &self.connection,
            master: self.master.as_ref(),
            target: &self.target,
            timeout: self.timeout,
        };
        pipelined
            .send(
                batch,
                |job| self.evalsha(std::slice::from_ref(job)),
                |reply, _| Counted::from_reply(&reply, 0, &self.target, per_key),
            )
            .await;
    }

    async fn send_in_one_call(&self, batch: Vec<Job<Counted>>) {
        let deadline = batch[0].deadline;
        let evalsha = self.evalsha(&batch);
        let ran = self
            .connection
            .run_until(evalsha, deadline, &self.target, self.timeout);
        match ran.await {
            Ok(reply) => {
                for (i, job) in batch.into_iter().enumerate() {
                    let _ = job.reply.send(Counted::from_reply(
                        &reply,
                        i,
                        &self.target,
                        self.connection.per_key_reply(),
                    ));
                }
            }
            Err(error) => fail_all(batch, &error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Counted;

    #[test]
    fn each_check_reads_its_own_pair_after_the_reset() {
        let reply = [1500, 1, 3, 0, 5];
        let second = Counted::from_reply(&reply, 1, "redis", false).unwrap();
        assert!(!second.allowed);
        assert_eq!((second.used, second.reset_ms), (5, 1500));
    }

    #[test]
    fn a_short_reply_is_an_error_not_a_panic() {
        for reply in [&[][..], &[1500], &[1500, 1, 3]] {
            assert!(
                Counted::from_reply(reply, 1, "redis", false).is_err(),
                "{reply:?}"
            );
        }
    }
}
