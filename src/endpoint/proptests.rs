//! Property tests with the reach of a fuzzer over the parsers that read untrusted input:
//! query strings (user ids), peer answers, and whole requests at the peer endpoint.
//!
//! `PROPTEST_CASES=200000 cargo test --release --lib proptests` runs them long.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, StatusCode};
use percent_encoding::{percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use tower::ServiceExt;

use super::PeerEndpoint;
use crate::headers::RATELIMIT;
use crate::key::{KeyExtractor, QueryKey};
use crate::protocol::{check_path_and_query, peer_state};
use crate::{KeyError, MemoryBackend, Policy};

/// The user id the owner's endpoint reads from a forwarded request's path and query.
fn decoded(path_and_query: &str) -> Result<Cow<'_, str>, KeyError> {
    let request = Request::get(path_and_query).body(()).unwrap();
    QueryKey::default()
        .extract(&request)
        .map(|key| Cow::Owned(key.into_owned()))
}

/// Query-ish text: the characters that matter to a query parser, and any others.
fn query_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("%".to_owned()),
            Just("+".to_owned()),
            Just("&".to_owned()),
            Just("=".to_owned()),
            Just("user_id".to_owned()),
            "%[0-9a-fA-F]{2}",
            any::<char>().prop_map(String::from),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn any_user_id_survives_a_forward_unchanged(id in "\\PC{1,64}|.{1,16}") {
        let forwarded = check_path_and_query(&id);
        prop_assert_eq!(decoded(&forwarded).unwrap(), id);
    }

    #[test]
    fn any_bytes_as_a_user_id_arrive_whole_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 1..64)) {
        let path = format!("/check?user_id={}", percent_encode(&bytes, NON_ALPHANUMERIC));
        match std::str::from_utf8(&bytes) {
            Ok(text) => prop_assert_eq!(decoded(&path).unwrap(), text),
            Err(_) => {
                let refused = matches!(decoded(&path), Err(KeyError::Invalid { .. }));
                prop_assert!(refused, "non-UTF-8 bytes must be refused");
            }
        }
    }

    #[test]
    fn the_query_parser_never_panics_and_agrees_with_the_encoder(query in query_text()) {
        let uri = format!("/check?{}", query.replace(['#', ' '], ""));
        if let Ok(request) = Request::get(uri.as_str()).body(()) {
            if let Ok(key) = QueryKey::default().extract(&request) {
                // Whatever was read, sent on, is read the same way by the owner.
                let forwarded = check_path_and_query(&key);
                prop_assert_eq!(decoded(&forwarded).unwrap(), key);
            }
        }
    }

    #[test]
    fn the_peer_answer_parser_never_panics(value in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.insert(RATELIMIT, value);
        }
        let state = peer_state(&headers);
        if let Some(reset) = state.reset {
            prop_assert_eq!(reset.subsec_nanos(), 0);
        }
    }

    #[test]
    fn the_endpoint_answers_any_request_with_a_known_status(
        path in "/[a-z]{0,6}",
        query in query_text(),
        forwarded in any::<bool>(),
    ) {
        let uri = format!("{path}?{}", query.replace(['#', ' '], ""));
        let Ok(mut request) = Request::get(uri.as_str()).body(String::new()) else { return Ok(()) };
        if forwarded {
            request.headers_mut().insert(crate::protocol::FORWARDED, HeaderValue::from_static("1"));
        }
        let policy = Policy::per_window(std::num::NonZeroU32::MIN, std::time::Duration::from_secs(60));
        let endpoint = PeerEndpoint::new(Arc::new(MemoryBackend::new(policy)));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let response = runtime.block_on(endpoint.oneshot(request)).unwrap();
        prop_assert!([
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
        ]
        .contains(&response.status()));
    }
}
