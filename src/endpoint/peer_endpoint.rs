//! The peer endpoint: `GET /check?user_id=` for other nodes (and, since it is a plain
//! `/check`, for clients).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

use super::answer_batch::{answer_batch, DEFAULT_BATCH_BODY_TIMEOUT, DEFAULT_MAX_BATCHES_READING};
use super::answer_handoff::answer_handoff;
use super::endpoint_future::{answer, Asker, EndpointFuture, State};
use super::refusal::Refusal;
use crate::backend::{Check, Owner};
use crate::key::{KeyError, KeyExtractor, QueryKey, DEFAULT_MAX_KEY_LEN};
use crate::protocol::{
    forwarded_asked, Asked, PeerSecret, RecentSets, Relayed, BATCH_PATH, CHECK_PATH, FORWARDED,
    HANDOFF_PATH,
};
use crate::{Backend, PolicySet};

/// Serves the peer wire contract on a backend: `200 ALLOWED`, `429 RATE LIMIT EXCEEDED`,
/// `400` without a usable `user_id`, `404` on other paths, `405` on methods other than
/// `GET` and `POST` (a batch from another node: `400` unless marked as forwarded).
///
/// A request marked `x-ringlimit-forwarded` is answered from this node's own counters
/// ([`Owner::check_forwarded`](crate::backend::Owner::check_forwarded)); an unmarked one is routed like any other check, so a
/// node that does not own the key forwards it to the owner. Mount it on its own listener
/// ([`serve`](crate::endpoint::serve)) or in a router (axum: `route_service("/check", endpoint)`).
///
/// Batch bodies (`POST /check`, between ringlimit nodes) come from outside, so each
/// is bounded: in bytes, room for 256 checks with 1 KiB of policies each and ids of
/// [`max_key_len`](Self::max_key_len) (or 1 KiB, if more) percent-encoded (`413`
/// beyond; an over-long id in a batch that fits is refused on its own line), in time
/// ([`batch_body_timeout`](Self::batch_body_timeout), `408`), and in number
/// ([`max_batches_reading`](Self::max_batches_reading), `503`); each of these refusals
/// closes the connection.
pub struct PeerEndpoint<B> {
    /// Behind one `Arc`: the server clones the endpoint for every request.
    settings: Arc<Settings<B>>,
}

/// What an endpoint is set up with.
struct Settings<B> {
    backend: Arc<B>,
    key: QueryKey,
    max_key_len: usize,
    secret: Option<PeerSecret>,
    batch_body_timeout: Duration,
    /// One permit per batch body being read and answered.
    batches: Arc<Semaphore>,
    /// The policy sets lately decoded from batches.
    recent_sets: Arc<RecentSets>,
}

impl<B: Owner> PeerEndpoint<B> {
    /// The endpoint of `backend`; share the same `Arc` with the node's layer.
    pub fn new(backend: Arc<B>) -> Self {
        let settings = Settings {
            backend,
            key: QueryKey::default(),
            max_key_len: DEFAULT_MAX_KEY_LEN,
            secret: None,
            batch_body_timeout: DEFAULT_BATCH_BODY_TIMEOUT,
            batches: Arc::new(Semaphore::new(DEFAULT_MAX_BATCHES_READING)),
            recent_sets: Arc::default(),
        };
        Self {
            settings: Arc::new(settings),
        }
    }

    /// The settings to change (copied first if a clone shares them).
    fn settings_mut(&mut self) -> &mut Settings<B> {
        Arc::make_mut(&mut self.settings)
    }

    /// Refuses, with `401`, checks marked as forwarded that do not carry `secret`; give
    /// every node the same secret ([`ClusterBuilder::peer_secret`](crate::backend::ClusterBuilder::peer_secret)).
    #[must_use]
    pub fn peer_secret(mut self, secret: &PeerSecret) -> Self {
        self.settings_mut().secret = Some(secret.clone());
        self
    }

    /// Answers `user_id`s longer than `bytes` with `400` (default
    /// [`DEFAULT_MAX_KEY_LEN`](crate::key::DEFAULT_MAX_KEY_LEN)).
    #[must_use]
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.settings_mut().max_key_len = bytes;
        self
    }

    /// Gives a peer at most `timeout` to send a whole batch body; a slower one gets `408`
    /// and its connection is closed (default 2 s: peers send a batch at once).
    #[must_use]
    pub fn batch_body_timeout(mut self, timeout: Duration) -> Self {
        self.settings_mut().batch_body_timeout = timeout;
        self
    }

    /// Reads at most `n` batch bodies at once; a batch beyond them gets `503` and its
    /// connection is closed (default [`DEFAULT_MAX_BATCHES_READING`], 512). Bounds the
    /// memory that unfinished bodies take; give it at least twice the number of nodes,
    /// since each peer has at most two batches on the wire to this node.
    #[must_use]
    pub fn max_batches_reading(mut self, n: NonZeroUsize) -> Self {
        self.settings_mut().batches = Arc::new(Semaphore::new(n.get()));
        self
    }
}

