//! Real `redis-server` processes for the Redis tests, on free loopback ports, stopped when
//! dropped. Where `redis-server` is not installed the tests are marked ignored (the build
//! script sets `ringlimit_no_redis_server`), unless `RINGLIMIT_REQUIRE_REDIS=1` (set by
//! `.ci/run`) makes its absence a failure; `available` still skips loudly if it vanished
//! after the build.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
    cluster: bool,
}

/// Whether the Redis tests can run here; prints the skip line when they cannot.
pub fn available(test: &str) -> bool {
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return true;
    }
    if std::env::var("RINGLIMIT_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
        panic!("redis-server is not installed, and RINGLIMIT_REQUIRE_REDIS=1 requires it");
    }
    eprintln!("SKIPPED {test}: redis-server is not installed (apt-get install redis-server)");
    false
}

/// A free loopback port whose cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisServer {
    /// A standalone server on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port(), false)
    }

    /// A server on `port`; with `cluster`, cluster mode enabled.
    pub fn start_on(port: u16, cluster: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("ringlimit-redis-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if cluster {
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]);
        }
        let child = command.spawn().expect("redis-server starts");
        let server = Self {
            port,
            child,
            dir,
            cluster,
        };
        server.wait_until(|| server.cli(&["PING"]).is_some_and(|o| o.trim() == "PONG"));
        server
    }

    /// The server's process id (to stop and continue it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server; its output, if it ran.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops the server, then starts it again on the same port (an empty one).
    pub fn restart(&mut self) {
        self.stop();
        let fresh = Self::start_on(self.port, self.cluster);
        let old = std::mem::replace(self, fresh);
        std::mem::forget(old);
    }

    /// Stops the server (it stays down until restarted).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The count in the counter of the user key `key` (`<prefix>{<id>}`), whatever its
    /// window start: `None` if it has none.
    pub fn counter(&self, key: &str) -> Option<String> {
        let used = self.cli(&["HGET", key, "n"])?.trim().to_owned();
        (!used.is_empty()).then_some(used)
    }

    /// `calls` of `INFO commandstats` for `command` (e.g. "evalsha").
    pub fn calls(&self, command: &str) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]).unwrap_or_default();
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    fn wait_until(&self, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not come up",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three masters made into a cluster with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub servers: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let servers: Vec<_> = (0..3)
            .map(|_| RedisServer::start_on(free_port(), true))
            .collect();
        let addresses: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        // Bounded: redis-cli waits for the cluster to agree, which need not happen.
        let status = Command::new("timeout")
            .args(["60", "redis-cli", "--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        for server in &servers {
            server.wait_until(|| {
                server
                    .cli(&["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
        }
        Self { servers }
    }

    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }
}
