//! The response future of the peer endpoint, and the wire answer for a decision.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use pin_project_lite::pin_project;

use super::refusal::text;
use crate::protocol::{ALLOWED_BODY, EXCEEDED_BODY};
use crate::{headers, BackendError, Decision};

pin_project! {
    /// The response future of [`PeerEndpoint`](super::PeerEndpoint).
    #[must_use = "futures do nothing unless polled"]
    pub struct EndpointFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    pub(super) enum State<F> {
        Ready { response: Option<Response<Full<Bytes>>> },
        Checking { #[pin] check: F, policy: HeaderValue, shadow: bool },
        Batch { answer: Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> },
    }
}

impl<F> EndpointFuture<F> {
    pub(super) fn new(state: State<F>) -> Self {
        Self { state }
    }

    pub(super) fn ready(response: Response<Full<Bytes>>) -> Self {
        Self::new(State::Ready {
            response: Some(response),
        })
    }
}

impl<F> fmt::Debug for EndpointFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointFuture").finish_non_exhaustive()
    }
}

impl<F> Future for EndpointFuture<F>
where
    F: Future<Output = Result<Decision, BackendError>>,
{
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            StateProj::Checking {
                check,
                policy,
                shadow,
            } => {
                let result = ready!(check.poll(cx));
                Poll::Ready(Ok(answer(result, policy, *shadow)))
            }
            StateProj::Batch { answer } => answer.as_mut().poll(cx).map(Ok),
        }
    }
}

/// The wire answer for a decision, with the `RateLimit` headers. With `shadow` (a
/// client's check under a policy in shadow mode), a check over the limit is answered as
/// allowed, with the headers that say it was not.
pub(super) fn answer(
    result: Result<Decision, BackendError>,
    policy: &HeaderValue,
    shadow: bool,
) -> Response<Full<Bytes>> {
    match result {
        Ok(decision) => {
            let passes = decision.allowed || shadow;
            if !decision.allowed && shadow {
                tracing::debug!(
                    policy = headers::policy_name(policy),
                    limit = decision.limit,
                    "ringlimit: a policy in shadow mode would have limited a request"
                );
            }
            let (status, body) = match passes {
                true => (StatusCode::OK, ALLOWED_BODY),
                false => (StatusCode::TOO_MANY_REQUESTS, EXCEEDED_BODY),
            };
            let mut response = text(status, body);
            headers::insert(response.headers_mut(), policy, &decision, !passes);
            response
        }
        // A policy in shadow mode never rejects a client, decided or not.
        Err(_) if shadow => text(StatusCode::OK, ALLOWED_BODY),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "owner unavailable\n"),
    }
}
