//! The policy sets an owner decoded lately from its peers' batches, kept so that a set's
//! text is not parsed (nor a set allocated) again for every batch: a ring's checks name
//! the few sets its layers were configured with. At low load a batch carries one check,
//! and decoding its set was the largest part of answering it (BENCHMARKS.md).

use std::sync::{Mutex, PoisonError};

use super::policies::decode_policies;
use crate::PolicySet;

/// Sets kept at most; the oldest kept is replaced first.
const KEPT: usize = 8;
/// The longest text kept: a valid set's wire form is shorter (a name of 64 bytes and
/// four numbers per policy, eight policies at most), unless a peer pads its numbers.
const MAX_TEXT: usize = 1024;

/// A few decoded sets, by their text. Bounded: [`KEPT`] texts of [`MAX_TEXT`] bytes.
#[derive(Debug, Default)]
pub(crate) struct RecentSets {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    sets: Vec<(Box<str>, PolicySet)>,
    /// The slot replaced next, once all are taken.
    next: usize,
}

impl RecentSets {
    /// The set `text` stands for, if it is a valid one: what `decode_policies` gives,
    /// from a set kept if `text` was decoded lately.
    pub(crate) fn decode(&self, text: &str) -> Option<PolicySet> {
        let found = self
            .lock()
            .sets
            .iter()
            .find(|(kept, _)| **kept == *text)
            .map(|(_, set)| set.clone());
        if found.is_some() {
            return found;
        }
        let set = decode_policies(text)?;
        if text.len() <= MAX_TEXT {
            self.keep(text, &set);
        }
        Some(set)
    }

    fn keep(&self, text: &str, set: &PolicySet) {
        let mut kept = self.lock();
        if kept.sets.iter().any(|(kept, _)| **kept == *text) {
            return; // another batch decoded it meanwhile
        }
        let entry = (text.into(), set.clone());
        if kept.sets.len() < KEPT {
            kept.sets.push(entry);
        } else {
            let at = kept.next;
            kept.sets[at] = entry;
            kept.next = (at + 1) % KEPT;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(limit: u32) -> String {
        format!("default;fixed;{limit};1000;1")
    }

    #[test]
    fn answers_as_decoding_does_and_keeps_a_bounded_few() {
        let recent = RecentSets::default();
        assert_eq!(recent.decode("not a set"), None);
        let first = recent.decode(&text(1)).unwrap();
        assert_eq!(Some(first.clone()), decode_policies(&text(1)));
        let again = recent.decode(&text(1)).unwrap();
        assert!(
            std::ptr::eq(first.as_slice(), again.as_slice()),
            "the kept set is shared, not decoded again"
        );
        for limit in 2..=20 {
            assert_eq!(recent.decode(&text(limit)), decode_policies(&text(limit)));
        }
        assert_eq!(recent.lock().sets.len(), KEPT);
        let padded = format!("default;fixed;{}1;1000;1", "0".repeat(MAX_TEXT));
        assert_eq!(recent.decode(&padded), decode_policies(&padded));
        assert!(recent.lock().sets.iter().all(|(t, _)| t.len() <= MAX_TEXT));
    }
}
