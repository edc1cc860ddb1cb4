//! The owner's side of a batch: read the checks, decide each here, answer in order.
//!
//! The body comes from outside, so it is bounded three ways: a byte cap (copied into one
//! buffer as it arrives, see `read_body`), a deadline for the whole body, and a permit
//! from a fixed pool, so that only so many bodies are read at once. A batch refused for
//! any of these is answered with `connection: close`: its body is never drained.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tokio::sync::OwnedSemaphorePermit;

use super::refusal::{closing, text, undecided};
use crate::backend::{Check, Owner};
use crate::protocol::{decode_checks, encode_answer, RecentSets, MAX_BATCH};
use crate::read_body::{read_body, BodyError};
use crate::{Decisions, KeyError};

/// How long a peer has to send a whole batch body, by default.
pub const DEFAULT_BATCH_BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// How many batch bodies an endpoint reads at once, by default; more are refused (`503`).
/// A peer has at most two batches on the wire to a given node at a time, so this serves
/// rings of up to 257 nodes.
pub const DEFAULT_MAX_BATCHES_READING: usize = 512;

/// The largest batch body read: 256 checks, each `P`, its policies (8 at most, 1 KiB
/// at most: a name of 64 bytes and four numbers each), the id percent-encoded (3 bytes
/// per byte at most), spaces and a newline, for ids of `max_key_len` bytes and never less
/// than 1 KiB (so that a peer that allows longer ids gets its long ones refused line by
/// line, not its whole batch).
pub(super) fn max_batch_bytes(max_key_len: usize) -> usize {
    MAX_BATCH.saturating_mul(16 + 1024 + max_key_len.max(1024).saturating_mul(3))
}

/// A peer's body of at most `max` bytes, read within `timeout`; or the refusal that
/// closes the connection.
pub(super) async fn read_within<ReqB>(
    body: ReqB,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, Response<Full<Bytes>>>
where
    ReqB: Body,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tokio::time::timeout(timeout, read_body(body, max)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(BodyError::TooLarge)) => {
            Err(closing(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"))
        }
        Ok(Err(BodyError::Broken(_))) => Err(closing(StatusCode::BAD_REQUEST, "unreadable body\n")),
        Err(_) => Err(closing(StatusCode::REQUEST_TIMEOUT, "body too slow\n")),
    }
}

/// Answers a batch body; every check in it was forwarded, so none is forwarded again.
/// `_permit` is held until the body is read and answered.
pub(super) async fn answer_batch<B, ReqB>(
    backend: Arc<B>,
    max_key_len: usize,
    recent_sets: Arc<RecentSets>,
    timeout: Duration,
    body: ReqB,
    _permit: OwnedSemaphorePermit,
) -> Response<Full<Bytes>>
where
    B: Owner,
    ReqB: Body,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = match read_within(body, max_batch_bytes(max_key_len), timeout).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal,
    };
    let Ok(checks) = std::str::from_utf8(&bytes) else {
        return text(StatusCode::BAD_REQUEST, "batch is not UTF-8\n");
    };
    // Decided in order; checks that wait (for a key's counters on the way to this node
    // after a ring change, or sent on to where a key went) wait together, not one after
    // the other.
    let mut decided: Vec<(bool, Result<Decisions, StatusCode>)> = Vec::new();
    let mut waiting = tokio::task::JoinSet::new();
    for (each, check) in decode_checks(checks, &recent_sets) {
        let result = match check {
            Some((key, asked)) if KeyError::check_length(&key, max_key_len).is_ok() => {
                let set = asked.set(backend.policies());
                match backend.check_forwarded(&key, &set) {
                    Check::Ready(result) => result.map_err(|e| undecided(&e)),
                    Check::Pending(future) => {
                        let at = decided.len();
                        waiting.spawn(async move { (at, future.await) });
                        Err(StatusCode::SERVICE_UNAVAILABLE)
                    }
                }
            }
            _ => Err(StatusCode::BAD_REQUEST),
        };
        decided.push((each, result));
    }
    while let Some(Ok((at, result))) = waiting.join_next().await {
        decided[at].1 = result.map_err(|e| undecided(&e));
    }
    crate::observe::answered(decided.len());
    let mut answers = String::with_capacity(16 * decided.len());
    for (each, result) in &decided {
        encode_answer(&mut answers, result.as_ref(), *each);
    }
    text(StatusCode::OK, answers)
}
