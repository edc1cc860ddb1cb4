//! A batch of script calls sent as pipelines, each call its own and answered on its own:
//! to a single server, one pipeline; to a cluster, one pipeline to each master that
//! serves some of the batch's keys, all at once, on the master's own connection (see
//! `slot_owners`). A call the master refuses without running it (`MOVED`, `ASK`,
//! `TRYAGAIN`, ...: see [`did_not_run`]) goes again alone through the cluster client,
//! which follows redirects and waits out a moving slot, and the slot map is read again;
//! so is it when a master's pipeline fails whole (the master may be gone). Until the map
//! is first read, a cluster's calls each go alone through the cluster client.
//!
//! The groups of a batch are answered together: a master that does not answer holds its
//! batch up to the checks' timeout, and its failures open the backend's circuit (one for
//! the whole cluster).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::connection::{did_not_run, Connection};
use super::slot_owners::SlotMap;
use crate::coalesce::{fail_all, Job};
use crate::BackendError;

/// A batch of calls to send, each answered on its own.
pub(super) struct Pipelined<'a> {
    pub(super) connection: &'a Connection,
    pub(super) target: &'a Arc<str>,
    pub(super) timeout: Duration,
}

/// Jobs bound for one master (an index into the slot map), or routed by the cluster
/// client, or to a single server (`None`).
type Group<A> = (Option<u16>, Vec<Job<A>>);

impl Pipelined<'_> {
    /// Sends `call` of each job of `batch` and replies to each with `answer` of its reply
    /// (or the error of its call, or of its whole pipeline). On a cluster, `slot` is the
    /// slot of a job's call (all its keys share it).
    pub(super) async fn send<A>(
        &self,
        batch: Vec<Job<A>>,
        slot: impl Fn(&Job<A>) -> u16,
        call: impl Fn(&Job<A>) -> redis::Cmd,
        answer: impl Fn(Vec<i64>, &Job<A>) -> Result<A, BackendError>,
    ) {
        let map = self.connection.slot_map();
        let groups = match (self.connection.is_cluster(), &map) {
            (false, _) => vec![(None, batch)],
            (true, None) => {
                self.connection.refresh_slot_map();
                batch.into_iter().map(|job| (None, vec![job])).collect()
            }
            (true, Some(map)) => by_master(batch, map, slot),
        };
        let sends = groups.into_iter().map(|(master, jobs)| {
            let on = master.zip(map.as_deref()).map(|(i, map)| map.connection(i));
            self.send_on(on, jobs, &call, &answer)
        });
        join_all(sends).await;
    }

    /// Sends the calls of `jobs` as one pipeline (to the master `on`, if given) and
    /// answers each; the calls it refused without running go again alone.
    async fn send_on<A>(
        &self,
        on: Option<ConnectionManager>,
        jobs: Vec<Job<A>>,
        call: &impl Fn(&Job<A>) -> redis::Cmd,
        answer: &impl Fn(Vec<i64>, &Job<A>) -> Result<A, BackendError>,
    ) {
        let on_master = on.is_some();
        let mut answers = match self.run(on, &jobs, call).await {
            Ok(answers) => answers.into_iter(),
            Err(error) => {
                if on_master {
                    self.connection.refresh_slot_map();
                }
                return fail_all(jobs, &error);
            }
        };
        let mut unrun = Vec::new();
        for job in jobs {
            match answers.next() {
                Some(Err(error)) if on_master && did_not_run(&error) => unrun.push(job),
                ran => self.reply(job, ran, answer),
            }
        }
        if !unrun.is_empty() {
            self.connection.refresh_slot_map();
            let alone = unrun
                .into_iter()
                .map(|job| self.send_alone(job, call, answer));
            join_all(alone).await;
        }
    }

    /// Sends `job`'s call alone, routed by the cluster client (which follows redirects
    /// and waits out a moving slot).
    async fn send_alone<A>(
        &self,
        job: Job<A>,
        call: &impl Fn(&Job<A>) -> redis::Cmd,
        answer: &impl Fn(Vec<i64>, &Job<A>) -> Result<A, BackendError>,
    ) {
        match self.run(None, std::slice::from_ref(&job), call).await {
            Ok(answers) => self.reply(job, answers.into_iter().next(), answer),
            Err(error) => fail_all(vec![job], &error),
        }
    }

    /// The calls of `jobs` in one pipeline, sent `on` a master if given, until the first
    /// job's deadline (the oldest of them: jobs keep their batch's order).
    async fn run<A>(
        &self,
        on: Option<ConnectionManager>,
        jobs: &[Job<A>],
        call: &impl Fn(&Job<A>) -> redis::Cmd,
    ) -> Result<Vec<redis::RedisResult<Vec<i64>>>, BackendError> {
        let mut calls = Connection::pipeline(jobs.len());
        for job in jobs {
            calls.add_command(call(job));
        }
        self.connection
            .run_each_until(&calls, on, jobs[0].deadline, self.target, self.timeout)
            .await
    }

    /// Answers `job` with `answer` of the reply its call `ran` to.
    fn reply<A>(
        &self,
        job: Job<A>,
        ran: Option<redis::RedisResult<Vec<i64>>>,
        answer: &impl Fn(Vec<i64>, &Job<A>) -> Result<A, BackendError>,
    ) {
        let answered = match ran {
            Some(Ok(reply)) => answer(reply, &job),
            Some(Err(error)) => Err(BackendError::unavailable(&**self.target, error)),
            None => Err(BackendError::unavailable(
                &**self.target,
                "fewer answers than calls",
            )),
        };
        let _ = job.reply.send(answered);
    }
}

