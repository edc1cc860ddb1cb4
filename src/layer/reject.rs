use bytes::Bytes;
use http::{Response, StatusCode};

use crate::plain_text::{plain_text, UTF8};
use crate::{BackendError, Decisions, KeyError};

/// Why the layer answered a request itself instead of calling the inner service.
#[derive(Debug)]
#[non_exhaustive]
pub enum Rejection {
    /// Over the limit: `429 Too Many Requests` by default.
    Limited(Decisions),
    /// No usable key: `400 Bad Request` by default (`500` with a generic body when the
    /// server is at fault, [`KeyError::is_server_error`]).
    BadKey(KeyError),
    /// The backend could not decide: `503 Service Unavailable` by default.
    Unavailable(BackendError),
}

/// Builds the response for a [`Rejection`].
///
/// Implemented for closures `Fn(Rejection) -> Response<Bytes>`. Whatever the response, the
/// layer then adds its `RateLimit` headers (and `Retry-After` on a `Limited`), extending
/// any the response has already, and puts the [`Decisions`](crate::Decisions) into its
/// extensions.
pub trait OnRejection: Clone + Send + Sync + 'static {
    /// The response for `rejection`.
    fn respond(&self, rejection: Rejection) -> Response<Bytes>;
}

impl<F> OnRejection for F
where
    F: Fn(Rejection) -> Response<Bytes> + Clone + Send + Sync + 'static,
{
    fn respond(&self, rejection: Rejection) -> Response<Bytes> {
        self(rejection)
    }
}

/// The default rejection: a short plain-text body with the matching status.
///
/// Backend failures are logged by the caller's tracing, not echoed to the client, so no
/// peer address leaks out.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainTextRejection;

impl OnRejection for PlainTextRejection {
    fn respond(&self, rejection: Rejection) -> Response<Bytes> {
        let (status, body) = match rejection {
            Rejection::Limited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit exceeded\n".into(),
            ),
            Rejection::BadKey(error) if error.is_server_error() => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error\n".into(),
            ),
            Rejection::BadKey(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")),
            Rejection::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "rate limiter unavailable\n".into(),
            ),
        };
        plain_text(status, body, UTF8)
    }
}
