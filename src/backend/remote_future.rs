//! The future of a check that waits for another node or for Redis.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::BackendError;
use crate::Decisions;

/// The future of a check answered remotely (by a key's owner, or by Redis): the
/// [`Backend::Future`](super::Backend::Future) of [`ClusterBackend`](super::ClusterBackend)
/// and `RedisBackend`. It always ends in a decision or an error, within the backend's
/// timeout, when it is `.await`ed: a Tokio worker thread that blocks on it instead
/// (`futures::executor::block_on` inside a task) may hold up the queue that answers it.
#[must_use = "futures do nothing unless polled"]
pub struct RemoteFuture {
    inner: Pin<Box<dyn Future<Output = Result<Decisions, BackendError>> + Send>>,
}

impl RemoteFuture {
    pub(crate) fn new(
        future: impl Future<Output = Result<Decisions, BackendError>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Box::pin(future),
        }
    }
}

impl Future for RemoteFuture {
    type Output = Result<Decisions, BackendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for RemoteFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFuture").finish_non_exhaustive()
    }
}
