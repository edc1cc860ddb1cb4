//! The owner's side of a handoff (`POST /handoff`): the body read within the same
//! bounds as a batch's (a byte cap, a deadline, a permit), then answered by the backend.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tokio::sync::OwnedSemaphorePermit;

use super::answer_batch::read_within;
use super::refusal::text;
use crate::backend::Owner;
use crate::protocol::MAX_HANDOFF_BYTES;

/// Answers a handoff asked by `query` with `body`. `_permit` is held until it is done.
pub(super) async fn answer_handoff<B, ReqB>(
    backend: Arc<B>,
    query: String,
    timeout: Duration,
    body: ReqB,
    _permit: OwnedSemaphorePermit,
) -> Response<Full<Bytes>>
where
    B: Owner,
    ReqB: Body,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = match read_within(body, MAX_HANDOFF_BYTES, timeout).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal,
    };
    let Ok(body) = std::str::from_utf8(&bytes) else {
        return text(StatusCode::BAD_REQUEST, "handoff is not UTF-8\n");
    };
    match backend.answer_handoff(&query, body) {
        None => text(StatusCode::NOT_FOUND, "this node hands no counters over\n"),
        Some(Ok(answer)) => text(StatusCode::OK, answer),
        Some(Err(why)) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
    }
}
