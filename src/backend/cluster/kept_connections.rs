//! The keep-alive connections a peer's batches travel on (one per batch in flight), read
//! and written by the task that sends the batches (the peer's dispatcher): no connection
//! task, no task switch between a batch and its I/O. The HTTP/1.1 itself is
//! `batch_http`'s.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{ready, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::batch_http::{self, BatchHead, BoxError, ChunkedBody, Framing, MAX_HEAD_BYTES};

/// What a connection reads at once, and what its buffer starts at (an owner's answer to
/// a batch of a few checks is a few hundred bytes).
const READ_AT_ONCE: usize = 4096;

/// How long a connection is kept idle at most. Its owner may close it while it is idle
/// (ringlimit's `serve` after 10 s, its header read timeout), and a close that arrives
/// just as a batch is written fails that batch: a connection idle this long is closed
/// here first. Under load connections are never idle this long.
pub(super) const IDLE_AT_MOST: Duration = Duration::from_secs(5);

/// The idle connections to one peer, kept between batches: as many as its dispatcher
/// had batches in flight at once. Only that one task uses them, so the lock is never
/// contended.
pub(super) struct KeptConnections {
    member: Box<str>,
    /// Every request's fixed part, or why there is none (`member` is not a valid host).
    head: Result<BatchHead, String>,
    idle: Mutex<Vec<(Connection, Instant)>>,
}

impl std::fmt::Debug for KeptConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptConnections").finish_non_exhaustive()
    }
}

/// An owner's answer: its status, and its body if the status is `200` (other answers'
/// bodies are not read, and their connection is not kept).
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
}

impl KeptConnections {
    /// The connections to `member`, whose batches carry `authorization` if given.
    pub(super) fn to_peer(member: &str, authorization: Option<&http::HeaderValue>) -> Self {
        Self {
            member: member.into(),
            head: BatchHead::new(member, authorization).map_err(|error| error.to_string()),
            idle: Mutex::default(),
        }
    }

    /// Sends a batch of `body` and reads its answer, a `200`'s body at most `max_body`
    /// bytes, on an idle kept connection, or a new one if none is left open. A connection
    /// is kept for the next batch only if its answer was read whole and said nothing
    /// against it: one that fails, is closed, carries more than its answer, or whose batch
    /// is given up on (dropped) is closed.
    pub(super) async fn send(&self, body: &[u8], max_body: usize) -> Result<Answer, BoxError> {
        let request = match &self.head {
            Ok(head) => head.request(body),
            Err(why) => return Err(why.as_str().into()),
        };
        let mut connection = loop {
            let kept = self.idle().pop();
            match kept {
                // Unless it has been idle long, or the peer closed it while it was.
                Some((mut connection, since)) => {
                    if since.elapsed() < IDLE_AT_MOST && connection.still_open().await {
                        break connection;
                    }
                }
                None => break Connection::open(&self.member).await?,
            }
        };
        connection.write_all(&request).await?;
        let (answer, reusable) = connection.read_answer(max_body).await?;
        if reusable {
            // What one large answer grew is not held while idle.
            connection.read.truncate(READ_AT_ONCE);
            connection.read.shrink_to_fit();
            self.idle().push((connection, Instant::now()));
        }
        Ok(answer)
    }

    /// The peer these connections go to.
    pub(super) fn member(&self) -> &str {
        &self.member
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(Connection, Instant)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One open connection and what has been read from it.
struct Connection {
    stream: TcpStream,
    /// Read bytes: `read[..filled]` (kept at its size, zeroed once, so that reads need
    /// no uninitialised memory).
    read: Vec<u8>,
    filled: usize,
}

impl Connection {
    async fn open(member: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(member).await?;
        // Small requests on a kept-alive connection: never wait for Nagle.
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            read: vec![0; READ_AT_ONCE],
            filled: 0,
        })
    }

