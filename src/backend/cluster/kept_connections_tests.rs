//! Kept connections against a stand-in owner that answers with the bytes each test gives
//! it: the framings and failures a real owner's server does not produce on demand.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::http1::batch_request;
use super::kept_connections::KeptConnections;

/// The bytes a stand-in owner writes for one request, and whether it then closes the
/// connection.
struct Reply {
    bytes: &'static [u8],
    then_close: bool,
}

const ANSWER: Reply = Reply {
    bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
    then_close: false,
};

/// A stand-in owner on a free loopback port: it reads each request whole and writes the
/// next reply; it says on `closed` each time it has closed a connection.
struct StandIn {
    address: String,
    connections: Arc<AtomicUsize>,
    closed: mpsc::UnboundedReceiver<()>,
}

async fn stand_in(replies: Vec<Reply>) -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
    let (closes, closed) = mpsc::unbounded_channel();
    let accepted = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            accepted.fetch_add(1, Ordering::SeqCst);
            let (replies, closes) = (Arc::clone(&replies), closes.clone());
            tokio::spawn(async move {
                serve(stream, &replies).await;
                let _ = closes.send(());
            });
        }
    });
    StandIn {
        address,
        connections,
        closed,
    }
}

/// Answers requests on `stream` until a reply says to close, or none is left.
async fn serve(mut stream: TcpStream, replies: &Mutex<VecDeque<Reply>>) {
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
        stream.write_all(reply.bytes).await.unwrap();
        if reply.then_close {
            return;
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

async fn send(
    kept: &KeptConnections,
    owner: &StandIn,
    max_body: usize,
) -> Result<(StatusCode, String), String> {
    let request = batch_request(&owner.address, None, b"P 1 a\n").unwrap();
    match kept.send(&owner.address, &request, max_body).await {
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

#[tokio::test]
async fn batches_share_one_kept_connection() {
    let owner = stand_in(vec![ANSWER, ANSWER, ANSWER]).await;
    let kept = KeptConnections::default();
    for _ in 0..3 {
        assert_eq!(send(&kept, &owner, 64).await, ok("abc"));
    }
    assert_eq!(owner.connections.load(Ordering::SeqCst), 1);
}

// An owner's server closes connections that stay idle (hyper's after its header read
// timeout): the next batch must not fail on the closed one.
#[tokio::test]
async fn a_connection_the_owner_closed_while_idle_is_replaced() {
    let closing = Reply {
        then_close: true,
        ..ANSWER
    };
    let mut owner = stand_in(vec![closing, ANSWER]).await;
    let kept = KeptConnections::default();
    assert_eq!(send(&kept, &owner, 64).await, ok("abc"));
    owner.closed.recv().await.unwrap();
    assert_eq!(send(&kept, &owner, 64).await, ok("abc"));
    assert_eq!(owner.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn interim_and_chunked_answers_are_read_whole_and_the_connection_kept() {
    let chunked = Reply {
        bytes: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        then_close: false,
    };
    let owner = stand_in(vec![chunked, ANSWER]).await;
    let kept = KeptConnections::default();
    assert_eq!(send(&kept, &owner, 64).await, ok("abc"));
    assert_eq!(send(&kept, &owner, 64).await, ok("abc"));
    assert_eq!(owner.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn answers_that_end_their_connection_are_read_and_it_is_not_kept() {
    let replies = vec![
        // No length: the body runs to the close.
        Reply {
            bytes: b"HTTP/1.1 200 OK\r\n\r\nabc",
            then_close: true,
        },
        Reply {
            bytes: b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nabc",
            then_close: true,
        },
        // More than the answer: the connection is out of step.
        Reply {
            bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcHTTP/1.1",
            then_close: false,
        },
        // A refusal's body is not read.
        Reply {
            bytes: b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found",
            then_close: false,
        },
        ANSWER,
    ];
    let owner = stand_in(replies).await;
    let kept = KeptConnections::default();
    for expected in [ok("abc"), ok("abc"), ok("abc")] {
        assert_eq!(send(&kept, &owner, 64).await, expected);
    }
    assert_eq!(
        send(&kept, &owner, 64).await,
        Ok((StatusCode::NOT_FOUND, String::new()))
    );
    assert_eq!(send(&kept, &owner, 64).await, ok("abc"));
    assert_eq!(owner.connections.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn answers_past_the_cap_or_cut_short_fail() {
    let replies = vec![
        Reply {
            bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 65\r\n\r\n",
            then_close: false,
        },
        Reply {
            bytes: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n41\r\n",
            then_close: false,
        },
        Reply {
            bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            then_close: true,
        },
        Reply {
            bytes: b"HTTP/1.1 200 OK\r\n\r\nfar too long for its cap of sixty-four bytes, which is the point of this answer here",
            then_close: true,
        },
        Reply {
            bytes: b"HTTP/1.1 200 OK\r\n",
            then_close: true,
        },
    ];
    let owner = stand_in(replies).await;
    let kept = KeptConnections::default();
    let failures = [
        "answer body longer than 64 bytes",
        "answer body longer than 64 bytes",
        "peer closed the connection mid-answer",
        "answer body longer than 64 bytes",
        "peer closed the connection before answering",
    ];
    for expected in failures {
        assert_eq!(send(&kept, &owner, 64).await, Err(expected.to_owned()));
    }
    assert_eq!(owner.connections.load(Ordering::SeqCst), 5);
}
