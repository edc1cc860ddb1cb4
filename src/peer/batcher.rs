//! Coalescing the checks forwarded to one peer: checks that queue up while earlier ones are
//! on the wire leave together, as one batch request.
//!
//! A check never waits for company: the dispatcher sends whatever is queued the moment a
//! slot is free (at most [`MAX_IN_FLIGHT`] requests per peer), so a lone check goes at
//! once and batches form only under load, up to [`MAX_BATCH`] checks. A lone check is
//! asked with `GET /check`, as are all checks to a peer without the batch endpoint (a
//! reference node, found out on its first refusal: `400`, `404`, `405` or `501`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use super::batch::MAX_BATCH;
use super::client::{BatchReply, PeerAnswer, PeerClient};
use crate::BackendError;

/// Batch requests in flight to one peer at most.
pub const MAX_IN_FLIGHT: usize = 1;

type Reply = oneshot::Sender<Result<PeerAnswer, BackendError>>;

struct Job {
    key: Arc<str>,
    cost: u32,
    /// When the check gives up: the peer timeout after it was queued.
    deadline: Instant,
    reply: Reply,
}

/// The forwarding queue of one peer. Its dispatcher task starts on first use and ends
/// when the batcher is dropped.
#[derive(Debug)]
pub(crate) struct Batcher {
    member: Arc<str>,
    client: PeerClient,
    queue: OnceLock<mpsc::UnboundedSender<Job>>,
    /// Cleared once the peer shows it has no batch endpoint.
    batches: Arc<AtomicBool>,
}

impl Batcher {
    pub(crate) fn new(member: &str, client: PeerClient) -> Self {
        Self {
            member: member.into(),
            client,
            queue: OnceLock::new(),
            batches: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Queues a check of `key` and waits for its answer: at most the peer timeout in all,
    /// queueing included (each batch gives up at the deadline of its oldest check, so no
    /// timer is armed per check).
    pub(crate) fn check(
        &self,
        key: Arc<str>,
        cost: u32,
    ) -> impl std::future::Future<Output = Result<PeerAnswer, BackendError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + self.client.timeout();
        let job = Job {
            key,
            cost,
            deadline,
            reply,
        };
        let queued = self.queue().map(|queue| queue.send(job).is_ok());
        let target = Arc::clone(&self.member);
        async move {
            let stopped = |why: &str| BackendError::Unavailable {
                target: target.to_string(),
                source: why.into(),
            };
            match queued {
                Some(true) => {}
                Some(false) => return Err(stopped("peer queue closed")),
                None => return Err(stopped("no Tokio runtime to forward from")),
            }
            match answer.await {
                Ok(result) => result,
                Err(_) => Err(stopped("forward dropped")),
            }
        }
    }

    /// The queue, starting its dispatcher on first use (inside a Tokio runtime).
    fn queue(&self) -> Option<&mpsc::UnboundedSender<Job>> {
        if let Some(queue) = self.queue.get() {
            return Some(queue);
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(self.queue.get_or_init(|| {
            let (queue, jobs) = mpsc::unbounded_channel();
            let dispatcher = Dispatcher {
                member: self.member.clone(),
                client: self.client.clone(),
                batches: self.batches.clone(),
            };
            runtime.spawn(dispatcher.run(jobs));
            queue
        }))
    }
}

#[derive(Clone)]
struct Dispatcher {
    member: Arc<str>,
    client: PeerClient,
    batches: Arc<AtomicBool>,
}

impl Dispatcher {
    async fn run(self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        while let Some(first) = jobs.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            // Everything that queued up while waiting leaves now, up to the cap.
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let dispatcher = self.clone();
            tokio::spawn(async move {
                dispatcher.send(batch).await;
                drop(slot);
            });
        }
    }

    async fn send(&self, batch: Vec<Job>) {
        if batch.len() == 1 || !self.batches.load(Ordering::Relaxed) {
            return self.send_one_by_one(batch).await;
        }
        // The oldest check's deadline: no check of the batch waits past its own.
        let deadline = batch[0].deadline;
        let checks = batch.iter().map(|job| (&*job.key, job.cost));
        match self
            .client
            .check_batch(&self.member, checks, deadline)
            .await
        {
            Ok(BatchReply::Answers(answers)) => {
                for (job, answer) in batch.into_iter().zip(answers) {
                    let answer = answer.map_err(|why| BackendError::Unavailable {
                        target: self.member.to_string(),
                        source: why.into(),
                    });
                    let _ = job.reply.send(answer);
                }
            }
            Ok(BatchReply::Unsupported) => {
                tracing::info!(peer = %self.member, "peer has no batch endpoint: asking it one check at a time");
                self.batches.store(false, Ordering::Relaxed);
                self.send_one_by_one(batch).await;
            }
            Err(error) => {
                for job in batch {
                    let _ = job.reply.send(Err(copy(&error)));
                }
            }
        }
    }

    /// Plain `GET /check`s, all at once.
    async fn send_one_by_one(&self, batch: Vec<Job>) {
        let mut last = None;
        for job in batch {
            let asked = self.client.check(&self.member, &job.key, job.deadline);
            last = Some(tokio::spawn(async move {
                let _ = job.reply.send(asked.await);
            }));
        }
        // Hold the slot until the last one is answered (they all run concurrently).
        if let Some(last) = last {
            let _ = last.await;
        }
    }
}

/// The same failure, for each check of a failed batch.
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
