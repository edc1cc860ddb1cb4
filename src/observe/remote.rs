//! The metrics of one remote that holds counters: a peer node, or Redis. Shared by its
//! queue (checks, batches, round trips) and its circuit (errors, open or closed).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use pin_project_lite::pin_project;

use super::handles::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// What kind of remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Remote {
    #[cfg(any(test, feature = "cluster"))]
    Peer,
    #[cfg(feature = "redis")]
    Redis,
}

/// What a kind of remote is called: in logs, in its label, and its metrics' names.
#[derive(Debug)]
struct Names {
    noun: &'static str,
    label: &'static str,
    checks: &'static str,
    batch_size: &'static str,
    round_trip: &'static str,
    errors: &'static str,
    circuit_open: &'static str,
}

impl Remote {
    fn names(self) -> &'static Names {
        match self {
            #[cfg(any(test, feature = "cluster"))]
            Self::Peer => &Names {
                noun: "peer",
                label: "peer",
                checks: "ringlimit_peer_checks_total",
                batch_size: "ringlimit_peer_batch_size",
                round_trip: "ringlimit_peer_round_trip_seconds",
                errors: "ringlimit_peer_errors_total",
                circuit_open: "ringlimit_peer_circuit_open",
            },
            #[cfg(feature = "redis")]
            Self::Redis => &Names {
                noun: "Redis",
                label: "server",
                checks: "ringlimit_redis_checks_total",
                batch_size: "ringlimit_redis_batch_size",
                round_trip: "ringlimit_redis_round_trip_seconds",
                errors: "ringlimit_redis_errors_total",
                circuit_open: "ringlimit_redis_circuit_open",
            },
        }
    }

    /// How logs name it.
    pub(crate) fn noun(self) -> &'static str {
        self.names().noun
    }
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
    /// The metrics of `address` (a peer's `host:port`, or a Redis URL already
    /// [`redacted`]).
    pub(crate) fn new(kind: Remote, address: &str) -> Self {
        let names = kind.names();
        let label = [(names.label, address)];
        let circuit_open = gauge(names.circuit_open, &label);
        circuit_open.set(0.0);
        Self {
            kind,
            checks: counter(names.checks, &label),
            batch_size: histogram(names.batch_size, &label),
            round_trip: histogram(names.round_trip, &label),
            errors: counter(names.errors, &label),
            circuit_open,
        }
    }

    /// Runs `call`, one request of `checks` checks to this remote, and records it: the
    /// checks, the batch size and the round trip. A future of its own rather than an
    /// `async fn`, which would hold `call` (a batch's, a few KiB) twice.
    pub(crate) fn measure<F: Future>(&self, checks: usize, call: F) -> Measured<'_, F> {
        // No clock read for nothing.
        let sent = cfg!(feature = "metrics").then(|| {
            self.checks.increment(checks as u64);
            self.batch_size.record(checks as f64);
            Instant::now()
        });
        Measured {
            call,
            sent,
            metrics: self,
        }
    }
}

pin_project! {
    /// The future of [`RemoteMetrics::measure`].
    #[must_use = "futures do nothing unless polled"]
    pub(crate) struct Measured<'a, F> {
        #[pin]
        call: F,
        sent: Option<Instant>,
        metrics: &'a RemoteMetrics,
    }
}

impl<F: Future> Future for Measured<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let answer = ready!(this.call.poll(cx));
        if let Some(sent) = this.sent.take() {
            this.metrics.round_trip.record(sent.elapsed().as_secs_f64());
        }
        Poll::Ready(answer)
    }
}

/// The URL `url` as logs and labels may show it: without a `user:password@` and
/// without a query (where a password may also be, `redis+unix:///s?pass=...`).
#[cfg(feature = "redis")]
pub(crate) fn redacted(url: &str) -> String {
    let url = url.split_once('?').map_or(url, |(before, _)| before);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        None => url
            .rsplit_once('@')
            .map_or(url, |(_, host)| host)
            .to_owned(),
    }
}

/// A remote no longer known (a peer that left the ring): its circuit shows closed, so
/// that an alert on it does not stay firing.
impl Drop for RemoteMetrics {
    fn drop(&mut self) {
        self.circuit_open.set(0.0);
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::redacted;

    #[test]
    fn a_redis_password_is_never_shown() {
        assert_eq!(
            redacted("redis://:secret@127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://u:p@ss@a:1"), "redis://a:1");
        assert_eq!(
            redacted("redis+unix:///tmp/r.sock?pass=secret"),
            "redis+unix:///tmp/r.sock"
        );
        assert_eq!(redacted("rediss://a:1/?db=1"), "rediss://a:1/");
        assert_eq!(redacted("10.0.0.1:7000"), "10.0.0.1:7000");
    }
}
