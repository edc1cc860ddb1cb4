//! A batch of script calls sent as pipelines, each call its own and answered on its own:
//! to a single server, one pipeline; to a cluster, one pipeline to each master that
//! serves some of the batch's keys, all at once, on the master's own connection (see
//! `slot_owners`). A call the master answers `MOVED` or `ASK` did not run: it goes again
//! alone through the cluster client, which follows the redirect, and the slot map is read
//! again. Until the map is first read, a cluster's calls each go alone that way.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::connection::{is_redirect, Connection};
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
    /// (or the error of its call, or of its whole pipeline).
    pub(super) async fn send<A>(
        &self,
        batch: Vec<Job<A>>,
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
            (true, Some(map)) => by_master(batch, map),
        };
        let sends = groups.into_iter().map(|(master, jobs)| {
            let on = master.zip(map.as_deref()).map(|(i, map)| map.connection(i));
            self.send_on(on, jobs, &call, &answer)
        });
        join_all(sends).await;
    }

    /// Sends the calls of `jobs` as one pipeline (to the master `on`, if given) and
    /// answers each; calls redirected elsewhere go again alone.
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
            Err(error) => return fail_all(jobs, &error),
        };
        let mut redirected = Vec::new();
        for job in jobs {
            match answers.next() {
                Some(Err(error)) if on_master && is_redirect(&error) => redirected.push(job),
                ran => self.reply(job, ran, answer),
            }
        }
        if !redirected.is_empty() {
            self.connection.refresh_slot_map();
            let alone = redirected
                .into_iter()
                .map(|job| self.send_alone(job, call, answer));
            join_all(alone).await;
        }
    }

    /// Sends `job`'s call alone, routed by the cluster client (which follows redirects).
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
    /// job's deadline (the oldest: the batch's).
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
fn by_master<A>(batch: Vec<Job<A>>, map: &SlotMap) -> Vec<Group<A>> {
    let mut keyed: Vec<(Option<u16>, Job<A>)> = batch
        .into_iter()
        .map(|job| (map.master_of(job.key.as_bytes()), job))
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

    use super::super::slot_owners::{SlotMap, SlotOwners};
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
                assert_eq!(map.master_of(job.key.as_bytes()), *master, "{}", job.key);
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
        let groups = by_master(jobs(200), &map);
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
        let map = read_map(&backend).await;
        let groups = by_master(jobs(60), &map);
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
                .map(|job| map.master_of(job.key.as_bytes()))
                .collect();
            if masters.len() == 3 {
                break;
            }
            assert!(Instant::now() < until, "the map was not read again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
