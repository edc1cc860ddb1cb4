//! A remote call's deadline: the one place a remote check's deadline and errors become a
//! [`BackendError`].

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Timeout};

use super::BackendError;

/// Runs `asked` until `deadline` (`timeout` after it started), naming `target` in any
/// failure. A call first polled past its deadline is not even started: its caller
/// already has an answer.
///
/// A future of its own rather than an `async fn`: an `async fn` would hold `asked` twice
/// (as its argument and as what it awaits), and a batch's call is a few KiB, boxed and
/// copied once per batch.
pub(crate) fn within<T, E, F>(
    deadline: Instant,
    timeout: Duration,
    target: String,
    asked: F,
) -> Within<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    Within {
        asked: tokio::time::timeout_at(deadline, asked),
        deadline,
        started: false,
        target,
        timeout,
    }
}

pin_project! {
    /// The future of [`within`].
    #[must_use = "futures do nothing unless polled"]
    pub(crate) struct Within<F> {
        #[pin]
        asked: Timeout<F>,
        deadline: Instant,
        // Polled before: past the deadline now, it is the timer that says so.
        started: bool,
        target: String,
        timeout: Duration,
    }
}

impl<T, E, F> Future for Within<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    type Output = Result<T, BackendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let timed_out = |target: &mut String| BackendError::Timeout {
            target: std::mem::take(target),
            after: *this.timeout,
        };
        if !std::mem::replace(this.started, true) && Instant::now() >= *this.deadline {
            return Poll::Ready(Err(timed_out(this.target)));
        }
        Poll::Ready(match ready!(this.asked.poll(cx)) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(source)) => Err(BackendError::unavailable(
                std::mem::take(this.target),
                source,
            )),
            Err(_) => Err(timed_out(this.target)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn a_call_past_its_deadline_is_never_started() {
        let started = AtomicBool::new(false);
        let asked = async {
            started.store(true, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        };
        let late = Instant::now() - Duration::from_millis(1);
        let error = within(late, Duration::from_millis(5), "owner".into(), asked)
            .await
            .unwrap_err();
        assert!(matches!(error, BackendError::Timeout { ref target, after }
            if target == "owner" && after == Duration::from_millis(5)));
        assert!(!started.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_first_polled_past_its_deadline_is_never_started() {
        let started = AtomicBool::new(false);
        let asked = async {
            started.store(true, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        };
        let deadline = Instant::now() + Duration::from_millis(5);
        let call = within(deadline, Duration::from_millis(5), "owner".into(), asked);
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(matches!(call.await, Err(BackendError::Timeout { .. })));
        assert!(!started.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_names_its_target_and_a_hang_times_out() {
        let soon = Instant::now() + Duration::from_millis(50);
        let failed = async { Err::<(), _>(std::io::Error::other("refused")) };
        let error = within(soon, Duration::from_millis(50), "owner".into(), failed).await;
        assert!(
            matches!(error, Err(BackendError::Unavailable { ref target, .. }) if target == "owner")
        );
        let hung = std::future::pending::<Result<(), std::io::Error>>();
        let error = within(soon, Duration::from_millis(50), "owner".into(), hung).await;
        assert!(matches!(error, Err(BackendError::Timeout { .. })));
    }
}
