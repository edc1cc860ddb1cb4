//! Counters handed between nodes when the ring changes: `POST /handoff`, marked as
//! forwarded (and carrying the peer secret when one is set), with what is asked in the
//! query: `?op=<op>&from=<member>`, `from` being the asking node's ring identity.
//!
//! - `op=give` (`&done=<ring>` on a node's last one, the ring it handed over for as
//!   the first 8 bytes of the MD5 of its members joined by newlines, in decimal): the
//!   body holds keys' counters, a line each,
//!   `<percent-encoded id> <serial> <held>[,<held>]...`, where `<serial>` names this
//!   handing over of the key (the same counters sent twice carry the same one, and are
//!   taken in once) and `<held>` is one policy's state: `<policy>=<a>:<b>:<c>` (the policy as a check carries it; `a:b:c` is
//!   `window:used:0` for a fixed window, `window:current:previous` for the sliding window,
//!   `at ms:level:0` for GCRA, level in units × window ms). Answered `200`, the number
//!   of keys taken in.
//! - `op=take`: the body holds ids, one a line, percent-encoded; the answer holds, in the
//!   form `give` sends, the counters of those the node had, which it no longer has.
//! - `op=leaving` and `op=joining`: the node `from` leaves the ring, or is back in it.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode};

use super::check::USER_ID_ESCAPES;
use super::policies::{decode_policy, number, render_policies};
use crate::algorithm::{Algorithm, State};
use crate::backend::Held;
use crate::policy::{PolicySet, MAX_POLICIES};

/// Where handoffs go.
pub(crate) const HANDOFF_PATH: &str = "/handoff";
/// The most keys one handoff body holds.
pub(crate) const MAX_HANDOFF_KEYS: usize = 1024;
/// The most bytes one handoff body takes: for each key, an id of up to 1 KiB
/// percent-encoded and every policy's counters.
pub(crate) const MAX_HANDOFF_BYTES: usize = MAX_HANDOFF_KEYS * (3 * 1024 + MAX_POLICIES * 160);

/// What a handoff request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandoffOp {
    /// Counters for the node asked; with the ring they were handed over for, when they
    /// are the last the asker has for it.
    Give { done: Option<u64> },
    /// The counters of the listed keys, taken out of the node asked.
    Take,
    /// The asker leaves the ring.
    Leaving,
    /// The asker is back in the ring.
    Joining,
}

impl HandoffOp {
    fn token(self) -> String {
        match self {
            Self::Give { done: None } => "give".into(),
            Self::Give { done: Some(ring) } => format!("give&done={ring}"),
            Self::Take => "take".into(),
            Self::Leaving => "leaving".into(),
            Self::Joining => "joining".into(),
        }
    }
}

/// The path and query of a handoff of `op` from `from`.
pub(crate) fn handoff_path_and_query(op: HandoffOp, from: &str) -> String {
    let from = utf8_percent_encode(from, USER_ID_ESCAPES);
    format!("{HANDOFF_PATH}?op={}&from={from}", op.token())
}

/// What a handoff's `query` asks, and who asks it.
pub(crate) fn decode_handoff_query(query: &str) -> Option<(HandoffOp, String)> {
    let (mut op, mut from, mut done) = (None, None, None);
    for pair in query.split('&') {
        match pair.split_once('=')? {
            ("op", value) => op = Some(value),
            ("from", value) => from = Some(percent_decode_str(value).decode_utf8().ok()?),
            ("done", ring) => done = Some(number::<u64>(ring)?),
            _ => return None,
        }
    }
    let op = match op? {
        "give" => HandoffOp::Give { done },
        "take" => HandoffOp::Take,
        "leaving" => HandoffOp::Leaving,
        "joining" => HandoffOp::Joining,
        _ => return None,
    };
    let from = from.filter(|from| !from.is_empty())?;
    Some((op, from.into_owned()))
}

/// Appends the line of `key`'s counters `held`, handed over as `serial`, to `out`.
pub(crate) fn encode_held(key: &str, serial: u64, held: &[Held], out: &mut String) {
    let mut number = itoa::Buffer::new();
    out.extend(utf8_percent_encode(key, USER_ID_ESCAPES));
    out.push(' ');
    out.push_str(number.format(serial));
    out.push(' ');
    for (i, one) in held.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let Ok(policy) = PolicySet::new([one.policy]) else {
            continue; // a single policy always makes a set
        };
        render_policies(&policy, out);
        let (a, b, c) = match one.state {
            State::Fixed { window, used } => (window, u64::from(used), 0),
            State::Sliding {
                window,
                current,
                previous,
            } => (window, u64::from(current), u64::from(previous)),
            State::Gcra { at_ms, level } => (at_ms, level, 0),
        };
        for (separator, value) in [('=', a), (':', b), (':', c)] {
            out.push(separator);
            out.push_str(number.format(value));
        }
    }
    out.push('\n');
}

