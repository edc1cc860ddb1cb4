//! The check script for each algorithm: fixed windows have a script of their own (its
//! key layout and reply predate the others); the sliding window and GCRA share the
//! algorithms' Lua twin (`algorithms.lua`) and one main part (`check_state.lua`).

use redis::Script;

use crate::policy::Algorithm;

/// A check script, and how it lays out its reply.
#[derive(Debug)]
pub(super) struct CheckScript {
    pub(super) script: Script,
    /// `{allowed, used, ms}` per key; otherwise `{reset ms, (allowed, used) per key}`.
    pub(super) per_key_reply: bool,
}

/// The number the Lua scripts know `algorithm` by.
pub(super) fn script_id(algorithm: Algorithm) -> u8 {
    match algorithm {
        Algorithm::FixedWindow => 1,
        Algorithm::SlidingWindow => 2,
        Algorithm::Gcra => 3,
    }
}

impl CheckScript {
    /// The script of a check against a set of policies (`check_set.lua`).
    pub(super) fn for_sets() -> Self {
        let source = format!(
            "{}\n{}",
            include_str!("algorithms.lua"),
            include_str!("check_set.lua")
        );
        Self {
            script: Script::new(&source),
            per_key_reply: true,
        }
    }

    pub(super) fn for_algorithm(algorithm: Algorithm) -> Self {
        if algorithm == Algorithm::FixedWindow {
            return Self {
                script: Script::new(include_str!("check.lua")),
                per_key_reply: false,
            };
        }
        let id = script_id(algorithm);
        let source = format!(
            "{}\nlocal algorithm_id = {id}\n{}",
            include_str!("algorithms.lua"),
            include_str!("check_state.lua")
        );
        Self {
            script: Script::new(&source),
            per_key_reply: true,
        }
    }
}