impl<B: Owner> Settings<B> {
    /// The check `request` asks for: the set it is checked against, and who asked. An
    /// unmarked check is a client's, against this node's own policies.
    fn check<ReqB>(
        &self,
        request: &Request<ReqB>,
    ) -> Result<(Check<B::Future>, PolicySet, Asker), Refusal> {
        if request.uri().path() != CHECK_PATH {
            return Err(Refusal::NotFound);
        }
        if request.method() != Method::GET {
            return Err(Refusal::MethodNotAllowed("GET, POST"));
        }
        let own = self.backend.policies();
        let bad_key = |error| {
            if !request.headers().contains_key(FORWARDED) {
                crate::observe::bad_key(own);
            }
            Refusal::BadKey(error)
        };
        let key = self.key.extract(request).map_err(bad_key)?;
        KeyError::check_length(&key, self.max_key_len).map_err(bad_key)?;
        Ok(if self.forwarded(request)? {
            let query = request.uri().query().unwrap_or("");
            let asked = forwarded_asked(query, &self.recent_sets).map_err(Refusal::BadCost)?;
            let asker = match asked {
                Asked::Policies(_) => Asker::PeerWithPolicies,
                _ => Asker::Peer,
            };
            let set = asked.set(own);
            let check = match Relayed::read(request.headers()) {
                None => self.backend.check_forwarded(&key, &set),
                Some(Relayed::Once) => self.backend.check_relayed(&key, &set),
                Some(Relayed::Twice) => self.backend.check_relayed_twice(&key, &set),
            };
            (check, set, asker)
        } else {
            (self.backend.check(&key, own), own.clone(), Asker::Client)
        })
    }

    /// Whether a batch request may be answered: `POST`, marked, with the secret if set,
    /// and a permit to read its body.
    fn admit_batch<ReqB>(&self, request: &Request<ReqB>) -> Result<OwnedSemaphorePermit, Refusal> {
        if request.method() != Method::POST {
            return Err(Refusal::MethodNotAllowed("POST"));
        }
        if !self.forwarded(request)? {
            return Err(Refusal::NotForwarded);
        }
        Arc::clone(&self.batches)
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)
    }

    /// Whether `request` is marked as forwarded; a mark without the peer secret (when one
    /// is set) is refused.
    fn forwarded<ReqB>(&self, request: &Request<ReqB>) -> Result<bool, Refusal> {
        let headers = request.headers();
        let marked = headers.contains_key(FORWARDED);
        if marked && self.secret.as_ref().is_some_and(|s| !s.admits(headers)) {
            return Err(Refusal::Unauthorized);
        }
        Ok(marked)
    }
}

impl<B, ReqB> Service<Request<ReqB>> for PeerEndpoint<B>
where
    B: Owner,
    ReqB: http_body::Body + Send + 'static,
    ReqB::Data: Send,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = EndpointFuture<B::Future>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let path = request.uri().path();
        // Bodies from other nodes, read within the same bounds: a handoff, or a batch.
        // A batch is `POST /check`, so one route serves both; older ringlimit nodes send
        // it to `/check/batch`, which is still served.
        let handoff = path == HANDOFF_PATH;
        let batch = path == BATCH_PATH || (path == CHECK_PATH && request.method() == Method::POST);
        if handoff || batch {
            let permit = match self.settings.admit_batch(&request) {
                Ok(permit) => permit,
                Err(refusal) => return EndpointFuture::ready(refusal.response()),
            };
            let (backend, timeout) = (
                self.settings.backend.clone(),
                self.settings.batch_body_timeout,
            );
            let answer: Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> = if handoff {
                let query = request.uri().query().unwrap_or("").to_owned();
                Box::pin(answer_handoff(
                    backend,
                    query,
                    timeout,
                    request.into_body(),
                    permit,
                ))
            } else {
                let max_key_len = self.settings.max_key_len;
                Box::pin(answer_batch(
                    backend,
                    max_key_len,
                    self.settings.recent_sets.clone(),
                    timeout,
                    request.into_body(),
                    permit,
                ))
            };
            return EndpointFuture::new(State::Batch { answer });
        }
        let response = match self.settings.check(&request) {
            Err(refusal) => refusal.response(),
            Ok((Check::Ready(result), set, asker)) => answer(result, &set, asker),
            Ok((Check::Pending(check), set, asker)) => {
                return EndpointFuture::new(State::Checking { check, set, asker })
            }
        };
        EndpointFuture::ready(response)
    }
}

impl<B> Clone for PeerEndpoint<B> {
    fn clone(&self) -> Self {
        Self {
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<B> Clone for Settings<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            key: self.key.clone(),
            max_key_len: self.max_key_len,
            secret: self.secret.clone(),
            batch_body_timeout: self.batch_body_timeout,
            batches: self.batches.clone(),
            recent_sets: self.recent_sets.clone(),
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for PeerEndpoint<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerEndpoint")
            .field("backend", &self.settings.backend)
            .field("max_key_len", &self.settings.max_key_len)
            .finish_non_exhaustive()
    }
}
