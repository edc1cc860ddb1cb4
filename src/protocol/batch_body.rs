//! The bodies of a batch between ringlimit nodes (many checks in one request), and of
//! its answer.
//!
//! `POST /check` (or, as older ringlimit nodes send it, `POST /check/batch`), marked as
//! forwarded, body one check a line:
//! `<cost> <percent-encoded user id>\n`. The answer (`200`, `text/plain`) has one line per
//! check, in order: `<status> <remaining> <reset ms>\n`, where status is `200` (counted and
//! allowed), `429` (over the limit) or `400` (a line that is not a valid check). A node
//! that refuses batches is asked with `GET /check`, one check at a time.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use percent_encoding::{percent_decode_str, utf8_percent_encode};

use super::check::{PeerAnswer, PeerState, USER_ID_ESCAPES};
use crate::Decision;

/// Where ringlimit nodes before batches went to `POST /check` sent them; still served.
pub(crate) const BATCH_PATH: &str = "/check/batch";
/// The most checks in one batch.
pub(crate) const MAX_BATCH: usize = 256;

/// The body asking for `checks` (`(user id, cost)`). Numbers are written with `itoa` and
/// ids pushed chunk by chunk: no formatting machinery on this path.
pub(crate) fn encode_checks<'a>(checks: impl Iterator<Item = (&'a str, u32)>) -> Bytes {
    let mut body = String::new();
    let mut number = itoa::Buffer::new();
    for (key, cost) in checks {
        body.push_str(number.format(cost));
        body.push(' ');
        body.extend(utf8_percent_encode(key, USER_ID_ESCAPES));
        body.push('\n');
    }
    Bytes::from(body)
}

/// The checks of a batch body: `(user id, cost)`, or `None` for a line that is not one.
/// An id without escapes is borrowed from the body, not copied.
pub(crate) fn decode_checks(
    body: &str,
) -> impl Iterator<Item = Option<(Cow<'_, str>, NonZeroU32)>> {
    body.lines().take(MAX_BATCH).map(|line| {
        let (cost, key) = line.split_once(' ')?;
        let cost: NonZeroU32 = cost.parse().ok()?;
        let key = percent_decode_str(key).decode_utf8().ok()?;
        (!key.is_empty()).then_some((key, cost))
    })
}

/// The answer line of one check: its decision, or the status of its refusal.
pub(crate) fn encode_answer(body: &mut String, decided: Result<&Decision, &StatusCode>) {
    let (status, remaining, reset_ms) = match decided {
        Ok(d) => (
            if d.allowed { "200" } else { "429" },
            d.remaining,
            d.reset.as_millis(),
        ),
        Err(status) => (status.as_str(), 0, 0),
    };
    let mut number = itoa::Buffer::new();
    body.push_str(status);
    body.push(' ');
    body.push_str(number.format(remaining));
    body.push(' ');
    body.push_str(number.format(reset_ms));
    body.push('\n');
}

/// The answers of a batch of `expected` checks, in order: each an answer, or why that
/// check was refused. A body that is not such a list is an error for the whole batch.
pub(crate) type Answers = Vec<Result<PeerAnswer, String>>;

pub(crate) fn decode_answers(body: &[u8], expected: usize) -> Result<Answers, String> {
    let text = std::str::from_utf8(body).map_err(|_| "batch answer is not UTF-8")?;
    let mut answers = Vec::with_capacity(expected);
    for line in text.lines() {
        let mut fields = line.split(' ').map(str::parse::<u64>);
        let (Some(Ok(status)), Some(Ok(remaining)), Some(Ok(reset_ms)), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("bad batch answer line {line:?}"));
        };
        let state = PeerState {
            remaining: u32::try_from(remaining).ok(),
            reset: Some(Duration::from_millis(reset_ms)),
        };
        answers.push(match status {
            200 | 429 => Ok(PeerAnswer {
                allowed: status == 200,
                state,
            }),
            other => Err(format!("peer refused a batched check ({other})")),
        });
    }
    if answers.len() != expected {
        return Err(format!("{} answers for {expected} checks", answers.len()));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_round_trip_through_the_body() {
        let body = encode_checks([("a&user_id=b", 1), ("é 50%\n", 3)].into_iter());
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(text, "1 a%26user_id%3Db\n3 %C3%A9%2050%25%0A\n");
        let decoded: Vec<_> = decode_checks(text).collect();
        assert_eq!(
            decoded,
            [
                Some((Cow::Borrowed("a&user_id=b"), NonZeroU32::new(1).unwrap())),
                Some((Cow::Borrowed("é 50%\n"), NonZeroU32::new(3).unwrap()))
            ]
        );
        let bad: Vec<_> = decode_checks("x alice\n1 \n0 bob\n1 %FF\n").collect();
        assert_eq!(bad, [None, None, None, None]);
    }

    #[test]
    fn answers_round_trip_and_must_match_the_checks() {
        let mut body = String::new();
        let decision = Decision {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset: Duration::from_millis(1234),
        };
        encode_answer(&mut body, Ok(&decision));
        encode_answer(&mut body, Err(&StatusCode::BAD_REQUEST));
        assert_eq!(body, "429 0 1234\n400 0 0\n");
        let answers = decode_answers(body.as_bytes(), 2).unwrap();
        assert!(!answers[0].as_ref().unwrap().allowed);
        assert!(answers[1].is_err(), "a refused line fails alone");
        let answers = decode_answers(b"200 4 1000\n429 0 5\n", 2).unwrap();
        assert!(answers[0].as_ref().unwrap().allowed);
        assert_eq!(answers[0].as_ref().unwrap().state.remaining, Some(4));
        assert!(decode_answers(b"200 4 1000\n", 2).is_err());
        assert!(decode_answers(b"200 4\n", 1).is_err());
    }
}
