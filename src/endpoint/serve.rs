//! Serving a tower service (the peer endpoint, or a whole app) on a `TcpListener`.

use std::error::Error;
use std::future::Future;
use std::io;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_service::Service;

use crate::key::PeerAddr;

/// Largest request head (request line and headers) read; larger ones are refused by the
/// server (`431`), never buffered.
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// How long a client may take to send its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in flight before it gives up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `service` over HTTP/1.1 on `listener` until `shutdown` completes, then stops
/// accepting and waits for in-flight requests to finish (at most [`SHUTDOWN_GRACE`]).
///
/// # Examples
///
/// ```no_run
/// use ringlimit::{backend::ClusterBackend, endpoint::{serve, PeerEndpoint}, Policy, Ring};
/// use std::{num::NonZeroU32, sync::Arc, time::Duration};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
/// let ring = Ring::new(["127.0.0.1:7000", "127.0.0.1:7001"])?;
/// let backend = Arc::new(ClusterBackend::new(policy, "127.0.0.1:7000", ring)?);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:7000").await?;
/// serve(listener, PeerEndpoint::new(backend), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let mut http = http1::Builder::new();
    http.max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(WithPeerAddr {
                        inner: service.clone(),
                        peer: PeerAddr(peer),
                    });
                    let connection = http.serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        // A client that hangs up mid-request is not this server's error.
                        let _ = connection.await;
                    });
                }
                // Out of file descriptors or a connection reset while queued: keep serving,
                // and say so (at most 50 lines a second: the pause is 20 ms).
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; retrying in 20 ms");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still in flight after {SHUTDOWN_GRACE:?}, dropped");
    }
    Ok(())
}

/// Puts the connection's [`PeerAddr`] into each request's extensions (for
/// [`PeerIpKey`](crate::key::PeerIpKey)).
#[derive(Clone)]
struct WithPeerAddr<S> {
    inner: S,
    peer: PeerAddr,
}

impl<S, B> Service<Request<B>> for WithPeerAddr<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        request.extensions_mut().insert(self.peer);
        self.inner.call(request)
    }
}
