//! A check against a set of policies on Redis: one call of `check_set.lua` on a key per
//! policy, all in the user's slot, all or nothing. The calls of set checks that arrive
//! together go in one pipeline (one write, one round trip; on a cluster, one per master),
//! as the single-policy checks' do.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::connection::Connection;
use super::pipelined::Pipelined;
use super::queues::ToMaster;
use super::scripts::script_id;
use super::sender::{Counted, MAX_REDIS_BATCH};
use super::slot_owners::slot_of;
use super::RedisBackend;
use crate::backend::{BackendError, Check, RemoteFuture};
use crate::clock::Clock;
use crate::coalesce::{Job, SendBatch};
use crate::{Decisions, Policy, PolicySet};

/// How a set's keys are named: `<prefix>{<user id>}` for the backend's own policy (the
/// key its single-policy checks use), `<prefix>{<user id>}:<name>:<algorithm>:<window
/// ms>` for any other, where an id that is empty or starts with `}`, after any
/// [`TAG_ESCAPE`]s, is written with one `TAG_ESCAPE` more (see [`SetKeys::user`]).
#[derive(Clone, Debug)]
pub(super) struct SetKeys {
    pub(super) prefix: Arc<str>,
    pub(super) own: Policy,
}

/// Written before a user id that would otherwise leave a key's hash tag empty, and
/// before such an id behind escapes already (`=}x`), so that two ids never share a key.
pub(super) const TAG_ESCAPE: char = '=';

/// Whether `user_id`, behind any escapes, is empty or starts with `}`.
fn needs_escape(user_id: &str) -> bool {
    let behind = user_id.trim_start_matches(TAG_ESCAPE);
    behind.is_empty() || behind.starts_with('}')
}

impl SetKeys {
    /// `<prefix>{<user id>}`, or `<prefix>{=<user id>}` if the id is empty or starts
    /// with `}`, after any `=`s.
    ///
    /// Redis Cluster hashes the part between the first `{` and the next `}`, or the whole
    /// key if that part is empty. An id that is empty or starts with `}` would leave it
    /// empty, and the keys of its set would fall in different slots: every set check of
    /// such an id (anyone can send one) would fail with `CROSSSLOT`. The escape keeps the
    /// tag non-empty. Ids that are such an id behind `=`s (`=`, `=}x`) get one `=` more
    /// too, so two ids never share a key; every other id, `=` in front or not, keeps the
    /// plain key.
    pub(super) fn user(&self, user_id: &str) -> String {
        let escaped = needs_escape(user_id);
        // Pushed piece by piece: this runs on every check, and `format!` showed in profiles.
        let mut key = String::with_capacity(self.prefix.len() + user_id.len() + 3);
        key.push_str(&self.prefix);
        key.push('{');
        if escaped {
            key.push(TAG_ESCAPE);
        }
        key.push_str(user_id);
        key.push('}');
        key
    }

    /// The key of `user_id`'s state under `policy` in a set.
    pub(super) fn of(&self, user_id: &str, policy: &Policy) -> String {
        let mut key = self.user(user_id);
        if !policy.counts_with(&self.own) {
            key.push(':');
            key.push_str(policy.name().as_str());
            key.push(':');
            key.push_str(itoa::Buffer::new().format(script_id(policy.algorithm())));
            key.push(':');
            key.push_str(itoa::Buffer::new().format(policy.window_ms()));
        }
        key
    }

    /// The set script's call for `user_id` against `policies`, on `connection`.
    fn evalsha(&self, connection: &Connection, user_id: &str, policies: &PolicySet) -> redis::Cmd {
        let keys: Vec<String> = policies.iter().map(|p| self.of(user_id, p)).collect();
        let key_bytes = keys.iter().map(String::len).sum();
        let mut evalsha = connection.evalsha(keys.len(), key_bytes);
        for key in &keys {
            evalsha.arg(key);
        }
        for policy in policies {
            evalsha
                .arg(script_id(policy.algorithm()))
                .arg(policy.window_ms())
                .arg(policy.limit())
                .arg(policy.cost().get())
                .arg(u8::from(policy.shadow()));
        }
        evalsha
    }
}

/// The script's reply for a set of `policies`, if it has three numbers per policy.
fn checked(reply: Vec<i64>, policies: &PolicySet, target: &str) -> Result<Vec<i64>, BackendError> {
    let expected = 3 * policies.len();
    if reply.len() != expected {
        let why = format!("{} numbers for {expected}", reply.len());
        return Err(BackendError::unavailable(target, why));
    }
    Ok(reply)
}

