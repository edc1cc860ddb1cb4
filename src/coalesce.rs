//! Coalescing remote checks: checks that queue up while earlier ones are on the wire leave
//! together, as one request. Shared by the peer forwarding queue and the Redis backend.
//!
//! A check never waits behind a batch in flight while the target has room: up to
//! [`SendBatch::IN_FLIGHT`] batches are on the wire at once, and the dispatcher sends
//! whatever is queued the moment a slot is free, as long as fewer than
//! [`BUSY_AT_CHECKS`] checks are out. So a lone check goes at once, and under load
//! (batches out that carry that many checks) the checks that queue leave together when
//! one is answered, up to the sender's cap. A check whose deadline passed while it
//! queued is answered as timed out and never sent: its caller has had its answer
//! (perhaps from the failure mode), so counting it at the target would count it twice.
//!
//! The dispatcher is one task that drives its batches in flight itself (no task per
//! batch, no task switch between a batch and its I/O). It runs on the runtime of the
//! check that started it. If that runtime is dropped (a test, a CLI that builds a runtime
//! per command), the next check starts a new dispatcher on its own runtime.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::BackendError;
use crate::observe::RemoteMetrics;
use crate::PolicySet;

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

    /// Sends `batch` and replies to each of its jobs. A batch gives up at the deadline of
    /// its oldest job (the first), so no timer is armed per check for the send (each
    /// caller's own wait has one, so that it is bounded whatever the dispatcher does).
    fn send(&self, batch: Vec<Job<Self::Answer>>) -> impl Future<Output = ()> + Send;
}

type Queue<A> = mpsc::UnboundedSender<Job<A>>;

