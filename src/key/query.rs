use std::borrow::Cow;
use std::sync::Arc;

use http::Request;
use percent_encoding::percent_decode_str;

use super::{KeyError, KeyExtractor};

/// Takes the key from a query parameter: `user_id` by default, as the reference does.
///
/// Decoded as a form value (`+` is a space, `%XX` a byte); the first occurrence wins.
/// Bad percent-encoding, or bytes that are not UTF-8, are a [`KeyError::Invalid`] rather
/// than being silently altered into another user's id.
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
    /// The reference's parameter, `user_id`.
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
            Err(reason) => Err(KeyError::Invalid {
                what: self.what.clone(),
                reason,
            }),
        }
    }
}

/// The decoded value of the first parameter `name` in a raw query string.
fn query_param<'q>(query: &'q str, name: &str) -> Result<Option<Cow<'q, str>>, &'static str> {
    for pair in query.split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        // A name that fails to decode cannot be `name`; only the value's errors matter.
        if decode_form(raw_name).is_ok_and(|n| n == name) {
            return decode_form(raw_value).map(Some);
        }
    }
    Ok(None)
}

/// Decodes one `application/x-www-form-urlencoded` component, strictly.
fn decode_form(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    if !raw.contains(['%', '+']) {
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
        query_param(query, "user_id")
    }

    #[test]
    fn finds_the_first_parameter_and_borrows_plain_values() {
        let value = param("a=1&user_id=alice&user_id=bob").unwrap().unwrap();
        assert!(matches!(value, Cow::Borrowed("alice")));
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
    }
}
