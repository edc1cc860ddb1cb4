//! The wire protocol between nodes, without I/O: paths, bodies and headers, how user ids
//! and costs are encoded, and how answers are read. The server side
//! ([`endpoint`](crate::endpoint)) and the cluster backend's client side both speak it.
//!
//! A single check is `GET /check?user_id=<id>`, answered `200 ALLOWED` or
//! `429 RATE LIMIT EXCEEDED`, exactly as the original Python node serves and sends it, so
//! Python and ringlimit nodes can share a ring. Between ringlimit nodes, checks that
//! queue up for one peer go together as one `POST /check` (a batch). The whole protocol,
//! with every status and header, is in `docs/PROTOCOL.md` in the repository.

mod batch_body;
mod check;
mod secret;

pub(crate) use batch_body::{
    decode_answers, decode_checks, encode_answer, encode_checks, Answers, BATCH_PATH, MAX_BATCH,
};
#[cfg(test)]
pub(crate) use check::check_path_and_query;
pub(crate) use check::{
    forward_path_and_query, forwarded_cost, peer_state, PeerAnswer, ALLOWED_BODY, EXCEEDED_BODY,
};
pub use check::{CHECK_PATH, FORWARDED};
pub use secret::PeerSecret;
