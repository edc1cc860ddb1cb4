//! A tracked key as its table entry holds it: short keys (user ids, IPv4 addresses) inline,
//! longer ones on the heap.
//!
//! Why: with every key behind a `Box<str>`, a key's first check in a window allocated, and
//! every check followed a pointer to compare the key (a cache miss when many keys are in
//! use). Inline, the compare reads the entry's own cache line, and most keys allocate
//! nothing.

/// Bytes a key may have and still be stored inline: room for any IPv4 address
/// (`255.255.255.255`). It keeps the whole key 24 bytes, a `Box<str>` and 8 more.
const INLINE: usize = 22;

#[derive(Debug)]
pub(super) enum StoredKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl StoredKey {
    /// `key`, inline if it fits.
    pub(super) fn new(key: &str) -> Self {
        match key.len() {
            len if len <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..len].copy_from_slice(key.as_bytes());
                Self::Inline {
                    len: len as u8,
                    bytes,
                }
            }
            _ => Self::Heap(key.into()),
        }
    }

    /// The key itself.
    #[cfg(feature = "cluster")]
    pub(super) fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` whole: always UTF-8.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Heap(stored) => stored,
        }
    }

    /// Whether this is `key`.
    pub(super) fn is(&self, key: &str) -> bool {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)) == Some(key.as_bytes()),
            Self::Heap(stored) => **stored == *key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{StoredKey, INLINE};

    #[test]
    fn short_keys_are_inline_long_ones_on_the_heap_and_each_is_only_itself() {
        let at_most = "k".repeat(INLINE);
        let over = "k".repeat(INLINE + 1);
        for (key, inline) in [
            ("", true),
            ("alice", true),
            ("255.255.255.255", true),
            ("é✓", true),
            (at_most.as_str(), true),
            (over.as_str(), false),
            ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", false),
        ] {
            let stored = StoredKey::new(key);
            assert_eq!(
                matches!(stored, StoredKey::Inline { .. }),
                inline,
                "{key:?}"
            );
            assert!(stored.is(key), "{key:?}");
            for other in ["", "alic", "alice ", "Alice", &at_most[1..], &over[1..]] {
                assert_eq!(stored.is(other), other == key, "{key:?} against {other:?}");
            }
        }
    }

    #[test]
    fn a_stored_key_is_no_bigger_than_a_box_and_eight_bytes() {
        assert!(std::mem::size_of::<StoredKey>() <= std::mem::size_of::<Box<str>>() + 8);
    }
}
