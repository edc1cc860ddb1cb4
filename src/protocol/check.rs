//! A single check: paths, bodies, the
//! forwarding mark, how user ids and costs are encoded, and how an answer is read.

use std::num::NonZeroU32;
use std::time::Duration;

use http::header::HeaderName;
use http::HeaderMap;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::policies::{encode_policies, Told};
use super::recent_sets::RecentSets;
use crate::headers::RATELIMIT;
use crate::key::query::{query_param, ParamError};
use crate::PolicySet;

/// The peer endpoint's path.
pub const CHECK_PATH: &str = "/check";
/// The query parameter that carries the user id.
const USER_ID_PARAM: &str = "user_id";
/// The optional query parameter of a forwarded check that carries its cost (units, at
/// least 1). Without it the owner charges its own policy's cost;
/// it is read only on checks marked as forwarded, so with a peer secret set a client
/// cannot lower its own cost (without one, a client that can reach the peer endpoint can
/// send the mark, and choose its cost, as with batches).
const COST_PARAM: &str = "cost";
const POLICIES_PARAM: &str = "policies";
/// The owner's answer for each policy of a forwarded single check (ringlimit):
/// `<1|0> <remaining> <reset ms>` per policy, space-separated.
pub(crate) const DECISIONS: HeaderName = HeaderName::from_static("x-ringlimit-decisions");
/// Body of a counted, allowed check.
pub(crate) const ALLOWED_BODY: &str = "ALLOWED";
/// Body of a check over the limit.
pub(crate) const EXCEEDED_BODY: &str = "RATE LIMIT EXCEEDED";
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

/// The path and query of a forwarded check of `user_id` against `set`:
/// `/check?user_id=<percent-encoded>&cost=<first policy's cost>&policies=<percent-encoded
/// set>`. A node that does not read the policies counts under its own: at that cost (a
/// ringlimit node from before policies travelled), or at its own (a Python node).
pub(crate) fn forward_path_and_query(user_id: &str, set: &PolicySet) -> String {
    let mut policies = String::new();
    encode_policies(set, &mut policies);
    let mut path = check_path_and_query(user_id);
    path.push('&');
    path.push_str(COST_PARAM);
    path.push('=');
    path.push_str(itoa::Buffer::new().format(set.as_slice()[0].cost().get()));
    path.push('&');
    path.push_str(POLICIES_PARAM);
    path.push('=');
    path.extend(utf8_percent_encode(&policies, USER_ID_ESCAPES));
    path
}

/// What a forwarded check asks to be counted under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Asked {
    /// The owner's own policies.
    Own,
    /// The owner's own policies, each at this cost (a ringlimit node from before
    /// policies travelled).
    Cost(NonZeroU32),
    /// These policies.
    Policies(PolicySet),
}

impl Asked {
    /// The set to check: `own`, or the one asked for.
    pub(crate) fn set(self, own: &PolicySet) -> PolicySet {
        match self {
            Self::Own => own.clone(),
            Self::Cost(cost) if own.iter().all(|p| p.cost() == cost) => own.clone(),
            Self::Cost(cost) => PolicySet::new(own.iter().map(|p| p.with_cost(cost)))
                .expect("the same names as a valid set"),
            Self::Policies(set) => set,
        }
    }
}

/// What a forwarded check's `query` asks for: its `policies` (looked up in `recent`
/// first), else its `cost`, else the owner's own; an error for either given twice, badly
/// encoded or invalid.
pub(crate) fn forwarded_asked(query: &str, recent: &RecentSets) -> Result<Asked, &'static str> {
    match query_param(query, POLICIES_PARAM) {
        Ok(Some(text)) => {
            return recent
                .decode(&text)
                .map(Asked::Policies)
                .ok_or("invalid query parameter `policies`")
        }
        Ok(None) => {}
        Err(ParamError::Repeated) => return Err("query parameter `policies` given more than once"),
        Err(ParamError::Invalid(_)) => {
            return Err("invalid query parameter `policies`: bad encoding")
        }
    }
    match query_param(query, COST_PARAM) {
        Ok(None) => Ok(Asked::Own),
        Ok(Some(cost)) => match cost.parse::<NonZeroU32>() {
            Ok(cost) => Ok(Asked::Cost(cost)),
            Err(_) => Err("invalid query parameter `cost`: not a whole number from 1"),
        },
        Err(ParamError::Repeated) => Err("query parameter `cost` given more than once"),
        Err(ParamError::Invalid(_)) => Err("invalid query parameter `cost`: bad encoding"),
    }
}

/// A peer's answer to one check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAnswer {
    pub(crate) allowed: bool,
    pub(crate) state: PeerState,
    /// What it said of each policy, when it said (a ringlimit node does).
    pub(crate) told: Option<Told>,
}

/// What a peer's `RateLimit` header said, when it sent one (it need not).
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
    fn a_forward_carries_its_policies_and_they_are_read_strictly() {
        let set = PolicySet::from(crate::Policy::per_window(
            NonZeroU32::new(5).unwrap(),
            Duration::from_secs(1),
        ));
        assert_eq!(
            forward_path_and_query("a&b", &set),
            "/check?user_id=a%26b&cost=1&policies=default%3Bfixed%3B5%3B1000%3B1"
        );
        let query = &forward_path_and_query("a&b", &set)[7..];
        assert_eq!(
            forwarded_asked(query, &RecentSets::default()),
            Ok(Asked::Policies(set))
        );
        assert_eq!(
            forwarded_asked("user_id=a&cost=3", &RecentSets::default()),
            Ok(Asked::Cost(NonZeroU32::new(3).unwrap()))
        );
        assert_eq!(
            forwarded_asked("user_id=a", &RecentSets::default()),
            Ok(Asked::Own)
        );
        for bad in [
            "cost=0",
            "cost=-1",
            "cost=x",
            "cost=4294967296",
            "cost=1&cost=2",
            "cost=%zz",
            "policies=x",
            "policies=a%3Bfixed%3B0%3B1000%3B1",
            "policies=%zz",
            "policies=a%3Bfixed%3B1%3B1000%3B1&policies=a%3Bfixed%3B1%3B1000%3B1",
        ] {
            assert!(
                forwarded_asked(bad, &RecentSets::default()).is_err(),
                "{bad}"
            );
        }
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
