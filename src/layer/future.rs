use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::ResponseBody;
use super::service::unavailable_passes;
use super::{OnRejection, Rejection};
use crate::headers::{self, Report};
use crate::{BackendError, Decisions, PolicySet};

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
        // While checking: the ready inner service, the request, the rejection builder and
        // the policies checked.
        waiting: Option<(S, Request<ReqB>, R, PolicySet)>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<C, F> {
        Checking { #[pin] check: C },
        // No decision: the request was not limited, or every policy of its set is in
        // shadow mode and the backend could not decide it.
        Inner { #[pin] future: F, decided: Option<(Decisions, Report)> },
        Rejected { response: Option<Response<Bytes>> },
    }
}

impl<S, ReqB, C, R> ResponseFuture<S, ReqB, C, R>
where
    S: Service<Request<ReqB>>,
    R: OnRejection,
{
    pub(super) fn inner(future: S::Future, decided: Option<(Decisions, Report)>) -> Self {
        Self {
            state: State::Inner { future, decided },
            waiting: None,
        }
    }

    pub(super) fn rejected(on_rejection: &R, rejection: Rejection) -> Self {
        Self::finished(reject(on_rejection, rejection, None))
    }

    /// A rejection already built.
    pub(super) fn finished(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
            waiting: None,
        }
    }

    /// Waits for `check`, then calls the ready inner service with the request, or
    /// rejects it (`waiting`: the service, the request, the rejection builder and the
    /// policies checked).
    pub(super) fn checking(check: C, waiting: (S, Request<ReqB>, R, PolicySet)) -> Self {
        Self {
            state: State::Checking { check },
            waiting: Some(waiting),
        }
    }
}

impl<S, ReqB, ResB, C, R> Future for ResponseFuture<S, ReqB, C, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    C: Future<Output = Result<Decisions, BackendError>>,
    R: OnRejection,
{
    type Output = Result<Response<ResponseBody<ResB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { check } => {
                    let result = ready!(check.poll(cx));
                    let (mut inner, request, on_rejection, set) =
                        this.waiting.take().expect("checked only once");
                    let next = match settle(&set, result, &on_rejection) {
                        Settled::Through(decided) => State::Inner {
                            future: inner.call(request),
                            decided,
                        },
                        Settled::Refused(response) => State::Rejected {
                            response: Some(response),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Inner { future, decided } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some((decisions, report)) = decided.take() {
                        // Never a `Retry-After` here: a request let through was not refused.
                        headers::insert(response.headers_mut(), report, false);
                        response.extensions_mut().insert(decisions);
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

/// What a check's `result` under `set` makes of the request, the same whether it was
/// decided at once or awaited: through to the inner service (with the decisions and
/// their headers, if any), or the finished rejection.
pub(super) fn settle<R: OnRejection>(
    set: &PolicySet,
    result: Result<Decisions, BackendError>,
    on_rejection: &R,
) -> Settled {
    crate::observe::record(set, &result);
    match result {
        Ok(decisions) => {
            let report = Report::new(set, &decisions);
            if decisions.passes(set) {
                Settled::Through(Some((decisions, report)))
            } else {
                let rejection = Rejection::Limited(decisions);
                Settled::Refused(reject(on_rejection, rejection, Some(report)))
            }
        }
        Err(error) if unavailable_passes(&error, set) => Settled::Through(None),
        Err(error) => Settled::Refused(reject(on_rejection, Rejection::Unavailable(error), None)),
    }
}

/// What [`settle`] made of a request.
pub(super) enum Settled {
    /// To the inner service, with the decisions and their headers (none: not decided,
    /// and every policy in shadow mode).
    Through(Option<(Decisions, Report)>),
    /// The finished rejection.
    Refused(Response<Bytes>),
}

/// The finished rejection response: built by `on_rejection`, then given the headers
/// (`report`, for a request over a limit) and the decisions.
fn reject<R: OnRejection>(
    on_rejection: &R,
    rejection: Rejection,
    report: Option<Report>,
) -> Response<Bytes> {
    let decisions = match &rejection {
        Rejection::Limited(decisions) => Some(decisions.clone()),
        _ => None,
    };
    let mut response = on_rejection.respond(rejection);
    if let (Some(decisions), Some(report)) = (decisions, report) {
        headers::insert(response.headers_mut(), report, true);
        response.extensions_mut().insert(decisions);
    }
    response
}
