//! Coalescing the checks forwarded to one peer (see [`crate::coalesce`]): checks that
//! queue up while earlier ones are on the wire leave together, as one batch request.
//!
//! Every batch, a lone check's too, goes as `POST /check` on a kept connection of the
//! peer's own. Checks to a peer that refuses batches (a node that serves single checks
//! only: `400`, `404`, `405` or `501`) are asked with `GET /check`, one request each.
//! The peer is offered batches again after [`BATCHES_RETRY`]: it may have been upgraded,
//! or mounted differently. Its first refusal is logged at `warn`; the next ones, until it
//! takes a batch, at `debug` (a ring that keeps an older node would otherwise log a
//! warning a minute for it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::kept_connections::KeptConnections;
use super::peer_client::{BatchReply, PeerClient};
use crate::coalesce::{fail_all, Coalescer, Job, SendBatch};
use crate::observe::RemoteMetrics;
use crate::protocol::{PeerAnswer, MAX_BATCH};
use crate::BackendError;

/// How long a peer that refused a batch is asked one check at a time before it is
/// offered batches again.
pub(super) const BATCHES_RETRY: Duration = Duration::from_secs(60);

/// Batches on the wire to one peer at once at most, each on its own kept connection: a
/// check that arrives while a small batch is out (under `BUSY_AT_CHECKS` checks, see
/// `crate::coalesce`) leaves at once, rather than behind it. Two
/// measured as well as four (`bench/load.sh`, BENCHMARKS.md), and each takes one of the
/// owner's permits to read a body ([`DEFAULT_MAX_BATCHES_READING`] is sized for it).
///
/// [`DEFAULT_MAX_BATCHES_READING`]: crate::endpoint::DEFAULT_MAX_BATCHES_READING
pub(crate) const IN_FLIGHT_TO_PEER: usize = 2;

/// The forwarding queue of one peer.
pub(super) type PeerQueue = Coalescer<PeerSender>;

impl PeerQueue {
    /// The queue of checks forwarded to `member`.
    pub(super) fn to_peer(member: &str, client: PeerClient, metrics: Arc<RemoteMetrics>) -> Self {
        let timeout = client.timeout();
        let connections = KeptConnections::to_peer(member, client.authorization());
        let sender = PeerSender {
            member: member.into(),
            client,
            connections: Arc::new(connections),
            batches_refused: Arc::default(),
            refusal_logged: Arc::default(),
        };
        Coalescer::new(member, timeout, sender, metrics)
    }
}

/// Sends batches to one peer.
#[derive(Clone, Debug)]
pub(super) struct PeerSender {
    member: Arc<str>,
    client: PeerClient,
    /// The connections batches go on, kept between them.
    connections: Arc<KeptConnections>,
    /// When the peer last refused a batch, if it did within [`BATCHES_RETRY`].
    batches_refused: Arc<Mutex<Option<Instant>>>,
    /// A refusal was logged at `warn` and the peer has not taken a batch since.
    refusal_logged: Arc<AtomicBool>,
}

impl SendBatch for PeerSender {
    type Answer = PeerAnswer;
    const MAX_BATCH: usize = MAX_BATCH;
    const IN_FLIGHT: usize = IN_FLIGHT_TO_PEER;

