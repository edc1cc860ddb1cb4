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

use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::{routing::get, Router};
use http::Request;
use ringlimit::key::{HeaderKey, KeyExtractor, PeerIpKey};
use ringlimit::peer::{serve, PeerEndpoint};
use ringlimit::{ClusterBackend, KeyError, MemoryBackend, Policy, RateLimitLayer, Ring};
use support::{main_with, parse, shutdown_signal, value};

const USAGE: &str = "\
usage: protected_api [OPTIONS]
  --port N                 port of the API (default 3000)
  --limit N                requests per user per window (default 5)
  --window SECS            window length in seconds (default 60)
  --key header|ip          key users by the x-user-id header (default) or by client IP
                           (needs the `axum` feature: --features axum)
 to join a ring:
  --members A,B,...        every node's peer endpoint host:port, this one's included
  --peer-port N            port of this node's peer endpoint (an internal port)
  --advertise HOST:PORT    this node's name on the ring (default 127.0.0.1:<peer-port>)";

struct Options {
    port: u16,
    limit: NonZeroU32,
    window_secs: u64,
    members: Vec<String>,
    peer_port: Option<u16>,
    advertise: Option<String>,
    by_ip: bool,
}

fn options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        port: 3000,
        limit: NonZeroU32::new(5).unwrap(),
        window_secs: 60,
        members: Vec::new(),
        peer_port: None,
        advertise: None,
        by_ip: false,
    };
    while let Some(flag) = args.next() {
        let flag = flag.as_str();
        match flag {
            "--port" => options.port = parse(flag, &value(&mut args, flag)?)?,
            "--limit" => options.limit = parse(flag, &value(&mut args, flag)?)?,
            "--window" => options.window_secs = parse(flag, &value(&mut args, flag)?)?,
            "--members" => {
                let list = value(&mut args, flag)?;
                options.members = list.split(',').map(str::to_owned).collect();
            }
            "--peer-port" => options.peer_port = Some(parse(flag, &value(&mut args, flag)?)?),
            "--advertise" => options.advertise = Some(value(&mut args, flag)?),
            "--key" => {
                options.by_ip = match value(&mut args, flag)?.as_str() {
                    "header" => false,
                    "ip" if cfg!(feature = "axum") => true,
                    "ip" => return Err("--key ip needs the `axum` feature: --features axum".into()),
                    other => return Err(format!("--key: {other:?} is not header or ip")),
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.window_secs == 0 {
        return Err("--window must be at least 1 second".into());
    }
    if options.members.is_empty() != options.peer_port.is_none() {
        return Err("--members and --peer-port go together".into());
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let parsed = options(std::env::args().skip(1));
    main_with("protected_api", USAGE, parsed, run).await
}

async fn run(options: Options) -> Result<(), String> {
    let policy = Policy::per_window(options.limit, Duration::from_secs(options.window_secs));
    let app = Router::new().route("/hello", get(|| async { "hello\n" }));
    let key = match options.by_ip {
        true => UserKey::Ip(PeerIpKey::new()),
        false => UserKey::Header(HeaderKey::from_static("x-user-id")),
    };
    let app = match options.peer_port {
        None => app.layer(RateLimitLayer::new(MemoryBackend::new(policy)).key(key)),
        Some(peer_port) => {
            let me = options
                .advertise
                .unwrap_or_else(|| format!("127.0.0.1:{peer_port}"));
            let ring = Ring::new(options.members).map_err(|e| e.to_string())?;
            let backend =
                ClusterBackend::new(policy, me.as_str(), ring).map_err(|e| e.to_string())?;
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
        "protected_api: listening on http://{local} ({} requests per user per {} s)",
        options.limit, options.window_secs
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
