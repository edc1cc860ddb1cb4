//! Members found in DNS: a name that resolves to every member's address, as a
//! Kubernetes headless service does, resolved again every few seconds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{MembershipError, MembershipSource};

/// How long a DNS server given to [`DnsMembers::server`] has to answer each question.
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// The DNS server asked instead of the system's resolver, if set.
    server: Option<SocketAddr>,
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
            server: None,
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

    /// Asks the DNS server at `server` (UDP, each question answered within 2 s) for the
    /// name's A and AAAA records, instead of the system's resolver: a cluster's own DNS
    /// server, or one on loopback in a test. The name is asked as given (no search
    /// domains).
    #[must_use]
    pub fn server(mut self, server: SocketAddr) -> Self {
        self.server = Some(server);
        self
    }

    /// The members the name resolves to now.
    pub async fn resolve(&self) -> Result<Vec<String>, MembershipError> {
        let cannot = |e| MembershipError::new(format!("cannot resolve {}", self.name), e);
        let found: Vec<SocketAddr> = match self.server {
            None => tokio::net::lookup_host((self.name.as_str(), self.port))
                .await
                .map_err(cannot)?
                .collect(),
            Some(server) => {
                super::dns_query::addresses(server, &self.name, self.family, DNS_TIMEOUT)
                    .await
                    .map_err(cannot)?
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, self.port))
                    .collect()
            }
        };
        let family = self.family;
        let mut members: Vec<String> = found
            .into_iter()
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
