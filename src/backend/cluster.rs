//! The cluster backend: the ring says who owns a key; the owner counts it in memory;
//! every other node asks the owner over pooled HTTP.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use http::uri::Authority;

use super::{Backend, BackendError, Check, MemoryBackend};
use crate::clock::{Clock, SystemClock};
use crate::peer::PeerClient;
use crate::{Decision, Policy, Ring};

/// How long a node waits for a key's owner by default.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_millis(250);

/// The future of a check forwarded to another node.
pub type PeerFuture = Pin<Box<dyn Future<Output = Result<Decision, BackendError>> + Send>>;

/// Counters spread over a ring of nodes: each key is counted only by its owner, so the
/// limit holds across the whole cluster.
///
/// Keys this node owns are decided in memory, synchronously. Others are forwarded to
/// their owner's peer endpoint ([`PeerEndpoint`](crate::peer::PeerEndpoint)) over pooled
/// keep-alive connections, marked so that the owner never forwards them again. An owner
/// that cannot answer within the peer timeout (default [`DEFAULT_PEER_TIMEOUT`]) makes the
/// check fail with a [`BackendError`], which the layer answers with `503`.
///
/// # Examples
///
/// ```
/// use ringlimit::{backend::ClusterBackend, Policy, Ring};
/// use std::{num::NonZeroU32, time::Duration};
///
/// let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
/// let ring = Ring::new(["10.0.0.1:7000", "10.0.0.2:7000"])?;
/// let backend = ClusterBackend::new(policy, "10.0.0.1:7000", ring.clone())?;
/// assert_eq!(backend.me(), "10.0.0.1:7000");
///
/// // A node that is not a member would forward everything, maybe to itself: refused.
/// let error = ClusterBackend::new(policy, "10.0.0.3:7000", ring).unwrap_err();
/// assert_eq!(error.to_string(), "this node (10.0.0.3:7000) is not a ring member: 10.0.0.1:7000, 10.0.0.2:7000");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClusterBackend<C = SystemClock> {
    me: Box<str>,
    ring: Ring,
    local: MemoryBackend<C>,
    client: PeerClient,
}

impl ClusterBackend {
    /// The backend of node `me` (its `host:port` exactly as listed in the ring).
    pub fn new(policy: Policy, me: impl Into<String>, ring: Ring) -> Result<Self, ClusterError> {
        let me = me.into();
        if !ring.contains(&me) {
            let members = ring.members().collect::<Vec<_>>().join(", ");
            return Err(ClusterError::NotAMember { me, members });
        }
        if let Some(bad) = ring.members().find(|m| Authority::from_str(m).is_err()) {
            return Err(ClusterError::BadMember(bad.to_owned()));
        }
        Ok(Self {
            me: me.into(),
            ring,
            local: MemoryBackend::new(policy),
            client: PeerClient::new(DEFAULT_PEER_TIMEOUT),
        })
    }
}

impl<C: Clock> ClusterBackend<C> {
    /// Waits at most `timeout` for an owner's answer (default [`DEFAULT_PEER_TIMEOUT`]).
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.client = PeerClient::new(timeout);
        self
    }

    /// Reads the time from `clock` instead (for tests).
    pub fn with_clock<C2: Clock>(self, clock: C2) -> ClusterBackend<C2> {
        ClusterBackend {
            me: self.me,
            ring: self.ring,
            local: self.local.with_clock(clock),
            client: self.client,
        }
    }

    /// This node's identity on the ring.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The ring this node routes by.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The counters of the keys this node has decided itself.
    pub fn local(&self) -> &MemoryBackend<C> {
        &self.local
    }

    fn forward(&self, owner: &str, key: &str, cost: u32) -> PeerFuture {
        let limit = self.local.policy().limit();
        // All nodes share the epoch-aligned windows, so the reset is known here too.
        let reset = self.local.reset_now();
        let answer = self.client.check(owner, key);
        Box::pin(async move {
            let answer = answer.await?;
            // The reference sends no counter state: assume the best on an allowed answer.
            let remaining = match answer.state.remaining {
                Some(remaining) => remaining.min(limit),
                None if answer.allowed => limit.saturating_sub(cost),
                None => 0,
            };
            Ok(Decision {
                allowed: answer.allowed,
                limit,
                remaining,
                reset: answer.state.reset.unwrap_or(reset),
            })
        })
    }
}

impl<C: Clock> Backend for ClusterBackend<C> {
    type Future = PeerFuture;

    fn policy(&self) -> Policy {
        self.local.policy()
    }

    fn check(&self, key: &str, cost: u32) -> Check<PeerFuture> {
        let owner = self.ring.owner(key);
        if owner == &*self.me {
            Check::Ready(Ok(self.local.decide(key, cost)))
        } else {
            Check::Pending(self.forward(owner, key, cost))
        }
    }

    fn check_forwarded(&self, key: &str, cost: u32) -> Check<PeerFuture> {
        Check::Ready(Ok(self.local.decide(key, cost)))
    }
}

impl<C: fmt::Debug> fmt::Debug for ClusterBackend<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterBackend")
            .field("me", &self.me)
            .field("ring", &self.ring)
            .field("local", &self.local)
            .field("peer_timeout", &self.client.timeout())
            .finish_non_exhaustive()
    }
}

/// Why a cluster backend could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterError {
    /// This node's identity is not one of the ring's members.
    NotAMember {
        /// This node's identity.
        me: String,
        /// The members, comma-separated.
        members: String,
    },
    /// A member is not a valid `host:port`.
    BadMember(String),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAMember { me, members } => {
                write!(f, "this node ({me}) is not a ring member: {members}")
            }
            Self::BadMember(member) => {
                write!(f, "ring member {member:?} is not a valid host:port")
            }
        }
    }
}

impl std::error::Error for ClusterError {}
