//! An axum API protected by ringlimit: on its own with the in-memory backend, or as one
//! node of a ring whose members count each user's requests on the user's owner.
//!
//! ```text
//! cargo run --release --example protected_api -- [--port 3000] [--limit 5] [--window 60]
//! curl -i -H 'x-user-id: alice' http://127.0.0.1:3000/hello
//!
//! # Keyed by the client's IP address instead (axum's connect info: the `axum` feature).
//! cargo run --release --features axum --example protected_api -- --key ip
//!
//! # Two app nodes sharing limits: each exposes its peer endpoint on an internal port.
//! cargo run --release --example protected_api -- --port 3000 --peer-port 4000 --members 127.0.0.1:4000,127.0.0.1:4001
//! cargo run --release --example protected_api -- --port 3001 --peer-port 4001 --members 127.0.0.1:4000,127.0.0.1:4001
//! ```

mod support;

use std::process::ExitCode;
use std::sync::Arc;

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::{routing::get, Router};
use clap::Parser;
use http::Request;
use ringlimit::endpoint::{serve, PeerEndpoint};
use ringlimit::key::{HeaderKey, KeyExtractor, PeerIpKey};
use ringlimit::{ClusterBackend, KeyError, MemoryBackend, PolicySet, RateLimitLayer, Ring};
use support::{main_with, shutdown_signal, PolicyArgs};

/// An axum API protected by ringlimit, on its own or as one node of a ring.
#[derive(Parser, Debug)]
#[command(
    name = "protected_api",
    after_help = "Environment:\n  RUST_LOG=FILTER  the log events printed, e.g. warn, ringlimit=debug (default info)"
)]
struct Args {
    /// Port of the API
    #[arg(long, value_name = "N", default_value_t = 3000)]
    port: u16,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Who a request is from: the x-user-id header, or the client's IP (needs the `axum`
    /// feature: --features axum)
    #[arg(long, value_enum, default_value_t = KeyChoice::Header)]
    key: KeyChoice,
    /// To join a ring: every node's peer endpoint host:port, this one's included
    #[arg(
        long,
        value_name = "A,B,...",
        value_delimiter = ',',
        requires = "peer_port"
    )]
    members: Vec<String>,
    /// Port of this node's peer endpoint (an internal port)
    #[arg(long, value_name = "N", requires = "members")]
    peer_port: Option<u16>,
    /// This node's name on the ring [default: 127.0.0.1:<peer-port>]
    #[arg(long, value_name = "HOST:PORT", requires = "peer_port")]
    advertise: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum KeyChoice {
    Header,
    Ip,
}

/// The options, checked together, and the policy they say.
fn options(args: Args) -> Result<(Args, PolicySet), String> {
    if args.key == KeyChoice::Ip && !cfg!(feature = "axum") {
        return Err("--key ip needs the `axum` feature: run it with --features axum".into());
    }
    let policy = args.policy.policies()?;
    Ok((args, policy))
}

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    main_with("protected_api", options(Args::parse()), run).await
}

async fn run((options, policy): (Args, PolicySet)) -> Result<(), String> {
    let app = Router::new().route("/hello", get(|| async { "hello\n" }));
    let key = match options.key {
        KeyChoice::Ip => UserKey::Ip(PeerIpKey::new()),
        KeyChoice::Header => UserKey::Header(HeaderKey::from_static("x-user-id")),
    };
    let app = match options.peer_port {
        None => app.layer(RateLimitLayer::new(MemoryBackend::new(policy.clone())).key(key)),
        Some(peer_port) => {
            let me = options
                .advertise
                .unwrap_or_else(|| format!("127.0.0.1:{peer_port}"));
            let ring = Ring::new(options.members).map_err(|e| e.to_string())?;
            let backend = ClusterBackend::new(policy.clone(), me.as_str(), ring)
                .map_err(|e| e.to_string())?;
            let backend = Arc::new(backend);
            // Other nodes ask this one on the internal peer port; clients never see it.
            let peers = bind(peer_port).await?;
            println!(
                "protected_api: ring node {me}, peer endpoint on http://{}",
                address(&peers)
            );
            tokio::spawn(serve(
                peers,
                PeerEndpoint::new(backend.clone()),
                shutdown_signal(),
            ));
            app.layer(RateLimitLayer::shared(backend).key(key))
        }
    };

    let listener = bind(options.port).await?;
    let local = address(&listener);
    println!(
        "protected_api: listening on http://{local} (per user: {})",
        support::describe(&policy)
    );
    println!("try: curl -i -H 'x-user-id: alice' http://{local}/hello");
    // Served as axum apps usually are; the connect info gives `--key ip` the client address.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    println!("protected_api: stopped");
    Ok(())
}

/// Who a request is from: the `x-user-id` header, or the client's IP address.
#[derive(Clone)]
enum UserKey {
    Header(HeaderKey),
    Ip(PeerIpKey),
}

impl<B> KeyExtractor<B> for UserKey {
    fn extract<'r>(&self, request: &'r Request<B>) -> Result<Cow<'r, str>, KeyError> {
        match self {
            Self::Header(key) => key.extract(request),
            Self::Ip(key) => key.extract(request),
        }
    }
}

async fn bind(port: u16) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))
}

fn address(listener: &tokio::net::TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string())
}
