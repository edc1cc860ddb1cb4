//! The wire protocol between nodes, without I/O: paths, bodies and headers, how user ids
//! and costs are encoded, and how answers are read. The server side
//! ([`endpoint`](crate::endpoint)) and the cluster backend's client side both speak it.
//!
//! A single check is `GET /check?user_id=<id>`, answered `200 ALLOWED` or
//! `429 RATE LIMIT EXCEEDED`, exactly as the original Python node serves and sends it, so
//! Python and ringlimit nodes can share a ring. Between ringlimit nodes, checks that
//! queue up for one peer go together as one `POST /check` (a batch). The whole protocol,
//! with every status and header, is in `docs/PROTOCOL.md` in the repository.
//!
//! # Examples
//!
//! A forwarded check, as another node sends it, answered by a node's peer endpoint:
//!
//! ```
//! use http::{Request, StatusCode};
//! use ringlimit::{endpoint::PeerEndpoint, protocol, MemoryBackend, Policy};
//! use std::{num::NonZeroU32, sync::Arc, time::Duration};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let policy = Policy::per_window(NonZeroU32::new(1).unwrap(), Duration::from_secs(60));
//! let endpoint = PeerEndpoint::new(Arc::new(MemoryBackend::new(policy)));
//! let forwarded = || {
//!     Request::get(format!("{}?user_id=alice", protocol::CHECK_PATH))
//!         .header(protocol::FORWARDED, "1")
//!         .body(String::new())
//!         .unwrap()
//! };
//! assert_eq!(endpoint.clone().oneshot(forwarded()).await.unwrap().status(), StatusCode::OK);
//! let over = endpoint.oneshot(forwarded()).await.unwrap();
//! assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
//! # }
//! ```

mod batch_body;
mod check;
mod handoff;
mod policies;
#[cfg(test)]
mod proptests;
mod recent_sets;
mod relayed;
mod secret;

pub(crate) use batch_body::{
    decode_answers, decode_checks, encode_answer, encode_checks, from_older_node, Answers,
    BATCH_PATH, MAX_BATCH,
};
#[cfg(test)]
pub(crate) use check::check_path_and_query;
pub(crate) use check::{
    forward_path_and_query, forwarded_asked, peer_state, Asked, PeerAnswer, ALLOWED_BODY,
    DECISIONS, EXCEEDED_BODY,
};
pub use check::{CHECK_PATH, FORWARDED};
pub(crate) use handoff::{
    decode_handoff_query, decode_held, decode_keys, encode_held, encode_keys,
    handoff_path_and_query, HandoffOp, HANDOFF_PATH, MAX_HANDOFF_BYTES, MAX_HANDOFF_KEYS,
};
pub(crate) use policies::{encode_each, Told};
pub(crate) use recent_sets::RecentSets;
pub(crate) use relayed::Relayed;
pub use secret::PeerSecret;
