#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
//! ringlimit

pub mod backend;
mod clock;
mod decision;
pub mod headers;
pub mod key;
pub mod layer;
mod policy;
pub mod ring;

pub use backend::{Backend, BackendError, Check, MemoryBackend};
pub use clock::{Clock, ManualClock, SystemClock};
pub use decision::Decision;
pub use key::{KeyError, KeyExtractor};
pub use layer::{OnRejection, RateLimit, RateLimitLayer, Rejection};
pub use policy::Policy;
pub use ring::Ring;
