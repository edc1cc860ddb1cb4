//! A check against a set of policies on Redis: one call of `check_set.lua` on a key per
//! policy, all in the user's slot, all or nothing.

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use super::scripts::script_id;
use super::sender::Counted;
use super::{same_counter, RedisBackend};
use crate::backend::{BackendError, Check, RemoteFuture};
use crate::clock::Clock;
use crate::{Decisions, Policy, PolicySet};

impl<C: Clock> RedisBackend<C> {
    /// A check against a set other than the backend's own single policy.
    pub(super) fn check_set(&self, key: &str, policies: &PolicySet) -> Check<RemoteFuture> {
        let set = policies.clone();
        let decide = move |reply: Vec<i64>, _: &Arc<str>| {
            Decisions::from_fn(&set, |i, policy| {
                Counted::of_key(&reply, i).decision(policy)
            })
        };
        self.guard().call(
            key,
            policies,
            || Arc::<str>::from(key),
            |user| self.call_set(user, policies),
            decide,
        )
    }

    /// The Redis key of `user_id`'s state under `policy` in a set, unless it is the
    /// backend's own policy (whose key is [`key_of`](Self::key_of)):
    /// `<prefix>{<user id>}:<name>:<algorithm>:<window ms>`. A name, an algorithm and a
    /// window make one counter, as in memory: two policies of one name never share state.
    pub fn set_key_of(&self, user_id: &str, policy: &Policy) -> String {
        let mut key = self.key_of(user_id);
        key.push(':');
        key.push_str(policy.name().as_str());
        key.push(':');
        key.push_str(itoa::Buffer::new().format(script_id(policy.algorithm())));
        key.push(':');
        key.push_str(itoa::Buffer::new().format(policy.window_ms()));
        key
    }

    fn call_set(
        &self,
        user: &str,
        policies: &PolicySet,
    ) -> impl Future<Output = Result<Vec<i64>, BackendError>> + Send + 'static {
        // The backend's own policy keeps its own key, whichever set it is checked in.
        let own = self.local.policy_ref();
        let keys: Vec<String> = policies
            .iter()
            .map(|p| match same_counter(p, own) {
                true => self.key_of(user),
                false => self.set_key_of(user, p),
            })
            .collect();
        let key_bytes = keys.iter().map(String::len).sum();
        let mut evalsha = self.sets.evalsha(keys.len(), key_bytes);
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
        let (connection, target, timeout) = (self.sets.clone(), self.target.clone(), self.timeout);
        let expected = 3 * policies.len();
        async move {
            let deadline = Instant::now() + timeout;
            let reply = connection
                .run_until(evalsha, deadline, &target, timeout)
                .await?;
            if reply.len() != expected {
                let why = format!("{} numbers for {expected}", reply.len());
                return Err(BackendError::unavailable(&*target, why));
            }
            Ok(reply)
        }
    }
}
