//! Kept connections against a stand-in owner that answers with the bytes each test gives
//! it: the framings and failures a real owner's server does not produce on demand.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

use super::kept_connections::{KeptConnections, IDLE_AT_MOST};

/// The bytes a stand-in owner writes for one request, and what it does then.
struct Reply {
    bytes: Vec<u8>,
    then: Then,
}

#[derive(Clone, Copy, PartialEq)]
enum Then {
    /// Waits for the next request.
    Wait,
    /// Closes the connection.
    Close,
    /// Writes a byte nobody asked for once poked, then waits for the next request.
    Blurt,
}

fn reply(bytes: &[u8], then: Then) -> Reply {
    Reply {
        bytes: bytes.to_vec(),
        then,
    }
}

fn answer() -> Reply {
    reply(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
        Then::Wait,
    )
}

/// `200` with a `body` of `n` bytes, framed by `content-length`.
fn answer_of(n: usize) -> Reply {
    let mut bytes = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n").into_bytes();
    bytes.resize(bytes.len() + n, b'a');
    Reply {
        bytes,
        then: Then::Wait,
    }
}

/// A stand-in owner on a free loopback port: it reads each request whole and writes the
/// next reply. It says on `wrote` each time it has written one (and its blurt), and on
/// `closed` each time it has closed a connection.
struct StandIn {
    address: String,
    connections: Arc<AtomicUsize>,
    wrote: mpsc::UnboundedReceiver<()>,
    closed: mpsc::UnboundedReceiver<()>,
    poke: Arc<Notify>,
}

async fn stand_in(replies: Vec<Reply>) -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
    let (writes, wrote) = mpsc::unbounded_channel();
    let (closes, closed) = mpsc::unbounded_channel();
    let poke = Arc::new(Notify::new());
    let (accepted, poked) = (Arc::clone(&connections), Arc::clone(&poke));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            accepted.fetch_add(1, Ordering::SeqCst);
            let (replies, writes, closes) = (Arc::clone(&replies), writes.clone(), closes.clone());
            let poked = Arc::clone(&poked);
            tokio::spawn(async move {
                serve(stream, &replies, &writes, &poked).await;
                let _ = closes.send(());
            });
        }
    });
    StandIn {
        address,
        connections,
        wrote,
        closed,
        poke,
    }
}

/// Answers requests on `stream` until a reply says to close, or none is left.
async fn serve(
    mut stream: TcpStream,
    replies: &Mutex<VecDeque<Reply>>,
    wrote: &mpsc::UnboundedSender<()>,
    poked: &Notify,
) {
    let mut read = Vec::new();
    loop {
        // A whole request: its head, then the body its content-length says.
        let whole = loop {
            if let Some(len) = request_len(&read) {
                if read.len() >= len {
                    break len;
                }
            }
            let mut more = [0; 1024];
            match stream.read(&mut more).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&more[..n]),
            }
        };
        read.drain(..whole);
        let Some(reply) = replies.lock().unwrap().pop_front() else {
            return;
        };
        if stream.write_all(&reply.bytes).await.is_err() {
            return;
        }
        let _ = wrote.send(());
        match reply.then {
            Then::Wait => {}
            Then::Close => return,
            Then::Blurt => {
                poked.notified().await;
                let _ = stream.write_all(b"x").await;
                let _ = wrote.send(());
            }
        }
    }
}

fn request_len(read: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut request = httparse::Request::new(&mut headers);
    let head = request.parse(read).ok()?;
    let length = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |h| {
            std::str::from_utf8(h.value).unwrap().parse().unwrap()
        });
    match head {
        httparse::Status::Complete(len) => Some(len + length),
        httparse::Status::Partial => None,
    }
}

fn kept(owner: &StandIn) -> KeptConnections {
    KeptConnections::to_peer(&owner.address, None)
}

async fn send(kept: &KeptConnections, max_body: usize) -> Result<(StatusCode, String), String> {
    match kept.send(b"P 1 a\n", max_body).await {
        Ok(answer) => Ok((
            answer.status,
            String::from_utf8(answer.body.to_vec()).unwrap(),
        )),
        Err(error) => Err(error.to_string()),
    }
}

