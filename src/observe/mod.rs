//! What ringlimit tells its operator: metrics through the [`metrics`] facade (cargo
//! feature `metrics`; the crate depends on no exporter) and [`tracing`] events.
//!
//! Without the feature every metric below compiles to nothing; the tracing events are
//! always there, filtered by your subscriber.
//!
//! # Metrics
//!
//! Install a recorder (an exporter such as `metrics-exporter-prometheus`) **before**
//! building backends and layers: they take their handles from the recorder installed
//! when they are made. No label holds a user id.
//!
//! | name | type | labels | what |
//! | --- | --- | --- | --- |
//! | `ringlimit_checks_total` | counter | `policy`, `outcome` | requests checked, once per policy of the request's set, on the node where the request arrived (a layer, or a node's own `/check`) |
//! | `ringlimit_peer_checks_total` | counter | `peer` | checks this node sent to their owner |
//! | `ringlimit_peer_batch_size` | histogram | `peer` | checks per request sent to a peer (one, or a batch) |
//! | `ringlimit_peer_round_trip_seconds` | histogram | `peer` | time from sending a request to a peer to its answer |
//! | `ringlimit_peer_errors_total` | counter | `peer` | asks that failed: timed out, unreachable, a bad answer |
//! | `ringlimit_peer_circuit_open` | gauge | `peer` | 1 while the peer's circuit is open (it is not asked), else 0 |
//! | `ringlimit_answered_checks_total` | counter | | checks other nodes forwarded here, answered here (as their owner, or by sending them on to where their key went) |
//! | `ringlimit_redis_checks_total` | counter | `server` | checks sent to Redis (on a cluster, `server` is each master's `host:port`, or the cluster's URLs for the checks sent before the slot map is read) |
//! | `ringlimit_redis_batch_size` | histogram | `server` | checks per Redis call or pipeline (on a cluster, per master's pipeline; before the slot map is read, the calls sent alone at once count as one) |
//! | `ringlimit_redis_round_trip_seconds` | histogram | `server` | time from sending to Redis to its answer (on a cluster, calls sent again after a redirect included) |
//! | `ringlimit_redis_errors_total` | counter | `server` | Redis calls that failed or timed out |
//! | `ringlimit_redis_circuit_open` | gauge | `server` | 1 while Redis is not asked, else 0 |
//! | `ringlimit_memory_keys` | gauge | | counters held in this node's memory (set by `record_metrics`) |
//! | `ringlimit_memory_evicted_keys_total` | counter | | keys evicted at the cap (set by `record_metrics`) |
//! | `ringlimit_ring_members` | gauge | | members of this node's ring |
//! | `ringlimit_ring_changes_total` | counter | | times this node's ring changed (a member joined or left) |
//! | `ringlimit_handoff_keys_total` | counter | `direction` | keys whose counters were `given` to their new owner or `taken` in from their old one |
//! | `ringlimit_handoff_seconds` | histogram | | time to hand over the counters of one ring change |
//!
//! The `outcome` of `ringlimit_checks_total`, for each policy of the request's set:
//!
//! | outcome | meaning |
//! | --- | --- |
//! | `allowed` | the policy had room (a request refused by another policy of its set is `allowed` under a policy that had room; nothing was counted) |
//! | `limited` | the policy refused the request: `429` |
//! | `shadow_limited` | the policy, in shadow mode, would have refused it; it went through |
//! | `bad_key` | the request had no usable key: `400` (`500` when the server is not set up to key requests) |
//! | `failure_allow` | the owner could not answer; failure mode `allow` let it through |
//! | `failure_local` | the owner could not answer; failure mode `local` decided it on this node |
//! | `failure_deny` | the owner could not be reached or answer in time (a backend error saying so); failure mode `deny` refused it: `503` |
//! | `unavailable` | the owner answered but refused to decide (a policy it cannot count): `503` |
//!
//! A request whose set is all in shadow mode goes through even when it is
//! `failure_deny` or `unavailable`.
//!
//! The counts of checks are added up per thread and handed to the recorder every 64
//! (so that threads never contend for one counter); the rest is handed over every
//! second, and by [`flush`], which a backend's `record_metrics` calls.
//!
//! Gauges that are read rather than counted (`ringlimit_memory_keys`, the evicted keys)
//! are set when you call `record_metrics` on the backend: call it where you render your
//! metrics, so the request path never pays for them.
//!
//! # Tracing
//!
//! - `debug`: a span `ringlimit_limited` per limited request, with the policy that
//!   refused it, its limit and the seconds until it allows again (never the key).
//! - `warn`, once per change of state, never per request: a failure mode starts deciding
//!   a peer's or Redis's checks, and when it answers again; a circuit opens, and when
//!   it closes; a peer refuses batches; the memory cap evicts keys.

