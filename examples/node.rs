//! A standalone rate-limit node built on ringlimit (`node [OPTIONS] <PORT> <MEMBER>...`):
//! serves `GET /check?user_id=` for clients and peers alike, counting the keys it owns and
//! forwarding the others to their owners; `GET /healthz` and `GET /metrics` beside it.
//!
//! ```text
//! cargo run --release --example node -- [OPTIONS] <PORT> <MEMBER>...
//! cargo run --release --example node -- 5000 localhost:5000 localhost:5001 localhost:5002
//! ```

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ringlimit::backend::{
    ClusterBackend, FailureMode, Owner, DEFAULT_MAX_KEYS, DEFAULT_PEER_TIMEOUT,
};
use ringlimit::endpoint::{serve, PeerEndpoint};
use ringlimit::membership::{self, DnsMembers, MembersFile};
use ringlimit::protocol::PeerSecret;
use ringlimit::{PolicySet, Ring};
use support::ops::{self, with_ops, Metrics, Operated};
use support::{main_with, shutdown_signal, PolicyArgs};

/// A standalone rate-limit node built on ringlimit: serves `GET /check?user_id=` for clients and
/// peers alike, counting the keys it owns and forwarding the others to their owners. On
/// the same port: `GET /healthz` (200 while serving, 503 while joining or leaving) and
/// `GET /metrics` (Prometheus text, when built with `--features metrics`).
#[derive(Parser, Debug)]
#[command(
    name = "node",
    override_usage = "node [OPTIONS] <PORT> <MEMBER>...\n       \
                      node [OPTIONS] (--redis URL | --redis-cluster URL,URL,...) <PORT>",
    after_help = "Environment:\n  \
        RINGLIMIT_PEER_SECRET    the peer secret, if --peer-secret is not given\n  \
        RUST_LOG=FILTER          the log events printed, e.g. warn, ringlimit=debug (default info)\n  \
        TOKIO_WORKER_THREADS=N   worker threads (default one per core; fewer can cost less\n                           \
        CPU per forwarded or Redis check where busy processes share the cores)"
)]
struct Args {
    /// Port to serve /check on
    #[arg(value_name = "PORT")]
    port: u16,
    /// host:port of every node, this one included
    #[arg(value_name = "MEMBER")]
    members: Vec<String>,
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// This node's name on the ring [default: localhost:PORT]
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// How long to wait for a key's owner, in ms
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_PEER_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    peer_timeout_ms: u64,
    /// When an owner (or Redis) cannot answer: allow, deny or local
    #[arg(long, value_name = "MODE", default_value = "local")]
    failure: FailureMode,
    /// Shared secret for forwarded checks (or RINGLIMIT_PEER_SECRET); needed to bind an
    /// address other than loopback
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    peer_secret: Option<String>,
    /// Bind an address other than loopback without a peer secret (only where no client
    /// can reach this port)
    #[arg(long)]
    insecure_peers: bool,
    /// Track at most N keys; at the cap the least used (one-request keys first) are evicted
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_KEYS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_keys: u64,
    /// Read the members from PATH (one host:port a line) instead, and again on SIGHUP and
    /// whenever the file changes (looked at every 2 s; a change is applied once two reads
    /// agree: replace the file whole)
    #[arg(long, value_name = "PATH", conflicts_with = "members")]
    members_file: Option<PathBuf>,
    /// Find the members in DNS instead: every address NAME resolves to, on PORT (as a
    /// Kubernetes headless service), resolved again every 5 s; needs --advertise IP:PORT,
    /// this node's address as NAME resolves it
    #[arg(long, value_name = "NAME:PORT", conflicts_with_all = ["members", "members_file", "redis", "redis_cluster"], value_parser = parse_dns)]
    members_dns: Option<(String, u16)>,
    /// Ask the DNS server at IP:PORT (UDP) for --members-dns, instead of the system's
    /// resolver
    #[arg(long, value_name = "IP:PORT", requires = "members_dns")]
    dns_server: Option<std::net::SocketAddr>,
    /// Count in the Redis server at URL (redis://HOST:PORT); no ring
    #[arg(long, value_name = "URL", conflicts_with_all = ["members", "redis_cluster"])]
    redis: Option<String>,
    /// Count in the Redis Cluster of these nodes; no ring
    #[arg(
        long,
        value_name = "URL,URL,...",
        value_delimiter = ',',
        conflicts_with = "members"
    )]
    redis_cluster: Vec<String>,
    /// How long to wait for Redis, in ms
    #[arg(long, value_name = "MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..))]
    redis_timeout_ms: u64,
    /// With --redis: a script call per check (concurrent calls share a pipeline), instead
    /// of one call for the checks that arrive together
    #[arg(long)]
    redis_unbatched: bool,
}

