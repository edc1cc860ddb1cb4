//! Coalescing remote checks: checks that queue up while earlier ones are on the wire leave
//! together, as one request. Shared by the peer forwarding queue and the Redis backend.
//!
//! A check never waits for company: the dispatcher sends whatever is queued the moment the
//! previous batch is answered (one batch per target on the wire, [`MAX_IN_FLIGHT`]), so a
//! lone check goes at once and batches form only under load, up to the sender's cap.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::BackendError;

/// Batches in flight to one target at most. One measured best for peers (a second batch
/// in flight only splits the queue into smaller batches) and no worse for Redis.
pub const MAX_IN_FLIGHT: usize = 1;

/// One queued check.
pub(crate) struct Job<A> {
    pub(crate) key: Arc<str>,
    pub(crate) cost: u32,
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
    /// its oldest job (the first), so no timer is armed per check.
    fn send(&self, batch: Vec<Job<Self::Answer>>) -> impl Future<Output = ()> + Send;
}

/// The queue of one target. Its dispatcher task starts on first use and ends when the
/// queue is dropped.
#[derive(Debug)]
pub(crate) struct Coalescer<S: SendBatch> {
    target: Arc<str>,
    timeout: Duration,
    sender: S,
    queue: OnceLock<mpsc::UnboundedSender<Job<S::Answer>>>,
}

impl<S: SendBatch> Coalescer<S> {
    /// A queue to `target` whose checks wait at most `timeout` in all.
    pub(crate) fn new(target: &str, timeout: Duration, sender: S) -> Self {
        Self {
            target: target.into(),
            timeout,
            sender,
            queue: OnceLock::new(),
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
        cost: u32,
    ) -> impl Future<Output = Result<S::Answer, BackendError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            key,
            cost,
            deadline: Instant::now() + self.timeout,
            reply,
        };
        let queued = self.queue().map(|queue| queue.send(job).is_ok());
        let target = Arc::clone(&self.target);
        async move {
            let stopped = |why: &str| BackendError::unavailable(&*target, why);
            match queued {
                Some(true) => {}
                Some(false) => return Err(stopped("check queue closed")),
                None => return Err(stopped("no Tokio runtime to check from")),
            }
            match answer.await {
                Ok(result) => result,
                Err(_) => Err(stopped("check dropped")),
            }
        }
    }

    /// The queue, starting its dispatcher on first use (inside a Tokio runtime).
    fn queue(&self) -> Option<&mpsc::UnboundedSender<Job<S::Answer>>> {
        if let Some(queue) = self.queue.get() {
            return Some(queue);
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(self.queue.get_or_init(|| {
            let (queue, jobs) = mpsc::unbounded_channel();
            runtime.spawn(dispatch(self.sender.clone(), jobs));
            queue
        }))
    }
}

/// Sends everything that queued up while the last batch was out, up to the cap, as one
/// batch; one batch at a time ([`MAX_IN_FLIGHT`]), sent from this task itself.
async fn dispatch<S: SendBatch>(sender: S, mut jobs: mpsc::UnboundedReceiver<Job<S::Answer>>) {
    let mut batch = Vec::new();
    while let Some(first) = jobs.recv().await {
        batch.push(first);
        while batch.len() < S::MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        sender.send(std::mem::take(&mut batch)).await;
    }
}

/// Gives every check of a failed `batch` the same `error`.
pub(crate) fn fail_all<A>(batch: Vec<Job<A>>, error: &BackendError) {
    for job in batch {
        let _ = job.reply.send(Err(copy(error)));
    }
}

/// The same failure, for another check of a failed batch.
fn copy(error: &BackendError) -> BackendError {
    match error {
        BackendError::Timeout { target, after } => BackendError::Timeout {
            target: target.clone(),
            after: *after,
        },
        BackendError::CircuitOpen { target } => BackendError::CircuitOpen {
            target: target.clone(),
        },
        BackendError::Unavailable { target, source } => BackendError::Unavailable {
            target: target.clone(),
            source: source.to_string().into(),
        },
    }
}