mod checks;
pub(crate) mod handles;
#[cfg(any(feature = "cluster", feature = "redis"))]
mod remote;
#[cfg(feature = "cluster")]
pub(crate) mod ring;
mod striped;

#[cfg(feature = "cluster")]
pub(crate) use checks::answered;
pub(crate) use checks::{bad_key, record, CheckCounters};
#[cfg(feature = "redis")]
pub(crate) use remote::redacted;
#[cfg(any(feature = "cluster", feature = "redis"))]
pub(crate) use remote::{Remote, RemoteMetrics};

/// Hands the counts of checks, which threads add up apart and hand over in batches (so
/// that they never contend for one counter), to the recorder: what it renders next is
/// exact. Backends' `record_metrics` call it; call it yourself before rendering if you
/// call none. Nothing without the feature `metrics`.
pub fn flush() {
    if cfg!(feature = "metrics") {
        striped::flush();
    }
}

/// Sets the memory gauges: `keys` held, `evicted` at the cap since the start.
pub(crate) fn memory(keys: usize, evicted: u64) {
    if cfg!(feature = "metrics") {
        flush();
        handles::gauge("ringlimit_memory_keys", &[]).set(keys as f64);
        handles::counter("ringlimit_memory_evicted_keys_total", &[]).absolute(evicted);
    }
}

/// Describes every metric to the recorder (its `# HELP` line), once.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        describe_counter!("ringlimit_checks_total", "Requests checked, per policy of the request's set and outcome, on the node where they arrived");
        describe_counter!("ringlimit_peer_checks_total", "Checks sent to their owner node");
        describe_histogram!("ringlimit_peer_batch_size", Unit::Count, "Checks per request sent to a peer");
        describe_histogram!("ringlimit_peer_round_trip_seconds", Unit::Seconds, "Time from sending a request to a peer to its answer");
        describe_counter!("ringlimit_peer_errors_total", "Asks of a peer that failed or timed out");
        describe_gauge!("ringlimit_peer_circuit_open", "1 while the peer's circuit is open (it is not asked)");
        describe_counter!("ringlimit_answered_checks_total", "Checks other nodes forwarded here, answered as their owner");
        describe_counter!("ringlimit_redis_checks_total", "Checks sent to Redis");
        describe_histogram!("ringlimit_redis_batch_size", Unit::Count, "Checks per Redis call or pipeline");
        describe_histogram!("ringlimit_redis_round_trip_seconds", Unit::Seconds, "Time from sending to Redis to its answer");
        describe_counter!("ringlimit_redis_errors_total", "Redis calls that failed or timed out");
        describe_gauge!("ringlimit_redis_circuit_open", "1 while Redis is not asked (its circuit is open)");
        describe_gauge!("ringlimit_memory_keys", "Counters held in this node's memory");
        describe_counter!("ringlimit_memory_evicted_keys_total", "Keys evicted at the memory cap");
        describe_gauge!("ringlimit_ring_members", "Members of this node's ring");
        describe_counter!("ringlimit_ring_changes_total", "Times this node's ring changed");
        describe_counter!("ringlimit_handoff_keys_total", "Keys whose counters were given to their new owner or taken in from their old one");
        describe_histogram!("ringlimit_handoff_seconds", Unit::Seconds, "Time to hand over the counters of one ring change");
    });
}
