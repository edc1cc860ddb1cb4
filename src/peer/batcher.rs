//! Coalescing the checks forwarded to one peer (see [`crate::coalesce`]): checks that
//! queue up while earlier ones are on the wire leave together, as one batch request.
//!
//! A lone check is asked with `GET /check`, as are all checks to a peer without the batch
//! endpoint (a reference node, found out on its first refusal: `400`, `404`, `405` or
//! `501`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::batch::MAX_BATCH;
use super::batch_connection::BatchConnection;
use super::client::{BatchReply, PeerAnswer, PeerClient};
use crate::coalesce::{fail_all, Coalescer, Job, SendBatch};
use crate::BackendError;

/// The forwarding queue of one peer.
pub(crate) type Batcher = Coalescer<PeerSender>;

impl Batcher {
    /// The queue of checks forwarded to `member`.
    pub(crate) fn to_peer(member: &str, client: PeerClient) -> Self {
        let timeout = client.timeout();
        let sender = PeerSender {
            member: member.into(),
            client,
            connection: Arc::default(),
            batches: Arc::new(AtomicBool::new(true)),
        };
        Coalescer::new(member, timeout, sender)
    }
}

/// Sends batches to one peer.
#[derive(Clone, Debug)]
pub(crate) struct PeerSender {
    member: Arc<str>,
    client: PeerClient,
    /// The connection batches go on, kept between them.
    connection: Arc<BatchConnection>,
    /// Cleared once the peer shows it has no batch endpoint.
    batches: Arc<AtomicBool>,
}

impl SendBatch for PeerSender {
    type Answer = PeerAnswer;
    const MAX_BATCH: usize = MAX_BATCH;

    async fn send(&self, batch: Vec<Job<PeerAnswer>>) {
        if batch.len() == 1 || !self.batches.load(Ordering::Relaxed) {
            return self.send_one_by_one(batch).await;
        }
        let deadline = batch[0].deadline;
        let checks = batch.iter().map(|job| (&*job.key, job.cost));
        match self
            .client
            .check_batch(&self.connection, &self.member, checks, deadline)
            .await
        {
            Ok(BatchReply::Answers(answers)) => {
                for (job, answer) in batch.into_iter().zip(answers) {
                    let answer =
                        answer.map_err(|why| BackendError::unavailable(&*self.member, why));
                    let _ = job.reply.send(answer);
                }
            }
            Ok(BatchReply::Unsupported) => {
                tracing::info!(peer = %self.member, "peer has no batch endpoint: asking it one check at a time");
                self.batches.store(false, Ordering::Relaxed);
                self.send_one_by_one(batch).await;
            }
            Err(error) => fail_all(batch, &error),
        }
    }
}

impl PeerSender {
    /// Plain `GET /check`s, all at once.
    async fn send_one_by_one(&self, batch: Vec<Job<PeerAnswer>>) {
        let mut last = None;
        for job in batch {
            let asked = self
                .client
                .check(&self.member, &job.key, job.cost, job.deadline);
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
