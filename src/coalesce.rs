//! Coalescing remote checks: checks that queue up while earlier ones are on the wire leave
//! together, as one request. Shared by the peer forwarding queue and the Redis backend.
//!
//! A check never waits for company: the dispatcher sends whatever is queued the moment the
//! previous batch is answered (one batch per target on the wire: measured best for peers,
//! where a second batch in flight only splits the queue, and no worse for Redis), so a
//! lone check goes at once and batches form only under load, up to the sender's cap. A
//! check whose deadline passed while it queued is answered as timed out and never sent:
//! its caller has had its answer (perhaps from the failure mode), so counting it at the
//! target would count it twice.
//!
//! The dispatcher runs on the runtime of the check that started it. If that runtime is
//! dropped (a test, a CLI that builds a runtime per command), the next check starts a new
//! dispatcher on its own runtime.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
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

/// Sends everything that queued up while the last batch was out, up to the cap, as one
/// batch; one batch at a time, sent from this task itself. Checks
/// whose deadline has passed, or whose caller is gone, are left out.
async fn dispatch<S: SendBatch>(
    sender: S,
    metrics: Arc<RemoteMetrics>,
    mut jobs: mpsc::UnboundedReceiver<Job<S::Answer>>,
    target: Arc<str>,
    timeout: Duration,
) {
    let mut batch = Vec::new();
    while let Some(first) = jobs.recv().await {
        batch.push(first);
        while batch.len() < S::MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        batch.retain(|job| !job.reply.is_closed());
        let (live, expired): (Vec<_>, Vec<_>) = batch.drain(..).partition(|job| job.deadline > now);
        let timed_out = BackendError::Timeout {
            target: target.to_string(),
            after: timeout,
        };
        fail_all(expired, &timed_out);
        if !live.is_empty() {
            metrics.measure(live.len(), sender.send(live)).await;
        }
    }
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
        let first = tokio::spawn(queue.check("first".into(), one()));
        tokio::task::yield_now().await;
        let queued: Vec<_> = ["late-1", "late-2"]
            .into_iter()
            .map(|key| tokio::spawn(queue.check(key.into(), one())))
            .collect();
        // The owner is slower than the timeout: the first caller gives up too.
        let first = first.await.unwrap().unwrap_err();
        assert!(matches!(first, BackendError::Timeout { .. }), "{first}");
        for late in queued {
            let error = late.await.unwrap().unwrap_err();
            assert!(matches!(error, BackendError::Timeout { .. }), "{error}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(*target.sent.lock().unwrap(), [vec!["first".to_owned()]]);
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
