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
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ringlimit::backend::{
    ClusterBackend, FailureMode, UnknownFailureMode, DEFAULT_MAX_KEYS, DEFAULT_PEER_TIMEOUT,
};
use ringlimit::peer::{serve, PeerEndpoint, PeerSecret};
use ringlimit::{Backend, Policy, Ring};
use support::{main_with, parse, shutdown_signal, value};

const USAGE: &str = "\
usage: node [OPTIONS] <PORT> <MEMBER>...
       node [OPTIONS] (--redis URL | --redis-cluster URL,URL,...) <PORT>
  PORT                     port to serve /check on
  MEMBER                   host:port of every node, this one included
  --bind ADDR              address to listen on (default 127.0.0.1)
  --advertise HOST:PORT    this node's name on the ring (default localhost:PORT)
  --limit N                requests per user per window (default 5)
  --window SECS            window length in seconds (default 60)
  --peer-timeout-ms MS     how long to wait for a key's owner (default 250)
  --failure MODE           when an owner cannot answer: allow, deny or local (default local)
  --peer-secret S          shared secret for forwarded checks (or RINGLIMIT_PEER_SECRET);
                           needed to bind an address other than loopback
  --insecure-peers         bind an address other than loopback without a peer secret
                           (only where no client can reach this port)
  --max-keys N             track at most N keys; at the cap the least used (one-request
                           keys first) are evicted (default 1000000)
  --members-file PATH      read the members from PATH (one host:port a line) instead,
                           and again on SIGHUP
  --redis URL              count in the Redis server at URL (redis://HOST:PORT); no ring
  --redis-cluster URLS     count in the Redis Cluster of these nodes; no ring
  --redis-timeout-ms MS    how long to wait for Redis (default 250)
  --redis-batch            with --redis: checks that arrive together share one script call
environment:
  TOKIO_WORKER_THREADS=N   worker threads (default one per core; fewer can cost less CPU
                           per forwarded or Redis check where busy processes share the cores)";

struct Options {
    port: u16,
    members: Vec<String>,
    bind: IpAddr,
    advertise: Option<String>,
    limit: NonZeroU32,
    window: Duration,
    peer_timeout: Duration,
    failure: FailureMode,
    secret: Option<PeerSecret>,
    members_file: Option<PathBuf>,
    insecure_peers: bool,
    max_keys: usize,
    redis: Option<RedisOption>,
    redis_timeout: Duration,
    redis_batch: bool,
}

/// Where the counters live when the ring is not used.
enum RedisOption {
    Server(String),
    Cluster(Vec<String>),
}

impl RedisOption {
    fn urls(&self) -> Vec<String> {
        match self {
            Self::Server(url) => vec![url.clone()],
            Self::Cluster(urls) => urls.clone(),
        }
    }
}

/// The options in `args`; `env_secret` is `RINGLIMIT_PEER_SECRET`, if set.
fn options(
    mut args: impl Iterator<Item = String>,
    env_secret: Option<String>,
) -> Result<Options, String> {
    let mut positional = Vec::new();
    let mut options = Options {
        port: 0,
        members: Vec::new(),
        bind: IpAddr::from([127, 0, 0, 1]),
        advertise: None,
        limit: NonZeroU32::new(5).unwrap(),
        window: Duration::from_secs(60),
        peer_timeout: DEFAULT_PEER_TIMEOUT,
        failure: FailureMode::default(),
        secret: None,
        members_file: None,
        insecure_peers: false,
        max_keys: DEFAULT_MAX_KEYS,
        redis: None,
        redis_timeout: Duration::from_millis(250),
        redis_batch: false,
    };
    let mut secret = env_secret;
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
            "--failure" => options.failure = parse_with(&value(&mut args, "--failure")?)?,
            "--peer-secret" => secret = Some(value(&mut args, "--peer-secret")?),
            "--members-file" => {
                options.members_file = Some(value(&mut args, "--members-file")?.into());
            }
            "--redis" => options.redis = Some(RedisOption::Server(value(&mut args, "--redis")?)),
            "--redis-cluster" => {
                let urls = value(&mut args, "--redis-cluster")?;
                let urls = urls.split(',').map(str::to_owned).collect();
                options.redis = Some(RedisOption::Cluster(urls));
            }
            "--redis-batch" => options.redis_batch = true,
            "--insecure-peers" => options.insecure_peers = true,
            "--max-keys" => {
                options.max_keys = parse("--max-keys", &value(&mut args, "--max-keys")?)?;
                if options.max_keys == 0 {
                    return Err("--max-keys must be at least 1".into());
                }
            }
            "--redis-timeout-ms" => {
                let ms: u64 = parse(
                    "--redis-timeout-ms",
                    &value(&mut args, "--redis-timeout-ms")?,
                )?;
                if ms == 0 {
                    return Err("--redis-timeout-ms must be at least 1".into());
                }
                options.redis_timeout = Duration::from_millis(ms);
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
    if let Some(path) = &options.members_file {
        if !options.members.is_empty() {
            return Err("give MEMBERs or --members-file, not both".into());
        }
        options.members = read_members(path)?;
    }
    if options.members.is_empty() && options.redis.is_none() {
        return Err("missing MEMBER: list every node, this one included".into());
    }
    if options.redis_batch && !matches!(options.redis, Some(RedisOption::Server(_))) {
        return Err(
            "--redis-batch needs --redis (one server; a cluster takes one key per call)".into(),
        );
    }
    if let Some(secret) = secret {
        let secret = PeerSecret::new(&secret)
            .ok_or("the peer secret must be non-empty visible ASCII, without spaces")?;
        options.secret = Some(secret);
    }
    if options.secret.is_none()
        && options.redis.is_none()
        && !options.bind.is_loopback()
        && !options.insecure_peers
    {
        return Err(format!(
            "refusing to serve /check on {} without a peer secret: anyone who can reach it \
             could mark checks as forwarded and be counted once per node. Give every node \
             --peer-secret (or RINGLIMIT_PEER_SECRET), or --insecure-peers if no client can \
             reach this port",
            options.bind
        ));
    }
    Ok(options)
}

fn parse_with(text: &str) -> Result<FailureMode, String> {
    text.parse().map_err(|e: UnknownFailureMode| e.to_string())
}

/// The members listed in `path`: one `host:port` a line; blank lines and `#` comments
/// are skipped.
fn read_members(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let env_secret = std::env::var("RINGLIMIT_PEER_SECRET").ok();
    let parsed = options(std::env::args().skip(1), env_secret);
    main_with("node", USAGE, parsed, run).await
}

async fn run(options: Options) -> Result<(), String> {
    let policy = Policy::per_window(options.limit, options.window);
    let listener = tokio::net::TcpListener::bind((options.bind, options.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", options.bind, options.port))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let me = options
        .advertise
        .clone()
        .unwrap_or_else(|| format!("localhost:{}", options.port));
    let counters = match &options.redis {
        None => format!("ring of {}", options.members.len()),
        Some(redis) => format!("Redis at {}", redis.urls().join(",")),
    };
    println!(
        "node {me}: serving /check on http://{local} ({} per user per {} s, counters: {counters}, failure mode {})",
        options.limit,
        options.window.as_secs(),
        options.failure
    );
    if options.secret.is_none() && options.redis.is_none() {
        println!("node {me}: no peer secret: keep this port internal to the cluster");
    }
    println!("try: curl -i 'http://{local}/check?user_id=alice'");

    match &options.redis {
        None => {
            let ring = Ring::new(options.members.clone()).map_err(|e| e.to_string())?;
            let mut backend = ClusterBackend::new(policy, me.as_str(), ring)
                .map_err(|e| e.to_string())?
                .peer_timeout(options.peer_timeout)
                .failure_mode(options.failure)
                .max_keys(options.max_keys);
            if let Some(secret) = &options.secret {
                backend = backend.peer_secret(secret);
            }
            let backend = Arc::new(backend);
            if let Some(path) = options.members_file.clone() {
                tokio::spawn(reload_on_sighup(backend.clone(), path));
            }
            serve_endpoint(listener, backend.clone(), &options).await?;
            let evicted = backend.local().evicted_keys();
            if evicted > 0 {
                println!("node {me}: {evicted} keys evicted at the cap (--max-keys)");
            }
        }
        Some(redis) => serve_redis(listener, redis, policy, &options).await?,
    }
    println!("node {me}: stopped");
    Ok(())
}

/// Serves the peer endpoint of `backend` until Ctrl-C or SIGTERM.
async fn serve_endpoint<B: Backend>(
    listener: tokio::net::TcpListener,
    backend: Arc<B>,
    options: &Options,
) -> Result<(), String> {
    let mut endpoint = PeerEndpoint::new(backend);
    if let Some(secret) = &options.secret {
        endpoint = endpoint.peer_secret(secret);
    }
    serve(listener, endpoint, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

#[cfg(feature = "redis")]
async fn serve_redis(
    listener: tokio::net::TcpListener,
    redis: &RedisOption,
    policy: Policy,
    options: &Options,
) -> Result<(), String> {
    use ringlimit::backend::RedisBackend;
    let backend = match redis {
        RedisOption::Server(url) => RedisBackend::connect(url, policy),
        RedisOption::Cluster(urls) => RedisBackend::connect_cluster(urls, policy),
    }
    .map_err(|e| format!("bad Redis URL: {e}"))?
    .timeout(options.redis_timeout)
    .failure_mode(options.failure)
    .max_keys(options.max_keys);
    let backend = if options.redis_batch {
        backend.batch_checks()
    } else {
        backend
    };
    serve_endpoint(listener, Arc::new(backend), options).await
}

#[cfg(not(feature = "redis"))]
async fn serve_redis(
    _: tokio::net::TcpListener,
    _: &RedisOption,
    _: Policy,
    _: &Options,
) -> Result<(), String> {
    Err("this build has no Redis support: run it with `--features redis`".into())
}

/// Re-reads the members file on every SIGHUP; a bad file is reported and the members in
/// force are kept.
#[cfg(unix)]
async fn reload_on_sighup(backend: Arc<ClusterBackend>, path: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        eprintln!("node: cannot listen for SIGHUP; members will not be reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        let outcome = read_members(&path)
            .and_then(|members| backend.set_members(members).map_err(|e| e.to_string()));
        match outcome {
            Ok(()) => {
                let members: Vec<_> = backend.ring().members().map(str::to_owned).collect();
                println!("node {}: members now {}", backend.me(), members.join(", "));
            }
            Err(message) => eprintln!("node: members not reloaded: {message}"),
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_: Arc<ClusterBackend>, _: PathBuf) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &str) -> Result<Options, String> {
        options(args.split_whitespace().map(str::to_owned), None)
    }

    #[test]
    fn an_address_other_than_loopback_needs_a_peer_secret() {
        let refused = parsed("--bind 0.0.0.0 5000 a:5000").err().unwrap();
        assert!(refused.contains("without a peer secret"), "{refused}");
        assert!(parsed("--bind 0.0.0.0 --peer-secret s3cret 5000 a:5000").is_ok());
        assert!(parsed("--bind 0.0.0.0 --insecure-peers 5000 a:5000").is_ok());
        assert!(parsed("--bind ::1 5000 a:5000").is_ok());
        assert!(parsed("5000 a:5000").is_ok(), "loopback by default");
    }

    #[test]
    fn max_keys_defaults_to_the_library_cap_and_must_be_positive() {
        assert_eq!(parsed("5000 a:5000").unwrap().max_keys, DEFAULT_MAX_KEYS);
        assert_eq!(parsed("--max-keys 10 5000 a:5000").unwrap().max_keys, 10);
        assert!(parsed("--max-keys 0 5000 a:5000").is_err());
    }
}
