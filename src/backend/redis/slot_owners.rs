//! Which master of a Redis Cluster serves each slot, as far as this node knows, and a
//! connection of its own to each master: the map is read from `CLUSTER SLOTS` in the
//! background, so that each master's checks can queue apart and go to it as one
//! pipeline (see `queues`). A stale map costs a redirect, never a wrong count: a call
//! sent to a master that does not serve its key's slot is answered `MOVED` (or `ASK`)
//! without running, and goes again alone through the cluster client, which follows the
//! redirect.
//!
//! Own connections, not the cluster client's: that client treats a redirect of any call
//! of a pipeline as the whole pipeline's, and would lose the answers of the calls that
//! ran.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use redis::{ConnectionAddr, ConnectionInfo, RedisResult, Value};
use tokio::time::Instant;

use super::connection::manager_config;

/// Slots of a Redis Cluster.
const SLOTS: u16 = 16384;
/// Masters told apart at most (Redis Cluster is meant for up to about a thousand nodes).
/// The slots of any beyond them stay unknown: their checks go alone.
const MAX_MASTERS: usize = 1000;
/// Reads of the map at most one per this: a burst of redirects asks once.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// A master's host and port.
pub(super) type Address = (String, u16);

/// Each slot's master, and a connection to each.
pub(super) struct SlotMap {
    /// An index into `masters`, if the slot's master is known.
    owners: Box<[Option<u16>]>,
    masters: Vec<Master>,
}

struct Master {
    address: Address,
    connection: ConnectionManager,
}

impl SlotMap {
    /// The master that serves `slot` (from [`slot_of`]), if known.
    pub(super) fn master_of(&self, slot: u16) -> Option<u16> {
        self.owners.get(usize::from(slot)).copied().flatten()
    }

    /// How many masters the map names (at most [`MAX_MASTERS`]).
    pub(super) fn masters(&self) -> u16 {
        self.masters.len() as u16
    }

    /// The host and port of `master`.
    pub(super) fn address(&self, master: u16) -> &Address {
        &self.masters[usize::from(master)].address
    }

    /// The connection to `master` (an index from [`master_of`](Self::master_of)).
    pub(super) fn connection(&self, master: u16) -> ConnectionManager {
        self.masters[usize::from(master)].connection.clone()
    }
}

/// The map as last read, and when it was last asked for.
pub(super) struct SlotOwners {
    /// How to connect to a master, but for its address.
    base: ConnectionInfo,
    map: ArcSwapOption<SlotMap>,
    refreshing: AtomicBool,
    last_asked: Mutex<Option<Instant>>,
}

impl SlotOwners {
    /// No map yet; masters are connected to as `base` says, at their own address.
    pub(super) fn new(base: ConnectionInfo) -> Self {
        Self {
            base,
            map: ArcSwapOption::empty(),
            refreshing: AtomicBool::new(false),
            last_asked: Mutex::new(None),
        }
    }

    /// The map, if one has been read.
    pub(super) fn current(&self) -> Option<Arc<SlotMap>> {
        self.map.load_full()
    }

    /// The map, borrowed: what every check reads, without touching the map's count.
    pub(super) fn borrowed(&self) -> arc_swap::Guard<Option<Arc<SlotMap>>> {
        self.map.load()
    }

    /// Whether to read the map again now: not while a read is under way, nor within a
    /// second of the last. If so, the read is the caller's until it calls
    /// [`end_refresh`](Self::end_refresh).
    pub(super) fn claim_refresh(&self) -> bool {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return false;
        }
        let mut last = self
            .last_asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < REFRESH_AT_MOST_EVERY) {
            self.end_refresh();
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// The read claimed by [`claim_refresh`](Self::claim_refresh) is over.
    pub(super) fn end_refresh(&self) {
        self.refreshing.store(false, Ordering::Release);
    }

    /// Keeps the map of a `CLUSTER SLOTS` reply, with the connections of the masters
    /// already known (made lazily for the others).
    pub(super) fn store(&self, reply: &Value) -> RedisResult<()> {
        let (owners, addresses) = owners_of(reply);
        let previous = self.current();
        let known = |address: &Address| {
            let masters = previous.as_deref().map_or(&[][..], |map| &map.masters);
            let master = masters.iter().find(|master| master.address == *address)?;
            Some(master.connection.clone())
        };
        let mut masters = Vec::with_capacity(addresses.len());
        for address in addresses {
            let connection = match known(&address) {
                Some(connection) => connection,
                None => {
                    let info = self.base.clone().set_addr(self.at(&address));
                    redis::Client::open(info)?.get_connection_manager_lazy(manager_config())?
                }
            };
            masters.push(Master {
                address,
                connection,
            });
        }
        self.map.store(Some(Arc::new(SlotMap { owners, masters })));
        Ok(())
    }

    /// The master at `address`, reached as the first node given was: over TLS if it was.
    fn at(&self, (host, port): &Address) -> ConnectionAddr {
        let (host, port) = (host.clone(), *port);
        match self.base.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        }
    }
}