/// The options, checked (the Redis ones are read by builds with `redis`).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
struct Options {
    port: u16,
    members: Vec<String>,
    bind: IpAddr,
    advertise: Option<String>,
    policy: PolicySet,
    peer_timeout: Duration,
    failure: FailureMode,
    secret: Option<PeerSecret>,
    members_file: Option<PathBuf>,
    members_dns: Option<(String, u16)>,
    dns_server: Option<std::net::SocketAddr>,
    max_keys: usize,
    redis: Option<RedisOption>,
    redis_timeout: Duration,
    redis_unbatched: bool,
}

/// Where the counters live when the ring is not used (read by builds with `redis`).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
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

/// The options `args` say, checked together; `env_secret` is `RINGLIMIT_PEER_SECRET`,
/// if set.
fn options(args: Args, env_secret: Option<String>) -> Result<Options, String> {
    if args.redis_unbatched && args.redis.is_none() {
        return Err(
            "--redis-unbatched needs --redis (one server; a cluster takes one key per call)".into(),
        );
    }
    let redis = match (args.redis, args.redis_cluster.is_empty()) {
        (Some(url), _) => Some(RedisOption::Server(url)),
        (None, false) => Some(RedisOption::Cluster(args.redis_cluster)),
        (None, true) => None,
    };
    let mut members = args.members;
    if let Some(path) = &args.members_file {
        members = read_members(path)?;
    }
    if members.is_empty() && redis.is_none() && args.members_dns.is_none() {
        return Err("missing MEMBER: list every node, this one included".into());
    }
    if args.members_dns.is_some() && args.advertise.is_none() {
        return Err(
            "--members-dns needs --advertise IP:PORT: this node's address as the name resolves it"
                .into(),
        );
    }
    let secret = match args.peer_secret.or(env_secret) {
        Some(secret) => Some(
            PeerSecret::new(&secret)
                .ok_or("the peer secret must be non-empty visible ASCII, without spaces")?,
        ),
        None => None,
    };
    if secret.is_none() && redis.is_none() && !args.bind.is_loopback() && !args.insecure_peers {
        return Err(format!(
            "refusing to serve /check on {} without a peer secret: anyone who can reach it \
             could mark checks as forwarded and be counted once per node. Give every node \
             --peer-secret (or RINGLIMIT_PEER_SECRET), or --insecure-peers if no client can \
             reach this port",
            args.bind
        ));
    }
    Ok(Options {
        port: args.port,
        members,
        bind: args.bind,
        advertise: args.advertise,
        policy: args.policy.policies()?,
        peer_timeout: Duration::from_millis(args.peer_timeout_ms),
        failure: args.failure,
        secret,
        members_file: args.members_file,
        members_dns: args.members_dns,
        dns_server: args.dns_server,
        max_keys: usize::try_from(args.max_keys).unwrap_or(usize::MAX),
        redis,
        redis_timeout: Duration::from_millis(args.redis_timeout_ms),
        redis_unbatched: args.redis_unbatched,
    })
}

/// The DNS source of `--members-dns`, keeping the addresses of this node's own family
/// (`me`, `IP:PORT`): a name with AAAA records too gives no members that no one listens on.
fn dns_source(
    me: &str,
    name: String,
    port: u16,
    server: Option<std::net::SocketAddr>,
) -> DnsMembers {
    let mut source = DnsMembers::new(name, port);
    if let Some(server) = server {
        source = source.server(server);
    }
    match me.parse::<std::net::SocketAddr>() {
        Ok(address) => source.family(address.ip()),
        Err(_) => source,
    }
}

