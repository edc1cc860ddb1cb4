use std::borrow::Cow;
use std::sync::Arc;

use http::Request;
use percent_encoding::percent_decode_str;

use super::{KeyError, KeyExtractor};

/// Takes the key from a query parameter: `user_id` by default.
///
/// Decoded as a form value (`+` is a space, `%XX` a byte). Bad percent-encoding, or bytes
/// that are not UTF-8, are a [`KeyError::Invalid`] rather than being silently altered into
/// another user's id; a parameter given twice is a [`KeyError::Ambiguous`], since the app
/// behind the layer may read the other value and serve another user than was counted.
#[derive(Clone, Debug)]
pub struct QueryKey {
    name: Arc<str>,
    what: Arc<str>,
}

impl QueryKey {
    /// Reads the query parameter `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name: String = name.into();
        Self {
            what: format!("query parameter `{name}`").into(),
            name: name.into(),
        }
    }
}

impl Default for QueryKey {
    /// The peer protocol's parameter, `user_id`.
    fn default() -> Self {
        Self::new("user_id")
    }
}

impl<B> KeyExtractor<B> for QueryKey {
    fn extract<'r>(&self, request: &'r Request<B>) -> Result<Cow<'r, str>, KeyError> {
        let query = request.uri().query().unwrap_or("");
        match query_param(query, &self.name) {
            Ok(Some(value)) if value.is_empty() => Err(KeyError::Empty {
                what: self.what.clone(),
            }),
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(KeyError::Missing {
                what: self.what.clone(),
            }),
            Err(ParamError::Invalid(reason)) => Err(KeyError::Invalid {
                what: self.what.clone(),
                reason,
            }),
            Err(ParamError::Repeated) => Err(KeyError::Ambiguous {
                what: self.what.clone(),
            }),
        }
    }
}

/// Why a query has no single value for a parameter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParamError {
    Invalid(&'static str),
    Repeated,
}

/// The decoded value of the parameter `name` in a raw query string, which must appear at
/// most once.
pub(crate) fn query_param<'q>(
    query: &'q str,
    name: &str,
) -> Result<Option<Cow<'q, str>>, ParamError> {
    let mut found = None;
    // '=' is found with a byte search ('&' and '=' are ASCII, so every piece is still a
    // `str`), and a name without escapes is compared as it is, never decoded.
    for pair in query.split('&') {
        let (raw_name, raw_value) = match pair.bytes().position(|b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, ""),
        };
        if names(raw_name, name) {
            if found.is_some() {
                return Err(ParamError::Repeated);
            }
            found = Some(raw_value);
        }
    }
    found
        .map(|raw| decode_form(raw).map_err(ParamError::Invalid))
        .transpose()
}

/// Whether the raw (still encoded) parameter name `raw` decodes to `name`. A name that
/// fails to decode cannot be `name`; only the value's errors matter.
fn names(raw: &str, name: &str) -> bool {
    if is_encoded(raw) {
        decode_form(raw).is_ok_and(|decoded| decoded == name)
    } else {
        raw == name
    }
}

/// Whether a form component holds an escape (`%XX`) or a space (`+`).
fn is_encoded(raw: &str) -> bool {
    raw.bytes().any(|b| b == b'%' || b == b'+')
}

/// Decodes one `application/x-www-form-urlencoded` component, strictly.
fn decode_form(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    if !is_encoded(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        let escape = bytes.get(i + 1..i + 3);
        if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
            return Err("bad percent-encoding");
        }
    }
    let spaced;
    let raw = if raw.contains('+') {
        spaced = raw.replace('+', " ");
        &spaced[..]
    } else {
        raw
    };
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "not UTF-8")?;
    Ok(Cow::Owned(decoded.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(query: &str) -> Result<Option<Cow<'_, str>>, &'static str> {
        query_param(query, "user_id").map_err(|e| match e {
            ParamError::Invalid(reason) => reason,
            ParamError::Repeated => "repeated",
        })
    }

    #[test]
    fn finds_the_parameter_and_borrows_plain_values() {
        let value = param("a=1&user_id=alice&b=2").unwrap().unwrap();
        assert!(matches!(value, Cow::Borrowed("alice")));
    }

    // Regression: with two `user_id`s the first was counted, and an app reading the last
    // served another user (rotating the first got 30 of 30 allowed).
    #[test]
    fn a_repeated_parameter_is_ambiguous_however_it_is_spelled() {
        assert_eq!(param("user_id=alice&user_id=bob"), Err("repeated"));
        assert_eq!(param("user_id=alice&user_id=alice"), Err("repeated"));
        assert_eq!(param("user_id=alice&user%5Fid=bob"), Err("repeated"));
        assert_eq!(param("user_id=&user_id=bob"), Err("repeated"));
        assert_eq!(param("user_id=%zz&user_id=bob"), Err("repeated"));
        assert_eq!(
            param("user_id=alice&user_idx=bob").unwrap().unwrap(),
            "alice"
        );
    }

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(
            param("user_id=a%26user_id%3Db").unwrap().unwrap(),
            "a&user_id=b"
        );
        assert_eq!(param("user_id=a+b%2B").unwrap().unwrap(), "a b+");
        assert_eq!(param("user_id=%C3%A9").unwrap().unwrap(), "é");
        assert_eq!(param("user%5Fid=x").unwrap().unwrap(), "x");
    }

    #[test]
    fn missing_and_empty_are_told_apart() {
        assert_eq!(param("user=alice").unwrap(), None);
        assert_eq!(param("").unwrap(), None);
        assert_eq!(param("user_id").unwrap().unwrap(), "");
        assert_eq!(param("user_id=").unwrap().unwrap(), "");
    }

    #[test]
    fn bad_encoding_is_an_error_not_another_id() {
        assert_eq!(param("user_id=%"), Err("bad percent-encoding"));
        assert_eq!(param("user_id=%4"), Err("bad percent-encoding"));
        assert_eq!(param("user_id=%zz"), Err("bad percent-encoding"));
        assert_eq!(param("user_id=%FF"), Err("not UTF-8"));
        assert_eq!(param("user_id=%C3%A9%"), Err("bad percent-encoding"));
    }

    #[test]
    fn extractor_maps_errors() {
        let key = QueryKey::default();
        let request = |uri: &str| Request::get(uri).body(()).unwrap();
        assert!(matches!(
            key.extract(&request("/x")),
            Err(KeyError::Missing { .. })
        ));
        assert!(matches!(
            key.extract(&request("/x?user_id=")),
            Err(KeyError::Empty { .. })
        ));
        assert_eq!(
            key.extract(&request("/x?user_id=%zz"))
                .unwrap_err()
                .to_string(),
            "invalid query parameter `user_id`: bad percent-encoding"
        );
        assert_eq!(
            key.extract(&request("/x?user_id=a&user_id=b"))
                .unwrap_err()
                .to_string(),
            "query parameter `user_id` given more than once"
        );
    }
}
