//! `RateLimit-Policy`, `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11, structured
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

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::policy::PolicySet;
use crate::{Decisions, Policy};

/// `RateLimit-Policy: "<name>";q=<limit>;w=<window seconds>`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit: "<name>";r=<remaining>;t=<seconds to reset>`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The policy header value, rendered once per layer.
/// `RateLimit-Policy` for `policies`: a list with an item per policy, in order, as
/// `"<name>";q=<limit>;w=<window s>` (the window rounded up to whole seconds).
pub(crate) fn policy_list(policies: &[Policy]) -> HeaderValue {
    let mut bytes = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        let window = policy.window();
        let window_secs = (window.as_secs() + u64::from(window.subsec_nanos() > 0)).max(1);
        if i > 0 {
            bytes.extend_from_slice(b", ");
        }
        push_name(&mut bytes, policy);
        bytes.extend_from_slice(b";q=");
        bytes.extend_from_slice(itoa::Buffer::new().format(policy.limit()).as_bytes());
        bytes.extend_from_slice(b";w=");
        bytes.extend_from_slice(itoa::Buffer::new().format(window_secs).as_bytes());
    }
    value(bytes)
}

/// What one layer adds to a response: its policies, the one nearest its limit, and for a
/// refusal when to retry.
#[derive(Debug)]
pub(crate) struct Report {
    policy: HeaderValue,
    ratelimit: HeaderValue,
    retry_after: Option<u64>,
}

impl Report {
    /// The report of `decisions` under `set`. (A backend of someone else's making that
    /// answers for fewer policies than asked is reported on the first; it never panics.)
    pub(crate) fn new(set: &PolicySet, decisions: &Decisions) -> Self {
        let nearest = decisions.nearest(set);
        let nearest = if nearest < set.len() { nearest } else { 0 };
        let decision = decisions.get(nearest).unwrap_or(crate::Decision::new(
            false,
            0,
            0,
            std::time::Duration::ZERO,
        ));
        let policy = &set.as_slice()[nearest];
        let (mut remaining, mut reset) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (remaining, reset) = (
            remaining.format(decision.remaining),
            reset.format(decision.reset_secs()),
        );
        // Sized exactly: a value whose length is its capacity needs no second allocation.
        let len = policy.name().as_bytes().len() + 8 + remaining.len() + reset.len();
        let mut bytes = Vec::with_capacity(len);
        push_name(&mut bytes, policy);
        bytes.extend_from_slice(b";r=");
        bytes.extend_from_slice(remaining.as_bytes());
        bytes.extend_from_slice(b";t=");
        bytes.extend_from_slice(reset.as_bytes());
        let retry_after = decisions
            .retry_after(set)
            .map(|reset| crate::Decision::new(false, 0, 0, reset).reset_secs());
        Self {
            policy: set.header().clone(),
            ratelimit: value(bytes),
            retry_after,
        }
    }
}

/// Adds `report` to `headers`. A field another layer set already is kept and extended:
/// `RateLimit-Policy` and `RateLimit` are lists, so this layer's items follow the other
/// layer's; `Retry-After` (only when this layer `refuses`) becomes the later of the two.
///
/// Taken by value: the `RateLimit` value moves into the map (a clone of it would copy its
/// bytes into a shared buffer first).
pub(crate) fn insert(headers: &mut HeaderMap, report: Report, refuses: bool) {
    append(headers, RATELIMIT_POLICY, report.policy);
    append(headers, RATELIMIT, report.ratelimit);
    if let (true, Some(secs)) = (refuses, report.retry_after) {
        let before = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if before.is_none_or(|before| before < secs) {
            let secs = itoa::Buffer::new().format(secs).as_bytes().to_vec();
            headers.insert(RETRY_AFTER, value(secs));
        }
    }
}

/// Sets `name` to `item`, or appends `item` to the list already there (one lookup of
/// the name either way).
fn append(headers: &mut HeaderMap, name: HeaderName, item: HeaderValue) {
    match headers.entry(name) {
        Entry::Vacant(vacant) => {
            vacant.insert(item);
        }
        Entry::Occupied(mut occupied) => {
            let before = occupied.get().as_bytes();
            let mut bytes = Vec::with_capacity(before.len() + 2 + item.len());
            bytes.extend_from_slice(before);
            bytes.extend_from_slice(b", ");
            bytes.extend_from_slice(item.as_bytes());
            occupied.insert(value(bytes));
        }
    }
}