/// The slot of `key`: CRC16 of its hash tag (the part in the first `{...}`, if not
/// empty), or of the whole key.
pub(super) fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16_xmodem(tagged.unwrap_or(key)) % SLOTS
}

/// CRC16-CCITT (XMODEM), Redis Cluster's key hash. Bit by bit: keys are short.
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = match crc & 0x8000 {
                0 => crc << 1,
                _ => (crc << 1) ^ 0x1021,
            };
        }
    }
    crc
}

/// Each slot's master in a `CLUSTER SLOTS` reply (`[[start, end, [host, port, ..],
/// replicas..], ..]`), as an index into the masters' addresses. Ranges out of bounds,
/// entries of another shape, and masters without a host (a node that does not know its
/// own address) are skipped: their slots stay unknown. Only the first 16384 entries are
/// read (a slot each at most).
fn owners_of(reply: &Value) -> (Box<[Option<u16>]>, Vec<Address>) {
    let mut owners = vec![None; usize::from(SLOTS)];
    let mut masters: Vec<Address> = Vec::new();
    let ranges = match reply {
        Value::Array(ranges) => &ranges[..],
        _ => &[],
    };
    for range in ranges.iter().take(usize::from(SLOTS)) {
        let Value::Array(range) = range else { continue };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(master)) =
            (range.first(), range.get(1), range.get(2))
        else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::try_from(*start), usize::try_from(*end)) else {
            continue;
        };
        if start > end || end >= owners.len() {
            continue;
        }
        let Some(address) = address_of(master) else {
            continue;
        };
        let index = match masters.iter().position(|known| *known == address) {
            Some(index) => index,
            None if masters.len() < MAX_MASTERS => {
                masters.push(address);
                masters.len() - 1
            }
            None => continue,
        };
        owners[start..=end].fill(u16::try_from(index).ok());
    }
    (owners.into(), masters)
}

/// A master's host and port, if it names both.
fn address_of(master: &Value) -> Option<Address> {
    let Value::Array(fields) = master else {
        return None;
    };
    let (Some(Value::BulkString(host)), Some(Value::Int(port))) = (fields.first(), fields.get(1))
    else {
        return None;
    };
    let host = String::from_utf8(host.clone()).ok()?;
    let port = u16::try_from(*port).ok().filter(|&port| port > 0)?;
    (!host.is_empty() && host != "?").then_some((host, port))
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::{crc16_xmodem, owners_of, slot_of};

    #[test]
    fn slots_are_redis_clusters() {
        // The CRC's check value, and slots as `CLUSTER KEYSLOT` gives them.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"ringlimit:{foo}"), 12182, "the hash tag alone");
        assert_eq!(slot_of(b"{}foo"), 9500, "an empty tag is no tag");
        assert_eq!(slot_of(b"a{foo"), 113, "an open tag is no tag");
    }

    fn master(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.into()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(start: i64, end: i64, master: Value) -> Value {
        Value::Array(vec![Value::Int(start), Value::Int(end), master])
    }

    #[test]
    fn each_range_goes_to_its_master_and_nonsense_is_skipped() {
        let reply = Value::Array(vec![
            range(0, 99, master("h", 1)),
            range(100, 199, master("h", 2)),
            range(200, 200, master("h", 1)),
            range(16000, 16383, master("g", 1)),
            // Out of bounds: skipped, not a panic.
            range(16383, 99999, master("h", 1)),
            range(-5, -1, master("h", 1)),
            range(400, 399, master("h", 1)),
            // No host, no port: unknown.
            range(300, 300, master("", 3)),
            range(301, 301, master("h", 70000)),
            Value::Array(vec![Value::Int(302)]),
            Value::Int(7),
        ]);
        let (owners, masters) = owners_of(&reply);
        assert_eq!(owners.len(), 16384);
        let address = |slot: usize| owners[slot].map(|i| masters[usize::from(i)].clone());
        assert_eq!(address(399), None);
        let at = |host: &str, port| Some((host.to_owned(), port));
        assert_eq!((address(0), address(99)), (at("h", 1), at("h", 1)));
        assert_eq!(address(100), at("h", 2));
        assert_eq!(owners[200], owners[0], "the same master, the same index");
        assert_eq!(address(201), None, "no range, no owner");
        assert_eq!((address(16000), address(16383)), (at("g", 1), at("g", 1)));
        assert_eq!((address(300), address(301)), (None, None));
        assert_eq!(masters.len(), 3);
        assert!(owners_of(&Value::Nil).0.iter().all(Option::is_none));
    }
}
