//! Why the peer endpoint answers a request without asking its backend, and the plain-text
//! answers it sends.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::key::KeyError;
use crate::plain_text::{plain_text, WIRE};
use crate::BackendError;

/// The status of a peer's check the backend could not decide: `400` when it named more
/// distinct policies than the backend keeps (the sender's doing), or when the node that
/// holds the counters refused it (a refusal travels back as one, which no failure mode
/// counts); `503` otherwise.
pub(super) fn undecided(error: &BackendError) -> StatusCode {
    match error {
        BackendError::TooManyPolicies { .. } | BackendError::Refused { .. } => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Why a request never reached the backend.
pub(super) enum Refusal {
    NotFound,
    MethodNotAllowed(&'static str),
    BadKey(KeyError),
    Unauthorized,
    NotForwarded,
    Busy,
    BadCost(&'static str),
}

impl Refusal {
    pub(super) fn response(self) -> Response<Full<Bytes>> {
        match self {
            Self::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
            Self::MethodNotAllowed(allowed) => {
                let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allowed));
                response
            }
            Self::NotForwarded => text(
                StatusCode::BAD_REQUEST,
                "batches are for ringlimit nodes: mark them x-ringlimit-forwarded\n",
            ),
            Self::BadKey(error) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
            Self::BadCost(why) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
            Self::Unauthorized => text(
                StatusCode::UNAUTHORIZED,
                "forwarded check without the peer secret\n",
            ),
            Self::Busy => {
                let mut response = closing(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many batches in progress\n",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        }
    }
}

/// A plain-text answer, typed as the wire protocol has it.
pub(super) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    plain_text(status, body, WIRE)
}

/// A refusal after which the connection closes: the rest of the body is never read.
pub(super) fn closing(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = text(status, body);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