/// `"<name>"`: a name renders as it is, quoted ([`PolicyName`](crate::policy::PolicyName)
/// refuses every character that would need escaping).
fn push_name(bytes: &mut Vec<u8>, policy: &Policy) {
    bytes.push(b'"');
    bytes.extend_from_slice(policy.name().as_bytes());
    bytes.push(b'"');
}

fn value(bytes: Vec<u8>) -> HeaderValue {
    // One allocation: the Vec becomes the value's storage.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes))
        .expect("digits and quoted ASCII are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyName;
    use crate::Decision;
    use std::num::NonZeroU32;
    use std::time::Duration;

    fn policy(name: &str, limit: u32, window: Duration) -> Policy {
        Policy::per_window(NonZeroU32::new(limit).unwrap(), window)
            .with_name(PolicyName::new(name).unwrap())
    }

    #[test]
    fn renders_the_draft_format() {
        let set = PolicySet::from(policy("default", 5, Duration::from_secs(60)));
        let decisions = Decisions::new(
            &set,
            &[Decision::new(true, 5, 4, Duration::from_millis(36_200))],
        );
        let mut headers = HeaderMap::new();
        insert(&mut headers, Report::new(&set, &decisions), false);
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=5;w=60");
        assert_eq!(headers["ratelimit"], "\"default\";r=4;t=37");
        assert!(!headers.contains_key(RETRY_AFTER));
    }

    #[test]
    fn denial_adds_retry_after_rounded_up_at_least_one() {
        let set = PolicySet::from(policy("default", 1, Duration::from_millis(1500)));
        let decisions = Decisions::new(
            &set,
            &[Decision::new(false, 1, 0, Duration::from_millis(10))],
        );
        let mut headers = HeaderMap::new();
        insert(&mut headers, Report::new(&set, &decisions), true);
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=1;w=2");
        assert_eq!(headers["ratelimit"], "\"default\";r=0;t=1");
        assert_eq!(headers[RETRY_AFTER], "1");
    }

    #[test]
    fn several_policies_list_every_policy_and_report_the_nearest() {
        let second = Duration::from_secs(1);
        let set = PolicySet::new([
            policy("burst", 10, second),
            policy("hourly", 100, Duration::from_secs(3600)),
        ])
        .unwrap();
        // 3 of 10 left is nearer the limit than 50 of 100.
        let each = [
            Decision::new(true, 10, 3, second),
            Decision::new(true, 100, 50, Duration::from_secs(3000)),
        ];
        let mut headers = HeaderMap::new();
        insert(
            &mut headers,
            Report::new(&set, &Decisions::new(&set, &each)),
            false,
        );
        assert_eq!(
            headers[RATELIMIT_POLICY],
            "\"burst\";q=10;w=1, \"hourly\";q=100;w=3600"
        );
        assert_eq!(headers[RATELIMIT], "\"burst\";r=3;t=1");
        // Both deny: the one that allows again last is reported, and is Retry-After.
        let each = [
            Decision::new(false, 10, 0, second),
            Decision::new(false, 100, 0, Duration::from_secs(3000)),
        ];
        let mut headers = HeaderMap::new();
        insert(
            &mut headers,
            Report::new(&set, &Decisions::new(&set, &each)),
            true,
        );
        assert_eq!(headers[RATELIMIT], "\"hourly\";r=0;t=3000");
        assert_eq!(headers[RETRY_AFTER], "3000");
    }

    #[test]
    fn a_second_layer_extends_the_lists_and_keeps_the_later_retry() {
        let outer = PolicySet::from(policy("global", 1000, Duration::from_secs(60)));
        let inner = PolicySet::from(policy("login", 5, Duration::from_secs(60)));
        let mut headers = HeaderMap::new();
        let denied = |reset| Decision::new(false, 5, 0, Duration::from_secs(reset));
        insert(
            &mut headers,
            Report::new(&inner, &Decisions::new(&inner, &[denied(40)])),
            true,
        );
        let outer_decision = Decision::new(false, 1000, 0, Duration::from_secs(9));
        insert(
            &mut headers,
            Report::new(&outer, &Decisions::new(&outer, &[outer_decision])),
            true,
        );
        assert_eq!(
            headers[RATELIMIT_POLICY],
            "\"login\";q=5;w=60, \"global\";q=1000;w=60"
        );
        assert_eq!(headers[RATELIMIT], "\"login\";r=0;t=40, \"global\";r=0;t=9");
        assert_eq!(headers[RETRY_AFTER], "40");
    }
}
