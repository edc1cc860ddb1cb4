//! The policy sets an owner decoded lately from its peers' checks, kept so that a set's
//! text is not parsed (nor a set allocated) again for every batch: a ring's checks name
//! the few sets its layers were configured with, and at low load a batch carries one
//! check, whose set was then decoded afresh each time (BENCHMARKS.md, "Fewer
//! instructions per check").

use std::sync::{Mutex, PoisonError};

use super::policies::decode_policies;
use crate::PolicySet;

/// Sets kept at most.
const KEPT: usize = 8;
/// The longest text kept. A valid set's text is shorter (911 bytes at most: eight
/// policies of a 64-byte name, the largest numbers and `shadow`; 927 bounds it field by
/// field; numbers never have leading zeros), so this is a backstop, not a limit a peer
/// meets.
const MAX_TEXT: usize = 1024;

/// A few decoded sets, by their text: [`KEPT`] texts of [`MAX_TEXT`] bytes at most, so
/// a lookup costs the same however many users and sets a ring has. A set used since the
/// last replacement is passed over once when one must go (second chance), so sets in
/// steady use stay while one-off ones cycle through.
#[derive(Debug, Default)]
pub(crate) struct RecentSets {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    sets: Vec<Entry>,
    /// Where the search for the next set to replace starts, once all slots are taken.
    hand: usize,
}

#[derive(Debug)]
struct Entry {
    text: Box<str>,
    set: PolicySet,
    used: bool,
}

impl RecentSets {
    /// The set `text` stands for, if it is a valid one: what `decode_policies` gives,
    /// from a set kept if `text` was decoded lately.
    pub(crate) fn decode(&self, text: &str) -> Option<PolicySet> {
        if let Some(set) = self.lock().find(text) {
            return Some(set);
        }
        let set = decode_policies(text)?;
        if text.len() <= MAX_TEXT {
            self.lock().keep(text, &set);
        }
        Some(set)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Kept {
    fn find(&mut self, text: &str) -> Option<PolicySet> {
        let entry = self.sets.iter_mut().find(|entry| *entry.text == *text)?;
        entry.used = true;
        Some(entry.set.clone())
    }

    fn keep(&mut self, text: &str, set: &PolicySet) {
        if self.sets.iter().any(|entry| *entry.text == *text) {
            return; // another batch decoded it meanwhile
        }
        let entry = Entry {
            text: text.into(),
            set: set.clone(),
            used: false,
        };
        if self.sets.len() < KEPT {
            self.sets.push(entry);
            return;
        }
        // At most one lap clears every mark, so this ends within two.
        while std::mem::take(&mut self.sets[self.hand].used) {
            self.hand = (self.hand + 1) % KEPT;
        }
        self.sets[self.hand] = entry;
        self.hand = (self.hand + 1) % KEPT;
    }
}

#[cfg(test)]
mod tests {
    use super::super::policies::{render_policies, MAX_WINDOW_MS};
    use super::*;
    use crate::policy::{Algorithm, PolicyName, MAX_NAME_LEN, MAX_POLICIES};
    use crate::Policy;
    use std::num::NonZeroU32;
    use std::time::Duration;

    fn text(limit: u32) -> String {
        format!("default;fixed;{limit};1000;1")
    }

    fn kept_texts(recent: &RecentSets) -> Vec<String> {
        let kept = recent.lock();
        kept.sets
            .iter()
            .map(|entry| entry.text.to_string())
            .collect()
    }

    #[test]
    fn answers_as_decoding_does_and_shares_what_it_kept() {
        let recent = RecentSets::default();
        assert_eq!(recent.decode("not a set"), None);
        assert!(kept_texts(&recent).is_empty(), "nothing invalid is kept");
        let first = recent.decode(&text(1)).unwrap();
        assert_eq!(Some(first.clone()), decode_policies(&text(1)));
        let again = recent.decode(&text(1)).unwrap();
        assert!(
            std::ptr::eq(first.as_slice(), again.as_slice()),
            "the kept set is shared, not decoded again"
        );
        // Texts of one length that differ in a digit are told apart.
        assert_eq!(recent.decode(&text(2)).unwrap().as_slice()[0].limit(), 2);
        assert_eq!(recent.decode(&text(1)).unwrap().as_slice()[0].limit(), 1);
    }

    #[test]
    fn a_set_in_use_stays_while_one_off_sets_cycle_through() {
        let recent = RecentSets::default();
        let steady = recent.decode(&text(1)).unwrap();
        for limit in 2..=40 {
            assert_eq!(recent.decode(&text(limit)), decode_policies(&text(limit)));
            let again = recent.decode(&text(1)).unwrap();
            assert!(
                std::ptr::eq(steady.as_slice(), again.as_slice()),
                "at {limit}"
            );
        }
        let kept = kept_texts(&recent);
        assert_eq!(kept.len(), KEPT, "bounded");
        // The one-off sets kept are the latest ones: every slot but the steady one
        // was replaced in turn.
        let mut one_offs: Vec<u32> = kept
            .iter()
            .filter(|t| **t != text(1))
            .map(|t| t.split(';').nth(2).unwrap().parse().unwrap())
            .collect();
        one_offs.sort_unstable();
        assert_eq!(one_offs, (34..=40).collect::<Vec<_>>());
    }

    #[test]
    fn the_longest_valid_sets_fit_what_is_kept() {
        // Every field at its longest (a sliding window's token is 2 bytes longer than a
        // fixed one's, but a sliding window cannot take these numbers exactly).
        let policy = |i: usize| {
            let name = format!("{i}{}", "n".repeat(MAX_NAME_LEN - 1));
            Policy::per_window(NonZeroU32::MAX, Duration::from_millis(MAX_WINDOW_MS))
                .with_name(PolicyName::new(&name).unwrap())
                .with_algorithm(Algorithm::FixedWindow)
                .with_cost(NonZeroU32::MAX)
                .with_shadow(true)
        };
        let set = PolicySet::new((0..MAX_POLICIES).map(policy)).unwrap();
        let mut wire = String::new();
        render_policies(&set, &mut wire);
        assert_eq!(decode_policies(&wire), Some(set), "a valid set");
        assert!(
            wire.len() + 2 * MAX_POLICIES <= MAX_TEXT,
            "{} bytes",
            wire.len()
        );
        let recent = RecentSets::default();
        recent.decode(&wire).unwrap();
        assert_eq!(kept_texts(&recent), [wire]);
    }

    #[test]
    fn with_every_kept_set_in_use_the_one_at_the_hand_goes() {
        let recent = RecentSets::default();
        for limit in 1..=KEPT as u32 {
            recent.decode(&text(limit)).unwrap();
        }
        for limit in 1..=KEPT as u32 {
            recent.decode(&text(limit)).unwrap(); // every one marked as used
        }
        let hand = recent.lock().hand;
        let replaced = kept_texts(&recent)[hand].clone();
        assert_eq!(recent.decode(&text(100)), decode_policies(&text(100)));
        let kept = kept_texts(&recent);
        assert_eq!(kept.len(), KEPT);
        assert_eq!(
            kept[hand],
            text(100),
            "a lap clears every mark, then the hand's goes"
        );
        assert!(!kept.contains(&replaced));
        assert!(
            recent.lock().sets.iter().all(|entry| !entry.used),
            "no mark is left"
        );
    }
}
