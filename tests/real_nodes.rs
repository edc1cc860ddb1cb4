//! The promise with real `node` processes (the example, as `cargo test` builds it) on
//! loopback, sharing a members file, under concurrent clients while the fleet changes:
//! a rolling restart, a scale-out and a scale-in in mid-window, and a crashed owner.
//! Every load is bounded in requests and in time.
#![cfg(feature = "cluster")]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::HttpClient;

const LIMIT: u32 = 5;
const USERS: usize = 200;
const CLIENTS: usize = 32;
/// The most requests one load sends, and the longest it runs.
const MOST_REQUESTS: usize = 400_000;
const LONGEST: Duration = Duration::from_secs(60);

/// `target/<profile>/examples/node`, next to this test's own directory, built (or
/// brought up to date) by cargo once per run: `cargo test` builds the node program only
/// as its own tests' harness.
fn node_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
            let mut build = Command::new(env!("CARGO"));
            build.args([
                "build",
                "--example",
                "node",
                "--features",
                "cluster,metrics",
            ]);
            if profile.ends_with("release") {
                build.arg("--release");
            }
            let status = build.status().unwrap();
            assert!(status.success(), "cargo could not build the node program");
            let node = profile.join("examples").join("node");
            assert!(
                node.exists(),
                "{} is missing after the build",
                node.display()
            );
            node
        })
        .clone()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Nodes sharing a members file (each on its own port of 127.0.0.1) or a DNS name