/// A line of counters: the key, its serial and what it held, if the line is a valid one.
pub(crate) fn decode_held(line: &str) -> Option<(Cow<'_, str>, u64, Vec<Held>)> {
    let (key, rest) = line.split_once(' ')?;
    let (serial, items) = rest.split_once(' ')?;
    let serial = number::<u64>(serial)?;
    let key = percent_decode_str(key).decode_utf8().ok()?;
    let mut held = Vec::new();
    for item in items.split(',') {
        if held.len() == MAX_POLICIES {
            return None;
        }
        let (policy, state) = item.split_once('=')?;
        let policy = decode_policy(policy)?;
        let mut numbers = state.split(':').map(number::<u64>);
        let (a, b, c) = (numbers.next()??, numbers.next()??, numbers.next()??);
        if numbers.next().is_some() {
            return None;
        }
        let small = |n: u64| u32::try_from(n).ok();
        let state = match policy.algorithm() {
            Algorithm::FixedWindow => State::Fixed {
                window: a,
                used: small(b)?,
            },
            Algorithm::SlidingWindow => State::Sliding {
                window: a,
                current: small(b)?,
                previous: small(c)?,
            },
            Algorithm::Gcra => State::Gcra { at_ms: a, level: b },
        };
        held.push(Held { policy, state });
    }
    (!key.is_empty()).then_some((key, serial, held))
}

/// The body asking for `keys`' counters.
pub(crate) fn encode_keys<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let mut body = String::new();
    for key in keys {
        body.extend(utf8_percent_encode(key, USER_ID_ESCAPES));
        body.push('\n');
    }
    body
}

/// The keys a `take` body asks for, at most [`MAX_HANDOFF_KEYS`]; lines that are not a
/// key are skipped.
pub(crate) fn decode_keys(body: &str) -> impl Iterator<Item = Cow<'_, str>> {
    body.lines()
        .take(MAX_HANDOFF_KEYS)
        .filter_map(|line| percent_decode_str(line).decode_utf8().ok())
        .filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::policy::PolicyName;
    use crate::Policy;

    fn policy(name: &str, algorithm: Algorithm) -> Policy {
        Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60))
            .with_name(PolicyName::new(name).unwrap())
            .with_algorithm(algorithm)
    }

    #[test]
    fn counters_read_back_as_written() {
        let held = [
            Held {
                policy: policy("a:b", Algorithm::FixedWindow),
                state: State::Fixed { window: 9, used: 3 },
            },
            Held {
                policy: policy("s", Algorithm::SlidingWindow),
                state: State::Sliding {
                    window: 9,
                    current: 1,
                    previous: 4,
                },
            },
            Held {
                policy: policy("g", Algorithm::Gcra),
                state: State::Gcra {
                    at_ms: 1_000,
                    level: 7_000,
                },
            },
        ];
        let mut line = String::new();
        encode_held("a b&c=%", 7, &held, &mut line);
        let (key, serial, read) = decode_held(line.trim_end()).unwrap();
        assert_eq!((&*key, serial, read.as_slice()), ("a b&c=%", 7, &held[..]));
    }

    #[test]
    fn bad_lines_and_queries_are_refused() {
        for line in [
            "",
            "k",
            "k x",
            "k 1 x",
            "k a;fixed;5;60000;1=1:2:3",
            "k 1 a;fixed;5;60000;1=1:2",
            "k 1 a;fixed;5;60000;1=1:2:3:4",
            "k 1 a;fixed;5;60000;1=1:99999999999:0",
            "k 1 a;nope;5;60000;1=1:2:3",
            " 1 a;fixed;5;60000;1=1:2:3",
        ] {
            assert_eq!(decode_held(line), None, "{line:?}");
        }
        assert_eq!(decode_handoff_query("op=give&from="), None);
        assert_eq!(decode_handoff_query("op=steal&from=a:1"), None);
        let done = HandoffOp::Give { done: Some(42) };
        assert_eq!(
            decode_handoff_query(&handoff_path_and_query(done, "a:1")[9..]),
            Some((done, "a:1".to_owned()))
        );
        assert_eq!(decode_handoff_query("op=give&done=x&from=a:1"), None);
    }
}