fn ok(body: &str) -> Result<(StatusCode, String), String> {
    Ok((StatusCode::OK, body.to_owned()))
}

fn connections(owner: &StandIn) -> usize {
    owner.connections.load(Ordering::SeqCst)
}

#[tokio::test]
async fn batches_share_one_kept_connection() {
    let owner = stand_in(vec![answer(), answer(), answer()]).await;
    let kept = kept(&owner);
    for _ in 0..3 {
        assert_eq!(send(&kept, 64).await, ok("abc"));
    }
    assert_eq!(connections(&owner), 1);
}

// An owner's server closes connections that stay idle (hyper's after its header read
// timeout): the next batch must not fail on the closed one.
#[tokio::test]
async fn a_connection_the_owner_closed_while_idle_is_replaced() {
    let closing = Reply {
        then: Then::Close,
        ..answer()
    };
    let mut owner = stand_in(vec![closing, answer()]).await;
    let kept = kept(&owner);
    assert_eq!(send(&kept, 64).await, ok("abc"));
    owner.closed.recv().await.unwrap();
    assert_eq!(send(&kept, 64).await, ok("abc"));
    assert_eq!(connections(&owner), 2);
}

#[tokio::test]
async fn interim_and_chunked_answers_are_read_whole_and_the_connection_kept() {
    let chunked = reply(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        Then::Wait,
    );
    let owner = stand_in(vec![chunked, answer()]).await;
    let kept = kept(&owner);
    assert_eq!(send(&kept, 64).await, ok("abc"));
    assert_eq!(send(&kept, 64).await, ok("abc"));
    assert_eq!(connections(&owner), 1);
}

#[tokio::test]
async fn answers_that_end_their_connection_are_read_and_it_is_not_kept() {
    let replies = vec![
        // No length: the body runs to the close.
        reply(b"HTTP/1.1 200 OK\r\n\r\nabc", Then::Close),
        reply(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nabc",
            Then::Close,
        ),
        // More than the answer: the connection is out of step.
        reply(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcHTTP/1.1",
            Then::Wait,
        ),
        // A refusal's body is not read.
        reply(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found",
            Then::Wait,
        ),
        answer(),
    ];
    let owner = stand_in(replies).await;
    let kept = kept(&owner);
    for expected in [ok("abc"), ok("abc"), ok("abc")] {
        assert_eq!(send(&kept, 64).await, expected);
    }
    assert_eq!(
        send(&kept, 64).await,
        Ok((StatusCode::NOT_FOUND, String::new()))
    );
    assert_eq!(send(&kept, 64).await, ok("abc"));
    assert_eq!(connections(&owner), 5);
}

#[tokio::test]
async fn answers_past_the_cap_or_cut_short_fail() {
    let replies = vec![
        reply(
            b"HTTP/1.1 200 OK\r\ncontent-length: 65\r\n\r\n",
            Then::Wait,
        ),
        reply(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n41\r\n",
            Then::Wait,
        ),
        reply(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            Then::Close,
        ),
        reply(
            b"HTTP/1.1 200 OK\r\n\r\nfar too long for its cap of sixty-four bytes, which is the point of this answer here",
            Then::Close,
        ),
        reply(
            b"HTTP/1.1 200 OK\r\n",
            Then::Close,
        ),
    ];
    let owner = stand_in(replies).await;
    let kept = kept(&owner);
    let failures = [
        "answer body longer than 64 bytes",
        "answer body longer than 64 bytes",
        "peer closed the connection mid-answer",
        "answer body longer than 64 bytes",
        "peer closed the connection before answering",
    ];
    for expected in failures {
        assert_eq!(send(&kept, 64).await, Err(expected.to_owned()));
    }
    assert_eq!(connections(&owner), 5);
}

