//! A batch of script calls sent as one pipeline, each call its own and answered on its
//! own: to a single server, or to one master of a cluster on the master's own connection
//! (see `queues`: a cluster has a queue per master). A call the master refuses without
//! running it because its key is served elsewhere (see [`did_not_run`]: the slot map was
//! stale) goes again alone through the cluster client, which follows the redirect, and
//! the slot map is read again; so is it when a master's pipeline fails whole (the master
//! may be gone). The checks of slots the map does not know (before it is first read) go
//! each alone through the cluster client.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::connection::{did_not_run, Connection};
use crate::coalesce::{fail_all, Job};
use crate::BackendError;

/// A batch of calls to send, each answered on its own.
pub(super) struct Pipelined<'a> {
    pub(super) connection: &'a Connection,
    /// On a cluster, the master to send to (`None`: each call alone, routed by its key).
    pub(super) master: Option<&'a ConnectionManager>,
    pub(super) target: &'a Arc<str>,
    pub(super) timeout: Duration,
}

impl Pipelined<'_> {
    /// Sends `call` of each job of `batch` and replies to each with `answer` of its reply
    /// (or the error of its call, or of its whole pipeline).
    pub(super) async fn send<A>(
        &self,
        batch: Vec<Job<A>>,
        call: impl Fn(&Job<A>) -> redis::Cmd,
        answer: impl Fn(Vec<i64>, &Job<A>) -> Result<A, BackendError>,
    ) {
        match (self.connection.is_cluster(), self.master) {
            (false, _) => self.send_on(None, batch, &call, &answer).await,
            (true, Some(master)) => {
                let on = Some(master.clone());
                self.send_on(on, batch, &call, &answer).await;
            }
            (true, None) => {
                self.connection.refresh_slot_map();
                let alone = batch
                    .into_iter()
                    .map(|job| self.send_alone(job, &call, &answer));
                join_all(alone).await;
            }
        }
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

/// Drives `sends` together until all are done (calls sent alone go at once).
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
