//! The dispatcher of one queue: it sends what queues up as batches and drives them while
//! they are on the wire.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Job, SendBatch};
use crate::error::BackendError;
use crate::observe::RemoteMetrics;

/// A batch on the wire, borrowing the dispatcher's sender and metrics.
type InFlight<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Checks on the wire to one target from which it counts as busy: another batch leaves
/// only while fewer are out. Below it the target has room, and a check that waited would
/// only wait (the latency of a lightly loaded node); at or above it, checks that queue
/// leave together once a batch is answered, so a busy target gets fewer, larger batches
/// (each costs a wake-up of both processes: BENCHMARKS.md, "Issue 19").
pub(super) const BUSY_AT_CHECKS: usize = 8;

/// Sends what queues up, a batch (everything queued, up to the cap) whenever a slot is
/// free (fewer than [`SendBatch::IN_FLIGHT`] batches out) and the target has room (fewer
/// than [`BUSY_AT_CHECKS`] checks out), and drives those in flight. Checks whose deadline
/// has passed, or whose caller is gone, are left out. Ends when the queue is dropped and
/// every batch is answered.
pub(super) async fn dispatch<S: SendBatch>(
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
