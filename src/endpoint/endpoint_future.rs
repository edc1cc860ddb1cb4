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

use super::refusal::{text, undecided};
use crate::headers::{self, Report};
use crate::protocol::{encode_each, ALLOWED_BODY, DECISIONS, EXCEEDED_BODY};
use crate::{BackendError, Decisions, PolicySet};

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
        Checking { #[pin] check: F, set: PolicySet, asker: Asker },
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
    F: Future<Output = Result<Decisions, BackendError>>,
{
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            StateProj::Checking { check, set, asker } => {
                let result = ready!(check.poll(cx));
                Poll::Ready(Ok(answer(result, set, *asker)))
            }
            StateProj::Batch { answer } => answer.as_mut().poll(cx).map(Ok),
        }
    }
}

/// Who asked for a check, which decides how its answer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Asker {
    /// A client: a policy in shadow mode over its limit is answered allowed.
    Client,
    /// Another node that carried its policies, shadow modes included: with what each
    /// policy decided in `x-ringlimit-decisions`.
    PeerWithPolicies,
    /// Another node that did not (an older one, or a Python node).
    Peer,
}

/// The wire answer for a check against `set`, with the `RateLimit` headers: `200
/// ALLOWED` when the check was counted (every policy not in shadow mode allowed it), `429
/// RATE LIMIT EXCEEDED` when nothing was; a check that could not be decided is `503`
/// (for a client under policies all in shadow mode, `200`; for a peer, `400` when the
/// check was refused, see [`undecided`]).
pub(super) fn answer(
    result: Result<Decisions, BackendError>,
    set: &PolicySet,
    asker: Asker,
) -> Response<Full<Bytes>> {
    match asker {
        Asker::Client => crate::observe::record(set, &result),
        _ => crate::observe::answered(1),
    }
    match result {
        Ok(decisions) => {
            let passes = decisions.passes(set);
            let (status, body) = match passes {
                true => (StatusCode::OK, ALLOWED_BODY),
                false => (StatusCode::TOO_MANY_REQUESTS, EXCEEDED_BODY),
            };
            let mut response = text(status, body);
            headers::insert(
                response.headers_mut(),
                Report::new(set, &decisions),
                !passes,
            );
            if asker == Asker::PeerWithPolicies {
                let mut told = String::new();
                encode_each(&decisions, &mut told);
                let told = HeaderValue::try_from(told.trim_start()).expect("digits and spaces");
                response.headers_mut().insert(DECISIONS, told);
            }
            response
        }
        // A set all in shadow mode never rejects a client, decided or not.
        Err(_) if asker == Asker::Client && set.all_shadow() => text(StatusCode::OK, ALLOWED_BODY),
        // A client's own check was not its doing.
        Err(_) if asker == Asker::Client => {
            text(StatusCode::SERVICE_UNAVAILABLE, "owner unavailable\n")
        }
        Err(error) => match undecided(&error) {
            StatusCode::BAD_REQUEST => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
            status => text(status, "owner unavailable\n"),
        },
    }
}
