//! Where the limiter reads the time: the system clock, or a manual clock for tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, as the time since the Unix epoch.
///
/// Windows are aligned to the Unix epoch, so the clock must be a
/// wall clock shared by all nodes, not a monotonic one.
pub trait Clock: Send + Sync + 'static {
    /// The time since the Unix epoch.
    fn now(&self) -> Duration;
}

/// The operating system's wall clock, read cheaply (the default).
///
/// On Linux this is `CLOCK_REALTIME_COARSE`: a few nanoseconds a read instead of a few
/// tens, at the resolution of one kernel tick (1 to 4 ms), so a window boundary is seen
/// at most one tick late. Elsewhere it is [`PreciseClock`]. For windows shorter than about
/// 100 ms, use [`PreciseClock`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn now(&self) -> Duration {
        use rustix::time::{clock_gettime, ClockId};
        let now = clock_gettime(ClockId::RealtimeCoarse);
        // A clock set before 1970 is treated as the epoch rather than panicking.
        match (u64::try_from(now.tv_sec), u32::try_from(now.tv_nsec)) {
            (Ok(secs), Ok(nanos)) => Duration::new(secs, nanos),
            _ => Duration::ZERO,
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn now(&self) -> Duration {
        PreciseClock.now()
    }
}

/// The operating system's wall clock at full resolution (`SystemTime::now`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PreciseClock;

impl Clock for PreciseClock {
    fn now(&self) -> Duration {
        // A clock set before 1970 is treated as the epoch rather than panicking.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// A clock that only moves when told to, so tests can cross windows without sleeping.
///
/// Clones share the same time.
///
/// # Examples
///
/// ```
/// use ringlimit::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Duration::from_secs(120));
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(shared.now(), Duration::from_secs(150));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock showing `since_epoch`.
    pub fn new(since_epoch: Duration) -> Self {
        let clock = Self::default();
        clock.set(since_epoch);
        clock
    }

    /// Sets the time (saturating at about the year 2554).
    pub fn set(&self, since_epoch: Duration) {
        let nanos = u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Release);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clocks_agree_within_a_tick() {
        let precise = PreciseClock.now();
        let coarse = SystemClock.now();
        assert!(precise > Duration::from_secs(1_577_836_800));
        let gap = precise.abs_diff(coarse);
        assert!(gap < Duration::from_millis(50), "{gap:?}");
    }

    #[test]
    fn manual_clock_saturates_instead_of_overflowing() {
        let clock = ManualClock::new(Duration::from_nanos(u64::MAX - 1));
        clock.advance(Duration::from_secs(10));
        assert_eq!(clock.now(), Duration::from_nanos(u64::MAX));
    }
}
