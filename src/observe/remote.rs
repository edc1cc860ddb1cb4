//! The metrics of one remote that holds counters: a peer node, or Redis. Shared by its
//! queue (checks, batches, round trips) and its circuit (errors, open or closed).

use std::future::Future;
use std::time::Instant;

use super::handles::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// What kind of remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Remote {
    #[cfg(any(test, feature = "cluster"))]
    Peer,
    #[cfg(feature = "redis")]
    Redis,
}

/// The handles of one remote's metrics, labelled with its address.
#[derive(Debug)]
pub(crate) struct RemoteMetrics {
    pub(crate) kind: Remote,
    pub(crate) checks: Counter,
    pub(crate) batch_size: Histogram,
    pub(crate) round_trip: Histogram,
    pub(crate) errors: Counter,
    pub(crate) circuit_open: Gauge,
}

impl RemoteMetrics {
    /// The metrics of `address` (a peer's `host:port`, or a Redis URL, whose password is
    /// never a label).
    pub(crate) fn new(kind: Remote, address: &str) -> Self {
        let names = match kind {
            #[cfg(any(test, feature = "cluster"))]
            Remote::Peer => [
                "ringlimit_peer_checks_total",
                "ringlimit_peer_batch_size",
                "ringlimit_peer_round_trip_seconds",
                "ringlimit_peer_errors_total",
                "ringlimit_peer_circuit_open",
            ],
            #[cfg(feature = "redis")]
            Remote::Redis => [
                "ringlimit_redis_checks_total",
                "ringlimit_redis_batch_size",
                "ringlimit_redis_round_trip_seconds",
                "ringlimit_redis_errors_total",
                "ringlimit_redis_circuit_open",
            ],
        };
        let address = without_password(address);
        let label = [(kind.label(), address.as_str())];
        let circuit_open = gauge(names[4], &label);
        circuit_open.set(0.0);
        Self {
            kind,
            checks: counter(names[0], &label),
            batch_size: histogram(names[1], &label),
            round_trip: histogram(names[2], &label),
            errors: counter(names[3], &label),
            circuit_open,
        }
    }
}

impl RemoteMetrics {
    /// Runs `call`, one request of `checks` checks to this remote, and records it: the
    /// checks, the batch size and the round trip.
    pub(crate) async fn measure<T>(&self, checks: usize, call: impl Future<Output = T>) -> T {
        self.checks.increment(checks as u64);
        self.batch_size.record(checks as f64);
        let sent = Instant::now();
        let answer = call.await;
        self.round_trip.record(sent.elapsed().as_secs_f64());
        answer
    }
}

impl Remote {
    fn label(self) -> &'static str {
        match self {
            #[cfg(any(test, feature = "cluster"))]
            Self::Peer => "peer",
            #[cfg(feature = "redis")]
            Self::Redis => "server",
        }
    }

    /// How logs name it.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            #[cfg(any(test, feature = "cluster"))]
            Self::Peer => "peer",
            #[cfg(feature = "redis")]
            Self::Redis => "Redis",
        }
    }
}

/// `address` with any `user:password@` taken out of each of its URLs.
fn without_password(address: &str) -> String {
    address
        .split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}{}", &url[..scheme + 3], &url[at + 1..])
            }
            (None, Some(at)) => url[at + 1..].to_owned(),
            _ => url.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_redis_password_is_never_a_label() {
        assert_eq!(
            without_password("redis://:secret@127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            without_password("redis://u:p@a:1,redis://b:2"),
            "redis://a:1,redis://b:2"
        );
        assert_eq!(without_password("10.0.0.1:7000"), "10.0.0.1:7000");
    }
}
