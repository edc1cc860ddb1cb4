use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::ResponseBody;
use super::service::{passes, unavailable_passes};
use super::{OnRejection, Rejection};
use crate::{headers, BackendError, Decision};

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit).
    ///
    /// A local decision never creates the `Checking` state: the future starts as the inner
    /// call or as the finished rejection.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, ReqB, C, R>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        state: State<C, S::Future>,
        // The ready inner service, the request and the rejection builder, while checking.
        waiting: Option<(S, Request<ReqB>, R)>,
        policy: HeaderValue,
        // The policy is in shadow mode: over the limit still goes to the inner service.
        shadow: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<C, F> {
        Checking { #[pin] check: C },
        // No decision: a policy in shadow mode let a request through that the backend
        // could not decide.
        Inner { #[pin] future: F, decision: Option<Decision> },
        Rejected { response: Option<Response<Bytes>> },
    }
}

impl<S, ReqB, C, R> ResponseFuture<S, ReqB, C, R>
where
    S: Service<Request<ReqB>>,
    R: OnRejection,
{
    pub(super) fn inner(
        future: S::Future,
        decision: Option<Decision>,
        policy: HeaderValue,
    ) -> Self {
        Self {
            state: State::Inner { future, decision },
            waiting: None,
            policy,
            shadow: false,
        }
    }

    pub(super) fn rejected(on_rejection: &R, rejection: Rejection, policy: HeaderValue) -> Self {
        let response = reject(on_rejection, rejection, &policy);
        Self {
            state: State::Rejected {
                response: Some(response),
            },
            waiting: None,
            policy,
            shadow: false,
        }
    }

    /// Waits for `check`, then calls the ready inner service with the request, or
    /// rejects it (`waiting`: the service, the request and the rejection builder).
    pub(super) fn checking(
        check: C,
        waiting: (S, Request<ReqB>, R),
        policy: HeaderValue,
        shadow: bool,
    ) -> Self {
        Self {
            state: State::Checking { check },
            waiting: Some(waiting),
            policy,
            shadow,
        }
    }
}

impl<S, ReqB, ResB, C, R> Future for ResponseFuture<S, ReqB, C, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    C: Future<Output = Result<Decision, BackendError>>,
    R: OnRejection,
{
    type Output = Result<Response<ResponseBody<ResB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { check } => {
                    let result = ready!(check.poll(cx));
                    let (mut inner, request, on_rejection) =
                        this.waiting.take().expect("checked only once");
                    let next = match result {
                        Ok(decision) if passes(&decision, *this.shadow, this.policy) => {
                            State::Inner {
                                future: inner.call(request),
                                decision: Some(decision),
                            }
                        }
                        Ok(decision) => State::Rejected {
                            response: Some(reject(
                                &on_rejection,
                                Rejection::Limited(decision),
                                this.policy,
                            )),
                        },
                        Err(error) if unavailable_passes(&error, *this.shadow) => State::Inner {
                            future: inner.call(request),
                            decision: None,
                        },
                        Err(error) => State::Rejected {
                            response: Some(reject(
                                &on_rejection,
                                Rejection::Unavailable(error),
                                this.policy,
                            )),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Inner { future, decision } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(decision) = decision {
                        // Never a `Retry-After` here: a request let through was not refused.
                        headers::insert(response.headers_mut(), this.policy, decision, false);
                        response.extensions_mut().insert(*decision);
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejected)));
                }
            }
        }
    }
}

/// The finished rejection response: built by `on_rejection`, then given the headers and
/// the decision.
fn reject<R: OnRejection>(
    on_rejection: &R,
    rejection: Rejection,
    policy: &HeaderValue,
) -> Response<Bytes> {
    let decision = match &rejection {
        Rejection::Limited(decision) => Some(*decision),
        _ => None,
    };
    let mut response = on_rejection.respond(rejection);
    if let Some(decision) = decision {
        headers::insert(response.headers_mut(), policy, &decision, true);
        response.extensions_mut().insert(decision);
    }
    response
}
