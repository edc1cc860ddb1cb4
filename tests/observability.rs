//! What an operator sees: the metrics recorded into a real Prometheus recorder (each
//! request counted once, where it arrived; peers' round trips, errors and circuits), the
//! warning logged once when a failure mode starts deciding, and a node's health.
#![cfg(feature = "cluster")]

mod common;

use common::{hourly, listeners, mid_window_clock, serve_node};
use ringlimit::backend::NodeState;
use ringlimit::policy::PolicyName;
use ringlimit::{ClusterBackend, Policy, Ring};

/// `hourly(limit)` named `name` (each test its own names: the recorder is the process's).
fn named(limit: u32, name: &str) -> Policy {
    hourly(limit).with_name(PolicyName::new(name).unwrap())
}

#[cfg(feature = "metrics")]
mod recorded {
    use super::*;
    use std::time::Duration;

    use common::HttpClient;
    use ringlimit::backend::{CircuitPolicy, FailureMode};
    use std::sync::OnceLock;

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
    use ringlimit::{MemoryBackend, PolicySet, RateLimitLayer};
    use tower::{service_fn, ServiceExt};

    /// The process's recorder, installed before any backend of these tests is built.
    fn prometheus() -> &'static PrometheusHandle {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
    }

    /// The value of the series `series` (name and labels as rendered), if there is one.
    fn value(series: &str) -> Option<f64> {
        ringlimit::observe::flush();
        let text = prometheus().render();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
    }

    fn checks(policy: &str, outcome: &str) -> f64 {
        let series = format!("ringlimit_checks_total{{policy=\"{policy}\",outcome=\"{outcome}\"}}");
        value(&series).unwrap_or_else(|| panic!("no {series} in\n{}", prometheus().render()))
    }

    #[tokio::test]
    async fn the_layer_counts_each_request_once_per_policy_by_outcome() {
        prometheus();
        let set = PolicySet::new([
            named(2, "obs_layer_enforced"),
            named(1, "obs_layer_shadow").with_shadow(true),
        ])
        .unwrap();
        let layer = RateLimitLayer::new(MemoryBackend::new(set));
        let inner = service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let service = tower::Layer::layer(&layer, inner);
        let request = |uri: &str| http::Request::get(uri).body(()).unwrap();
        let mut statuses = Vec::new();
        for uri in ["/?user_id=a", "/?user_id=a", "/?user_id=a", "/"] {
            let response = service.clone().oneshot(request(uri)).await.unwrap();
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 429, 400]);
        assert_eq!(checks("obs_layer_enforced", "allowed"), 2.0);
        assert_eq!(checks("obs_layer_enforced", "limited"), 1.0);
        assert_eq!(checks("obs_layer_enforced", "bad_key"), 1.0);
        assert_eq!(checks("obs_layer_shadow", "allowed"), 1.0);
        assert_eq!(checks("obs_layer_shadow", "shadow_limited"), 2.0);
        assert_eq!(checks("obs_layer_shadow", "limited"), 0.0);
    }

    #[tokio::test]
    async fn a_forwarded_check_is_counted_where_it_arrived_and_its_peer_measured() {
        prometheus();
        let clock = mid_window_clock();
        let listeners = listeners(2).await;
        let members: Vec<String> = listeners.iter().map(|(_, n)| n.clone()).collect();
        let nodes: Vec<_> = listeners
            .into_iter()
            .map(|(listener, name)| {
                let ring = Ring::new(members.clone()).unwrap();
                let backend = ClusterBackend::builder(named(2, "obs_forwarded"), name, ring)
                    .clock(clock.clone())
                    .build()
                    .unwrap();
                serve_node(listener, backend, std::future::pending())
            })
            .collect();
        let key = common::key_owned_by(&nodes[0].backend.ring(), &nodes[1].name);
        let answered_before = value("ringlimit_answered_checks_total").unwrap_or(0.0);
        let client = HttpClient::new();
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(
                client
                    .get(&nodes[0].check_url(&key), &[])
                    .await
                    .status
                    .as_u16(),
            );
        }
        assert_eq!(statuses, [200, 200, 429]);
        // Once each, on the node where they arrived: the owner does not count them again.
        assert_eq!(checks("obs_forwarded", "allowed"), 2.0);
        assert_eq!(checks("obs_forwarded", "limited"), 1.0);
        let peer = &nodes[1].name;
        let sent = value(&format!("ringlimit_peer_checks_total{{peer=\"{peer}\"}}"));
        assert_eq!(sent, Some(3.0));
        let answered = value("ringlimit_answered_checks_total").unwrap() - answered_before;
        assert!(answered >= 3.0, "the owner answered {answered}");
        // A summary without buckets set: its count is the round trips measured.
        let trips = value(&format!(
            "ringlimit_peer_round_trip_seconds_count{{peer=\"{peer}\"}}"
        ));
        assert_eq!(trips, Some(3.0), "one round trip per lone check");
        let open = value(&format!("ringlimit_peer_circuit_open{{peer=\"{peer}\"}}"));
        assert_eq!(open, Some(0.0));
    }

    #[tokio::test]
    async fn a_dead_peer_shows_as_failure_decisions_errors_and_an_open_circuit_and_is_logged_once()
    {
        prometheus();
        let logs = common::CapturedLogs::install();
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_name = dead.local_addr().unwrap().to_string();
        drop(dead);
        let mut listeners = listeners(1).await;
        let (listener, me) = listeners.pop().unwrap();
        let ring = Ring::new([me.clone(), dead_name.clone()]).unwrap();
        let key = common::key_owned_by(&ring, &dead_name);
        let backend = ClusterBackend::builder(named(2, "obs_dead"), me, ring)
            .failure_mode(FailureMode::Local)
            .peer_timeout(Duration::from_millis(100))
            .circuit(CircuitPolicy {
                threshold: 3,
                cooldown: Duration::from_secs(60),
            })
            .clock(mid_window_clock())
            .build()
            .unwrap();
        let node = serve_node(listener, backend, std::future::pending());
        let client = HttpClient::new();
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(client.get(&node.check_url(&key), &[]).await.status.as_u16());
        }
        assert_eq!(
            statuses,
            [200, 200, 429, 429, 429, 429],
            "counted here, as the owner would"
        );
        assert_eq!(checks("obs_dead", "failure_local"), 6.0);
        assert_eq!(checks("obs_dead", "allowed"), 0.0);
        let errors = value(&format!(
            "ringlimit_peer_errors_total{{peer=\"{dead_name}\"}}"
        ));
        assert_eq!(
            errors,
            Some(3.0),
            "asked until the circuit opened, then not"
        );
        let open = value(&format!(
            "ringlimit_peer_circuit_open{{peer=\"{dead_name}\"}}"
        ));
        assert_eq!(open, Some(1.0));
        let logged = logs.text();
        let warned = logged
            .matches("failure mode local decides its checks")
            .count();
        assert_eq!(
            warned, 1,
            "once per change of state, not per request:\n{logged}"
        );
        assert_eq!(logged.matches("circuit open").count(), 1, "{logged}");
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn redis_checks_round_trips_errors_and_its_circuit_are_recorded() {
        use common::redis::{available, RedisServer};
        use ringlimit::backend::RedisBackend;
        if !available("redis_checks_round_trips_errors_and_its_circuit_are_recorded") {
            return;
        }
        prometheus();
        let mut server = RedisServer::start();
        let backend = RedisBackend::builder(named(2, "obs_redis"), &server.url())
            .failure_mode(FailureMode::Allow)
            .circuit(CircuitPolicy {
                threshold: 2,
                cooldown: Duration::from_secs(60),
            })
            .build()
            .unwrap();
        let layer = RateLimitLayer::new(backend);
        let inner = service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let service = tower::Layer::layer(&layer, inner);
        let status = |service: &ringlimit::RateLimit<_, _, _, _>| {
            let request = http::Request::get("/?user_id=carol").body(()).unwrap();
            let call = service.clone().oneshot(request);
            async move { call.await.unwrap().status().as_u16() }
        };
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(status(&service).await);
        }
        assert_eq!(statuses, [200, 200, 429]);
        let label = format!("{{server=\"{}\"}}", server.url());
        assert_eq!(
            value(&format!("ringlimit_redis_checks_total{label}")),
            Some(3.0)
        );
        let trips = value(&format!("ringlimit_redis_round_trip_seconds_count{label}"));
        assert_eq!(trips, Some(3.0));
        assert_eq!(
            value(&format!("ringlimit_redis_circuit_open{label}")),
            Some(0.0)
        );

        server.stop();
        for _ in 0..4 {
            assert_eq!(status(&service).await, 200, "failure mode allow");
        }
        assert_eq!(checks("obs_redis", "failure_allow"), 4.0);
        assert_eq!(
            value(&format!("ringlimit_redis_errors_total{label}")),
            Some(2.0)
        );
        assert_eq!(
            value(&format!("ringlimit_redis_circuit_open{label}")),
            Some(1.0)
        );
    }
}

