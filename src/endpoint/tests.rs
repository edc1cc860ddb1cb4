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

/// A handoff is for ringlimit nodes only: without the mark, or without the secret, or
/// with a bad body, nothing is taken in or out.
#[tokio::test]
async fn a_handoff_needs_the_mark_and_the_secret_and_a_good_body() {
    use crate::protocol::PeerSecret;
    let clock = ManualClock::new(Duration::from_secs(1_700_000_040 + 23));
    let ring = Ring::new(["a:1", "b:2"]).unwrap();
    let backend = ClusterBackend::builder(policy(), "a:1", ring)
        .clock(clock)
        .build()
        .unwrap();
    let backend = Arc::new(backend);
    let secret = PeerSecret::new("s3cret-s3cret").unwrap();
    let endpoint = PeerEndpoint::new(backend.clone()).peer_secret(&secret);
    let own = crate::Backend::policies(&*backend).clone();
    // `alice` is counted here, whichever node owns her.
    crate::backend::Owner::check_forwarded(&*backend, "alice", &own);
    assert_eq!(backend.local().used("alice"), 1);
    let handoff = |op: &str, body: &str, marked: bool, bearer: Option<&str>| {
        let mut request = Request::post(format!("/handoff?op={op}&from=b:2"));
        if marked {
            request = request.header(FORWARDED, "1");
        }
        if let Some(bearer) = bearer {
            request = request.header("authorization", format!("Bearer {bearer}"));
        }
        request.body(body.to_owned()).unwrap()
    };
    let take = "alice\n";
    let (status, _, _) = ask(&endpoint, handoff("take", take, false, None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unmarked");
    let (status, _, _) = ask(&endpoint, handoff("take", take, true, Some("wrong"))).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "marked without the secret"
    );
    let (status, _, _) = ask(
        &endpoint,
        handoff("steal", take, true, Some("s3cret-s3cret")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an op it does not know");
    let bad_give = "bob 1 default;fixed;1;60000;1=28333334:1:0\nnot a line\n";
    let request = handoff("give", bad_give, true, Some("s3cret-s3cret"));
    let (status, _, _) = ask(&endpoint, request).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "one bad line refuses the body"
    );
    assert_eq!(backend.local().used("bob"), 0, "nothing of it taken in");
    assert_eq!(backend.local().used("alice"), 1, "nothing taken out");
    // With the mark and the secret: alice's counters go to b:2.
    let request = handoff("take", take, true, Some("s3cret-s3cret"));
    let (status, body, _) = ask(&endpoint, request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("alice "), "{body}");
    assert_eq!(backend.local().used("alice"), 0, "taken out");
}
