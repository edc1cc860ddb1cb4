//! The reference node, rebuilt on ringlimit: serves `GET /check?user_id=` for clients and
//! peers alike, counting the keys it owns and forwarding the others to their owners.
//!
//! ```text
//! cargo run --release --example node -- [OPTIONS] <PORT> <MEMBER>...
//! cargo run --release --example node -- 5000 localhost:5000 localhost:5001 localhost:5002
//! ```

mod support;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ringlimit::backend::{ClusterBackend, DEFAULT_PEER_TIMEOUT};
use ringlimit::peer::{serve, PeerEndpoint};
use ringlimit::{Policy, Ring};
use support::{parse, shutdown_signal, value};

const USAGE: &str = "\
usage: node [OPTIONS] <PORT> <MEMBER>...
  PORT                     port to serve /check on
  MEMBER                   host:port of every node, this one included
  --bind ADDR              address to listen on (default 127.0.0.1)
  --advertise HOST:PORT    this node's name on the ring (default localhost:PORT)
  --limit N                requests per user per window (default 5)
  --window SECS            window length in seconds (default 60)
  --peer-timeout-ms MS     how long to wait for a key's owner (default 250)";

struct Options {
    port: u16,
    members: Vec<String>,
    bind: IpAddr,
    advertise: Option<String>,
    limit: NonZeroU32,
    window: Duration,
    peer_timeout: Duration,
}

fn options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut positional = Vec::new();
    let mut options = Options {
        port: 0,
        members: Vec::new(),
        bind: IpAddr::from([127, 0, 0, 1]),
        advertise: None,
        limit: NonZeroU32::new(5).unwrap(),
        window: Duration::from_secs(60),
        peer_timeout: DEFAULT_PEER_TIMEOUT,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => options.bind = parse("--bind", &value(&mut args, "--bind")?)?,
            "--advertise" => options.advertise = Some(value(&mut args, "--advertise")?),
            "--limit" => options.limit = parse("--limit", &value(&mut args, "--limit")?)?,
            "--window" => {
                let secs: u64 = parse("--window", &value(&mut args, "--window")?)?;
                if secs == 0 {
                    return Err("--window must be at least 1 second".into());
                }
                options.window = Duration::from_secs(secs);
            }
            "--peer-timeout-ms" => {
                let ms: u64 = parse("--peer-timeout-ms", &value(&mut args, "--peer-timeout-ms")?)?;
                if ms == 0 {
                    return Err("--peer-timeout-ms must be at least 1".into());
                }
                options.peer_timeout = Duration::from_millis(ms);
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    let port = positional.next().ok_or("missing PORT")?;
    options.port = parse("PORT", &port)?;
    options.members = positional.collect();
    if options.members.is_empty() {
        return Err("missing MEMBER: list every node, this one included".into());
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("node: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("node: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    let me = options
        .advertise
        .unwrap_or_else(|| format!("localhost:{}", options.port));
    let ring = Ring::new(options.members).map_err(|e| e.to_string())?;
    let policy = Policy::per_window(options.limit, options.window);
    let backend = ClusterBackend::new(policy, me.as_str(), ring)
        .map_err(|e| e.to_string())?
        .peer_timeout(options.peer_timeout);
    let listener = tokio::net::TcpListener::bind((options.bind, options.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", options.bind, options.port))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "node {me}: serving /check on http://{local} ({} per user per {} s)",
        options.limit,
        options.window.as_secs()
    );
    println!("try: curl -i 'http://{local}/check?user_id=alice'");
    serve(
        listener,
        PeerEndpoint::new(Arc::new(backend)),
        shutdown_signal(),
    )
    .await
    .map_err(|e| e.to_string())?;
    println!("node {me}: stopped");
    Ok(())
}