#[tokio::test]
async fn health_says_joining_serving_then_leaving_with_each_peers_circuit() {
    let listeners = listeners(2).await;
    let members: Vec<String> = listeners.iter().map(|(_, n)| n.clone()).collect();
    let mut nodes = Vec::new();
    for (listener, name) in listeners {
        let ring = Ring::new(members.clone()).unwrap();
        let backend = ClusterBackend::builder(named(5, "obs_health"), name, ring)
            .clock(mid_window_clock())
            .build()
            .unwrap();
        nodes.push(serve_node(listener, backend, std::future::pending()));
    }
    let node = &nodes[0].backend;
    let health = node.health();
    assert_eq!(
        health.state,
        NodeState::Serving,
        "built, never told to join"
    );
    assert_eq!(health.members, members);
    assert_eq!(health.peers.len(), 1);
    assert_eq!(health.peers[0].member, nodes[1].name);
    assert!(!health.peers[0].circuit_open);

    let joining = node.join();
    assert_eq!(node.health().state, NodeState::Joining);
    assert!(!node.health().state.is_serving());
    joining.await;
    assert_eq!(node.health().state, NodeState::Serving);

    node.leave().await;
    let health = node.health();
    assert_eq!(health.state, NodeState::Leaving);
    assert_eq!(
        health.members,
        [nodes[1].name.clone()],
        "routes by the others"
    );
}

#[tokio::test]
async fn a_lone_node_leaving_is_unready_and_a_dropped_join_does_not_stick() {
    let me = "127.0.0.1:1";
    let ring = Ring::new([me]).unwrap();
    let node = ClusterBackend::builder(named(5, "obs_lone"), me, ring)
        .build()
        .unwrap();
    drop(node.join());
    assert_eq!(
        node.health().state,
        NodeState::Serving,
        "a join dropped unpolled ends"
    );
    assert_eq!(node.leave().await, 0, "no one to hand over to");
    assert_eq!(node.health().state, NodeState::Leaving);
    node.join().await;
    assert_eq!(node.health().state, NodeState::Serving, "back");
}
