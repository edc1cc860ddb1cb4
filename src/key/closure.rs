use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::Request;

use super::{KeyError, KeyExtractor};

/// A key extractor made from a closure; see [`from_fn`].
#[derive(Clone)]
pub struct KeyFn<F> {
    f: F,
    what: Arc<str>,
}

/// Takes the key from whatever `f` returns; `None` is answered as a missing key.
///
/// # Examples
///
/// ```
/// use ringlimit::key::{from_fn, KeyExtractor};
/// use http::Request;
///
/// // One bucket per API token prefix.
/// let key = from_fn(|request: &Request<()>| {
///     let token = request.headers().get("authorization")?.to_str().ok()?;
///     Some(token.chars().take(12).collect())
/// });
/// let request = Request::get("/").header("authorization", "Bearer abcdefghijkl").body(()).unwrap();
/// assert_eq!(key.extract(&request).unwrap(), "Bearer abcde");
/// ```
pub fn from_fn<F, B>(f: F) -> KeyFn<F>
where
    F: Fn(&Request<B>) -> Option<String> + Send + Sync + 'static,
{
    KeyFn {
        f,
        what: "rate-limit key".into(),
    }
}

impl<B, F> KeyExtractor<B> for KeyFn<F>
where
    F: Fn(&Request<B>) -> Option<String> + Send + Sync + 'static,
{
    fn extract<'r>(&self, request: &'r Request<B>) -> Result<Cow<'r, str>, KeyError> {
        match (self.f)(request) {
            Some(key) if key.is_empty() => Err(KeyError::Empty {
                what: self.what.clone(),
            }),
            Some(key) => Ok(Cow::Owned(key)),
            None => Err(KeyError::Missing {
                what: self.what.clone(),
            }),
        }
    }
}

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn").finish_non_exhaustive()
    }
}
