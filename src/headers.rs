//! `RateLimit-Policy`, `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10, structured
//! fields) and `Retry-After`, rendered without formatting machinery.
//!
//! # Examples
//!
//! ```
//! use http::{Request, StatusCode};
//! use ringlimit::{headers, MemoryBackend, Policy, RateLimitLayer};
//! use std::{convert::Infallible, num::NonZeroU32, time::Duration};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let policy = Policy::per_window(NonZeroU32::new(1).unwrap(), Duration::from_secs(60));
//! let limited = RateLimitLayer::new(MemoryBackend::new(policy))
//!     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(http::Response::new(())) }));
//! let request = || Request::get("/?user_id=alice").body(()).unwrap();
//!
//! let allowed = limited.clone().oneshot(request()).await.unwrap();
//! assert_eq!(allowed.headers()[headers::RATELIMIT_POLICY], r#""default";q=1;w=60"#);
//! let denied = limited.oneshot(request()).await.unwrap();
//! assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(denied.headers()[headers::RATELIMIT].to_str().unwrap().starts_with(r#""default";r=0;t="#));
//! assert!(denied.headers().contains_key(http::header::RETRY_AFTER));
//! # }
//! ```

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::{Decision, Policy};

/// `RateLimit-Policy: "<name>";q=<limit>;w=<window seconds>`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit: "<name>";r=<remaining>;t=<seconds to reset>`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The policy header value, rendered once per layer.
pub(crate) fn policy_value(policy: &Policy) -> HeaderValue {
    let window = policy.window();
    let window_secs = (window.as_secs() + u64::from(window.subsec_nanos() > 0)).max(1);
    let name = policy.name();
    render(&[
        b"\"",
        name.as_str().as_bytes(),
        b"\";q=",
        itoa::Buffer::new().format(policy.limit()).as_bytes(),
        b";w=",
        itoa::Buffer::new().format(window_secs).as_bytes(),
    ])
}

/// Adds the policy and state headers; on a response that `refuses` the request also
/// `Retry-After`. Headers already set (by a custom rejection, say) are kept.
pub(crate) fn insert(
    headers: &mut HeaderMap,
    policy: &HeaderValue,
    decision: &Decision,
    refuses: bool,
) {
    let mut reset = itoa::Buffer::new();
    let reset = reset.format(decision.reset_secs());
    if !headers.contains_key(RATELIMIT_POLICY) {
        headers.insert(RATELIMIT_POLICY, policy.clone());
    }
    if !headers.contains_key(RATELIMIT) {
        let value = render(&[
            name_item(policy),
            b";r=",
            itoa::Buffer::new().format(decision.remaining).as_bytes(),
            b";t=",
            reset.as_bytes(),
        ]);
        headers.insert(RATELIMIT, value);
    }
    if refuses && !headers.contains_key(RETRY_AFTER) {
        headers.insert(RETRY_AFTER, render(&[reset.as_bytes()]));
    }
}

/// The policy's name as the policy header renders it, quotes included: everything before
/// its first `;` (a name holds none, see [`PolicyName`](crate::policy::PolicyName)). Read
/// as bytes: this runs on every response.
fn name_item(policy: &HeaderValue) -> &[u8] {
    let value = policy.as_bytes();
    value.split(|&b| b == b';').next().unwrap_or(value)
}

/// The policy's name, from its rendered header.
pub(crate) fn policy_name(policy: &HeaderValue) -> &str {
    std::str::from_utf8(name_item(policy))
        .unwrap_or_default()
        .trim_matches('"')
}

fn render(parts: &[&[u8]]) -> HeaderValue {
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        bytes.extend_from_slice(part);
    }
    // One allocation: the Vec becomes the value's storage.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes))
        .expect("digits and quoted ASCII are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;
    use std::time::Duration;

    #[test]
    fn renders_the_draft_format() {
        let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
        let mut headers = HeaderMap::new();
        let decision = Decision {
            allowed: true,
            limit: 5,
            remaining: 4,
            reset: Duration::from_millis(36_200),
        };
        insert(&mut headers, &policy_value(&policy), &decision, false);
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=5;w=60");
        assert_eq!(headers["ratelimit"], "\"default\";r=4;t=37");
        assert!(!headers.contains_key(RETRY_AFTER));
    }

    #[test]
    fn denial_adds_retry_after_rounded_up_at_least_one() {
        let policy = Policy::per_window(NonZeroU32::MIN, Duration::from_millis(1500));
        let mut headers = HeaderMap::new();
        let decision = Decision {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset: Duration::from_millis(10),
        };
        insert(&mut headers, &policy_value(&policy), &decision, true);
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=1;w=2");
        assert_eq!(headers["ratelimit"], "\"default\";r=0;t=1");
        assert_eq!(headers[RETRY_AFTER], "1");
    }
}
