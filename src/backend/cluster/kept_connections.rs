//! The keep-alive connections a peer's batches travel on (one per batch in flight),
//! driven by the task that sends them (the peer's dispatcher) rather than by a
//! connection task of a pool.
//!
//! Why: with a pooled client every batch crosses between the dispatcher and the
//! connection's own task four times (request, response head, body wanted, body), and on a
//! multi-threaded runtime each crossing can wake a parked worker thread. Here the
//! dispatcher polls the connection itself while it waits, so a batch costs no task switch.

use std::error::Error;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::read_body::read_body;

type BoxError = Box<dyn Error + Send + Sync>;

/// One open connection: what sends on it, and what drives it.
struct Open {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Driver,
}

/// Drives a connection's I/O, and remembers when that has ended (a finished connection
/// is never polled again).
struct Driver {
    connection: Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
    ended: bool,
}

/// The idle connections to one peer, kept between batches: as many as its dispatcher
/// had batches in flight at once. Only that one task uses them, so the lock is never
/// contended.
#[derive(Default)]
pub(super) struct KeptConnections {
    idle: Mutex<Vec<Open>>,
}

impl std::fmt::Debug for KeptConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptConnections").finish_non_exhaustive()
    }
}

impl KeptConnections {
    /// Sends `request` to `member` and reads the whole answer (at most `max_body` bytes)
    /// on an idle kept connection, or a new one if none is left open. A connection that
    /// fails, ends, or whose batch is given up on (dropped) is not reused.
    pub(super) async fn send(
        &self,
        member: &str,
        request: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<(http::StatusCode, Bytes), BoxError> {
        let mut open = loop {
            let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match kept {
                // Unless the peer closed it while it was idle.
                Some(mut open) => {
                    if open.ready().await {
                        break open;
                    }
                }
                None => break connect(member).await?,
            }
        };
        let response = open
            .driver
            .drive(open.sender.send_request(request))
            .await??;
        let status = response.status();
        let body = read_body(response.into_body(), max_body);
        let body = open.driver.drive(body).await??;
        if !open.driver.ended {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(open);
            }
        }
        Ok((status, body))
    }
}

impl Open {
    /// Whether this kept connection can take another request; `false` once the peer has
    /// closed it. The driver goes first: it is what reads the close of an idle connection
    /// (the sender alone would still look ready).
    async fn ready(&mut self) -> bool {
        let sender = &mut self.sender;
        matches!(
            self.driver.drive(poll_fn(|cx| sender.poll_ready(cx))).await,
            Ok(Ok(()))
        ) && !self.driver.ended
    }
}

async fn connect(member: &str) -> Result<Open, BoxError> {
    let stream = TcpStream::connect(member).await?;
    // Small requests on a kept-alive connection: never wait for Nagle.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    Ok(Open {
        sender,
        driver: Driver {
            connection: Box::pin(connection),
            ended: false,
        },
    })
}

impl Driver {
    /// Waits for `work` while driving the connection. An error if the connection ends
    /// first, unless its last act finished the work (an answer with `connection: close`).
    async fn drive<T>(&mut self, work: impl Future<Output = T>) -> Result<T, BoxError> {
        let mut work = std::pin::pin!(work);
        poll_fn(|cx| {
            let ended = match self.ended {
                // Ended during earlier work: what it left behind may still finish this.
                true => Some(Ok(())),
                false => match self.connection.as_mut().poll(cx) {
                    Poll::Pending => None,
                    Poll::Ready(result) => {
                        self.ended = true;
                        Some(result)
                    }
                },
            };
            if let Poll::Ready(done) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(done));
            }
            match ended {
                None => Poll::Pending,
                Some(Ok(())) => Poll::Ready(Err("peer closed the connection".into())),
                Some(Err(error)) => Poll::Ready(Err(error.into())),
            }
        })
        .await
    }
}
