//! The bodies of a batch between ringlimit nodes (many checks in one request), and of
//! its answer.
//!
//! `POST /check` (or, as older ringlimit nodes send it, `POST /check/batch`), marked as
//! forwarded, body one check a line: `P <policies> <percent-encoded user id>\n` (the
//! policies as `policies` writes them), or, from ringlimit nodes before policies
//! travelled, `<cost> <percent-encoded user id>\n` (the owner's own policies at that
//! cost). The answer (`200`, `text/plain`) has one line per check, in order:
//! `<status> <remaining> <reset ms>\n` for a line of the older form, and
//! `<status>[ <1|0> <remaining> <reset ms>]...\n` (one triple per policy) for the newer,
//! where status is `200` (counted and allowed), `429` (over a limit), `400` (a line that
//! is not a valid check; it fails alone) or `503` (not decided here). A node that
//! refuses batches is asked with `GET /check`, one check at a time.

use std::borrow::Cow;
use std::num::NonZeroU32;

use bytes::Bytes;
use http::StatusCode;
use percent_encoding::{percent_decode_str, utf8_percent_encode};

use super::check::{Asked, PeerAnswer, PeerState, USER_ID_ESCAPES};
use super::policies::{decimal, encode_each, encode_policies, Told};
use super::recent_sets::RecentSets;
use crate::{Decisions, PolicySet};

/// Where ringlimit nodes before batches went to `POST /check` sent them; still served.
pub(crate) const BATCH_PATH: &str = "/check/batch";
/// The most checks in one batch.
pub(crate) const MAX_BATCH: usize = 256;

/// The body of a batch of `checks` (user id, policies), one line each.
pub(crate) fn encode_checks<'a>(checks: impl Iterator<Item = (&'a str, &'a PolicySet)>) -> Bytes {
    // Room for the usual line (a policy or two, a short id) without growing.
    let mut body = String::with_capacity(64 * checks.size_hint().0.max(1));
    for (key, set) in checks {
        body.push_str("P ");
        encode_policies(set, &mut body);
        body.push(' ');
        body.extend(utf8_percent_encode(key, USER_ID_ESCAPES));
        body.push('\n');
    }
    Bytes::from(body)
}

/// One line of a batch: the user id, what it asks to be counted under, and whether it is
/// of the newer form (answered per policy).
pub(crate) type BatchLine<'a> = (Cow<'a, str>, Asked);

/// The checks of a batch `body`, at most [`MAX_BATCH`], each with whether its line is of
/// the newer form (it is answered in the form it came in): `None` for a line that is not
/// a valid check, so it can be answered `400` on its own.
///
/// A line naming the same policies as the line before shares its decoded set (a batch
/// from one node mostly repeats a few sets); others are looked up in `recent`.
pub(crate) fn decode_checks<'b, 'r>(
    body: &'b str,
    recent: &'r RecentSets,
) -> impl Iterator<Item = (bool, Option<BatchLine<'b>>)> + use<'b, 'r> {
    let mut last: Option<(&str, PolicySet)> = None;
    body.lines()
        .take(MAX_BATCH)
        .map(move |line| (line.starts_with("P "), decode_line(line, &mut last, recent)))
}

fn decode_line<'a>(
    line: &'a str,
    last: &mut Option<(&'a str, PolicySet)>,
    recent: &RecentSets,
) -> Option<BatchLine<'a>> {
    let (first, rest) = line.split_once(' ')?;
    let (asked, key) = match first {
        "P" => {
            let (text, key) = rest.split_once(' ')?;
            let set = match last {
                Some((before, set)) if *before == text => set.clone(),
                _ => {
                    let set = recent.decode(text)?;
                    *last = Some((text, set.clone()));
                    set
                }
            };
            (Asked::Policies(set), key)
        }
        cost => (Asked::Cost(cost.parse::<NonZeroU32>().ok()?), rest),
    };
    let key = percent_decode_str(key).decode_utf8().ok()?;
    (!key.is_empty()).then_some((key, asked))
}

/// Appends the answer line of one check: for a line of the newer form (`each`), the
/// status and a triple per policy; otherwise the status, the first policy's remaining
/// count and reset.
pub(crate) fn encode_answer(
    body: &mut String,
    decided: Result<&Decisions, &StatusCode>,
    each: bool,
) {
    let status = match decided {
        Ok(d) if d.allowed() => "200",
        Ok(_) => "429",
        Err(status) => status.as_str(),
    };
    body.push_str(status);
    match (decided, each) {
        (Ok(decisions), true) => encode_each(decisions, body),
        (Err(_), true) => {}
        (decided, false) => {
            let (remaining, reset_ms) = decided.map_or((0, 0), |d| {
                let first = d.get(0).unwrap();
                (first.remaining, first.reset.as_millis())
            });
            let mut number = itoa::Buffer::new();
            body.push(' ');
            body.push_str(number.format(remaining));
            body.push(' ');
            body.push_str(number.format(reset_ms));
        }
    }
    body.push('\n');
}

