use std::fmt;

/// Why a cluster backend could not be built, or its members not replaced.
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
    /// The member list itself is unusable (empty, or a member listed twice).
    Ring(crate::ring::RingError),
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
            Self::Ring(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ClusterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Ring(error) => Some(error),
            _ => None,
        }
    }
}

impl From<crate::ring::RingError> for ClusterError {
    fn from(error: crate::ring::RingError) -> Self {
        Self::Ring(error)
    }
}
