//! The peer wire contract shared with the reference implementation: paths, bodies, the
//! forwarding mark, and how user ids are encoded.

use std::time::Duration;

use http::header::HeaderName;
use http::HeaderMap;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::headers::RATELIMIT;

/// The peer endpoint's path.
pub const CHECK_PATH: &str = "/check";
/// The query parameter that carries the user id.
pub const USER_ID_PARAM: &str = "user_id";
/// Body of a counted, allowed check.
pub const ALLOWED_BODY: &str = "ALLOWED";
/// Body of a check over the limit.
pub const EXCEEDED_BODY: &str = "RATE LIMIT EXCEEDED";
/// Marks a request forwarded by another node; a marked request is never forwarded again.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-ringlimit-forwarded");

/// Everything but the unreserved characters is escaped, so `&`, `=`, `#`, `%`, `+`,
/// spaces and non-ASCII reach the owner unchanged under any query decoder.
pub(crate) const USER_ID_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The path and query of the check for `user_id`: `/check?user_id=<percent-encoded>`.
pub(crate) fn check_path_and_query(user_id: &str) -> String {
    let encoded = utf8_percent_encode(user_id, USER_ID_ESCAPES);
    let mut path = String::with_capacity(CHECK_PATH.len() + 9 + user_id.len() * 3);
    path.push_str(CHECK_PATH);
    path.push('?');
    path.push_str(USER_ID_PARAM);
    path.push('=');
    path.extend(encoded);
    path
}

/// What a peer's `RateLimit` header said, when it sent one (the reference sends none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PeerState {
    pub(crate) remaining: Option<u32>,
    pub(crate) reset: Option<Duration>,
}

/// Reads `"default";r=4;t=37`. Anything it cannot read is left out, never an error: the
/// status code alone decides.
pub(crate) fn peer_state(headers: &HeaderMap) -> PeerState {
    let Some(value) = headers.get(RATELIMIT).and_then(|v| v.to_str().ok()) else {
        return PeerState::default();
    };
    let mut state = PeerState::default();
    for param in value.split(';').skip(1) {
        match param.trim().split_once('=') {
            Some(("r", r)) => state.remaining = r.parse().ok(),
            Some(("t", t)) => state.reset = t.parse().ok().map(Duration::from_secs),
            _ => {}
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn user_ids_are_percent_encoded_whole() {
        assert_eq!(check_path_and_query("alice"), "/check?user_id=alice");
        assert_eq!(
            check_path_and_query("a&user_id=b"),
            "/check?user_id=a%26user_id%3Db"
        );
        assert_eq!(
            check_path_and_query("50% off #1+x é"),
            "/check?user_id=50%25%20off%20%231%2Bx%20%C3%A9"
        );
        assert_eq!(
            check_path_and_query("a-b.c_d~e"),
            "/check?user_id=a-b.c_d~e"
        );
    }

    #[test]
    fn reads_the_ratelimit_header_and_tolerates_garbage() {
        let mut headers = HeaderMap::new();
        assert_eq!(peer_state(&headers), PeerState::default());
        headers.insert(RATELIMIT, HeaderValue::from_static("\"default\";r=4;t=37"));
        assert_eq!(
            peer_state(&headers),
            PeerState {
                remaining: Some(4),
                reset: Some(Duration::from_secs(37)),
            }
        );
        headers.insert(
            RATELIMIT,
            HeaderValue::from_static("\"default\";r=-1;t;x=2"),
        );
        assert_eq!(peer_state(&headers), PeerState::default());
    }
}
