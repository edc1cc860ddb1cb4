//! Which policies each request is checked against: the backend's own set unless a
//! [`PolicyResolver`] picks another (a tier from a header or from a request extension
//! the app's auth middleware set, a stricter set for one route), or says the request is
//! not limited at all.
//!
//! # Examples
//!
//! ```
//! use http::Request;
//! use ringlimit::resolve::{tiers, PolicyResolver, Quota};
//! use ringlimit::{Policy, PolicySet};
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//!
//! let per_minute = |n| PolicySet::from(Policy::per_window(NonZeroU32::new(n).unwrap(), Duration::from_secs(60)));
//! let (free, pro) = (per_minute(10), per_minute(1000));
//! let resolver = tiers(|request: &Request<()>| {
//!     if request.uri().path() == "/health" {
//!         return Some("internal");
//!     }
//!     request.headers().get("x-tier")?.to_str().ok()
//! })
//! .tier("pro", pro.clone())
//! .not_limited("internal")
//! .otherwise(free.clone());
//!
//! let own = per_minute(5);
//! let request = |path, tier| Request::get(path).header("x-tier", tier).body(()).unwrap();
//! assert_eq!(resolver.resolve(&request("/", "pro"), &own), Quota::Limited(&pro));
//! assert_eq!(resolver.resolve(&request("/", "gold"), &own), Quota::Limited(&free));
//! assert_eq!(resolver.resolve(&request("/health", "pro"), &own), Quota::NotLimited);
//! ```

use std::fmt;

use http::Request;

use crate::PolicySet;

/// What a resolver picked for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Quota<'a> {
    /// Check the request against these policies.
    Limited(&'a PolicySet),
    /// Let the request through unchecked and uncounted (an allow-list). Unlike a request
    /// without a usable key, which is answered `400`.
    NotLimited,
}

/// Picks the policies a request is checked against.
pub trait PolicyResolver<B>: Send + Sync + 'static {
    /// The quota of `request`; `own` is the backend's set.
    fn resolve<'a>(&'a self, request: &Request<B>, own: &'a PolicySet) -> Quota<'a>;
}

/// The backend's own policies, for every request (the layer's default).
#[derive(Clone, Copy, Debug, Default)]
pub struct OwnPolicies;

impl<B> PolicyResolver<B> for OwnPolicies {
    #[inline]
    fn resolve<'a>(&'a self, _: &Request<B>, own: &'a PolicySet) -> Quota<'a> {
        Quota::Limited(own)
    }
}

/// This set, for every request.
impl<B> PolicyResolver<B> for PolicySet {
    fn resolve<'a>(&'a self, _: &Request<B>, _: &'a PolicySet) -> Quota<'a> {
        Quota::Limited(self)
    }
}

/// Sets picked by a name a closure reads from the request; see [`tiers`].
#[derive(Clone)]
pub struct Tiers<F> {
    pick: F,
    named: Vec<(Box<str>, Option<PolicySet>)>,
    otherwise: Option<PolicySet>,
}

/// A resolver that asks `pick` for a tier's name (from a header, a request extension,
/// the route...) and checks the request against that tier's set. A name that is not a
/// tier, or no name, gets the [`otherwise`](Tiers::otherwise) set (by default, the
/// backend's own).
pub fn tiers<F, B>(pick: F) -> Tiers<F>
where
    F: Fn(&Request<B>) -> Option<&str> + Send + Sync + 'static,
{
    Tiers {
        pick,
        named: Vec::new(),
        otherwise: None,
    }
}

impl<F> Tiers<F> {
    /// Requests whose tier is `name` are checked against `set` (a name given again
    /// replaces what it said before).
    #[must_use]
    pub fn tier(self, name: &str, set: impl Into<PolicySet>) -> Self {
        self.named(name, Some(set.into()))
    }

    /// Requests whose tier is `name` are not limited (a name given again replaces what
    /// it said before).
    #[must_use]
    pub fn not_limited(self, name: &str) -> Self {
        self.named(name, None)
    }

    fn named(mut self, name: &str, set: Option<PolicySet>) -> Self {
        self.named.retain(|(tier, _)| **tier != *name);
        self.named.push((name.into(), set));
        self
    }

    /// Requests with no tier, or one not named here, are checked against `set` (instead
    /// of the backend's own policies).
    #[must_use]
    pub fn otherwise(mut self, set: impl Into<PolicySet>) -> Self {
        self.otherwise = Some(set.into());
        self
    }
}

impl<F, B> PolicyResolver<B> for Tiers<F>
where
    F: Fn(&Request<B>) -> Option<&str> + Send + Sync + 'static,
{
    fn resolve<'a>(&'a self, request: &Request<B>, own: &'a PolicySet) -> Quota<'a> {
        let named = (self.pick)(request)
            .and_then(|name| self.named.iter().find(|(tier, _)| **tier == *name));
        match named {
            Some((_, Some(set))) => Quota::Limited(set),
            Some((_, None)) => Quota::NotLimited,
            None => Quota::Limited(self.otherwise.as_ref().unwrap_or(own)),
        }
    }
}

impl<F> fmt::Debug for Tiers<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiers")
            .field("named", &self.named)
            .field("otherwise", &self.otherwise)
            .finish_non_exhaustive()
    }
}
