//! The benchmark's ceiling: the same server as a node (`ringlimit::endpoint::serve`), answering
//! `GET /check` with `ALLOWED` and no limiter at all.
//!
//! ```text
//! cargo run --release --example bare_hyper -- <PORT>
//! ```

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use support::shutdown_signal;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: bare_hyper <PORT>")?
        .parse()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let service = tower::service_fn(|_: Request<Incoming>| async {
        let mut response = Response::new(Full::new(Bytes::from_static(b"ALLOWED")));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok::<_, Infallible>(response)
    });
    println!("bare_hyper: listening on http://127.0.0.1:{port}");
    ringlimit::endpoint::serve(listener, service, shutdown_signal()).await?;
    Ok(())
}
