use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a backend could not decide.
///
/// The layer answers such a request with `503 Service Unavailable` by default. Cheap to
/// clone: the checks of one failed batch share one error.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum BackendError {
    /// The node or server holding the counter could not be reached or gave a bad answer.
    Unavailable {
        /// Which node or server (`host:port`, or a URL).
        target: String,
        /// What went wrong.
        source: Arc<dyn Error + Send + Sync>,
    },
    /// The node or server holding the counter did not answer in time.
    Timeout {
        /// Which node or server.
        target: String,
        /// How long was waited.
        after: Duration,
    },
    /// Recent checks at this node or server failed, so it was not asked (its circuit is
    /// open until a probe succeeds).
    CircuitOpen {
        /// Which node or server.
        target: String,
    },
    /// A check named more distinct policies than a backend keeps counters for (a name,
    /// an algorithm and a window make one policy).
    TooManyPolicies {
        /// The most a backend keeps.
        most: usize,
    },
    /// The node holding the counter answered, and refused the check (`400`: it named
    /// more policies than that node keeps, or one it cannot count). Not a failure of the
    /// node: its circuit stays closed, and the failure mode does not decide; the check
    /// stays undecided.
    Refused {
        /// Which node.
        target: String,
        /// What it said.
        reason: String,
    },
}

impl BackendError {
    /// Whether the node or server holding the counter could not be reached or did not
    /// answer in time (or was not asked: its circuit is open), rather than answering and
    /// refusing. Only such errors are the failure mode's to decide.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Timeout { .. } | Self::CircuitOpen { .. }
        )
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { target, source } => {
                write!(f, "rate limit owner {target} unavailable: {source}")
            }
            Self::Timeout { target, after } => {
                write!(
                    f,
                    "rate limit owner {target} did not answer within {after:?}"
                )
            }
            Self::CircuitOpen { target } => {
                write!(f, "rate limit owner {target} is failing: circuit open")
            }
            Self::Refused { target, reason } => {
                write!(f, "rate limit owner {target} refused the check: {reason}")
            }
            Self::TooManyPolicies { most } => {
                write!(
                    f,
                    "more than {most} distinct policies checked on one backend"
                )
            }
        }
    }
}

impl Error for BackendError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Unavailable { source, .. } => Some(&**source as &(dyn Error + 'static)),
            Self::Timeout { .. }
            | Self::CircuitOpen { .. }
            | Self::TooManyPolicies { .. }
            | Self::Refused { .. } => None,
        }
    }
}

#[cfg(any(feature = "cluster", feature = "redis"))]
impl BackendError {
    /// `target` could not answer, because of `source`.
    pub(crate) fn unavailable(
        target: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        let source: Box<dyn Error + Send + Sync> = source.into();
        Self::Unavailable {
            target: target.into(),
            source: Arc::from(source),
        }
    }
}
