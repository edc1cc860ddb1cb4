use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::PeerEndpoint;
use crate::protocol::FORWARDED;
use crate::{ClusterBackend, ManualClock, MemoryBackend, Policy, Ring};

fn policy() -> Policy {
    Policy::per_window(NonZeroU32::new(1).unwrap(), Duration::from_secs(60))
}

async fn ask(
    endpoint: &PeerEndpoint<impl crate::backend::Owner>,
    request: Request<String>,
) -> (StatusCode, String, http::HeaderMap) {
    let response = endpoint.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        String::from_utf8(body.to_vec()).unwrap(),
        parts.headers,
    )
}

fn get(uri: &str) -> Request<String> {
    Request::get(uri).body(String::new()).unwrap()
}

#[tokio::test]
async fn serves_the_wire_contract() {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_040 + 23));
    let endpoint = PeerEndpoint::new(Arc::new(
        MemoryBackend::builder(policy()).clock(clock).build(),
    ));

    let (status, body, headers) = ask(&endpoint, get("/check?user_id=alice")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ALLOWED"));
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["ratelimit"], "\"default\";r=0;t=37");

    let (status, body, headers) = ask(&endpoint, get("/check?user_id=alice")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "RATE LIMIT EXCEEDED")
    );
    assert_eq!(headers["retry-after"], "37");

    for (uri, status) in [
        ("/check", StatusCode::BAD_REQUEST),
        ("/check?user_id=", StatusCode::BAD_REQUEST),
        ("/check?user_id=%G0", StatusCode::BAD_REQUEST),
        ("/other?user_id=bob", StatusCode::NOT_FOUND),
        ("/", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(ask(&endpoint, get(uri)).await.0, status, "{uri}");
    }
    let with_method = |method| {
        Request::builder()
            .method(method)
            .uri("/check?user_id=bob")
            .body(String::new())
            .unwrap()
    };
    let (status, _, headers) = ask(&endpoint, with_method(Method::DELETE)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, POST");
    // `POST /check` is a batch, which only nodes send (marked as forwarded).
    let (status, _, _) = ask(&endpoint, with_method(Method::POST)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // None of the refused requests counted bob.
    assert_eq!(
        ask(&endpoint, get("/check?user_id=bob")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_marked_request_is_answered_here_even_for_a_key_owned_elsewhere() {
    // Port 9 (discard) on loopback: never asked, since marked checks are not forwarded.
    let ring = Ring::new(["127.0.0.1:7001", "127.0.0.1:9"]).unwrap();
    let backend = ClusterBackend::new(policy(), "127.0.0.1:7001", ring).unwrap();
    let key = (0..1000)
        .map(|i| format!("u{i}"))
        .find(|k| backend.ring().owner(k) == "127.0.0.1:9")
        .unwrap();
    let backend = Arc::new(backend);
    let endpoint = PeerEndpoint::new(backend.clone());
    let marked = Request::get(format!("/check?user_id={key}"))
        .header(FORWARDED, "1")
        .body(String::new())
        .unwrap();
    assert_eq!(ask(&endpoint, marked).await.0, StatusCode::OK);
    assert_eq!(backend.local().tracked_keys(), 1);
}

#[tokio::test]
async fn a_policy_in_shadow_mode_answers_allowed_and_says_what_each_policy_decided() {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_040 + 23));
    let backend = MemoryBackend::builder(policy().with_shadow(true))
        .clock(clock)
        .build();
    let endpoint = PeerEndpoint::new(Arc::new(backend));
    let (status, _, _) = ask(&endpoint, get("/check?user_id=alice")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, headers) = ask(&endpoint, get("/check?user_id=alice")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ALLOWED"));
    assert_eq!(headers["ratelimit"], "\"default\";r=0;t=37");
    assert!(!headers.contains_key("retry-after"));
    // Another node's check carrying the policy (in shadow mode): allowed, uncounted, and
    // `x-ringlimit-decisions` says the policy denied it.
    let mut forwarded =
        get("/check?user_id=alice&policies=default%3Bfixed%3B1%3B60000%3B1%3Bshadow");
    forwarded
        .headers_mut()
        .insert(FORWARDED, http::HeaderValue::from_static("1"));
    let (status, body, headers) = ask(&endpoint, forwarded).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ALLOWED"));
    assert!(headers["x-ringlimit-decisions"]
        .to_str()
        .unwrap()
        .starts_with("0 0 "));
}
