//! The consistent-hash ring that says which node owns a key. Pure: no I/O.
//!
//! Placement is part of the wire protocol, so every node computes it alike: members are
//! hashed as given with MD5 (read as a big-endian `u128`), each member gets `replicas`
//! points `"{member}-{i}"`, and a key belongs to the first point at or after its hash,
//! wrapping past the last.
//!
//! # Examples
//!
//! ```
//! use ringlimit::Ring;
//!
//! let ring = Ring::new(["10.0.0.1:4000", "10.0.0.2:4000"])?;
//! let owner = ring.owner("alice");
//! assert!(ring.contains(owner));
//! // Every node with the same members finds the same owner.
//! assert_eq!(Ring::new(["10.0.0.1:4000", "10.0.0.2:4000"])?.owner("alice"), owner);
//! # Ok::<(), ringlimit::ring::RingError>(())
//! ```

use std::fmt;
use std::sync::Arc;

use md5::{Digest, Md5};

/// Virtual nodes per member; every node of a ring must use the same number.
pub const DEFAULT_REPLICAS: u32 = 100;

/// MD5 of the UTF-8 bytes of `s`, read as a big-endian unsigned 128-bit integer.
pub(crate) fn hash(s: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(s.as_bytes()).into())
}

/// A consistent-hash ring over `host:port` members.
///
/// # Examples
///
/// ```
/// use ringlimit::Ring;
///
/// let ring = Ring::new(["localhost:5000", "localhost:5001", "localhost:5002"])?;
/// assert_eq!(ring.owner("alice"), "localhost:5002");
/// assert_eq!(ring.owner("bob"), "localhost:5001");
/// # Ok::<(), ringlimit::ring::RingError>(())
/// ```
#[derive(Clone)]
pub struct Ring {
    members: Arc<[Box<str>]>,
    /// `(hash, member index)`, sorted by hash; equal hashes keep insertion order.
    points: Arc<[(u128, u32)]>,
}

impl Ring {
    /// A ring with [`DEFAULT_REPLICAS`] points per member.
    pub fn new<I, M>(members: I) -> Result<Self, RingError>
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        Self::with_replicas(members, DEFAULT_REPLICAS)
    }

    /// A ring with `replicas` points per member. Every node of a ring must use the same
    /// members, in the same order, and the same `replicas`.
    pub fn with_replicas<I, M>(members: I, replicas: u32) -> Result<Self, RingError>
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        let members: Vec<Box<str>> = members
            .into_iter()
            .map(|m| m.into().into_boxed_str())
            .collect();
        validate(&members, replicas)?;
        let mut points = Vec::with_capacity(members.len() * replicas as usize);
        for (index, member) in members.iter().enumerate() {
            let index = u32::try_from(index).map_err(|_| RingError::TooManyMembers)?;
            for i in 0..replicas {
                points.push((hash(&format!("{member}-{i}")), index));
            }
        }
        // A stable sort keeps insertion order among equal hashes, as the contract says.
        points.sort_by_key(|&(h, _)| h);
        Ok(Self {
            members: members.into(),
            points: points.into(),
        })
    }

    /// The member that owns `key`.
    pub fn owner(&self, key: &str) -> &str {
        // Every point of a one-member ring is that member's: no hash needed.
        if let [only] = &*self.members {
            return only;
        }
        let h = hash(key);
        let at = self.points.partition_point(|&(p, _)| p < h);
        let (_, member) = self.points[at % self.points.len()];
        &self.members[member as usize]
    }

    /// The members, in the order given.
    pub fn members(&self) -> impl ExactSizeIterator<Item = &str> {
        self.members.iter().map(|m| &**m)
    }

    /// One number for the members in their order: two nodes with the same fingerprint
    /// route alike (a handoff says which ring it was for by it).
    pub(crate) fn fingerprint(&self) -> u64 {
        (hash(&self.members.join("\n")) >> 64) as u64
    }

    /// Whether `member` is one of the members (compared exactly as given).
    pub fn contains(&self, member: &str) -> bool {
        self.members.iter().any(|m| &**m == member)
    }
}

