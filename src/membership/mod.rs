//! Where a node's members come from, and how each new list reaches its ring.
//!
//! A [`MembershipSource`] yields member lists as they change: [`StaticMembers`] (a list
//! given once), [`MembersFile`] (a file re-read on `SIGHUP` and whenever it changes),
//! [`DnsMembers`] (a name resolving to every member, as a Kubernetes headless service
//! does), or any source of your own (a service registry). [`follow`] applies each list to a
//! [`ClusterBackend`], the same way
//! [`set_members`](crate::ClusterBackend::set_members) does from your own code: an empty
//! list is refused and logged, a list without this node is refused (the ring stays as
//! it was; until counters can be handed over, a node does not leave a ring this way), and
//! each ring applied is logged at `info`. Every node must list the members alike; their
//! order matters only between two ring points of equal hash.
//!
//! # Examples
//!
//! ```
//! use ringlimit::membership::{follow, StaticMembers};
//! use ringlimit::{ClusterBackend, Policy, Ring};
//! use std::{num::NonZeroU32, sync::Arc, time::Duration};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let policy = Policy::per_window(NonZeroU32::new(5).unwrap(), Duration::from_secs(60));
//! let backend = Arc::new(ClusterBackend::new(policy, "a:1", Ring::new(["a:1"]).unwrap()).unwrap());
//! follow(backend.clone(), StaticMembers::new(["a:1", "b:2"])).await;
//! assert_eq!(backend.ring().members().count(), 2);
//! # }
//! ```

mod dns;
mod dns_query;
mod file;

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub use self::dns::{DnsMembers, DEFAULT_DNS_INTERVAL};
pub use self::file::{MembersFile, DEFAULT_FILE_INTERVAL};
use crate::clock::Clock;
use crate::ClusterBackend;

/// The shortest interval the sources here look again at: a zero one would read a file,
/// or ask DNS, without pause.
pub(crate) const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Member lists, as they change.
pub trait MembershipSource: Send + 'static {
    /// The next list of members (`host:port` each), when it differs from the last one;
    /// `Err` when the source cannot say (it is logged, and the ring stays as it is);
    /// `None` when the source has ended. It resolves only once something changed (or
    /// after waiting): [`follow`] calls it again at once.
    fn next_members(
        &mut self,
    ) -> impl Future<Output = Option<Result<Vec<String>, MembershipError>>> + Send;
}

/// Why a source could not say who the members are.
#[derive(Debug)]
pub struct MembershipError {
    what: String,
    source: Box<dyn Error + Send + Sync>,
}

impl MembershipError {
    /// `what` failed (say, "cannot read /etc/ringlimit/members"), because of `source`.
    pub fn new(what: impl Into<String>, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl Error for MembershipError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// The last result a polling source yielded, to yield only what changed: the members,
/// or the error's text (an error is reported once, until it changes or the source
/// works again).
type Seen = Option<Result<Vec<String>, String>>;

/// What `read` is remembered as: the members, or the error's text.
fn as_seen(read: &Result<Vec<String>, MembershipError>) -> Result<Vec<String>, String> {
    match read {
        Ok(members) => Ok(members.clone()),
        Err(error) => Err(error.to_string()),
    }
}

/// `read`, if it differs from what was `seen` last (which it then becomes).
fn changed(
    seen: &mut Seen,
    read: Result<Vec<String>, MembershipError>,
) -> Option<Result<Vec<String>, MembershipError>> {
    let now = as_seen(&read);
    if seen.as_ref() == Some(&now) {
        return None;
    }
    *seen = Some(now);
    Some(read)
}

/// A list given once: the source yields it, then ends.
#[derive(Clone, Debug)]
pub struct StaticMembers(Option<Vec<String>>);

impl StaticMembers {
    /// The source of `members`.
    pub fn new<I, M>(members: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        Self(Some(members.into_iter().map(Into::into).collect()))
    }
}

impl MembershipSource for StaticMembers {
    async fn next_members(&mut self) -> Option<Result<Vec<String>, MembershipError>> {
        self.0.take().map(Ok)
    }
}

/// Applies every list `source` yields to `backend`'s ring, until the source ends. An
/// empty list or an error of the source is logged at `warn` and changes nothing; a list
/// equal to the ring in force is skipped. A list without this node means this node is
/// leaving: it [leaves](ClusterBackend::leave) the ring for the members listed (handing
/// its counters over and sending later checks on to their owners), and `follow` ends.
pub async fn follow<C, S>(backend: Arc<ClusterBackend<C>>, mut source: S)
where
    C: Clock,
    S: MembershipSource,
{
    // Whether this node left the ring because a list went without it.
    let mut left = false;
    while let Some(next) = source.next_members().await {
        let me = backend.me();
        let members = match next {
            Ok(members) => members,
            Err(error) => {
                tracing::warn!(node = me, %error, "ringlimit: cannot read the members; keeping the ring in force");
                // A source that fails at once every time must not hold the thread.
                tokio::task::yield_now().await;
                continue;
            }
        };
        if members.is_empty() {
            tracing::warn!(
                node = me,
                "ringlimit: an empty member list is refused; keeping the ring in force"
            );
            tokio::task::yield_now().await;
            continue;
        }
        if backend
            .ring()
            .members()
            .eq(members.iter().map(String::as_str))
        {
            continue;
        }
        let listed = members.iter().any(|m| m == me);
        if !listed && !left {
            // Taken out of the ring: this node leaves it, handing its counters over.
            let handed = backend.leave_to(members).await;
            tracing::info!(
                node = me,
                keys = handed,
                "ringlimit: not a member any more; left the ring"
            );
            left = true;
            continue;
        }
        if left {
            if listed {
                // Listed again (a readiness probe that flapped, say): back in the ring.
                match backend.rejoin(members).await {
                    Ok(()) => left = false,
                    Err(error) => {
                        tracing::warn!(node = me, %error, "ringlimit: member list refused")
                    }
                }
            }
            continue; // still out: nothing of the ring is this node's to change
        }
        match backend.set_members(members) {
            Ok(()) => {
                let ring = backend.ring();
                let now: Vec<&str> = ring.members().collect();
                tracing::info!(node = me, members = %now.join(","), "ringlimit: members changed");
            }
            Err(error) => {
                tracing::warn!(node = me, %error, "ringlimit: member list refused; keeping the ring in force");
            }
        }
    }
}

/// The members a text lists: one `host:port` a line; blank lines and `#` comments are
/// skipped, and so are spaces around a member.
pub fn parse_members(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}