/// `batch` in one group per master, as `map` says; the jobs of slots it does not know
/// each in a group of its own, routed by the cluster client.
fn by_master<A>(batch: Vec<Job<A>>, map: &SlotMap, slot: impl Fn(&Job<A>) -> u16) -> Vec<Group<A>> {
    let mut keyed: Vec<(Option<u16>, Job<A>)> = batch
        .into_iter()
        .map(|job| (map.master_of(slot(&job)), job))
        .collect();
    keyed.sort_by_key(|(master, _)| *master);
    let mut groups: Vec<Group<A>> = Vec::new();
    for (master, job) in keyed {
        match groups.last_mut() {
            Some((last, jobs)) if master.is_some() && *last == master => jobs.push(job),
            _ => groups.push((master, vec![job])),
        }
    }
    groups
}

/// Drives `sends` together until all are done (the groups of a batch go at once).
async fn join_all<F: Future<Output = ()>>(sends: impl Iterator<Item = F>) {
    let mut sends: Vec<Pin<Box<F>>> = sends.map(Box::pin).collect();
    poll_fn(|cx| {
        sends.retain_mut(|send| send.as_mut().poll(cx).is_pending());
        match sends.is_empty() {
            true => std::task::Poll::Ready(()),
            false => std::task::Poll::Pending,
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::num::NonZeroU32;
    use std::sync::Arc;
    use std::time::Duration;

    use redis::{IntoConnectionInfo, Value};
    use tokio::sync::oneshot;
    use tokio::time::Instant;

    use super::super::slot_owners::{slot_of, SlotMap, SlotOwners};
    use super::super::test_server::{available, RedisCluster, RedisServer};
    use super::super::RedisBackend;
    use super::{by_master, Group};
    use crate::coalesce::Job;
    use crate::{Backend, Check, Policy, PolicySet};

    fn policy(limit: u32) -> Policy {
        Policy::per_window(NonZeroU32::new(limit).unwrap(), Duration::from_secs(3600))
    }

    fn jobs(users: usize) -> Vec<Job<()>> {
        (0..users)
            .map(|u| Job {
                key: format!("ringlimit:{{user-{u}}}").into(),
                policies: PolicySet::from(policy(1)),
                deadline: Instant::now() + Duration::from_secs(1),
                reply: oneshot::channel().0,
            })
            .collect()
    }

    fn key_slot(job: &Job<()>) -> u16 {
        slot_of(job.key.as_bytes())
    }

    fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
        let master = vec![Value::BulkString(host.into()), Value::Int(port)];
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(master),
        ])
    }

    /// Each group's keys are all served by its master, no master has two groups, and a
    /// key of no known master goes alone.
    fn assert_grouped(groups: &[Group<()>], map: &SlotMap, jobs: usize) {
        assert_eq!(groups.iter().map(|(_, g)| g.len()).sum::<usize>(), jobs);
        let mut masters = HashSet::new();
        for (master, group) in groups {
            match master {
                Some(master) => assert!(masters.insert(*master), "one group per master"),
                None => assert_eq!(group.len(), 1, "an unknown slot's check goes alone"),
            }
            for job in group {
                assert_eq!(map.master_of(key_slot(job)), *master, "{}", job.key);
            }
        }
    }

    #[tokio::test]
    async fn a_batch_is_grouped_by_master_and_unknown_slots_go_alone() {
        let owners = SlotOwners::new("redis://127.0.0.1:1".into_connection_info().unwrap());
        // Slots past 16000 have no master here.
        let reply = Value::Array(vec![
            range(0, 8191, "127.0.0.1", 1),
            range(8192, 16000, "127.0.0.1", 2),
        ]);
        owners.store(&reply).unwrap();
        let map = owners.current().unwrap();
        let groups = by_master(jobs(200), &map, key_slot);
        assert_grouped(&groups, &map, 200);
        let known = groups.iter().filter(|(master, _)| master.is_some()).count();
        let alone = groups.len() - known;
        assert_eq!(known, 2);
        assert!(alone > 0, "some of 200 users fall past slot 16000");
    }

    /// The backend's cluster map, once it has been read (at most 5 s).
    async fn read_map(backend: &RedisBackend) -> Arc<SlotMap> {
        let connection = &backend.queue.sender().connection;
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(map) = connection.slot_map() {
                return map;
            }
            assert!(Instant::now() < until, "the slot map was never read");
            connection.refresh_slot_map();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many times `server` answered `error` (`MOVED`, say) since it started.
    fn errors(server: &RedisServer, error: &str) -> u64 {
        let stats = server.cli(&["INFO", "errorstats"]).unwrap_or_default();
        let prefix = format!("errorstat_{error}:count=");
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether `server` serves `key` itself (a cluster node answers `MOVED` otherwise).
    fn serves(server: &RedisServer, key: &str) -> bool {
        let reply = server.cli(&["TYPE", key]).unwrap_or_default();
        matches!(reply.trim(), "none" | "hash")
    }

    #[tokio::test]
    #[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
    async fn a_batch_goes_to_each_master_with_the_keys_it_serves() {
        if !available("a_batch_goes_to_each_master_with_the_keys_it_serves") {
            return;
        }
        let cluster = RedisCluster::start();
        let backend = RedisBackend::cluster_builder(policy(5), &cluster.urls())
            .build()
            .unwrap();
        // The slots are the cluster's own, hash tags and all.
        for key in [
            "foo",
            "{}foo",
            "a{foo",
            "a{b}c{d}",
            "ringlimit:{x}y}",
            "{{x}}",
        ] {
            let theirs = cluster.servers[0]
                .cli(&["CLUSTER", "KEYSLOT", key])
                .unwrap();
            assert_eq!(theirs.trim(), slot_of(key.as_bytes()).to_string(), "{key}");
        }
        let map = read_map(&backend).await;
        let groups = by_master(jobs(60), &map, key_slot);
        assert_grouped(&groups, &map, 60);
        assert_eq!(groups.len(), 3, "one pipeline for each of three masters");
        for (master, group) in &groups {
            let (_, port) = map.address(master.expect("every slot is served"));
            let server = cluster.servers.iter().find(|s| s.port == *port).unwrap();
            for job in group {
                assert!(serves(server, &job.key), "{} not on {port}", job.key);
            }
        }
    }

    // A stale map sends calls to a master that no longer serves their slot: it answers
    // MOVED without running them, and they must go again where they belong, counted once
    // (not failed, which would hand them to the failure mode).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
    async fn a_stale_map_costs_a_redirect_not_a_count() {
        if !available("a_stale_map_costs_a_redirect_not_a_count") {
            return;
        }
        let cluster = RedisCluster::start();
        let backend = RedisBackend::cluster_builder(policy(10), &cluster.urls())
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        // Every slot on the first master, as if the others had just taken theirs.
        let first = i64::from(cluster.servers[0].port);
        let stale = Value::Array(vec![range(0, 16383, "127.0.0.1", first)]);
        backend.queue.sender().connection.store_slot_map(&stale);

        let backend = Arc::new(backend);
        let users: Vec<String> = (0..30).map(|u| format!("user-{u}")).collect();
        let checks: Vec<_> = users
            .iter()
            .chain(&users)
            .map(|user| {
                let backend = Arc::clone(&backend);
                let user = user.clone();
                tokio::spawn(async move {
                    let set = PolicySet::from(policy(10));
                    match backend.check(&user, &set) {
                        Check::Ready(decided) => decided,
                        Check::Pending(decided) => decided.await,
                    }
                })
            })
            .collect();
        for check in checks {
            let decided = check.await.unwrap().expect("Redis answered");
            assert!(decided.allowed());
        }
        assert_eq!(
            backend.local().tracked_keys(),
            0,
            "nothing fell back to local"
        );
        for user in &users {
            let key = backend.key_of(user);
            let counted: Vec<String> = cluster
                .servers
                .iter()
                .filter(|server| serves(server, &key))
                .filter_map(|server| server.counter(&key))
                .collect();
            assert_eq!(counted, ["2"], "{key} counted twice, on its master alone");
        }
        assert!(
            errors(&cluster.servers[0], "MOVED") > 0,
            "sent to the first master"
        );
        for server in &cluster.servers[1..] {
            let keys: u32 = server.cli(&["DBSIZE"]).unwrap().trim().parse().unwrap();
            assert!(keys > 0, "redirected from the first master and counted");
        }
        // The redirects had the map read again: three masters in it.
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let map = backend.queue.sender().connection.slot_map().unwrap();
            let masters: HashSet<_> = jobs(60)
                .iter()
                .map(|job| map.master_of(key_slot(job)))
                .collect();
            if masters.len() == 3 {
                break;
            }
            assert!(Instant::now() < until, "the map was not read again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A set's calls are grouped by the slot of its keys (`<prefix>{<user id>}...`), not of
    // the bare user id: with braces in an id the two differ, and a wrong guess would cost
    // a redirect per check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
    async fn set_checks_go_to_the_master_of_their_keys() {
        if !available("set_checks_go_to_the_master_of_their_keys") {
            return;
        }
        let cluster = RedisCluster::start();
        let backend = RedisBackend::cluster_builder(policy(10), &cluster.urls())
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        read_map(&backend).await;
        let hourly = policy(10).with_name(crate::policy::PolicyName::new("hourly").unwrap());
        let burst = Policy::per_window(NonZeroU32::new(3).unwrap(), Duration::from_secs(60))
            .with_name(crate::policy::PolicyName::new("burst").unwrap());
        let set = PolicySet::new([hourly, burst]).unwrap();
        let backend = Arc::new(backend);
        let users: Vec<String> = (0..40).map(|u| format!("{{{u}}}x}}{u}")).collect();
        let checks: Vec<_> = users
            .iter()
            .chain(&users)
            .map(|user| {
                let (backend, user, set) = (Arc::clone(&backend), user.clone(), set.clone());
                tokio::spawn(async move {
                    match backend.check(&user, &set) {
                        Check::Ready(decided) => decided,
                        Check::Pending(decided) => decided.await,
                    }
                })
            })
            .collect();
        for check in checks {
            let decided = check.await.unwrap().expect("Redis answered");
            assert!(decided.allowed());
        }
        assert_eq!(
            backend.local().tracked_keys(),
            0,
            "nothing fell back to local"
        );
        for server in &cluster.servers {
            assert_eq!(errors(server, "MOVED"), 0, "every call went to its master");
        }
        for user in &users {
            let key = backend.set_key_of(user, &burst);
            let counted: Vec<String> = cluster
                .servers
                .iter()
                .filter(|server| serves(server, &key))
                .filter_map(|server| server.cli(&["HGET", &key, "n"]))
                .map(|n| n.trim().to_owned())
                .collect();
            assert_eq!(counted, ["2"], "{key}");
        }
    }
}