// The guard of exactness: a batch given up on (its future dropped at its deadline) must
// not leave its answer to be read as the next batch's.
#[tokio::test]
async fn a_batch_given_up_on_mid_answer_leaves_nothing_for_the_next() {
    let half = reply(
        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nold",
        Then::Wait,
    );
    let mut owner = stand_in(vec![half, answer()]).await;
    let kept = kept(&owner);
    {
        let given_up = send(&kept, 64);
        tokio::pin!(given_up);
        tokio::select! {
            biased;
            sent = &mut given_up => panic!("answered with half an answer: {sent:?}"),
            _ = owner.wrote.recv() => {}
        }
        // Read what has come before it is dropped.
        tokio::task::yield_now().await;
        assert!(poll_once(given_up.as_mut()).is_pending());
    }
    assert_eq!(send(&kept, 64).await, ok("abc"));
    assert_eq!(connections(&owner), 2);
}

/// Polls `future` once.
fn poll_once<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    let waker = std::task::Waker::noop();
    future.poll(&mut std::task::Context::from_waker(waker))
}

#[tokio::test]
async fn answers_larger_than_a_read_are_read_whole_and_exactly_the_cap_is_taken() {
    // 4,096 bytes in all, the buffer's first size: the read fills it exactly, so the
    // socket still looks readable when the connection is next used, and must be kept.
    let filling = answer_of(4096 - 41);
    assert_eq!(filling.bytes.len(), 4096);
    let replies = vec![
        filling,
        answer_of(5000),
        reply(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
            Then::Wait,
        ),
        reply(b"HTTP/1.1 200 OK\r\n\r\nabcde", Then::Close),
    ];
    let owner = stand_in(replies).await;
    let kept = kept(&owner);
    assert_eq!(send(&kept, 5000).await, ok(&"a".repeat(4096 - 41)));
    assert_eq!(send(&kept, 5000).await, ok(&"a".repeat(5000)));
    assert_eq!(
        connections(&owner),
        1,
        "kept after an answer that filled the buffer"
    );
    assert_eq!(send(&kept, 5).await, ok("abcde"));
    assert_eq!(send(&kept, 5).await, ok("abcde"));
}

#[tokio::test]
async fn a_connection_the_owner_wrote_to_unasked_is_replaced() {
    let mut owner = stand_in(vec![
        Reply {
            then: Then::Blurt,
            ..answer()
        },
        answer(),
    ])
    .await;
    let kept = kept(&owner);
    assert_eq!(send(&kept, 64).await, ok("abc"));
    owner.wrote.recv().await.unwrap();
    owner.poke.notify_one();
    owner.wrote.recv().await.unwrap();
    assert_eq!(send(&kept, 64).await, ok("abc"));
    assert_eq!(connections(&owner), 2);
}

// Connections idle longer than an owner may keep them are not used: the owner's close
// could cross the batch.
#[tokio::test]
async fn a_connection_idle_too_long_is_not_used() {
    let owner = stand_in(vec![answer(), answer()]).await;
    let kept = kept(&owner);
    assert_eq!(send(&kept, 64).await, ok("abc"));
    tokio::time::pause();
    tokio::time::advance(IDLE_AT_MOST).await;
    tokio::time::resume();
    assert_eq!(send(&kept, 64).await, ok("abc"));
    assert_eq!(connections(&owner), 2);
}

#[tokio::test]
async fn interim_answers_are_bounded_and_a_protocol_switch_refused() {
    let endless = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(400);
    let replies = vec![
        reply(&endless, Then::Wait),
        reply(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
            Then::Wait,
        ),
    ];
    let owner = stand_in(replies).await;
    let kept = kept(&owner);
    let too_long = Err("answer head longer than 8192 bytes".to_owned());
    assert_eq!(send(&kept, 64).await, too_long);
    assert_eq!(
        send(&kept, 64).await,
        Err("peer switched protocols".to_owned())
    );
}

#[tokio::test]
async fn a_member_that_cannot_be_a_host_fails_each_batch_and_says_why() {
    let kept = KeptConnections::to_peer("a\r\nb:1", None);
    let failed = send(&kept, 64).await.unwrap_err();
    assert!(failed.contains("not a valid host header"), "{failed}");
}
