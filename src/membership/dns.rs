//! Members found in DNS: a name that resolves to every member's address, as a
//! Kubernetes headless service does, resolved again every few seconds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{MembershipError, MembershipSource};

/// How often a [`DnsMembers`] resolves its name again by default.
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(5);

/// Every address `name` resolves to (through the system's resolver), each with `port`,
/// as members: `ip:port`, `[ipv6]:port`, sorted, so that every node that resolves the
/// same addresses builds the same ring. Resolved at once, then every
/// [`interval`](Self::interval); a list is yielded only when it differs from the last,
/// and a failure is reported once, until resolving works again.
///
/// Each node must be known on the ring by the address the name resolves to for it (its
/// `ip:port`).
#[derive(Debug)]
pub struct DnsMembers {
    name: String,
    port: u16,
    interval: Duration,
    /// Only addresses of this family (true: IPv4), if set.
    family: Option<bool>,
    seen: super::Seen,
}

impl DnsMembers {
    /// The members `name` resolves to, each on `port`.
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            port,
            interval: DEFAULT_DNS_INTERVAL,
            family: None,
            seen: None,
        }
    }

    /// Resolves again every `interval` (default [`DEFAULT_DNS_INTERVAL`]; at least
    /// 100 ms).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(super::MIN_INTERVAL);
        self
    }

    /// Keeps only the addresses of `like`'s family (IPv4 or IPv6): a node listening on
    /// IPv4 alone whose name also has AAAA records must not have members no one listens
    /// on. Give it this node's own address.
    #[must_use]
    pub fn family(mut self, like: IpAddr) -> Self {
        self.family = Some(like.is_ipv4());
        self
    }

    /// The members the name resolves to now.
    pub async fn resolve(&self) -> Result<Vec<String>, MembershipError> {
        let found = tokio::net::lookup_host((self.name.as_str(), self.port))
            .await
            .map_err(|e| MembershipError::new(format!("cannot resolve {}", self.name), e))?;
        let family = self.family;
        let mut members: Vec<String> = found
            .filter(|address: &SocketAddr| family.is_none_or(|v4| address.is_ipv4() == v4))
            .map(|address| address.to_string())
            .collect();
        members.sort();
        members.dedup();
        Ok(members)
    }
}

impl MembershipSource for DnsMembers {
    async fn next_members(&mut self) -> Option<Result<Vec<String>, MembershipError>> {
        loop {
            if self.seen.is_some() {
                tokio::time::sleep(self.interval).await;
            }
            let resolved = self.resolve().await;
            if let Some(changed) = super::changed(&mut self.seen, resolved) {
                return Some(changed);
            }
        }
    }
}
