//! Property tests over the parsers of the policy set on the wire and of batch bodies and
//! answers (input from peers): nothing panics, and what a node writes reads back whole.
//!
//! `PROPTEST_CASES=200000 cargo test --release --lib proptests` runs them long.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;

use super::batch_body::{
    decode_answers, decode_checks, encode_answer, encode_checks, from_older_node,
};
use super::check::Asked;
use super::policies::{decode_policies, encode_policies, Told};
use super::recent_sets::RecentSets;
use crate::policy::{Algorithm, PolicyName, PolicySet};
use crate::{Decision, Decisions, Policy};

/// Wire-ish text: the separators that matter to the parsers, digits, and anything else.
fn wire_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just(";".to_owned()),
            Just(",".to_owned()),
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("P ".to_owned()),
            Just("fixed".to_owned()),
            Just("gcra".to_owned()),
            Just("shadow".to_owned()),
            "[0-9]{1,21}",
            any::<char>().prop_map(String::from),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// A valid policy: a name of the allowed characters, and numbers its algorithm takes.
fn policy() -> impl Strategy<Value = Policy> {
    (
        "[A-Za-z0-9._:/~!#$%&'*+^`|-]{1,64}",
        prop_oneof![
            Just(Algorithm::FixedWindow),
            Just(Algorithm::SlidingWindow),
            Just(Algorithm::Gcra)
        ],
        1u32..=u32::MAX,
        1u64..=(1 << 32),
        1u32..=u32::MAX,
        any::<bool>(),
    )
        .prop_filter_map(
            "an algorithm takes its numbers",
            |(name, algorithm, limit, window_ms, cost, shadow)| {
                let window = Duration::from_millis(window_ms);
                algorithm.supports(limit, window).then(|| {
                    Policy::per_window(NonZeroU32::new(limit).unwrap(), window)
                        .with_name(PolicyName::new(&name).unwrap())
                        .with_algorithm(algorithm)
                        .with_cost(NonZeroU32::new(cost).unwrap())
                        .with_shadow(shadow)
                })
            },
        )
}

fn set() -> impl Strategy<Value = PolicySet> {
    prop::collection::vec(policy(), 1..=8)
        .prop_filter_map("unique names", |policies| PolicySet::new(policies).ok())
}

proptest! {
    #[test]
    fn the_wire_parsers_never_panic(text in wire_text()) {
        let _ = decode_policies(&text);
        let _ = Told::decode(text.as_bytes());
        let _ = decode_checks(&text, &RecentSets::default()).count();
        let _ = decode_answers(text.as_bytes(), 3);
        let _ = from_older_node(text.as_bytes());
    }

    #[test]
    fn a_set_reads_back_whole(set in set()) {
        let mut text = String::new();
        encode_policies(&set, &mut text);
        prop_assert_eq!(decode_policies(&text), Some(set));
    }

    #[test]
    fn a_batch_reads_back_whole(set in set(), keys in prop::collection::vec(any::<String>().prop_filter("a key", |k| !k.is_empty()), 1..20)) {
        let body = encode_checks(keys.iter().map(|k| (k.as_str(), &set)));
        let text = std::str::from_utf8(&body).unwrap();
        let read: Vec<_> = decode_checks(text, &RecentSets::default()).collect();
        prop_assert_eq!(read.len(), keys.len());
        for ((newer, line), key) in read.into_iter().zip(&keys) {
            prop_assert!(newer);
            prop_assert_eq!(line, Some((Cow::Borrowed(key.as_str()), Asked::Policies(set.clone()))));
        }
    }

    // Batches through one owner's kept sets read as they would afresh, however the
    // sets come and go (more of them than are kept, some again).
    #[test]
    fn batches_through_kept_sets_read_as_afresh(
        sets in prop::collection::vec(set(), 1..12),
        order in prop::collection::vec(any::<prop::sample::Index>(), 1..40),
    ) {
        let recent = RecentSets::default();
        for (i, pick) in order.iter().enumerate() {
            let set = &sets[pick.index(sets.len())];
            let key = format!("user-{i}");
            let body = encode_checks([(key.as_str(), set)].into_iter());
            let text = std::str::from_utf8(&body).unwrap();
            let kept: Vec<_> = decode_checks(text, &recent).collect();
            let afresh: Vec<_> = decode_checks(text, &RecentSets::default()).collect();
            prop_assert_eq!(&kept, &afresh);
            prop_assert_eq!(&kept[0].1, &Some((Cow::Borrowed(key.as_str()), Asked::Policies(set.clone()))));
        }
    }

    // What an owner answers to a batch reads back as it decided, line by line: each
    // policy's decision for the lines it decided, the status of those it refused.
    #[test]
    fn a_batch_answer_reads_back_whole(
        lines in prop::collection::vec(
            (set(), prop::collection::vec((any::<bool>(), any::<u32>(), any::<u64>()), 8), any::<bool>()),
            1..20,
        ),
    ) {
        let mut body = String::new();
        let mut expected = Vec::new();
        for (set, picks, refused) in &lines {
            if *refused {
                encode_answer(&mut body, Err(&http::StatusCode::BAD_REQUEST), true);
                expected.push(None);
            } else {
                // Within each policy's bounds, as an owner decides.
                let decisions = Decisions::from_fn(set, |i, policy| {
                    let (allowed, remaining, reset_ms) = picks[i];
                    let longest = policy.longest_reset().as_millis() as u64;
                    let reset = Duration::from_millis(reset_ms % (longest + 1));
                    Decision::new(allowed, policy.limit(), remaining % policy.limit().saturating_add(1), reset)
                });
                encode_answer(&mut body, Ok(&decisions), true);
                expected.push(Some((set, decisions)));
            }
        }
        let answers = decode_answers(body.as_bytes(), lines.len()).unwrap();
        for (answer, expected) in answers.into_iter().zip(expected) {
            match (answer, expected) {
                (Ok(answer), Some((set, decisions))) => {
                    prop_assert_eq!(answer.allowed, decisions.allowed());
                    prop_assert_eq!(answer.told.unwrap().decisions(set), Some(decisions));
                }
                (Err(refused), None) => prop_assert_eq!(refused.status, 400),
                (answer, expected) => prop_assert!(false, "{:?} for {:?}", answer, expected.is_some()),
            }
        }
    }
}
