use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{service_fn, Layer, ServiceExt};

use super::*;
use crate::key::HeaderKey;
use crate::{
    Backend, BackendError, Check, Decisions, ManualClock, MemoryBackend, Policy, PolicySet,
};

fn policy(limit: u32) -> Policy {
    Policy::per_window(NonZeroU32::new(limit).unwrap(), Duration::from_secs(60))
}

/// A clock 23 s into a 60 s window, so 37 s remain.
fn clock() -> ManualClock {
    ManualClock::new(Duration::from_secs(1_700_000_040 + 23))
}

/// An inner service that counts its calls.
fn counting(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |_: Request<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(String::from("hello"))) }
    })
}

fn get(uri: &str) -> Request<String> {
    Request::get(uri).body(String::new()).unwrap()
}

async fn text<B: http_body::Body>(response: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn allows_then_rejects_without_calling_the_inner_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = MemoryBackend::builder(policy(2)).clock(clock()).build();
    let service = RateLimitLayer::new(backend).layer(counting(calls.clone()));

    for remaining in [1, 0] {
        let response = service
            .clone()
            .oneshot(get("/?user_id=alice"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"default\";q=2;w=60"
        );
        assert_eq!(
            response.headers()["ratelimit"],
            format!("\"default\";r={remaining};t=37").as_str()
        );
        assert!(response.extensions().get::<Decisions>().unwrap().allowed());
        assert_eq!(text(response).await, "hello");
    }
    let denied = service
        .clone()
        .oneshot(get("/?user_id=alice"))
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.headers()["ratelimit"], "\"default\";r=0;t=37");
    assert_eq!(denied.headers()["retry-after"], "37");
    assert!(!denied.extensions().get::<Decisions>().unwrap().allowed());
    assert_eq!(text(denied).await, "rate limit exceeded\n");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_after_rounds_up_and_is_at_least_one() {
    let clock = clock();
    let backend = MemoryBackend::builder(policy(1))
        .clock(clock.clone())
        .build();
    let service = RateLimitLayer::new(backend).layer(counting(Arc::default()));
    service.clone().oneshot(get("/?user_id=a")).await.unwrap();

    clock.advance(Duration::from_millis(36_500)); // 0.5 s left
    let denied = service.clone().oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(denied.headers()["retry-after"], "1");
    clock.advance(Duration::from_millis(499)); // 1 ms left
    let denied = service.clone().oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(denied.headers()["retry-after"], "1");
    clock.advance(Duration::from_millis(1)); // a new window
    let allowed = service.oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_without_a_key_gets_400_and_counts_nothing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = Arc::new(MemoryBackend::new(policy(1)));
    let service = RateLimitLayer::shared(backend.clone()).layer(counting(calls.clone()));

    for (uri, reason) in [
        ("/", "missing query parameter `user_id`\n"),
        ("/?user_id=", "empty query parameter `user_id`\n"),
        (
            "/?user_id=%zz",
            "invalid query parameter `user_id`: bad percent-encoding\n",
        ),
    ] {
        let response = service.clone().oneshot(get(uri)).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(!response.headers().contains_key("ratelimit"));
        assert_eq!(text(response).await, reason);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(backend.tracked_keys(), 0);
}

#[tokio::test]
async fn an_overlong_key_gets_400() {
    let service = RateLimitLayer::new(MemoryBackend::new(policy(1)))
        .max_key_len(8)
        .layer(counting(Arc::default()));
    let ok = service
        .clone()
        .oneshot(get("/?user_id=12345678"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let long = service.oneshot(get("/?user_id=123456789")).await.unwrap();
    assert_eq!(long.status(), StatusCode::BAD_REQUEST);
    assert_eq!(text(long).await, "rate-limit key longer than 8 bytes\n");
}

#[tokio::test]
async fn header_keys_and_custom_rejections() {
    let service = RateLimitLayer::new(MemoryBackend::builder(policy(1)).clock(clock()).build())
        .key(HeaderKey::from_static("x-user-id"))
        .on_rejection(|rejection: Rejection| {
            let status = match rejection {
                Rejection::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut response = Response::new(Bytes::from_static(b"{\"error\":true}"));
            *response.status_mut() = status;
            response
        })
        .layer(counting(Arc::default()));
    let request = || {
        Request::get("/")
            .header("x-user-id", "alice")
            .body(String::new())
            .unwrap()
    };
    assert_eq!(
        service.clone().oneshot(request()).await.unwrap().status(),
        200
    );
    let denied = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    // The layer adds its headers to a custom rejection too.
    assert_eq!(denied.headers()["retry-after"], "37");
    assert_eq!(text(denied).await, "{\"error\":true}");
    let anonymous = service.oneshot(get("/")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// A remote-style backend: answers through a future after yielding once.
struct SlowBackend {
    memory: MemoryBackend<ManualClock>,
    fail: bool,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Decisions, BackendError>> + Send>>;

impl Backend for SlowBackend {
    type Future = BoxFuture;

    fn policies(&self) -> &PolicySet {
        self.memory.policies()
    }

    fn check(&self, key: &str, policies: &PolicySet) -> Check<BoxFuture> {
        let result = if self.fail {
            Err(BackendError::Timeout {
                target: "127.0.0.1:9".into(),
                after: Duration::from_millis(250),
            })
        } else {
            self.memory.decide_all(key, policies)
        };
        Check::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            result
        }))
    }
}

#[tokio::test]
async fn an_async_backend_goes_through_the_checking_state() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = SlowBackend {
        memory: MemoryBackend::builder(policy(1)).clock(clock()).build(),
        fail: false,
    };
    let service = RateLimitLayer::new(backend).layer(counting(calls.clone()));
    let allowed = service.clone().oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["ratelimit"], "\"default\";r=0;t=37");
    let denied = service.oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_backend_failure_gets_503_without_leaking_the_peer() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = SlowBackend {
        memory: MemoryBackend::builder(policy(1)).clock(clock()).build(),
        fail: true,
    };
    let service = RateLimitLayer::new(backend).layer(counting(calls.clone()));
    let response = service.oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(text(response).await, "rate limiter unavailable\n");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Two requests over a limit of one under a policy in shadow mode, through `service`: both
/// reach the inner service, the second reported as limited (headers, decision) but with
/// no `Retry-After`.
async fn shadowed<S>(service: S, calls: &AtomicUsize)
where
    S: tower::Service<Request<String>, Response = Response<ResponseBody<String>>> + Clone,
    S::Error: std::fmt::Debug,
{
    let first = service.clone().oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let over = service.oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(over.status(), StatusCode::OK, "shadow mode never rejects");
    assert_eq!(over.headers()["ratelimit"], "\"default\";r=0;t=37");
    assert!(
        !over.headers().contains_key("retry-after"),
        "nothing to retry: it went through"
    );
    let decisions = over.extensions().get::<Decisions>().unwrap();
    assert!(decisions.allowed(), "let through");
    assert!(!decisions.get(0).unwrap().allowed, "over its limit");
    assert_eq!(text(over).await, "hello");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_policy_in_shadow_mode_reports_the_limit_but_never_rejects() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = MemoryBackend::builder(policy(1).with_shadow(true))
        .clock(clock())
        .build();
    let backend = Arc::new(backend);
    let service = RateLimitLayer::shared(backend.clone()).layer(counting(calls.clone()));
    shadowed(service, &calls).await;
    assert_eq!(
        backend.used("a"),
        1,
        "the request let through counted nothing"
    );

    // The same through a backend that answers with a future.
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = SlowBackend {
        memory: MemoryBackend::builder(policy(1).with_shadow(true))
            .clock(clock())
            .build(),
        fail: false,
    };
    let service = RateLimitLayer::new(backend).layer(counting(calls.clone()));
    shadowed(service, &calls).await;
}

#[tokio::test]
async fn a_named_policy_is_named_in_both_headers() {
    let name = crate::policy::PolicyName::new("tier:free").unwrap();
    let backend = MemoryBackend::builder(policy(1).with_name(name))
        .clock(clock())
        .build();
    let service = RateLimitLayer::new(backend).layer(counting(Arc::default()));
    let allowed = service.clone().oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(
        allowed.headers()["ratelimit-policy"],
        "\"tier:free\";q=1;w=60"
    );
    assert_eq!(allowed.headers()["ratelimit"], "\"tier:free\";r=0;t=37");
    let denied = service.oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.headers()["ratelimit"], "\"tier:free\";r=0;t=37");
}

// Regression: a policy in shadow mode answered 503 when the backend could not decide.
#[tokio::test]
async fn a_policy_in_shadow_mode_lets_undecided_requests_through() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = SlowBackend {
        memory: MemoryBackend::builder(policy(1).with_shadow(true))
            .clock(clock())
            .build(),
        fail: true,
    };
    let service = RateLimitLayer::new(backend).layer(counting(calls.clone()));
    let response = service.oneshot(get("/?user_id=a")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        !response.headers().contains_key("ratelimit"),
        "nothing decided"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