/// Whether a batch answer is a ringlimit node's from before policies travelled: it reads
/// no `P` line, and answers each `400 0 0` (a newer node answers a bad line `400`).
pub(crate) fn from_older_node(body: &[u8]) -> bool {
    !body.is_empty()
        && body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .all(|l| l == b"400 0 0")
}

/// Each check's answer, in order, or why the batch's answer as a whole is unusable.
pub(crate) type Answers = Vec<Result<PeerAnswer, LineRefused>>;

/// A batch line the owner did not answer as counted or over the limit: its status, and
/// why.
#[derive(Debug)]
pub(crate) struct LineRefused {
    pub(crate) status: u16,
    pub(crate) why: String,
}

/// Reads a batch answer of newer-form lines; it must have one line per check
/// (`expected`). A line whose status is not `200` or `429` fails that check alone.
pub(crate) fn decode_answers(body: &[u8], expected: usize) -> Result<Answers, String> {
    let bad = |line: &[u8]| format!("bad batch answer line {:?}", String::from_utf8_lossy(line));
    let mut answers = Vec::with_capacity(expected);
    // Lines end with a newline, the last perhaps without one; a `\r` at a line's end
    // is dropped.
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    for line in body
        .split(|&byte| byte == b'\n')
        .filter(|_| !body.is_empty())
    {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (status, told) = match line.iter().position(|&byte| byte == b' ') {
            Some(space) => (&line[..space], Some(&line[space + 1..])),
            None => (line, None),
        };
        answers.push(match (status, told) {
            (b"200" | b"429", Some(told)) => Ok(PeerAnswer {
                allowed: status == b"200",
                state: PeerState::default(),
                told: Some(Told::decode(told).ok_or_else(|| bad(line))?),
            }),
            (b"200" | b"429", None) => return Err(bad(line)),
            (other, _) => match decimal(other).and_then(|status| u16::try_from(status).ok()) {
                Some(status) => Err(LineRefused {
                    status,
                    why: format!("peer refused a batched check ({status})"),
                }),
                None => return Err(bad(line)),
            },
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
    use crate::policy::PolicyName;
    use crate::{Decision, Policy};
    use std::time::Duration;

    fn set(name: &str, limit: u32) -> PolicySet {
        PolicySet::from(
            Policy::per_window(NonZeroU32::new(limit).unwrap(), Duration::from_secs(1))
                .with_name(PolicyName::new(name).unwrap()),
        )
    }

    #[test]
    fn checks_round_trip_through_the_body() {
        let (a, b) = (set("a", 5), set("b", 7));
        let body = encode_checks([("a&user_id=b", &a), ("é 50%\n", &b)].into_iter());
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(
            text,
            "P a;fixed;5;1000;1 a%26user_id%3Db\nP b;fixed;7;1000;1 %C3%A9%2050%25%0A\n"
        );
        let decoded: Vec<_> = decode_checks(text, &RecentSets::default())
            .map(|(_, line)| line)
            .collect();
        assert_eq!(
            decoded,
            [
                Some((Cow::Borrowed("a&user_id=b"), Asked::Policies(a))),
                Some((Cow::Borrowed("é 50%\n"), Asked::Policies(b)))
            ]
        );
        // The older form: the owner's own policies at a cost.
        let older: Vec<_> = decode_checks("3 alice\n", &RecentSets::default())
            .map(|(_, line)| line)
            .collect();
        assert_eq!(
            older,
            [Some((
                Cow::Borrowed("alice"),
                Asked::Cost(NonZeroU32::new(3).unwrap())
            ))]
        );
        let bad: Vec<_> = decode_checks(
            "x alice\n1 \n0 bob\n1 %FF\nP x alice\nP alice\n",
            &RecentSets::default(),
        )
        .collect();
        let newer = [false, false, false, false, true, true];
        assert_eq!(bad, newer.map(|newer| (newer, None)));
    }

    #[test]
    fn answers_round_trip_and_must_match_the_checks() {
        let a = set("a", 5);
        let denied = Decisions::new(
            &a,
            &[Decision::new(false, 5, 0, Duration::from_millis(234))],
        );
        let mut body = String::new();
        encode_answer(&mut body, Ok(&denied), true);
        encode_answer(&mut body, Err(&StatusCode::BAD_REQUEST), true);
        encode_answer(&mut body, Ok(&denied), false);
        assert_eq!(body, "429 0 0 234\n400\n429 0 234\n");
        let answers = decode_answers(b"429 0 0 234\n400\n", 2).unwrap();
        assert!(!answers[0].as_ref().unwrap().allowed);
        let told = answers[0].as_ref().unwrap().told.unwrap();
        assert_eq!(told.decisions(&a), Some(denied));
        assert!(answers[1].is_err(), "a refused line fails alone");
        assert!(decode_answers(b"200 1 4 1000\n", 2).is_err());
        assert!(decode_answers(b"200 4\n", 1).is_err());
        assert!(decode_answers(b"x\n", 1).is_err());
    }
}
