//! Counters that many threads increment without fighting over one cache line: each
//! thread adds to a stripe of its own, and a stripe hands its counts to the recorder's
//! counters every [`HAND_OVER_AT`], when [`flush`] runs (a backend's `record_metrics`,
//! at scrape time, and a background thread every second), and when dropped. One shared
//! atomic per request cost 12–20 % of a check through the layer on two threads.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::handles::Counter;

/// Stripes per set of counters: threads beyond it share.
const STRIPES: usize = 16;
/// Increments a stripe keeps of one counter before handing them over.
const HAND_OVER_AT: u64 = 64;
/// How often pending counts are handed over whatever their number, so that a rare
/// outcome shows within this even if nobody calls `flush`.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// `N` counters (a policy's outcomes, say), striped together: a thread's stripe holds
/// all `N`, on one cache line for up to 16.
#[derive(Debug)]
pub(crate) struct StripedCounters<const N: usize> {
    totals: [Counter; N],
    stripes: Box<[CachePadded<[AtomicU64; N]>]>,
}

impl<const N: usize> StripedCounters<N> {
    /// Counters that add up to `totals`, flushed with every other by [`flush`].
    pub(crate) fn new(totals: [Counter; N]) -> Arc<Self> {
        let counters = Arc::new(Self {
            totals,
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        });
        let live: Weak<dyn Flush> = Arc::downgrade(&counters) as Weak<dyn Flush>;
        let mut all = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|counters| counters.strong_count() > 0);
        all.push(live);
        drop(all);
        start_flushing();
        counters
    }

    /// Adds `n` to counter `i`.
    #[inline]
    pub(crate) fn add(&self, i: usize, n: u64) {
        let count = &self.stripes[stripe()][i];
        if count.fetch_add(n, Ordering::Relaxed) + n >= HAND_OVER_AT {
            self.totals[i].increment(count.swap(0, Ordering::Relaxed));
        }
    }
}

trait Flush: Send + Sync {
    fn flush(&self);
}

impl<const N: usize> Flush for StripedCounters<N> {
    fn flush(&self) {
        for stripe in self.stripes.iter() {
            for (count, total) in stripe.iter().zip(&self.totals) {
                let pending = count.swap(0, Ordering::Relaxed);
                if pending > 0 {
                    total.increment(pending);
                }
            }
        }
    }
}

impl<const N: usize> Drop for StripedCounters<N> {
    fn drop(&mut self) {
        Flush::flush(self);
    }
}

/// Every set of striped counters alive, to flush.
static LIVE: Mutex<Vec<Weak<dyn Flush>>> = Mutex::new(Vec::new());

/// Hands every striped counter's pending increments to the recorder, so that what it
/// renders next is exact.
pub(crate) fn flush() {
    let live: Vec<Arc<dyn Flush>> = LIVE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    live.iter().for_each(|counters| counters.flush());
}

/// Starts, once, the thread that flushes every [`FLUSH_EVERY`].
fn start_flushing() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("ringlimit-metrics".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "ringlimit: no thread to hand over metrics every second; they are handed over every 64 and by record_metrics");
        }
    });
}

/// This thread's stripe.
#[inline]
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = Cell::new(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
    }
    STRIPE.with(Cell::get)
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn every_count_reaches_the_recorder_by_batch_flush_or_drop() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // A snapshot drains what it reads: the total is kept here.
        let seen = Cell::new(0);
        let value = || {
            let drained = snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .find_map(|(key, _, _, value)| match value {
                    DebugValue::Counter(n) if key.key().name() == "striped" => Some(n),
                    _ => None,
                })
                .unwrap_or(0);
            seen.set(seen.get() + drained);
            seen.get()
        };
        metrics::with_local_recorder(&recorder, || {
            let counters =
                StripedCounters::new([metrics::counter!("striped"), metrics::counter!("other")]);
            for _ in 0..HAND_OVER_AT - 1 {
                counters.add(0, 1);
            }
            assert_eq!(value(), 0, "kept in the stripe");
            counters.add(0, 1);
            assert_eq!(value(), HAND_OVER_AT, "handed over at {HAND_OVER_AT}");
            // Four threads at once, then a flush: exact.
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    scope.spawn(|| (0..1_000).for_each(|_| counters.add(0, 1)));
                }
            });
            Flush::flush(&*counters);
            assert_eq!(value(), HAND_OVER_AT + 4_000);
            counters.add(0, 5);
            drop(counters);
            assert_eq!(value(), HAND_OVER_AT + 4_005, "handed over when dropped");
        });
    }
}
