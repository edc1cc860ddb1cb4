//! A policy's name: what the `RateLimit` headers call it, checked once so that rendering
//! it never fails and never needs escaping.

use std::fmt;

/// The longest name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The name of a policy, as the `RateLimit-Policy` and `RateLimit` headers carry it (a
/// structured-field string): 1 to [`MAX_NAME_LEN`] ASCII letters, digits and
/// `-._:/~!#$%&'*+^`|`. Quotes, backslashes, spaces, commas, semicolons and equals signs
/// are refused, so a name renders as it is, inside quotes, and reads back whole. Copied
/// by value, like the policy that holds it.
///
/// # Examples
///
/// ```
/// use ringlimit::policy::PolicyName;
///
/// assert_eq!(PolicyName::new("login-burst").unwrap().as_str(), "login-burst");
/// assert!(PolicyName::new("a;b").is_err());
/// assert!(PolicyName::new("").is_err());
/// assert_eq!(PolicyName::DEFAULT.as_str(), "default");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyName {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyNameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong(usize),
    /// The name has a character that a header could not carry as it is.
    Character(char),
}

impl PolicyName {
    /// `default`: the name of a policy not named otherwise.
    pub const DEFAULT: Self = Self::from_valid(b"default");

    /// `name`, if it can be rendered as it is.
    ///
    /// # Errors
    ///
    /// If it is empty, longer than [`MAX_NAME_LEN`] bytes, or has a character outside
    /// the ones listed on the type.
    pub fn new(name: &str) -> Result<Self, PolicyNameError> {
        if name.is_empty() {
            return Err(PolicyNameError::Empty);
        }
        if let Some(bad) = name.chars().find(|&c| !is_name_char(c)) {
            return Err(PolicyNameError::Character(bad));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(PolicyNameError::TooLong(name.len()));
        }
        Ok(Self::from_valid(name.as_bytes()))
    }

    const fn from_valid(name: &[u8]) -> Self {
        let mut bytes = [0; MAX_NAME_LEN];
        let mut i = 0;
        while i < name.len() {
            bytes[i] = name[i];
            i += 1;
        }
        Self {
            len: name.len() as u8,
            bytes,
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("names are checked ASCII")
    }

    /// The name's bytes, for the response headers (no UTF-8 check on each request).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The characters of a structured-field token that also need no escaping in a string
/// and cannot end one of its parameters early.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._:/~!#$%&'*+^`|".contains(c)
}

impl Default for PolicyName {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Debug for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for PolicyNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("a policy name cannot be empty"),
            Self::TooLong(len) => write!(
                f,
                "a policy name has at most {MAX_NAME_LEN} bytes, this one {len}"
            ),
            Self::Character(c) => write!(
                f,
                "a policy name cannot hold {c:?} (letters, digits and -._:/~!#$%&'*+^`| only)"
            ),
        }
    }
}

impl std::error::Error for PolicyNameError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_render_as_they_are_and_no_others() {
        for good in [
            "default",
            "a",
            "tier:free",
            "login/burst-1",
            &"x".repeat(64),
        ] {
            assert_eq!(PolicyName::new(good).unwrap().as_str(), good);
        }
        assert_eq!(PolicyName::new(""), Err(PolicyNameError::Empty));
        assert_eq!(
            PolicyName::new(&"x".repeat(65)),
            Err(PolicyNameError::TooLong(65))
        );
        for (bad, c) in [
            ("a b", ' '),
            ("a\"b", '"'),
            ("a\\b", '\\'),
            ("a;b", ';'),
            ("a,b", ','),
            ("a=b", '='),
            ("é", 'é'),
            ("a\nb", '\n'),
        ] {
            assert_eq!(PolicyName::new(bad), Err(PolicyNameError::Character(c)));
        }
        assert_eq!(format!("{:?}", PolicyName::DEFAULT), "\"default\"");
    }
}
