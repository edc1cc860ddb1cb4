//! The mark of a check sent on by a node that does not hold its key (see
//! `docs/PROTOCOL.md`, "Checks sent on"): how many times it was sent on, so that a check
//! never travels in circles between nodes that disagree about where a key is.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

/// Marks a forwarded check sent on by a node that does not hold its key.
const RELAYED: HeaderName = HeaderName::from_static("x-ringlimit-relayed");

/// How many times a forwarded check was sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Relayed {
    /// `1`: sent on once. Sent on once more if it reaches a node that handed the key on.
    Once,
    /// `2`: sent on twice. Decided where it arrives, or refused there if the key was
    /// handed on from there too; never sent on again.
    Twice,
}

impl Relayed {
    /// The mark `headers` carry, if any. Any value but `2` counts as once: nodes that
    /// sent one kind of relayed check marked it `1`, and decided every marked check where
    /// it arrived.
    pub(crate) fn read(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(RELAYED)?;
        Some(match value.as_bytes() {
            b"2" => Self::Twice,
            _ => Self::Once,
        })
    }

    /// Marks `headers` with it.
    pub(crate) fn mark(self, headers: &mut HeaderMap) {
        let value = match self {
            Self::Once => "1",
            Self::Twice => "2",
        };
        headers.insert(RELAYED, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_reads_back_as_written_and_any_other_value_as_once() {
        for relayed in [Relayed::Once, Relayed::Twice] {
            let mut headers = HeaderMap::new();
            relayed.mark(&mut headers);
            assert_eq!(Relayed::read(&headers), Some(relayed));
        }
        let mut headers = HeaderMap::new();
        assert_eq!(Relayed::read(&headers), None);
        for other in ["yes", "3", "", "22"] {
            headers.insert(RELAYED, HeaderValue::from_static(other));
            assert_eq!(Relayed::read(&headers), Some(Relayed::Once), "{other:?}");
        }
    }
}
