//! Batch bodies sent slowly, by many connections at once: the memory they take stays flat,
//! each gets `408` and a closed connection at the body deadline, and bodies beyond the
//! endpoint's bound are refused at once. Heap in use is measured by a counting allocator,
//! so this file holds one test: nothing else allocates in its process meanwhile.
#![cfg(feature = "cluster")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{hourly, listeners, mid_window_clock};
use ringlimit::endpoint::{serve, PeerEndpoint};
use ringlimit::{ClusterBackend, Ring};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

const CONNECTIONS: usize = 10;
/// Long enough that the drip below ends well before it, even on a busy machine.
const BODY_DEADLINE: Duration = Duration::from_secs(4);
const READING_AT_ONCE: usize = 16;
/// Body bytes each connection drips, one every 2 ms.
const DRIPPED: usize = 200;

/// A marked batch request head; `framing` is its `content-length` or
/// `transfer-encoding` line.
fn head(framing: &str) -> String {
    format!("POST /check HTTP/1.1\r\nhost: node\r\nx-ringlimit-forwarded: 1\r\n{framing}\r\n\r\n")
}

/// Opens a connection and sends the head of a batch framed by `framing`.
async fn open(address: std::net::SocketAddr, framing: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head(framing).as_bytes()).await.unwrap();
    stream
}

/// What the server sent before closing the connection, or `None` if it still had not
/// closed it after `wait`.
async fn answer_then_close(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// Whether the server has neither answered nor closed `stream` yet.
fn still_waiting(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

// Regression: 37 KB dripped over 10 connections took a node from 4 MB to 155 MB (each
// one-byte frame kept a read buffer alive), and unfinished bodies had no deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_batch_bodies_take_flat_memory_and_are_cut_off_at_the_deadline() {
    let (listener, me) = listeners(1).await.pop().unwrap();
    let ring = Ring::new([me.clone()]).unwrap();
    let backend = ClusterBackend::builder(hourly(5), me.as_str(), ring)
        .clock(mid_window_clock())
        .build()
        .unwrap();
    let backend = Arc::new(backend);
    let endpoint = PeerEndpoint::new(backend.clone())
        .batch_body_timeout(BODY_DEADLINE)
        .max_batches_reading(NonZeroUsize::new(READING_AT_ONCE).unwrap());
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, endpoint, std::future::pending()));

    // A body announced beyond the cap is refused before a byte of it is read.
    let mut stream = open(address, "content-length: 70000000").await;
    let refused = answer_then_close(&mut stream, Duration::from_secs(5)).await;
    let refused = refused.expect("connection closed after the refusal");
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");

    // Half chunked (one-byte chunks), half with a length under the cap.
    let before = live_bytes();
    let mut streams = Vec::new();
    for i in 0..CONNECTIONS {
        let framing = match i % 2 {
            0 => "transfer-encoding: chunked",
            _ => "content-length: 150000",
        };
        streams.push((open(address, framing).await, i % 2 == 0));
    }
    for _ in 0..DRIPPED {
        for (stream, chunked) in &mut streams {
            let byte: &[u8] = if *chunked { b"1\r\nx\r\n" } else { b"x" };
            stream.write_all(byte).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let grown = live_bytes() - before;
    let waiting = streams.iter().filter(|(s, _)| still_waiting(s)).count();
    eprintln!(
        "{} bytes dripped: heap grew by {grown} bytes",
        CONNECTIONS * DRIPPED
    );
    assert_eq!(
        waiting, CONNECTIONS,
        "every body was still being read when measured"
    );
    // Each connection holds its socket, hyper's buffers and the bytes it sent; before
    // the fix every byte pinned a few KiB (25 MB here).
    assert!(
        grown < (CONNECTIONS * 64 * 1024) as isize,
        "{grown} bytes of heap for {} bytes sent",
        CONNECTIONS * DRIPPED
    );

    // More unfinished bodies than the endpoint reads at once: the rest are refused now.
    let mut extra = Vec::new();
    for _ in 0..READING_AT_ONCE {
        extra.push(open(address, "transfer-encoding: chunked").await);
    }
    let mut busy = 0;
    for stream in &mut extra {
        let answer = answer_then_close(stream, BODY_DEADLINE * 3).await.unwrap();
        busy += usize::from(answer.starts_with("HTTP/1.1 503"));
    }
    assert_eq!(busy, CONNECTIONS, "bodies beyond the bound are refused");

    for (stream, _) in &mut streams {
        let answer = answer_then_close(stream, BODY_DEADLINE * 3).await;
        let answer = answer.expect("the connection is closed at the body deadline");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert_eq!(backend.local().tracked_keys(), 0, "nothing was counted");
}
