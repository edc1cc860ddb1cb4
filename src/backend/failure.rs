//! What a node does when the place that holds a key's counter (the owner node, or Redis)
//! cannot answer in time.

use std::fmt;
use std::str::FromStr;

use super::{BackendError, MemoryBackend};
use crate::clock::Clock;
use crate::policy::PolicySet;
use crate::{Decision, Decisions};

/// The failure mode of a remote backend.
///
/// The default is [`Local`](FailureMode::Local): the service keeps answering and users
/// stay limited, at worst `nodes × limit` per window while the owner is unreachable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureMode {
    /// Fail open: let the request through uncounted.
    Allow,
    /// Fail closed: answer `503 Service Unavailable`.
    Deny,
    /// Count the request on this node, with the same policy, until the owner is back.
    #[default]
    Local,
}

impl FromStr for FailureMode {
    type Err = UnknownFailureMode;

    /// Parses `allow`, `deny` or `local`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            "local" => Ok(Self::Local),
            _ => Err(UnknownFailureMode(s.to_owned())),
        }
    }
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Local => "local",
        })
    }
}

/// The answer for `key` when the remote holder of its counter failed with `error`, per
/// `mode`; `local` counts it under [`FailureMode::Local`]. Never waits.
pub(crate) fn fail<C: Clock>(
    mode: FailureMode,
    local: &MemoryBackend<C>,
    key: &str,
    policies: &PolicySet,
    error: BackendError,
) -> Result<Decisions, BackendError> {
    match mode {
        FailureMode::Allow => {
            let now = local.now();
            Ok(Decisions::from_fn(policies, |_, policy| {
                let limit = policy.limit();
                let remaining = limit.saturating_sub(policy.cost().get());
                Decision::new(true, limit, remaining, policy.reset_at(now))
            }))
        }
        FailureMode::Deny => Err(error),
        FailureMode::Local => local.decide_all(key, policies),
    }
    .map(|decisions| decisions.decided_by(mode))
}

/// A failure mode name that is not `allow`, `deny` or `local`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFailureMode(String);

impl fmt::Display for UnknownFailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown failure mode {:?} (expected allow, deny or local)",
            self.0
        )
    }
}

impl std::error::Error for UnknownFailureMode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_three_modes() {
        for mode in [FailureMode::Allow, FailureMode::Deny, FailureMode::Local] {
            assert_eq!(mode.to_string().parse::<FailureMode>(), Ok(mode));
        }
        assert_eq!(FailureMode::default(), FailureMode::Local);
        assert_eq!(
            "open".parse::<FailureMode>().unwrap_err().to_string(),
            "unknown failure mode \"open\" (expected allow, deny or local)"
        );
    }
}