/// The queue of one target. Its dispatcher task starts on first use (again if its runtime
/// is gone) and ends when the queue is dropped.
#[derive(Debug)]
pub(crate) struct Coalescer<S: SendBatch> {
    target: Arc<str>,
    timeout: Duration,
    sender: S,
    metrics: Arc<RemoteMetrics>,
    /// Read by every check without a lock.
    queue: ArcSwapOption<Queue<S::Answer>>,
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
            queue: ArcSwapOption::empty(),
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
            if !queued {
                return Err(stopped("no Tokio runtime to check from"));
            }
            // Bounded even if the dispatcher's runtime is alive but no longer driven.
            match tokio::time::timeout_at(deadline, answer).await {
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
    fn try_send(&self, job: Job<S::Answer>) -> Result<(), Job<S::Answer>> {
        match self.queue.load().as_deref() {
            Some(queue) => queue.send(job).map_err(|unsent| unsent.0),
            None => Err(job),
        }
    }

    /// Queues `job` for the dispatcher, starting one (inside a Tokio runtime) if there is
    /// none or its runtime is gone. Whether it was queued.
    fn enqueue(&self, job: Job<S::Answer>) -> bool {
        let Err(job) = self.try_send(job) else {
            return true;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let _starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        // Another check may have started one meanwhile.
        let Err(job) = self.try_send(job) else {
            return true;
        };
        let (queue, jobs) = mpsc::unbounded_channel();
        runtime.spawn(dispatch(
            self.sender.clone(),
            Arc::clone(&self.metrics),
            jobs,
            Arc::clone(&self.target),
            self.timeout,
        ));
        let queued = queue.send(job).is_ok();
        self.queue.store(Some(Arc::new(queue)));
        queued
    }
}

/// A batch on the wire, borrowing the dispatcher's sender and metrics.
type InFlight<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Checks on the wire to one target from which it counts as busy: another batch leaves
/// only while fewer are out. Below it the target has room, and a check that waited would
/// only wait (the latency of a lightly loaded node); at or above it, checks that queue
/// leave together once a batch is answered, so a busy target gets fewer, larger batches
/// (each costs a wake-up of both processes: BENCHMARKS.md, "Issue 19").
const BUSY_AT_CHECKS: usize = 8;

/// Sends what queues up, a batch (everything queued, up to the cap) whenever a slot is
/// free (fewer than [`SendBatch::IN_FLIGHT`] batches out) and the target has room (fewer
/// than [`BUSY_AT_CHECKS`] checks out), and drives those in flight. Checks whose deadline
/// has passed, or whose caller is gone, are left out. Ends when the queue is dropped and
/// every batch is answered.
async fn dispatch<S: SendBatch>(
    sender: S,
    metrics: Arc<RemoteMetrics>,
    mut jobs: mpsc::UnboundedReceiver<Job<S::Answer>>,
    target: Arc<str>,
    timeout: Duration,
) {
    const {
        assert!(
            S::IN_FLIGHT > 0,
            "a sender with no batch in flight sends nothing"
        )
    };
    let (sender, metrics) = (&sender, &*metrics);
    // Each batch out, with its number of checks.
    let mut in_flight: Vec<(usize, InFlight<'_>)> = Vec::with_capacity(S::IN_FLIGHT);
    let mut queue_open = true;
    poll_fn(move |cx| {
        in_flight.retain_mut(|(_, batch)| batch.as_mut().poll(cx).is_pending());
        while queue_open && has_room(&in_flight, S::IN_FLIGHT) {
            let first = match jobs.poll_recv(cx) {
                Poll::Ready(Some(first)) => first,
                Poll::Ready(None) => {
                    queue_open = false;
                    break;
                }
                Poll::Pending => break,
            };
            let live = next_batch(first, &mut jobs, S::MAX_BATCH, &target, timeout);
            if live.is_empty() {
                continue;
            }
            let checks = live.len();
            let mut batch: InFlight<'_> = Box::pin(metrics.measure(checks, sender.send(live)));
            if batch.as_mut().poll(cx).is_pending() {
                in_flight.push((checks, batch));
            }
        }
        match queue_open || !in_flight.is_empty() {
            true => Poll::Pending,
            false => Poll::Ready(()),
        }
    })
    .await;
}

/// Whether another batch may leave: a slot is free, and the target is not busy.
fn has_room(in_flight: &[(usize, InFlight<'_>)], slots: usize) -> bool {
    let checks: usize = in_flight.iter().map(|(checks, _)| checks).sum();
    in_flight.len() < slots && checks < BUSY_AT_CHECKS
}

/// `first` and what is queued behind it, up to `max` checks, less those whose caller is
/// gone and those whose deadline has passed (answered as timed out).
fn next_batch<A>(
    first: Job<A>,
    jobs: &mut mpsc::UnboundedReceiver<Job<A>>,
    max: usize,
    target: &str,
    timeout: Duration,
) -> Vec<Job<A>> {
    let mut batch = vec![first];
    while batch.len() < max {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    let now = Instant::now();
    batch.retain(|job| !job.reply.is_closed());
    let (live, expired): (Vec<_>, Vec<_>) = batch.into_iter().partition(|job| job.deadline > now);
    if !expired.is_empty() {
        let timed_out = BackendError::Timeout {
            target: target.to_owned(),
            after: timeout,
        };
        fail_all(expired, &timed_out);
    }
    live
}

/// Gives every check of a failed `batch` the same `error`.
pub(crate) fn fail_all<A>(batch: Vec<Job<A>>, error: &BackendError) {
    for job in batch {
        let _ = job.reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<RemoteMetrics> {
        Arc::new(RemoteMetrics::new(crate::observe::Remote::Peer, "owner"))
    }

    fn one() -> PolicySet {
        let policy = crate::Policy::per_window(std::num::NonZeroU32::MIN, Duration::from_secs(1));
        PolicySet::from(policy)
    }
    use std::sync::Mutex as StdMutex;

    /// A target that takes 200 ms per batch and records the keys it was sent.
    #[derive(Clone, Default)]
    struct SlowTarget {
        sent: Arc<StdMutex<Vec<Vec<String>>>>,
    }

    impl SendBatch for SlowTarget {
        type Answer = ();
        const MAX_BATCH: usize = 16;
        const IN_FLIGHT: usize = 2;

        async fn send(&self, batch: Vec<Job<()>>) {
            let keys = batch.iter().map(|job| job.key.to_string()).collect();
            self.sent.lock().unwrap().push(keys);
            tokio::time::sleep(Duration::from_millis(200)).await;
            for job in batch {
                let _ = job.reply.send(Ok(()));
            }
        }
    }

    // Regression: under a backlog the dispatcher sent every queued check, so the owner
    // counted checks whose callers had already been answered (twice under `local`).
    #[tokio::test(start_paused = true)]
    async fn a_check_whose_deadline_passed_in_the_queue_is_never_sent() {
        let target = SlowTarget::default();
        let queue = Coalescer::new(
            "owner",
            Duration::from_millis(100),
            target.clone(),
            metrics(),
        );
        // Both slots taken (a batch each, answered after the timeout), then two queue.
        let first = tokio::spawn(queue.check("first".into(), one()));
        tokio::task::yield_now().await;
        let second = tokio::spawn(queue.check("second".into(), one()));
        tokio::task::yield_now().await;
        // Queued now (`check` queues at once) and not awaited: their callers are still
        // there when a slot comes free, past their deadline.
        let queued: Vec<_> = ["late-1", "late-2"]
            .into_iter()
            .map(|key| queue.check(key.into(), one()))
            .collect();
        // The owner is slower than the timeout: the first callers give up too.
        for sent in [first, second] {
            let error = sent.await.unwrap().unwrap_err();
            assert!(matches!(error, BackendError::Timeout { .. }), "{error}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(*target.sent.lock().unwrap(), [["first"], ["second"]]);
        for late in queued {
            let error = late.await.unwrap_err();
            assert!(matches!(error, BackendError::Timeout { .. }), "{error}");
        }
    }

    // Regression: a check that came while a batch was out waited for its answer (one
    // batch per target on the wire), even when the target had room for another.
    #[tokio::test(start_paused = true)]
    async fn a_check_leaves_at_once_while_a_slot_is_free_and_queues_when_none_is() {
        let target = SlowTarget::default();
        let queue = Coalescer::new("owner", Duration::from_secs(1), target.clone(), metrics());
        let mut checks = Vec::new();
        for key in ["first", "second", "third", "fourth"] {
            checks.push(tokio::spawn(queue.check(key.into(), one())));
            tokio::task::yield_now().await;
        }
        // Two slots: the first two left at once, each alone; the others wait.
        let sent = |target: &SlowTarget| target.sent.lock().unwrap().clone();
        assert_eq!(sent(&target), [vec!["first"], vec!["second"]]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        // A slot came free: everything that queued went together.
        assert_eq!(
            sent(&target),
            [vec!["first"], vec!["second"], vec!["third", "fourth"]]
        );
        for check in checks {
            check.await.unwrap().unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_target_gets_no_second_batch_though_a_slot_is_free() {
        let target = SlowTarget::default();
        let queue = Coalescer::new("owner", Duration::from_secs(1), target.clone(), metrics());
        // Queued before the dispatcher first runs: one batch that makes the target busy
        // (within the cap of one batch).
        const { assert!(BUSY_AT_CHECKS <= SlowTarget::MAX_BATCH) };
        let busy: Vec<String> = (0..BUSY_AT_CHECKS).map(|i| format!("busy-{i}")).collect();
        let mut checks: Vec<_> = busy
            .iter()
            .map(|key| tokio::spawn(queue.check(key.as_str().into(), one())))
            .collect();
        tokio::task::yield_now().await;
        checks.push(tokio::spawn(queue.check("late".into(), one())));
        tokio::task::yield_now().await;
        let sent = |target: &SlowTarget| target.sent.lock().unwrap().clone();
        assert_eq!(
            sent(&target),
            std::slice::from_ref(&busy),
            "the late one waits"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(sent(&target), [busy, vec!["late".to_owned()]]);
        for check in checks {
            check.await.unwrap().unwrap();
        }
    }

    // Regression: the dispatcher died with the runtime of the first check, and every
    // later check failed with "check queue closed".
    #[test]
    fn a_queue_outlives_the_runtime_that_first_used_it() {
        let target = SlowTarget::default();
        let queue = Coalescer::new("owner", Duration::from_secs(1), target.clone(), metrics());
        for _ in 0..3 {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let checked = runtime.block_on(async { queue.check("alice".into(), one()).await });
            checked.unwrap();
        }
        assert_eq!(target.sent.lock().unwrap().len(), 3);
    }
}
