use std::borrow::Cow;
use std::sync::Arc;

use http::header::HeaderName;
use http::Request;

use super::{KeyError, KeyExtractor};

/// Takes the key from a request header, such as `x-user-id` set by an authenticating proxy.
///
/// Values must be UTF-8 (header values are usually ASCII). A header sent twice is a
/// [`KeyError::Ambiguous`]: the app behind the layer may read the other value.
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
    what: Arc<str>,
}

impl HeaderKey {
    /// Reads the header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self {
            what: format!("header `{name}`").into(),
            name,
        }
    }

    /// Reads the header `name`.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid lower-case header name (as [`HeaderName::from_static`]).
    pub fn from_static(name: &'static str) -> Self {
        Self::new(HeaderName::from_static(name))
    }
}

impl<B> KeyExtractor<B> for HeaderKey {
    fn extract<'r>(&self, request: &'r Request<B>) -> Result<Cow<'r, str>, KeyError> {
        let mut values = request.headers().get_all(&self.name).into_iter();
        let value = values.next().ok_or_else(|| KeyError::Missing {
            what: self.what.clone(),
        })?;
        if values.next().is_some() {
            return Err(KeyError::Ambiguous {
                what: self.what.clone(),
            });
        }
        let value = std::str::from_utf8(value.as_bytes()).map_err(|_| KeyError::Invalid {
            what: self.what.clone(),
            reason: "not UTF-8",
        })?;
        if value.is_empty() {
            return Err(KeyError::Empty {
                what: self.what.clone(),
            });
        }
        Ok(Cow::Borrowed(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn reads_the_value_and_refuses_empty_repeated_or_non_utf8() {
        let key = HeaderKey::from_static("x-user-id");
        let mut request = Request::get("/").body(()).unwrap();
        assert_eq!(
            key.extract(&request).unwrap_err().to_string(),
            "missing header `x-user-id`"
        );
        let headers = request.headers_mut();
        headers.append("x-user-id", HeaderValue::from_static(""));
        assert!(matches!(key.extract(&request), Err(KeyError::Empty { .. })));

        let mut request = Request::get("/").body(()).unwrap();
        let headers = request.headers_mut();
        headers.append(
            "x-user-id",
            HeaderValue::from_bytes("é".as_bytes()).unwrap(),
        );
        assert_eq!(key.extract(&request).unwrap(), "é");
        // Regression: the first of two values was counted; an app may read the other.
        request
            .headers_mut()
            .append("x-user-id", HeaderValue::from_static("bob"));
        assert_eq!(
            key.extract(&request).unwrap_err().to_string(),
            "header `x-user-id` given more than once"
        );

        let mut request = Request::get("/").body(()).unwrap();
        let bad = HeaderValue::from_bytes(&[0xff, 0xfe]).unwrap();
        request.headers_mut().insert("x-user-id", bad);
        assert!(matches!(
            key.extract(&request),
            Err(KeyError::Invalid { .. })
        ));
    }
}