fn validate(members: &[Box<str>], replicas: u32) -> Result<(), RingError> {
    if members.is_empty() {
        return Err(RingError::NoMembers);
    }
    if replicas == 0 {
        return Err(RingError::NoReplicas);
    }
    for (i, m) in members.iter().enumerate() {
        if m.is_empty() {
            return Err(RingError::EmptyMember);
        }
        if members[..i].contains(m) {
            return Err(RingError::DuplicateMember(m.to_string()));
        }
    }
    Ok(())
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("members", &self.members)
            .field("points", &self.points.len())
            .finish()
    }
}

/// Why a ring could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingError {
    /// The member list is empty.
    NoMembers,
    /// `replicas` is zero.
    NoReplicas,
    /// A member is the empty string.
    EmptyMember,
    /// A member is listed twice.
    DuplicateMember(String),
    /// More members than a `u32` can count.
    TooManyMembers,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMembers => f.write_str("the ring needs at least one member"),
            Self::NoReplicas => f.write_str("the ring needs at least one point per member"),
            Self::EmptyMember => f.write_str("a ring member is empty (expected host:port)"),
            Self::DuplicateMember(m) => write!(f, "ring member {m:?} is listed twice"),
            Self::TooManyMembers => f.write_str("too many ring members"),
        }
    }
}

impl std::error::Error for RingError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_ring() -> Ring {
        Ring::new(["localhost:5000", "localhost:5001", "localhost:5002"]).unwrap()
    }

    #[test]
    fn hash_matches_the_reference() {
        assert_eq!(hash("alice"), 0x6384e2b2184bcbf58eccf10ca7a6563c);
    }

    #[test]
    fn owners_match_the_reference_vectors() {
        let ring = reference_ring();
        for (key, owner) in [
            ("alice", "localhost:5002"),
            ("bob", "localhost:5001"),
            ("carol", "localhost:5001"),
            ("dave", "localhost:5002"),
            ("a&user_id=b", "localhost:5000"),
            ("é", "localhost:5002"),
        ] {
            assert_eq!(ring.owner(key), owner, "owner of {key:?}");
        }
    }

    #[test]
    fn a_key_past_the_last_point_wraps_to_the_first() {
        let ring = reference_ring();
        let last = ring.points.last().unwrap().0;
        let first_owner = &*ring.members[ring.points[0].1 as usize];
        // Find a key hashing past the last point; about 1 in 300 keys does.
        let key = (0..100_000)
            .map(|i| format!("k{i}"))
            .find(|k| hash(k) > last)
            .expect("some key hashes past the last point");
        assert_eq!(ring.owner(&key), first_owner);
    }

    #[test]
    fn each_member_gets_its_share() {
        let ring = reference_ring();
        let mut counts = [0u32; 3];
        for i in 0..3000 {
            let owner = ring.owner(&format!("user{i}"));
            counts[ring.members().position(|m| m == owner).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 500), "{counts:?}");
    }

    #[test]
    fn a_one_member_ring_owns_every_key_without_hashing() {
        let ring = Ring::new(["only:1"]).unwrap();
        for key in ["alice", "a&user_id=b", "é", ""] {
            // What the points say (the path a ring of more members takes).
            let at = ring.points.partition_point(|&(p, _)| p < hash(key));
            let by_points = &*ring.members[ring.points[at % ring.points.len()].1 as usize];
            assert_eq!(ring.owner(key), by_points);
            assert_eq!(ring.owner(key), "only:1");
        }
    }

    #[test]
    fn bad_member_lists_are_refused() {
        assert_eq!(
            Ring::new(Vec::<String>::new()).unwrap_err(),
            RingError::NoMembers
        );
        assert_eq!(
            Ring::new(["a:1", "a:1"]).unwrap_err(),
            RingError::DuplicateMember("a:1".into())
        );
        assert_eq!(Ring::new([""]).unwrap_err(), RingError::EmptyMember);
        assert_eq!(
            Ring::with_replicas(["a:1"], 0).unwrap_err(),
            RingError::NoReplicas
        );
    }
}
