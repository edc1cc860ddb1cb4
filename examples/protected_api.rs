//! An axum API protected by ringlimit on one node, with the in-memory backend.
//!
//! ```text
//! cargo run --release --example protected_api -- [--port 3000] [--limit 5] [--window 60]
//! curl -i -H 'x-user-id: alice' http://127.0.0.1:3000/hello
//! ```

use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Duration;

use axum::{routing::get, Router};
use ringlimit::{key::HeaderKey, MemoryBackend, Policy, RateLimitLayer};

const USAGE: &str = "usage: protected_api [--port N (3000)] [--limit N (5)] [--window SECS (60)]";

struct Options {
    port: u16,
    limit: NonZeroU32,
    window_secs: u64,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        port: 3000,
        limit: NonZeroU32::new(5).unwrap(),
        window_secs: 60,
    };
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--port" => options.port = number(&value("--port")?, "--port")?,
            "--limit" => options.limit = number(&value("--limit")?, "--limit")?,
            "--window" => options.window_secs = number(&value("--window")?, "--window")?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.window_secs == 0 {
        return Err("--window must be at least 1 second".into());
    }
    Ok(options)
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name}: {text:?} is not a valid positive number"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("protected_api: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let policy = Policy::per_window(options.limit, Duration::from_secs(options.window_secs));
    let limiter =
        RateLimitLayer::new(MemoryBackend::new(policy)).key(HeaderKey::from_static("x-user-id"));
    let app = Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .layer(limiter);

    let address = ("127.0.0.1", options.port);
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "protected_api: cannot listen on 127.0.0.1:{}: {error}",
                options.port
            );
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!(
        "protected_api: listening on http://{local} ({} requests per user per {} s)",
        options.limit, options.window_secs
    );
    println!("try: curl -i -H 'x-user-id: alice' http://{local}/hello");

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("protected_api: shutting down");
    };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("protected_api: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