    /// Whether this idle connection can take another request; `false` once the peer has
    /// closed it (or sent something unasked), as far as the runtime has seen: a close
    /// still on its way is not (hence [`IDLE_AT_MOST`]). On Linux this costs no system
    /// call unless the socket is still marked readable (the last read filled the buffer)
    /// or has become so.
    async fn still_open(&mut self) -> bool {
        let stream = &mut self.stream;
        poll_fn(|cx| {
            Poll::Ready(match stream.poll_read_ready(cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                // Perhaps only readable still from the last answer: a read says.
                Poll::Ready(Ok(())) => {
                    let mut probe = [0; 1];
                    let mut probe = ReadBuf::new(&mut probe);
                    Pin::new(&mut *stream)
                        .poll_read(cx, &mut probe)
                        .is_pending()
                }
            })
        })
        .await
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let stream = &mut self.stream;
        poll_fn(|cx| {
            while !bytes.is_empty() {
                match ready!(Pin::new(&mut *stream).poll_write(cx, bytes))? {
                    0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    written => bytes = &bytes[written..],
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Reads more, holding at most `cap` bytes in all; `false` once the peer has closed
    /// the connection.
    async fn read_more(&mut self, cap: usize) -> Result<bool, BoxError> {
        if self.filled == self.read.len() {
            if self.read.len() >= cap {
                return Err(format!("answer longer than {cap} bytes").into());
            }
            let grown = (self.read.len() * 2).min(cap);
            self.read.resize(grown, 0);
        }
        let (stream, unread) = (&mut self.stream, &mut self.read[self.filled..]);
        let read = poll_fn(|cx| {
            let mut buf = ReadBuf::new(unread);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
            Poll::Ready(Ok::<_, io::Error>(buf.filled().len()))
        })
        .await?;
        self.filled += read;
        Ok(read > 0)
    }

    /// Reads more, an error if the peer closed the connection first.
    async fn read_more_of(&mut self, what: &str, cap: usize) -> Result<(), BoxError> {
        match self.read_more(cap).await? {
            true => Ok(()),
            false => Err(format!("peer closed the connection {what}").into()),
        }
    }

    /// The answer to the request just written, and whether the connection can be kept.
    async fn read_answer(&mut self, max_body: usize) -> Result<(Answer, bool), BoxError> {
        self.filled = 0;
        // A chunked body may take more bytes than it holds; not many more from a sane
        // server.
        let cap = 2 * MAX_HEAD_BYTES + 2 * max_body;
        // Interim heads count against the head's bound: a peer cannot send them forever.
        let mut interim = 0;
        let head = loop {
            let room = MAX_HEAD_BYTES - interim;
            match batch_http::head(&self.read[..self.filled], room)? {
                Some(head) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                    return Err("peer switched protocols".into());
                }
                // Interim (`100 Continue`): the answer follows it.
                Some(head) if head.status.is_informational() => {
                    self.read.copy_within(head.len..self.filled, 0);
                    self.filled -= head.len;
                    interim += head.len;
                }
                Some(head) => break head,
                None => self.read_more_of("before answering", cap).await?,
            }
        };
        let status = head.status;
        if status != StatusCode::OK {
            let body = Bytes::new();
            return Ok((Answer { status, body }, false));
        }
        let start = head.len;
        let (body, end) = match head.body {
            Framing::Length(length) => {
                if length > max_body as u64 {
                    return Err(format!("answer body longer than {max_body} bytes").into());
                }
                let end = start + length as usize;
                while self.filled < end {
                    self.read_more_of("mid-answer", cap).await?;
                }
                (Bytes::copy_from_slice(&self.read[start..end]), end)
            }
            Framing::Chunked => {
                let mut chunked = ChunkedBody::default();
                loop {
                    match chunked.read(&self.read[start..self.filled], max_body)? {
                        Some((body, used)) => break (Bytes::from(body), start + used),
                        None => self.read_more_of("mid-answer", cap).await?,
                    }
                }
            }
            Framing::UntilClose => {
                while self.read_more(start + max_body + 1).await? {}
                if self.filled - start > max_body {
                    return Err(format!("answer body longer than {max_body} bytes").into());
                }
                (
                    Bytes::copy_from_slice(&self.read[start..self.filled]),
                    self.filled,
                )
            }
        };
        let reusable = head.keep_alive && end == self.filled;
        Ok((Answer { status, body }, reusable))
    }
}
