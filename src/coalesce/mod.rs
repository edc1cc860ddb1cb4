//! Coalescing remote checks: checks that queue up while earlier ones are on the wire leave
//! together, as one request. Shared by the peer forwarding queue and the Redis backend.
//!
//! A check never waits behind a batch in flight while the target has room: up to
//! [`SendBatch::IN_FLIGHT`] batches are on the wire at once, and the dispatcher sends
//! whatever is queued the moment a slot is free, as long as fewer than
//! [`BUSY_AT_CHECKS`](dispatch::BUSY_AT_CHECKS) checks are out. So a lone check goes at
//! once, and under load (batches out that carry that many checks) the checks that queue
//! leave together when one is answered, up to the sender's cap. A check whose deadline
//! passed while it queued is answered as timed out and never sent: its caller has had
//! its answer (perhaps from the failure mode), so counting it at the target would count
//! it twice.
//!
//! The dispatcher is one task that drives its batches in flight itself (no task per
//! batch, no task switch between a batch and its I/O). It runs on the runtime of the
//! check that started it. If that runtime is dropped (a test, a CLI that builds a runtime
//! per command), the next check starts a new dispatcher on its own runtime. The runtime
//! needs its timer (`enable_time`, or `enable_all`): batches give up by their deadlines.

mod dispatch;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::BackendError;
use crate::observe::RemoteMetrics;
use crate::PolicySet;
use dispatch::dispatch;
pub(crate) use dispatch::fail_all;

/// One queued check.
pub(crate) struct Job<A> {
    pub(crate) key: Arc<str>,
    /// The policies to check it against.
    pub(crate) policies: PolicySet,
    /// When the check gives up: the target's timeout after it was queued.
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Result<A, BackendError>>,
}

/// What sends a batch: answers every job of it, one way or another.
pub(crate) trait SendBatch: Clone + Send + Sync + 'static {
    /// One check's answer.
    type Answer: Send + 'static;
    /// Checks per batch at most.
    const MAX_BATCH: usize;
    /// Batches on the wire at once at most (each on its own connection, or multiplexed).
    const IN_FLIGHT: usize;

    /// Sends `batch` and replies to each of its jobs, each by its own deadline at the
    /// latest (a request carrying several gives up at its first job's, the oldest): a
    /// caller whose dispatcher runs on worker threads has no timer of its own (see
    /// [`Coalescer::check`]), so this bound is its only one.
    fn send(&self, batch: Vec<Job<Self::Answer>>) -> impl Future<Output = ()> + Send;
}

/// The queue of a running dispatcher.
#[derive(Debug)]
struct Running<A> {
    queue: mpsc::UnboundedSender<Job<A>>,
    /// What drives the dispatcher.
    driven: Driven,
}

/// The queue of one target. Its dispatcher task starts on first use (again if its runtime
/// is gone) and ends when the queue is dropped.
#[derive(Debug)]
pub(crate) struct Coalescer<S: SendBatch> {
    target: Arc<str>,
    timeout: Duration,
    sender: S,
    metrics: Arc<RemoteMetrics>,
    /// Read by every check without a lock.
    running: ArcSwapOption<Running<S::Answer>>,
    /// Held while a dispatcher is started, so that only one starts.
    starting: Mutex<()>,
}

impl<S: SendBatch> Coalescer<S> {
    /// A queue to `target` whose checks wait at most `timeout` in all.
    pub(crate) fn new(
        target: &str,
        timeout: Duration,
        sender: S,
        metrics: Arc<RemoteMetrics>,
    ) -> Self {
        Self {
            target: target.into(),
            timeout,
            sender,
            metrics,
            running: ArcSwapOption::empty(),
            starting: Mutex::new(()),
        }
    }

    /// What sends this queue's batches (the Redis backend reads its grouping from it).
    #[cfg(feature = "redis")]
    pub(crate) fn sender(&self) -> &S {
        &self.sender
    }

    /// Queues a check of `key` and waits for its answer: at most the timeout in all,
    /// queueing included.
    ///
    /// The dispatcher answers every check by its deadline (it leaves out checks whose
    /// deadline passed in the queue, and each batch gives up at its oldest check's), so a
    /// caller arms no timer of its own when worker threads drive the dispatcher (one
    /// cost about 900 instructions a forwarded check, of 22,500 on the forwarding node at
    /// 64 connections: BENCHMARKS.md, "Forwarded checks under load"). On a
    /// current-thread runtime the dispatcher runs only while that runtime is driven,
    /// which a caller on another runtime cannot know, so there each caller's wait is
    /// bounded by its own timer.
    ///
    /// So, as with any future on a Tokio runtime, a worker thread must not block on a
    /// check (`futures::executor::block_on` inside a task): the dispatcher it woke may be
    /// queued on that very worker, where no other worker takes it, and the check would
    /// never be answered. `tokio::task::block_in_place` hands the worker's queue on, and
    /// is safe.
    pub(crate) fn check(
        &self,
        key: Arc<str>,
        policies: PolicySet,
    ) -> impl Future<Output = Result<S::Answer, BackendError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + self.timeout;
        let job = Job {
            key,
            policies,
            deadline,
            reply,
        };
        let timeout = self.timeout;
        let queued = self.enqueue(job);
        let target = Arc::clone(&self.target);
        async move {
            let stopped = |why: &str| BackendError::unavailable(&*target, why);
            let answered = match queued {
                None => return Err(stopped("no Tokio runtime to check from")),
                Some(Driven::ByWorkers) => Ok(answer.await),
                Some(Driven::OnOneThread) => tokio::time::timeout_at(deadline, answer).await,
            };
            match answered {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(stopped("check dropped")),
                Err(_) => Err(BackendError::Timeout {
                    target: target.to_string(),
                    after: timeout,
                }),
            }
        }
    }

    /// Sends `job` to the running dispatcher; gives it back if there is none.
    fn try_send(&self, job: Job<S::Answer>) -> Result<Driven, Job<S::Answer>> {
        match self.running.load().as_deref() {
            Some(running) => match running.queue.send(job) {
                Ok(()) => Ok(running.driven),
                Err(unsent) => Err(unsent.0),
            },
            None => Err(job),
        }
    }

    /// Queues `job` for the dispatcher, starting one (inside a Tokio runtime) if there is
    /// none or its runtime is gone. What drives the dispatcher it was queued for, if it
    /// was.
    fn enqueue(&self, job: Job<S::Answer>) -> Option<Driven> {
        let job = match self.try_send(job) {
            Ok(driven) => return Some(driven),
            Err(job) => job,
        };
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let _starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        // Another check may have started one meanwhile.
        let job = match self.try_send(job) {
            Ok(driven) => return Some(driven),
            Err(job) => job,
        };
        let (queue, jobs) = mpsc::unbounded_channel();
        let driven = match runtime.runtime_flavor() {
            RuntimeFlavor::MultiThread => Driven::ByWorkers,
            _ => Driven::OnOneThread,
        };
        runtime.spawn(dispatch(
            self.sender.clone(),
            Arc::clone(&self.metrics),
            jobs,
            Arc::clone(&self.target),
            self.timeout,
        ));
        let queued = queue.send(job).is_ok();
        self.running
            .store(Some(Arc::new(Running { queue, driven })));
        queued.then_some(driven)
    }
}

/// What drives the dispatcher a check was queued for, which says whether its caller needs
/// a timer of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driven {
    /// A multi-threaded runtime's worker threads: it runs while the runtime lives and its
    /// workers are not blocked, and answers every check by its deadline.
    ByWorkers,
    /// A current-thread runtime, which runs it only while some thread drives that runtime.
    OnOneThread,
}
