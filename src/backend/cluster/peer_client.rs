//! The HTTP client that asks a key's owner: batches on the peer's kept connections (see
//! `kept_connections`), single checks (to peers that refuse batches, and relays) and
//! handoffs on pooled keep-alive HTTP/1.1 connections; a timeout on every ask, and bare
//! answers (no counter state) understood.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::batch_http::BoxError;
use super::kept_connections::KeptConnections;
use crate::backend::within;
use crate::policy::MAX_POLICIES;
use crate::protocol::{
    decode_answers, encode_checks, forward_path_and_query, from_older_node, peer_state, Answers,
    PeerAnswer, PeerSecret, Relayed, Told, DECISIONS, FORWARDED, MAX_BATCH,
};
use crate::read_body::read_body;
use crate::{BackendError, PolicySet};

/// The longest peer answer read; real ones are a few bytes.
const MAX_ANSWER_BYTES: usize = 1024;
/// The longest batch answer read: a line per check of a status and, per policy, at most
/// 36 bytes (`1`, a `u32` and a reset in ms, each after a space).
const MAX_BATCH_ANSWER_BYTES: usize = MAX_BATCH * (4 + 36 * MAX_POLICIES);

/// Asks owners over pooled HTTP/1.1 connections. Cheap to clone: clones share the pool.
#[derive(Clone, Debug)]
pub(super) struct PeerClient {
    pub(super) http: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    /// `Bearer <secret>`, sent with every forward when a peer secret is set.
    authorization: Option<HeaderValue>,
}

impl PeerClient {
    pub(super) fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        // Small requests on kept-alive connections: never wait for Nagle.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self {
            http,
            timeout,
            authorization: None,
        }
    }

    /// Sends `authorization: Bearer <secret>` with every forward.
    pub(super) fn with_secret(mut self, secret: &PeerSecret) -> Self {
        self.authorization = Some(secret.bearer());
        self
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What forwards carry in `authorization`, if a peer secret is set.
    pub(super) fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }

    /// Asks `member` (`host:port`) to check `key` against `policies`, marked as
    /// forwarded; gives up at `deadline`.
    /// With `relayed`, the check is one this node sends on because it does not hold the
    /// key, marked so (see [`Relayed`]).
    pub(super) fn check(
        &self,
        member: &str,
        key: &str,
        policies: &PolicySet,
        deadline: Instant,
        relayed: Option<Relayed>,
    ) -> impl Future<Output = Result<PeerAnswer, BackendError>> + Send + 'static {
        let uri = Uri::builder()
            .scheme("http")
            .authority(member)
            .path_and_query(forward_path_and_query(key, policies))
            .build();
        let mut request = self.forwarded(Method::GET, member, uri, Bytes::new());
        if let (Some(relayed), Ok(request)) = (relayed, &mut request) {
            relayed.mark(request.headers_mut());
        }
        let (http, timeout, target) = (self.http.clone(), self.timeout, member.to_owned());
        async move {
            let request = request?;
            let answered = within(deadline, timeout, target.clone(), ask(&http, request)).await?;
            answered.map_err(|reason| BackendError::Refused { target, reason })
        }
    }

    /// A request to `member` for `uri` (absolute: the pooled client's), marked as
    /// forwarded and carrying the peer secret if set.
    pub(super) fn forwarded(
        &self,
        method: Method,
        member: &str,
        uri: Result<Uri, http::Error>,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, BackendError> {
        let uri = uri.map_err(|error| BackendError::unavailable(member, error))?;
        let text = !body.is_empty();
        // Set field by field (a request builder checks and converts each one again, on
        // every forward).
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(FORWARDED, HeaderValue::from_static("1"));
        if let Some(authorization) = &self.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        if text {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        Ok(request)
    }
}

/// What a peer said to a batch.
#[derive(Debug)]
pub(super) enum BatchReply {
    /// One answer per check, in order.
    Answers(Answers),
    /// The peer refused the batch (a node without batches, or one mounted without them): ask it
    /// one check at a time for a while.
    Unsupported,
}

impl PeerClient {
    /// Asks the peer of `connections` (its own, not the pool's) to check all of `checks`
    /// (`(user id, policies)`) in one request; gives up at `deadline`. The
    /// body is written before the future is: not an `async fn`, which would hold the
    /// call's future twice (see [`within`]).
    pub(super) fn check_batch<'a>(
        &self,
        connections: &'a KeptConnections,
        checks: impl ExactSizeIterator<Item = (&'a str, &'a PolicySet)>,
        deadline: Instant,
    ) -> impl Future<Output = Result<BatchReply, BackendError>> + 'a {
        let expected = checks.len();
        let body = encode_checks(checks);
        let asked = async move {
            let answer = connections.send(&body, MAX_BATCH_ANSWER_BYTES).await?;
            match answer.status {
                // A ringlimit node from before policies travelled: single checks, which
                // carry the cost it reads.
                StatusCode::OK if from_older_node(&answer.body) => Ok(BatchReply::Unsupported),
                StatusCode::OK => Ok(BatchReply::Answers(decode_answers(&answer.body, expected)?)),
                // How servers without batches refuse them (a node's answer to a request it
                // does not know, or a plain HTTP server's).
                StatusCode::BAD_REQUEST
                | StatusCode::NOT_FOUND
                | StatusCode::METHOD_NOT_ALLOWED
                | StatusCode::NOT_IMPLEMENTED => Ok(BatchReply::Unsupported),
                other => Err(BoxError::from(format!("peer answered {other} to a batch"))),
            }
        };
        within(
            deadline,
            self.timeout,
            connections.member().to_owned(),
            asked,
        )
    }
}

/// The peer's answer, or what it said when it refused the check (`400`).
async fn ask(
    http: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<Result<PeerAnswer, String>, BoxError> {
    let response = http.request(request).await?;
    let allowed = match response.status() {
        StatusCode::OK => true,
        StatusCode::TOO_MANY_REQUESTS => false,
        StatusCode::BAD_REQUEST => {
            let body = read_body(response.into_body(), MAX_ANSWER_BYTES).await?;
            return Ok(Err(String::from_utf8_lossy(&body).trim().to_owned()));
        }
        other => return Err(format!("peer answered {other}").into()),
    };
    let state = peer_state(response.headers());
    let told = response
        .headers()
        .get(DECISIONS)
        .and_then(|value| Told::decode(value.as_bytes()));
    // Read the short body to its end so the connection goes back to the pool.
    read_body(response.into_body(), MAX_ANSWER_BYTES).await?;
    Ok(Ok(PeerAnswer {
        allowed,
        state,
        told,
    }))
}