    async fn send(&self, batch: Vec<Job<PeerAnswer>>) {
        if !self.takes_batches() {
            return self.send_one_by_one(batch).await;
        }
        let deadline = batch[0].deadline;
        let checks = batch.iter().map(|job| (&*job.key, &job.policies));
        match self
            .client
            .check_batch(&self.connections, checks, deadline)
            .await
        {
            Ok(BatchReply::Answers(answers)) => {
                self.took_a_batch();
                for (job, answer) in batch.into_iter().zip(answers) {
                    let answer = answer.map_err(|line| match line.status {
                        400 => BackendError::Refused {
                            target: self.member.to_string(),
                            reason: line.why,
                        },
                        _ => BackendError::unavailable(&*self.member, line.why),
                    });
                    let _ = job.reply.send(answer);
                }
            }
            Ok(BatchReply::Unsupported) => {
                if self.first_refusal() {
                    tracing::warn!(
                        peer = %self.member,
                        retry_in = ?BATCHES_RETRY,
                        "peer refused a batch of checks (no batch endpoint where it is \
                         mounted, or a node from before policies travelled?): asking it one \
                         check at a time"
                    );
                } else {
                    tracing::debug!(
                        peer = %self.member,
                        retry_in = ?BATCHES_RETRY,
                        "peer refused a batch of checks again: asking it one check at a time"
                    );
                }
                *self.refused() = Some(Instant::now());
                self.send_one_by_one(batch).await;
            }
            Err(error) => fail_all(batch, &error),
        }
    }
}

impl PeerSender {
    /// Whether batches go to this peer: it has not refused one within [`BATCHES_RETRY`].
    fn takes_batches(&self) -> bool {
        let mut refused = self.refused();
        match *refused {
            Some(at) if at.elapsed() < BATCHES_RETRY => false,
            Some(_) => {
                *refused = None;
                true
            }
            None => true,
        }
    }

    /// Whether this refusal is the first since the peer last took a batch (or ever).
    fn first_refusal(&self) -> bool {
        !self.refusal_logged.swap(true, Ordering::Relaxed)
    }

    /// The peer took a batch: a later refusal is news again. A load first, so that the
    /// usual case writes nothing shared.
    fn took_a_batch(&self) {
        if self.refusal_logged.load(Ordering::Relaxed) {
            self.refusal_logged.store(false, Ordering::Relaxed);
        }
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.batches_refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Plain `GET /check`s, all at once.
    async fn send_one_by_one(&self, batch: Vec<Job<PeerAnswer>>) {
        let mut last = None;
        for job in batch {
            let asked =
                self.client
                    .check(&self.member, &job.key, &job.policies, job.deadline, None);
            last = Some(tokio::spawn(async move {
                let _ = job.reply.send(asked.await);
            }));
        }
        // Hold the slot until the last one sent is answered (they all run concurrently;
        // the others are answered by their own tasks).
        if let Some(last) = last {
            let _ = last.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression: a peer that refused one batch was asked one check at a time for the
    // rest of the process.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_refused_batches_is_offered_them_again_later() {
        let client = PeerClient::new(Duration::from_millis(250));
        let sender = PeerSender {
            member: "127.0.0.1:1".into(),
            connections: Arc::new(KeptConnections::to_peer("127.0.0.1:1", None)),
            client,
            batches_refused: Arc::default(),
            refusal_logged: Arc::default(),
        };
        assert!(sender.takes_batches());
        *sender.refused() = Some(Instant::now());
        assert!(!sender.takes_batches());
        tokio::time::advance(BATCHES_RETRY - Duration::from_secs(1)).await;
        assert!(!sender.takes_batches());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(sender.takes_batches());
        assert!(sender.refused().is_none());
    }

    // Regression: an older node in the ring was warned about every `BATCHES_RETRY`.
    #[tokio::test]
    async fn a_refusal_is_news_once_until_the_peer_takes_a_batch() {
        let sender = PeerSender {
            member: "127.0.0.1:1".into(),
            client: PeerClient::new(Duration::from_millis(250)),
            connections: Arc::new(KeptConnections::to_peer("127.0.0.1:1", None)),
            batches_refused: Arc::default(),
            refusal_logged: Arc::default(),
        };
        assert!(sender.first_refusal(), "the first is logged at warn");
        assert!(!sender.first_refusal(), "the next at debug");
        assert!(!sender.first_refusal());
        sender.took_a_batch();
        assert!(
            sender.first_refusal(),
            "a refusal after a batch was taken is news"
        );
    }
}
