use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::ResponseBody;
use super::future::{settle, ResponseFuture, Settled};
use super::{OnRejection, Rejection};
use crate::key::{KeyError, KeyExtractor};
use crate::resolve::{PolicyResolver, Quota};
use crate::{Backend, Check, PolicySet};

/// What every clone of a [`RateLimit`] service shares.
pub(super) struct Shared<B, K, R, P> {
    pub(super) backend: Arc<B>,
    pub(super) key: K,
    pub(super) on_rejection: R,
    pub(super) max_key_len: usize,
    pub(super) policies: P,
}

/// The rate-limiting service made by [`RateLimitLayer`](crate::RateLimitLayer).
///
/// Cheap to clone (its state is behind an `Arc`). `poll_ready` only asks the inner
/// service: the limiter never makes a caller wait, it answers.
pub struct RateLimit<S, B, K, R, P = crate::resolve::OwnPolicies> {
    inner: S,
    shared: Arc<Shared<B, K, R, P>>,
}

impl<S, B, K, R, P> RateLimit<S, B, K, R, P> {
    pub(super) fn new(inner: S, shared: Arc<Shared<B, K, R, P>>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, to change.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, without the limiter.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, K, R, P, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S, B, K, R, P>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    B: Backend,
    K: KeyExtractor<ReqB>,
    R: OnRejection,
    P: PolicyResolver<ReqB>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB, B::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let shared = &*self.shared;
        let on_rejection = &shared.on_rejection;
        let set = match shared.policies.resolve(&request, shared.backend.policies()) {
            Quota::Limited(set) => set,
            Quota::NotLimited => return ResponseFuture::inner(self.inner.call(request), None),
        };
        let check = match shared.key.extract(&request) {
            Ok(key) => KeyError::check_length(&key, shared.max_key_len)
                .map(|()| shared.backend.check(&key, set)),
            Err(error) => {
                if error.is_server_error() && misconfiguration_not_logged_lately() {
                    tracing::error!(%error, "ringlimit: cannot key requests (logged once a minute)");
                }
                Err(error)
            }
        };
        match check {
            Err(error) => {
                crate::observe::bad_key(set);
                ResponseFuture::rejected(on_rejection, Rejection::BadKey(error))
            }
            Ok(Check::Ready(result)) => match settle(set, result, on_rejection) {
                Settled::Through(decided) => {
                    ResponseFuture::inner(self.inner.call(request), decided)
                }
                Settled::Refused(response) => ResponseFuture::finished(response),
            },
            Ok(Check::Pending(check)) => {
                // The ready inner service goes with the request; this one keeps a fresh
                // clone, which must be polled ready before its next call.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let waiting = (inner, request, on_rejection.clone(), set.clone());
                ResponseFuture::checking(check, waiting)
            }
        }
    }
}

impl<S: Clone, B, K, R, P> Clone for RateLimit<S, B, K, R, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, B: fmt::Debug, K: fmt::Debug, R, P> fmt::Debug for RateLimit<S, B, K, R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("backend", &self.shared.backend)
            .field("key", &self.shared.key)
            .field("max_key_len", &self.shared.max_key_len)
            .finish_non_exhaustive()
    }
}

/// Whether a server misconfiguration (every request failing alike) has gone unlogged for
/// a minute: logged once a minute, not once a request.
fn misconfiguration_not_logged_lately() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LOGGED_AT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let last = LOGGED_AT.load(Ordering::Relaxed);
    now.abs_diff(last) >= 60
        && LOGGED_AT
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Whether a request the backend could not decide goes to the inner service anyway: when
/// every policy of its set is in shadow mode, so none would reject (logged at `debug`).
pub(super) fn unavailable_passes(error: &crate::BackendError, set: &PolicySet) -> bool {
    let shadow = set.all_shadow();
    if shadow {
        tracing::debug!(%error, "ringlimit: a policy in shadow mode let an undecided request through");
    }
    shadow
}