/// The members `name` resolves to at start, once they include this node (`me`): a
/// Kubernetes headless service may publish a pod's address only once it is ready. Tried
/// every second for 30 s.
async fn dns_members(
    me: &str,
    name: &str,
    port: u16,
    server: Option<std::net::SocketAddr>,
) -> Result<Vec<String>, String> {
    let source = dns_source(me, name.to_owned(), port, server);
    for attempt in 1..=30 {
        match source.resolve().await {
            Ok(found) if found.iter().any(|m| m == me) => {
                println!("node {me}: {name} resolves to {}", found.join(", "));
                return Ok(found);
            }
            Ok(found) => eprintln!(
                "node {me}: {name} resolves to {} (not this node yet; attempt {attempt} of 30)",
                found.join(", ")
            ),
            Err(error) => eprintln!("node {me}: {error} (attempt {attempt} of 30)"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!(
        "{name} never resolved to this node's address {me} (--advertise)"
    ))
}

/// `NAME:PORT`, for `--members-dns`.
fn parse_dns(text: &str) -> Result<(String, u16), String> {
    let (name, port) = text
        .rsplit_once(':')
        .ok_or("expected NAME:PORT, e.g. ringlimit.default.svc.cluster.local:4000")?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    if name.is_empty() || port == 0 {
        return Err("expected NAME:PORT with a name and a port from 1".into());
    }
    Ok((name.to_owned(), port))
}

/// The members listed in `path` (see `membership::parse_members`).
fn read_members(path: &Path) -> Result<Vec<String>, String> {
    std::fs::read_to_string(path)
        .map(|text| membership::parse_members(&text))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    let env_secret = std::env::var("RINGLIMIT_PEER_SECRET").ok();
    let parsed = options(Args::parse(), env_secret);
    main_with("node", parsed, run).await
}

async fn run(options: Options) -> Result<(), String> {
    // Before any backend is built: they take their metric handles from it.
    let metrics = ops::install_metrics()?;
    let policy = options.policy.clone();
    let listener = tokio::net::TcpListener::bind((options.bind, options.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", options.bind, options.port))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let me = options
        .advertise
        .clone()
        .unwrap_or_else(|| format!("localhost:{}", options.port));
    let counters = match (&options.redis, &options.members_dns) {
        (None, Some((name, port))) => {
            format!("ring of the addresses {name} resolves to, port {port}")
        }
        (None, None) => format!("ring of {}", options.members.len()),
        (Some(redis), _) => format!("Redis at {}", redis.urls().join(",")),
    };
    println!(
        "node {me}: serving /check on http://{local} (per user: {}; counters: {counters}, failure mode {})",
        support::describe(&policy),
        options.failure
    );
    if options.secret.is_none() && options.redis.is_none() {
        println!("node {me}: no peer secret: keep this port internal to the cluster");
    }
    println!("try: curl -i 'http://{local}/check?user_id=alice'");

    match &options.redis {
        None => {
            let members = match &options.members_dns {
                None => options.members.clone(),
                Some((name, port)) => dns_members(&me, name, *port, options.dns_server).await?,
            };
            let ring = Ring::new(members).map_err(|e| e.to_string())?;
            let mut backend = ClusterBackend::builder(policy, me.as_str(), ring)
                .peer_timeout(options.peer_timeout)
                .failure_mode(options.failure)
                .max_keys(options.max_keys);
            if let Some(secret) = &options.secret {
                backend = backend.peer_secret(secret);
            }
            let backend = Arc::new(backend.build().map_err(|e| e.to_string())?);
            if let Some(path) = options.members_file.clone() {
                // Read again on SIGHUP and whenever it changes (checked every 2 s).
                tokio::spawn(membership::follow(backend.clone(), MembersFile::new(path)));
            }
            if let Some((name, port)) = options.members_dns.clone() {
                let source = dns_source(&me, name, port, options.dns_server);
                tokio::spawn(membership::follow(backend.clone(), source));
            }
            // Back in the ring (a restart): the others hand over what they hold of its
            // keys; it asks for a key's counters before deciding it, meanwhile.
            let joining = backend.join();
            let me_now = me.clone();
            tokio::spawn(async move {
                joining.await;
                // What an orchestrator waits for before it restarts the next node.
                println!("node {me_now}: joined the ring");
            });
            // On Ctrl-C or SIGTERM: leave the ring (the others stop sending checks here,
            // every counter goes to its key's new owner), keep serving a moment for
            // checks already on their way, then stop (requests in flight finish).
            let leaving = backend.clone();
            let stop = async move {
                shutdown_signal().await;
                let started = std::time::Instant::now();
                let handed = leaving.leave().await;
                println!(
                    "node {}: left the ring, {handed} keys handed over in {} ms",
                    leaving.me(),
                    started.elapsed().as_millis()
                );
                tokio::time::sleep(LEAVE_GRACE).await;
            };
            let node = Node {
                operated: backend.clone(),
                metrics,
            };
            serve_endpoint(listener, backend.clone(), node, &options, stop).await?;
            let evicted = backend.local().evicted_keys();
            if evicted > 0 {
                println!("node {me}: {evicted} keys evicted at the cap (--max-keys)");
            }
        }
        Some(redis) => serve_redis(listener, redis, policy, metrics, &options).await?,
    }
    println!("node {me}: stopped");
    Ok(())
}

/// How long a node that left keeps serving, for checks already on their way to it.
const LEAVE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// What `/healthz` and `/metrics` read.
struct Node {
    operated: Arc<dyn Operated>,
    metrics: Option<Metrics>,
}

/// Serves the peer endpoint of `backend`, with `/healthz` and `/metrics` beside it,
/// until `stop` completes.
async fn serve_endpoint<B: Owner>(
    listener: tokio::net::TcpListener,
    backend: Arc<B>,
    node: Node,
    options: &Options,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let mut endpoint = PeerEndpoint::new(backend);
    if let Some(secret) = &options.secret {
        endpoint = endpoint.peer_secret(secret);
    }
    serve(
        listener,
        with_ops(endpoint, node.operated, node.metrics),
        stop,
    )
    .await
    .map_err(|e| e.to_string())
}

#[cfg(feature = "redis")]
async fn serve_redis(
    listener: tokio::net::TcpListener,
    redis: &RedisOption,
    policy: PolicySet,
    metrics: Option<Metrics>,
    options: &Options,
) -> Result<(), String> {
    use ringlimit::backend::RedisBackend;
    let backend = match redis {
        RedisOption::Server(url) => RedisBackend::builder(policy, url),
        RedisOption::Cluster(urls) => RedisBackend::cluster_builder(policy, urls),
    }
    .timeout(options.redis_timeout)
    .failure_mode(options.failure)
    .max_keys(options.max_keys)
    .batch_checks(!options.redis_unbatched)
    .build()
    .map_err(|e| format!("bad Redis URL: {e}"))?;
    let backend = Arc::new(backend);
    let node = Node {
        operated: backend.clone(),
        metrics,
    };
    serve_endpoint(listener, backend, node, options, shutdown_signal()).await
}

#[cfg(not(feature = "redis"))]
async fn serve_redis(
    _: tokio::net::TcpListener,
    _: &RedisOption,
    _: PolicySet,
    _: Option<Metrics>,
    _: &Options,
) -> Result<(), String> {
    Err("this build has no Redis support: run it with `--features redis`".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &str) -> Result<Options, String> {
        let args = std::iter::once("node").chain(args.split_whitespace());
        let args = Args::try_parse_from(args).map_err(|e| e.to_string())?;
        options(args, None)
    }

    #[test]
    fn an_address_other_than_loopback_needs_a_peer_secret() {
        let refused = parsed("--bind 0.0.0.0 5000 a:5000").err().unwrap();
        assert!(refused.contains("without a peer secret"), "{refused}");
        assert!(parsed("--bind 0.0.0.0 --peer-secret s3cret 5000 a:5000").is_ok());
        assert!(parsed("--bind 0.0.0.0 --insecure-peers 5000 a:5000").is_ok());
        assert!(parsed("--bind ::1 5000 a:5000").is_ok());
        assert!(parsed("5000 a:5000").is_ok(), "loopback by default");
        assert!(parsed("--bind 0.0.0.0 --peer-secret -starts-with-a-dash 5000 a:5000").is_ok());
        let from_env = Args::try_parse_from(["node", "--bind", "0.0.0.0", "5000", "a:5000"]);
        assert!(options(from_env.unwrap(), Some("s3cret".into())).is_ok());
    }

    #[test]
    fn members_in_dns_need_this_nodes_address() {
        let found =
            parsed("--members-dns ringlimit.svc:4000 --advertise 10.0.0.1:4000 4000").unwrap();
        assert_eq!(found.members_dns, Some(("ringlimit.svc".to_owned(), 4000)));
        assert!(
            parsed("--members-dns ringlimit.svc:4000 4000").is_err(),
            "no --advertise"
        );
        assert!(
            parsed("--members-dns ringlimit.svc 4000").is_err(),
            "no port"
        );
        assert!(
            parsed("--members-dns a:1 --advertise a:1 4000 a:1").is_err(),
            "and members"
        );
    }

    #[test]
    fn max_keys_defaults_to_the_library_cap_and_must_be_positive() {
        assert_eq!(parsed("5000 a:5000").unwrap().max_keys, DEFAULT_MAX_KEYS);
        assert_eq!(parsed("--max-keys 10 5000 a:5000").unwrap().max_keys, 10);
        assert!(parsed("--max-keys 0 5000 a:5000").is_err());
    }

    #[test]
    fn a_policy_is_named_with_its_limit_window_and_algorithm() {
        use ringlimit::policy::Algorithm;
        let first = |args: &str| parsed(args).unwrap().policy.as_slice()[0];
        let policy = first("--policy burst:10/1s:gcra 5000 a:5000");
        assert_eq!(policy.name().as_str(), "burst");
        assert_eq!(
            (policy.limit(), policy.window()),
            (10, Duration::from_secs(1))
        );
        assert_eq!(policy.algorithm(), Algorithm::Gcra);
        let fixed = first("--policy=hourly:100/1h 5000 a:5000");
        assert_eq!(fixed.algorithm(), Algorithm::FixedWindow);
        let sliding = first("--policy s:5/500ms:sliding 5000 a:5000");
        let tiered = first("--policy tier:free:100/1h:gcra 5000 a:5000");
        assert_eq!(tiered.name().as_str(), "tier:free");
        assert_eq!(tiered.algorithm(), Algorithm::Gcra);
        let untyped = first("--policy tier:paid:100/1h 5000 a:5000");
        assert_eq!(untyped.name().as_str(), "tier:paid");
        assert_eq!(sliding.algorithm(), Algorithm::SlidingWindow);
        assert_eq!(first("5000 a:5000").name().as_str(), "default");
        for bad in [
            "--policy burst 5000 a:5000",
            "--policy burst:10 5000 a:5000",
            "--policy burst:0/1s 5000 a:5000",
            "--policy burst:10/1s:leaky 5000 a:5000",
            "--policy a;b:10/1s 5000 a:5000",
            "--policy big:4000000000/720h:gcra 5000 a:5000",
            "--policy a:1/1s --limit 3 5000 a:5000",
        ] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
        let several = parsed("--policy a:1/1s --policy b:2/1m:gcra --shadow b 5000 a:5000")
            .unwrap()
            .policy;
        let names: Vec<_> = several
            .iter()
            .map(|p| (p.name().as_str().to_owned(), p.shadow()))
            .collect();
        assert_eq!(names, [("a".to_owned(), false), ("b".to_owned(), true)]);
        let twice = parsed("--policy a:1/1s --policy a:2/1s 5000 a:5000")
            .err()
            .unwrap();
        assert!(twice.contains("two policies are named"), "{twice}");
        assert!(first("--shadow default 5000 a:5000").shadow());
        assert!(!first("5000 a:5000").shadow());
        let unknown = parsed("--shadow burst 5000 a:5000").err().unwrap();
        assert!(unknown.contains("no such policy"), "{unknown}");
    }

    #[test]
    fn options_read_like_any_rust_cli() {
        let options = parsed("--limit=7 --window 500ms --failure=deny 5000 a:5000 b:5001").unwrap();
        assert_eq!(options.policy.as_slice()[0].limit(), 7);
        assert_eq!(
            options.policy.as_slice()[0].window(),
            Duration::from_millis(500)
        );
        assert_eq!(options.failure, FailureMode::Deny);
        assert_eq!(options.members, ["a:5000", "b:5001"]);
        assert_eq!(
            parsed("--window 90 5000 a:5000").unwrap().policy.as_slice()[0].window(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parsed("--window 1h 5000 a:5000").unwrap().policy.as_slice()[0].window(),
            Duration::from_secs(3600)
        );
        assert!(parsed("--window 0 5000 a:5000").is_err());
        assert!(parsed("--window 99999999999999999 5000 a:5000").is_err());
        assert!(parsed("--failure open 5000 a:5000").is_err());
        assert!(parsed("5000").err().unwrap().contains("missing MEMBER"));
        assert!(parsed("--redis redis://127.0.0.1:1 5000").is_ok());
        assert!(
            parsed("--redis-unbatched 5000 a:5000").is_err(),
            "needs --redis"
        );
        let help = Args::try_parse_from(["node", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(help.to_string().contains("--max-keys"));
    }
}
