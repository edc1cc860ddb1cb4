//! The shared secret that lets a node's forwarding mark be trusted.

use std::fmt;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

/// A secret shared by all nodes of a ring.
///
/// Forwarded checks carry `authorization: Bearer <secret>`, and a check marked
/// `x-ringlimit-forwarded` without it is refused with `401`. Without a secret, any client
/// that can reach the peer endpoint can send the mark to every node and be counted by
/// each of them (`nodes × limit`): keep the endpoint on an internal port, or set a secret.
#[derive(Clone)]
pub struct PeerSecret {
    bearer: HeaderValue,
}

impl PeerSecret {
    /// A secret of visible ASCII characters, as header values allow; `None` if it is empty
    /// or has other characters.
    pub fn new(secret: &str) -> Option<Self> {
        let valid = !secret.is_empty() && secret.bytes().all(|b| b.is_ascii_graphic());
        let mut bearer = HeaderValue::from_str(&format!("Bearer {secret}")).ok()?;
        bearer.set_sensitive(true);
        valid.then_some(Self { bearer })
    }

    pub(crate) fn bearer(&self) -> HeaderValue {
        self.bearer.clone()
    }

    /// Whether `headers` carry this secret, compared in constant time.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        headers
            .get(AUTHORIZATION)
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(self.bearer.as_bytes())))
    }
}

impl fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_the_exact_bearer_and_hides_itself() {
        let secret = PeerSecret::new("s3cret").unwrap();
        let mut headers = HeaderMap::new();
        assert!(!secret.admits(&headers));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(secret.admits(&headers));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cre"));
        assert!(!secret.admits(&headers));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cretX"));
        assert!(!secret.admits(&headers));
        assert_eq!(format!("{secret:?}"), "PeerSecret(..)");
        assert!(PeerSecret::new("").is_none());
        assert!(PeerSecret::new("has space").is_none());
    }
}
