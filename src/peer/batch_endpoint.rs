//! The owner's side of a batch: read the checks, decide each here, answer in order.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};

use super::batch::{decode_checks, encode_answer, MAX_BATCH_BYTES};
use crate::{Backend, Check};

/// Answers a batch body; every check in it was forwarded, so none is forwarded again.
pub(super) async fn answer_batch<B, ReqB>(
    backend: Arc<B>,
    max_key_len: usize,
    body: ReqB,
) -> Response<Full<Bytes>>
where
    B: Backend,
    ReqB: Body,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Ok(collected) = Limited::new(body, MAX_BATCH_BYTES).collect().await else {
        return super::endpoint::text(StatusCode::BAD_REQUEST, "unreadable or oversized batch\n");
    };
    let bytes = collected.to_bytes();
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return super::endpoint::text(StatusCode::BAD_REQUEST, "batch is not UTF-8\n");
    };
    let mut answers = String::with_capacity(16 * text.lines().count().min(super::batch::MAX_BATCH));
    for check in decode_checks(text) {
        let decided = match check {
            Some((key, cost)) if key.len() <= max_key_len => {
                match backend.check_forwarded(&key, cost) {
                    Check::Ready(result) => result.map_err(|_| StatusCode::SERVICE_UNAVAILABLE),
                    Check::Pending(future) => {
                        future.await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
                    }
                }
            }
            _ => Err(StatusCode::BAD_REQUEST),
        };
        encode_answer(&mut answers, decided.as_ref());
    }
    super::endpoint::text(StatusCode::OK, answers)
}
