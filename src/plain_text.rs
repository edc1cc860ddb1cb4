//! Short plain-text responses: the layer's rejections and the peer endpoint's answers.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// The content type of the layer's own responses.
pub(crate) const UTF8: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
/// The content type of the peer endpoint's answers, as the wire protocol has it.
#[cfg(feature = "cluster")]
pub(crate) const WIRE: HeaderValue = HeaderValue::from_static("text/plain");

/// A response of `status` with `body`, typed `content_type`.
pub(crate) fn plain_text<T: From<Bytes>>(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: HeaderValue,
) -> Response<T> {
    let mut response = Response::new(T::from(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}
