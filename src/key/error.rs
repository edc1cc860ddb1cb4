use std::fmt;
use std::sync::Arc;

/// Why a request has no usable rate-limit key. Answered with `400 Bad Request`, or, for
/// [`Unconfigured`](KeyError::Unconfigured), the server's own fault, `500`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The request does not carry the key at all (`what` names where it was looked for).
    Missing {
        /// Where the key was looked for, e.g. "query parameter `user_id`".
        what: Arc<str>,
    },
    /// The key is present but empty.
    Empty {
        /// Where the key was found.
        what: Arc<str>,
    },
    /// The key is not valid text: bad percent-encoding or not UTF-8.
    Invalid {
        /// Where the key was found.
        what: Arc<str>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key is given more than once (a query parameter or a header repeated), so the
    /// request could be counted as one user and served as another.
    Ambiguous {
        /// Where the key was found more than once.
        what: Arc<str>,
    },
    /// The server gives the extractor nothing to read: no client address recorded for
    /// [`PeerIpKey`](crate::key::PeerIpKey). The server is set up wrong, not the client.
    Unconfigured {
        /// What is missing, and how to provide it.
        what: Arc<str>,
    },
    /// The key is longer than the configured maximum.
    TooLong {
        /// The maximum, in bytes.
        max: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { what } => write!(f, "missing {what}"),
            Self::Empty { what } => write!(f, "empty {what}"),
            Self::Invalid { what, reason } => write!(f, "invalid {what}: {reason}"),
            Self::Ambiguous { what } => write!(f, "{what} given more than once"),
            Self::Unconfigured { what } => write!(f, "server set up without {what}"),
            Self::TooLong { max } => write!(f, "rate-limit key longer than {max} bytes"),
        }
    }
}

impl KeyError {
    /// `Ok` if `key` is at most `max` bytes long: the one length check of keys, for the
    /// layer, the peer endpoint and batches alike.
    pub(crate) fn check_length(key: &str, max: usize) -> Result<(), Self> {
        match key.len() > max {
            true => Err(Self::TooLong { max }),
            false => Ok(()),
        }
    }

    /// Whether the server, not the client, is at fault (answered with `500`).
    pub fn is_server_error(&self) -> bool {
        matches!(self, Self::Unconfigured { .. })
    }
}

impl std::error::Error for KeyError {}
