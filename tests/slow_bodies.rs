//! Batch bodies sent slowly, by many connections at once: the memory they take stays flat,
//! each gets `408` and a closed connection at the body deadline, and bodies beyond the
//! endpoint's bound are refused at once. Heap in use is measured by a counting allocator,
//! so this file holds one test: nothing else allocates in its process meanwhile.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{hourly, listeners, mid_window_clock};
use ringlimit::peer::{serve, PeerEndpoint};
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
const BODY_DEADLINE: Duration = Duration::from_millis(1500);
const READING_AT_ONCE: usize = 16;

/// A marked batch request head; `framing` is its `content-length` or
/// `transfer-encoding` line.
fn head(framing: &str) -> String {
    format!(
        "POST /check/batch HTTP/1.1\r\nhost: node\r\nx-ringlimit-forwarded: 1\r\n{framing}\r\n\r\n"
    )
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

/// Sends one byte of `body` (a one-byte chunk when `chunked`) every 2 ms on every stream,
/// for `duration`; a stream the server has closed is skipped.
async fn drip(streams: &mut [TcpStream], chunked: bool, duration: Duration) -> usize {
    let started = tokio::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < duration {
        for stream in streams.iter_mut() {
            let byte: &[u8] = if chunked { b"1\r\nx\r\n" } else { b"x" };
            if stream.write_all(byte).await.is_ok() {
                sent += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sent
}

// Regression: 37 KB dripped over 10 connections took a node from 4 MB to 155 MB (each
// one-byte frame kept a read buffer alive), and unfinished bodies had no deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_batch_bodies_take_flat_memory_and_are_cut_off_at_the_deadline() {
    let (listener, me) = listeners(1).await.pop().unwrap();
    let ring = Ring::new([me.clone()]).unwrap();
    let backend = ClusterBackend::new(hourly(5), me.as_str(), ring).unwrap();
    let backend = Arc::new(backend.with_clock(mid_window_clock()));
    let endpoint = PeerEndpoint::new(backend.clone())
        .batch_body_timeout(BODY_DEADLINE)
        .max_batches_reading(READING_AT_ONCE);
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, endpoint, std::future::pending()));

    // A body announced beyond the cap is refused before a byte of it is read.
    let mut stream = TcpStream::connect(address).await.unwrap();
    let announced = head("content-length: 700000");
    stream.write_all(announced.as_bytes()).await.unwrap();
    let refused = answer_then_close(&mut stream, Duration::from_secs(5)).await;
    let refused = refused.expect("connection closed after the refusal");
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");

    for (framing, chunked) in [
        ("content-length: 150000", false),
        ("transfer-encoding: chunked", true),
    ] {
        let before = live_bytes();
        let mut streams = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(head(framing).as_bytes()).await.unwrap();
            streams.push(stream);
        }
        let sent = drip(&mut streams, chunked, Duration::from_millis(1000)).await;
        let grown = live_bytes() - before;
        eprintln!("{framing}: {sent} one-byte writes, heap grew by {grown} bytes");
        assert!(sent >= CONNECTIONS * 100, "the drip ran ({sent} writes)");
        // Each connection holds its socket, hyper's buffers and the bytes it sent; before
        // the fix every byte pinned a few KiB.
        assert!(
            grown < (CONNECTIONS * 64 * 1024) as isize,
            "{framing}: {grown} bytes of heap for {sent} bytes sent"
        );
        for stream in &mut streams {
            let answer = answer_then_close(stream, BODY_DEADLINE * 3).await;
            let answer = answer.expect("the connection is closed at the body deadline");
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
    }

    // More unfinished bodies than the endpoint reads at once: the rest are refused now.
    let mut streams = Vec::new();
    for _ in 0..READING_AT_ONCE + 4 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let framing = head("transfer-encoding: chunked");
        stream.write_all(framing.as_bytes()).await.unwrap();
        streams.push(stream);
    }
    let mut busy = 0;
    for stream in &mut streams {
        let answer = answer_then_close(stream, BODY_DEADLINE * 3).await.unwrap();
        busy += usize::from(answer.starts_with("HTTP/1.1 503"));
    }
    assert_eq!(busy, 4, "bodies beyond the bound are refused at once");

    assert_eq!(backend.local().tracked_keys(), 0, "nothing was counted");
}