/// (each on its own address, 127.0.0.N, one port), started and stopped as an operator
/// would. A node is named by its port, or by its N.
struct Fleet {
    dir: PathBuf,
    file: PathBuf,
    failure: &'static str,
    /// The DNS server and the port every node serves on, when members come from DNS.
    dns: Option<(SocketAddr, u16)>,
    procs: HashMap<u16, Child>,
    /// The addresses clients may send to.
    running: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Fleet {
    fn new(name: &str, ports: &[u16], failure: &'static str) -> Self {
        let mut fleet = Self::empty(name, failure, None);
        fleet.write(ports);
        for &port in ports {
            fleet.start(port);
        }
        fleet
    }

    /// Nodes 127.0.0.N (for each N of `nodes`) on `port`, finding each other through
    /// the name `members.test` at the DNS server `server`.
    fn on_dns(name: &str, server: SocketAddr, port: u16, nodes: &[u16]) -> Self {
        let mut fleet = Self::empty(name, "local", Some((server, port)));
        for &n in nodes {
            fleet.start(n);
        }
        fleet
    }

    /// No node yet; a directory of its own for the members file and the logs.
    fn empty(name: &str, failure: &'static str, dns: Option<(SocketAddr, u16)>) -> Self {
        let dir = std::env::temp_dir().join(format!("ringlimit-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            file: dir.join("members"),
            dir,
            failure,
            dns,
            procs: HashMap::new(),
            running: Arc::default(),
        }
    }

    /// Where node `id` serves.
    fn address(&self, id: u16) -> SocketAddr {
        match self.dns {
            None => SocketAddr::from(([127, 0, 0, 1], id)),
            Some((_, port)) => SocketAddr::from(([127, 0, 0, id as u8], port)),
        }
    }

    /// Replaces the members file whole (written aside, then renamed).
    fn write(&self, ports: &[u16]) {
        let text: String = ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect();
        let aside = self.dir.join("members.new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(aside, &self.file).unwrap();
    }

    fn start(&mut self, port: u16) {
        let address = self.address(port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{port}.log")))
            .unwrap();
        let mut command = Command::new(node_binary());
        command
            // A week: windows are aligned to the clock, and a run that crossed a window's
            // end would let every user through twice (an hour's window did, once).
            .args(["--limit", &LIMIT.to_string(), "--window", "604800s"])
            .args(["--failure", self.failure])
            .args(["--advertise", &address.to_string()]);
        match self.dns {
            None => command.arg("--members-file").arg(&self.file),
            Some((server, port)) => command
                .args(["--bind", &address.ip().to_string()])
                .args(["--members-dns", &format!("members.test:{port}")])
                .args(["--dns-server", &server.to_string()]),
        };
        let child = command
            .arg(address.port().to_string())
            .env("RUST_LOG", "ringlimit=debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.insert(port, child);
        // Ready once its health check says so (it has told the others it is back), as an
        // orchestrator waits for a node to be ready before it restarts the next one.
        for _ in 0..400 {
            if let Some((200, _)) = http_get(address, "/healthz") {
                self.running.lock().unwrap().push(address);
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("node on port {port} did not start and join");
    }

    /// SIGTERM: the node leaves the ring, then exits.
    fn stop(&mut self, port: u16) {
        let address = self.address(port);
        self.running.lock().unwrap().retain(|&a| a != address);
        let mut child = self.procs.remove(&port).unwrap();
        let pid = child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        for _ in 0..400 {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        child.kill().unwrap();
        panic!("node on port {port} did not stop within 10 s of SIGTERM");
    }

    /// SIGKILL: the node dies without a word.
    fn crash(&mut self, port: u16) {
        let address = self.address(port);
        self.running.lock().unwrap().retain(|&a| a != address);
        let mut child = self.procs.remove(&port).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in self.procs.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("the nodes' logs are in {}", self.dir.display());
        }
    }
}

/// `GET path` at `address` (a blocking HTTP/1.1 exchange, one connection): the status
/// and the body, or `None` if nothing answered within a second.
fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(1);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Some((status, body.to_owned()))
}

/// Requests from [`CLIENTS`] clients, each for the next user in turn and to a running
/// node in turn, until `stop` is set (or [`MOST_REQUESTS`], or [`LONGEST`]); the
/// allowed ones, per user. A request with no answer (a node stopping) counts nothing.
async fn load(running: Arc<Mutex<Vec<SocketAddr>>>, stop: Arc<AtomicBool>) -> HashMap<String, u32> {
    let sent = Arc::new(AtomicUsize::new(0));
    let allowed = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let started = tokio::time::Instant::now();
    let client = HttpClient::new();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (running, stop, sent, allowed, client) = (
                running.clone(),
                stop.clone(),
                sent.clone(),
                allowed.clone(),
                client.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) && started.elapsed() < LONGEST {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    if n >= MOST_REQUESTS {
                        break;
                    }
                    let address = {
                        let running = running.lock().unwrap();
                        match running.len() {
                            0 => None,
                            len => Some(running[(n / 7) % len]),
                        }
                    };
                    let Some(address) = address else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let user = format!("user-{}", n % USERS);
                    let url = format!("http://{address}/check?user_id={user}");
                    let asked = tokio::time::timeout(Duration::from_secs(2), client.try_get(&url));
                    if let Ok(Some(200)) = asked.await {
                        *allowed.lock().unwrap().entry(user).or_default() += 1;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let allowed = allowed.lock().unwrap().clone();
    allowed
}

/// Runs `changes` (on a thread of their own: they wait for processes) while the load
/// runs, then lets the load go on for `after`; what each user was allowed.
async fn under_load(
    fleet: Fleet,
    changes: impl FnOnce(&mut Fleet) + Send + 'static,
    after: Duration,
) -> (HashMap<String, u32>, Fleet) {
    let stop = Arc::new(AtomicBool::new(false));
    let loading = tokio::spawn(load(fleet.running.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fleet = tokio::task::spawn_blocking(move || {
        let mut fleet = fleet;
        changes(&mut fleet);
        fleet
    })
    .await
    .unwrap();
    assert!(
        !loading.is_finished(),
        "the load ran out before the changes were done: it says nothing of them"
    );
    tokio::time::sleep(after).await;
    stop.store(true, Ordering::Relaxed);
    (loading.await.unwrap(), fleet)
}

/// No user over `bound(user)`; most users reached the limit (the load was enough).
fn assert_within(allowed: &HashMap<String, u32>, bound: impl Fn(&str) -> u32) {
    let over: Vec<_> = allowed
        .iter()
        .filter(|(user, &n)| n > bound(user))
        .collect();
    assert!(
        over.is_empty(),
        "{} users over their bound: {over:?}",
        over.len()
    );
    let reached = allowed.values().filter(|&&n| n >= LIMIT).count();
    assert!(
        reached > USERS * 9 / 10,
        "only {reached} of {USERS} users reached the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_32_clients_admits_no_more_than_the_limit() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let fleet = Fleet::new("rolling", &ports, "local");
    let restart = ports.clone();
    let (allowed, _fleet) = under_load(
        fleet,
        move |fleet| {
            for port in restart {
                fleet.stop(port);
                fleet.start(port);
            }
        },
        Duration::from_millis(500),
    )
    .await;
    assert_within(&allowed, |_| LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_then_in_mid_window_admits_no_more_than_the_limit() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let fleet = Fleet::new("scale", &ports[..2], "local");
    let (allowed, _fleet) = under_load(
        fleet,
        move |fleet| {
            // Out: a third node joins (listed, then started; the others read the file
            // within 4 s)...
            fleet.write(&ports);
            fleet.start(ports[2]);
            std::thread::sleep(Duration::from_secs(5));
            // ... and in: it is taken out of the file, which it reads too, and leaves.
            fleet.write(&ports[..2]);
            std::thread::sleep(Duration::from_secs(5));
            fleet.stop(ports[2]);
        },
        Duration::from_millis(500),
    )
    .await;
    assert_within(&allowed, |_| LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_owner_loses_at_most_one_limit_of_its_own_keys() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let crashed = ports[0];
    let fleet = Fleet::new("crash", &ports, "deny");
    let (allowed, _fleet) = under_load(
        fleet,
        move |fleet| {
            std::thread::sleep(Duration::from_millis(300));
            fleet.crash(crashed);
            std::thread::sleep(Duration::from_millis(500));
            fleet.start(crashed);
        },
        Duration::from_millis(1_500),
    )
    .await;
    let ring = ringlimit::Ring::new(ports.iter().map(|p| format!("127.0.0.1:{p}"))).unwrap();
    let owned = |user: &str| ring.owner(user) == format!("127.0.0.1:{crashed}");
    // The documented bound: the crashed node's own keys lose what it had counted (one
    // limit at most); with the failure mode `deny`, nothing more while it is down.
    assert_within(&allowed, |user| if owned(user) { 2 * LIMIT } else { LIMIT });
}

/// A real DNS server on loopback, `dnsmasq`, answering for `members.test` with an A
/// record per line of a hosts file it reads again on `SIGHUP`.
struct DnsServer {
    child: Child,
    hosts: PathBuf,
    address: SocketAddr,
}

impl DnsServer {
    /// Started on a free port of 127.0.0.1, `members.test` resolving to 127.0.0.N for
    /// each N of `nodes`; `None` (said loudly) where `dnsmasq` is not installed, unless
    /// `RINGLIMIT_REQUIRE_DNSMASQ=1` (set by `.ci/run`) makes that a failure.
    fn start(nodes: &[u16]) -> Option<Self> {
        // On the PATH, or where Debian puts it (outside a user's PATH).
        let program = ["dnsmasq", "/usr/sbin/dnsmasq"]
            .into_iter()
            .find(|p| Command::new(p).arg("--version").output().is_ok());
        let Some(program) = program else {
            let required = std::env::var("RINGLIMIT_REQUIRE_DNSMASQ").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "dnsmasq is not installed, and RINGLIMIT_REQUIRE_DNSMASQ=1 requires it"
            );
            eprintln!(
                "SKIPPED the DNS test: dnsmasq is not installed (apt-get install dnsmasq-base)"
            );
            return None;
        };
        let dir = std::env::temp_dir().join(format!("ringlimit-dnsmasq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
        // Written before it starts: a SIGHUP before dnsmasq handles it would end it.
        std::fs::write(&hosts, hosts_text(nodes)).unwrap();
        let server = Self {
            child: Command::new(program)
                .args([
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--local=/test/",
                ])
                .arg(format!("--addn-hosts={}", hosts.display()))
                .args([
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--pid-file=",
                ])
                .arg(format!("--port={}", address.port()))
                .arg(format!("--user={}", user.trim()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            hosts,
            address,
        };
        Some(server)
    }

    /// `members.test` resolves to 127.0.0.N for each N of `nodes` from now on.
    fn list(&self, nodes: &[u16]) {
        std::fs::write(&self.hosts, hosts_text(nodes)).unwrap();
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success(), "dnsmasq reads its hosts again on SIGHUP");
    }
}

/// The hosts file that makes `members.test` resolve to 127.0.0.N for each N of `nodes`.
fn hosts_text(nodes: &[u16]) -> String {
    nodes
        .iter()
        .map(|n| format!("127.0.0.{n} members.test\n"))
        .collect()
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.hosts.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_found_through_a_dns_server_scale_out_under_load() {
    let Some(dns) = DnsServer::start(&[2, 3]) else {
        return;
    };
    std::thread::sleep(Duration::from_millis(300)); // dnsmasq up
    let fleet = Fleet::on_dns("dns", dns.address, free_port(), &[2, 3]);
    let dns = Arc::new(dns);
    let listing = dns.clone();
    let (allowed, fleet) = under_load(
        fleet,
        move |fleet| {
            // A third node: in DNS first (as a headless service lists a ready pod),
            // then started; the others find it at their next look (every 5 s).
            listing.list(&[2, 3, 4]);
            fleet.start(4);
            std::thread::sleep(Duration::from_secs(6));
        },
        Duration::from_millis(500),
    )
    .await;
    assert_within(&allowed, |_| LIMIT);
    let log = std::fs::read_to_string(fleet.dir.join("node-2.log")).unwrap();
    let grown = log.lines().any(|line| {
        let members = line.split("members=").nth(1).unwrap_or_default();
        line.contains("members changed") && members.split(',').count() == 3
    });
    assert!(grown, "node 2 found the third member through DNS:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_its_health_and_its_metrics_and_is_unready_while_leaving() {
    let ports = [free_port(), free_port()];
    let mut fleet = Fleet::new("ops", &ports, "local");
    let [first, second] = ports.map(|port| fleet.address(port));
    let client = HttpClient::new();
    for user in 0..20 {
        client
            .get(&common::check_url(first, &format!("user-{user}")), &[])
            .await;
    }

    let (status, health) = http_get(first, "/healthz").unwrap();
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"state\":\"serving\""), "{health}");
    let peer = format!("{{\"member\":\"{second}\",\"circuit\":\"closed\"}}");
    assert!(health.contains(&peer), "{health}");

    let (status, metrics) = http_get(first, "/metrics").unwrap();
    assert_eq!(status, 200);
    let allowed = "ringlimit_checks_total{policy=\"default\",outcome=\"allowed\"} 20";
    assert!(metrics.contains(allowed), "{metrics}");
    let round_trips = format!("ringlimit_peer_round_trip_seconds_bucket{{peer=\"{second}\",le=");
    assert!(metrics.contains(&round_trips), "{metrics}");
    assert!(metrics.contains("ringlimit_ring_members 2"), "{metrics}");

    // SIGTERM: while it leaves (and serves its last half second), it is not ready.
    let watching = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..400 {
            match http_get(second, "/healthz") {
                Some((status, _)) if seen.last() != Some(&status) => seen.push(status),
                Some(_) => {}
                None if !seen.is_empty() => break,
                None => {}
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(50));
    fleet.stop(ports[1]);
    let seen = watching.join().unwrap();
    assert_eq!(seen, [200, 503], "ready, then not while leaving, then gone");
}
