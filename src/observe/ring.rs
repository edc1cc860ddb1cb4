//! Metrics of this node's ring: its members, its changes and the counters handed over.
//! One set per process; each handle is taken from the recorder on first use.

use std::sync::OnceLock;
use std::time::Duration;

use super::handles::{counter, gauge, histogram, Counter, Gauge, Histogram};

struct RingMetrics {
    changes: Counter,
    members: Gauge,
    given: Counter,
    taken: Counter,
    handoff: Histogram,
}

fn metrics() -> &'static RingMetrics {
    static METRICS: OnceLock<RingMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let keys = "ringlimit_handoff_keys_total";
        RingMetrics {
            changes: counter("ringlimit_ring_changes_total", &[]),
            members: gauge("ringlimit_ring_members", &[]),
            given: counter(keys, &[("direction", "given")]),
            taken: counter(keys, &[("direction", "taken")]),
            handoff: histogram("ringlimit_handoff_seconds", &[]),
        }
    })
}

/// The ring changed; it has `members` now.
pub(crate) fn changed(members: usize) {
    metrics().changes.increment(1);
    members_now(members);
}

/// The ring has `members`.
pub(crate) fn members_now(members: usize) {
    metrics().members.set(members as f64);
}

/// `keys` keys' counters went to their new owners, in `took`.
pub(crate) fn handed_over(keys: usize, took: Duration) {
    metrics().given.increment(keys as u64);
    metrics().handoff.record(took.as_secs_f64());
}

/// One key's counters were taken in from its old owner.
pub(crate) fn taken_in() {
    metrics().taken.increment(1);
}