/// Sends set checks to Redis (a server or a cluster), a pipeline of calls at a time.
#[derive(Clone)]
pub(crate) struct SetSender {
    pub(super) connection: Connection,
    /// On a cluster, the master this sender's queue is for (see `queues`).
    pub(super) master: Option<ConnectionManager>,
    pub(super) keys: SetKeys,
    pub(super) target: Arc<str>,
    pub(super) timeout: Duration,
}

impl SendBatch for SetSender {
    type Answer = Vec<i64>;
    const MAX_BATCH: usize = MAX_REDIS_BATCH;
    /// One pipeline in flight, as for single checks (see `sender`).
    const IN_FLIGHT: usize = 1;

    async fn send(&self, batch: Vec<Job<Vec<i64>>>) {
        let pipelined = Pipelined {
            connection: &self.connection,
            master: self.master.as_ref(),
            target: &self.target,
            timeout: self.timeout,
        };
        pipelined
            .send(
                batch,
                |job| self.keys.evalsha(&self.connection, &job.key, &job.policies),
                |reply, job| checked(reply, &job.policies, &self.target),
            )
            .await;
    }
}

impl ToMaster for SetSender {
    fn to_master(&self, master: ConnectionManager) -> Self {
        Self {
            master: Some(master),
            ..self.clone()
        }
    }
}

impl<C: Clock> RedisBackend<C> {
    /// A check against a set other than the backend's own single policy.
    pub(super) fn check_set(&self, key: &str, policies: &PolicySet) -> Check<RemoteFuture> {
        let set = policies.clone();
        let decide = move |reply: Vec<i64>, _: &Arc<str>| {
            Decisions::from_fn(&set, |i, policy| {
                Counted::of_key(&reply, i).decision(policy)
            })
        };
        let user = || Arc::<str>::from(key);
        // The set's keys share the user's hash tag: the slot of its own key.
        let queue = &self.set_queue;
        let slot = queue
            .is_cluster()
            .then(|| slot_of(self.set_keys.user(key).as_bytes()));
        let route = queue.route(slot);
        self.guard(route.circuit()).call(
            key,
            policies,
            user,
            |user| route.queue().check(Arc::clone(user), policies.clone()),
            decide,
        )
    }

    /// The Redis key of `user_id`'s state under `policy` in a set: the backend's own
    /// policy's is [`key_of`](Self::key_of), any other's
    /// `<prefix>{<user id>}:<name>:<algorithm>:<window ms>` (with the id escaped as
    /// `key_of` says). A name, an algorithm and a window make one counter, as in memory:
    /// two policies of one name never share state.
    pub fn set_key_of(&self, user_id: &str, policy: &Policy) -> String {
        self.set_keys.of(user_id, policy)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::policy::PolicyName;

    // Regression: an id starting with `}` spread its set's keys over slots (CROSSSLOT).
    #[test]
    fn every_id_keeps_its_set_in_one_slot_and_its_keys_to_itself() {
        let own = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
        let other = own.with_name(PolicyName::new("burst").unwrap());
        let keys = SetKeys {
            prefix: "ringlimit:".into(),
            own,
        };
        assert_eq!(
            keys.user("alice"),
            "ringlimit:{alice}",
            "plain ids are unchanged"
        );
        assert_eq!(keys.user("a}b"), "ringlimit:{a}b}");
        assert_eq!(
            keys.user("=abc"),
            "ringlimit:{=abc}",
            "a plain id behind `=`"
        );
        assert_eq!(keys.user("}x"), "ringlimit:{=}x}");
        assert_eq!(keys.user("=}x"), "ringlimit:{==}x}");
        let ids = [
            "", "}", "}}", "}x", "=", "==", "=}", "==}", "=}x", "=x", "x", "x}", "{", "{}", "a=b",
        ];
        let mut seen = HashSet::new();
        for id in ids {
            let (own_key, other_key) = (keys.of(id, &own), keys.of(id, &other));
            assert!(seen.insert(own_key.clone()), "{id:?} shares {own_key}");
            assert!(seen.insert(other_key.clone()), "{id:?} shares {other_key}");
            assert_eq!(
                slot_of(own_key.as_bytes()),
                slot_of(other_key.as_bytes()),
                "{id:?}: {own_key} and {other_key} in one slot"
            );
        }
    }
}
