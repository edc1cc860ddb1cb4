//! A rejection for gRPC services: the status a gRPC client understands instead of an
//! HTTP `429`, as a trailers-only response.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use super::grpc_details::status_details;
use super::{OnRejection, Rejection};

/// gRPC status codes used here.
const INVALID_ARGUMENT: u8 = 3;
const RESOURCE_EXHAUSTED: u8 = 8;
const INTERNAL: u8 = 13;
const UNAVAILABLE: u8 = 14;

/// What `grpc-message` percent-encodes: everything but printable ASCII, and `%`.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// Rejects gRPC requests the way gRPC clients expect: HTTP `200` with
/// `content-type: application/grpc` and the status in the headers, no body (a
/// trailers-only response).
///
/// - Over the limit: `RESOURCE_EXHAUSTED`, with the delay until the request would fit
///   as `grpc-retry-pushback-ms` and as a `google.rpc.RetryInfo` in
///   `grpc-status-details-bin` (what gRPC clients and `tonic-types` read).
/// - No usable key: `INVALID_ARGUMENT` with the reason (`INTERNAL` when the server is at
///   fault).
/// - The backend could not decide: `UNAVAILABLE`.
///
/// The layer adds its `RateLimit` headers as for any rejection; gRPC clients see them as
/// metadata.
///
/// # Examples
///
/// ```
/// use ringlimit::key::HeaderKey;
/// use ringlimit::layer::GrpcRejection;
/// use ringlimit::{MemoryBackend, Policy, RateLimitLayer};
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let policy = Policy::per_window(NonZeroU32::new(100).unwrap(), Duration::from_secs(60));
/// let layer = RateLimitLayer::new(MemoryBackend::new(policy))
///     .key(HeaderKey::from_static("x-user-id"))
///     .on_rejection(GrpcRejection);
/// // tonic::transport::Server::builder().layer(layer).add_service(...)
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcRejection;

impl OnRejection for GrpcRejection {
    fn respond(&self, rejection: Rejection) -> Response<Bytes> {
        let (code, message, retry) = match rejection {
            Rejection::Limited(decisions) => (
                RESOURCE_EXHAUSTED,
                "rate limit exceeded".to_owned(),
                decisions.retry_delay(),
            ),
            Rejection::BadKey(error) if error.is_server_error() => {
                (INTERNAL, "internal server error".to_owned(), None)
            }
            Rejection::BadKey(error) => (INVALID_ARGUMENT, error.to_string(), None),
            Rejection::Unavailable(_) => (UNAVAILABLE, "rate limiter unavailable".to_owned(), None),
        };
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::OK;
        insert_status(response.headers_mut(), code, &message, retry);
        response
    }
}

fn insert_status(
    headers: &mut HeaderMap,
    code: u8,
    message: &str,
    retry: Option<std::time::Duration>,
) {
    let encoded = |text: String| HeaderValue::try_from(text).expect("ASCII, percent-encoded");
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    let message_value = utf8_percent_encode(message, GRPC_MESSAGE).to_string();
    headers.insert("grpc-message", encoded(message_value));
    if let Some(retry) = retry {
        let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
        headers.insert("grpc-retry-pushback-ms", HeaderValue::from(ms));
    }
    let details = status_details(code, message, retry);
    headers.insert("grpc-status-details-bin", encoded(details));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackendError, KeyError};
    use http_body::Body;

    fn header<'a>(response: &'a Response<Bytes>, name: &str) -> &'a str {
        response.headers()[name].to_str().unwrap()
    }

    #[test]
    fn a_rejection_is_trailers_only_with_its_status_in_the_headers() {
        let unavailable = Rejection::Unavailable(BackendError::CircuitOpen {
            target: "10.0.0.1:7000".into(),
        });
        let response = GrpcRejection.respond(unavailable);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), "application/grpc");
        assert_eq!(header(&response, "grpc-status"), "14");
        assert_eq!(
            header(&response, "grpc-message"),
            "rate limiter unavailable"
        );
        assert!(!response.headers().contains_key("grpc-retry-pushback-ms"));
        let body = super::super::ResponseBody::<http_body_util::Empty<Bytes>>::rejected(
            response.into_body(),
        );
        assert!(
            body.is_end_stream(),
            "no body: the headers are the trailers"
        );
    }

    #[test]
    fn a_message_outside_printable_ascii_is_percent_encoded() {
        let error = KeyError::Missing {
            what: "ünïcode%".into(),
        };
        let response = GrpcRejection.respond(Rejection::BadKey(error));
        assert_eq!(header(&response, "grpc-status"), "3");
        let message = header(&response, "grpc-message");
        assert!(message.contains("%C3%BCn%C3%AFcode%25"), "{message}");
        assert!(message.is_ascii());
    }
}
