//! The answering side of a handoff (`POST /handoff`, see `protocol`): counters taken in
//! or taken out, and members leaving or back.

use std::sync::{Arc, PoisonError};

use super::super::ClusterBackend;
use crate::backend::Held;
use crate::clock::Clock;
use crate::protocol::{decode_handoff_query, decode_held, decode_keys, encode_held, HandoffOp};

impl<C: Clock> ClusterBackend<C> {
    /// Answers a handoff asked by `query` with `body`: the answer's body, or why it is
    /// refused (nothing is taken in or out then).
    pub(crate) fn answer_handoff(&self, query: &str, body: &str) -> Result<String, String> {
        let (op, from) = decode_handoff_query(query).ok_or("bad handoff query")?;
        if from == *self.me {
            return Err(format!("{from} is this node"));
        }
        // Counters are given and taken by any node that has the peer secret (as checks
        // are forwarded by any): a node that just joined is not listed everywhere yet,
        // and one that just left no longer is. Only members listed here may change the
        // ring by leaving or coming back.
        let knows = || {
            let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
            members.knows(&from)
        };
        if matches!(op, HandoffOp::Leaving | HandoffOp::Joining) && !knows() {
            return Err(format!("{from} is not a member of this node's ring"));
        }
        match op {
            HandoffOp::Give { done } => {
                let taken = self.take_in_from(&from, body)?;
                if let (Some(ring), Some(transition)) = (done, &*self.handoff.transition.load()) {
                    transition.done_for(&from, ring);
                }
                Ok(format!("{taken}\n"))
            }
            HandoffOp::Take => {
                let to: Arc<str> = Arc::from(from.as_str());
                let mut answer = String::new();
                for key in decode_keys(body) {
                    let (serial, held) = self.handoff.hand(&key, &to);
                    if !held.is_empty() {
                        encode_held(&key, serial, &held, &mut answer);
                    }
                }
                Ok(answer)
            }
            HandoffOp::Leaving | HandoffOp::Joining => {
                self.heard(&from, op).map_err(|e| e.to_string())?;
                Ok(String::new())
            }
        }
    }

    /// Takes in the counters `from` gave, every line of `body` read before any is taken
    /// in; how many keys.
    fn take_in_from(&self, from: &str, body: &str) -> Result<usize, String> {
        let lines: Vec<(std::borrow::Cow<'_, str>, u64, Vec<Held>)> = body
            .lines()
            .take(crate::protocol::MAX_HANDOFF_KEYS + 1)
            .map(|line| decode_held(line).ok_or_else(|| format!("bad handoff line {line:?}")))
            .collect::<Result<_, _>>()?;
        if lines.len() > crate::protocol::MAX_HANDOFF_KEYS {
            return Err("too many keys in one handoff".into());
        }
        let transition = self.handoff.transition.load();
        let leaving = {
            let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
            members.leaving()
        };
        let mut not_mine = Vec::new();
        for (key, serial, held) in &lines {
            // Once, whether pushed or asked for; received for the change that waits.
            let awaiting = transition.as_ref().and_then(|t| t.awaiting(key, from));
            self.handoff.receive(from, key, *serial, held, awaiting);
            if leaving {
                not_mine.push(Box::<str>::from(&**key));
            }
        }
        // Counters given to a node that is leaving (by one that had not heard): on to
        // their owners, not lost when it stops.
        let topology = self.topology.load();
        if !not_mine.is_empty() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (handoff, ring) = (Arc::clone(&self.handoff), topology.ring.clone());
                runtime.spawn(async move { handoff.hand_on(&ring, not_mine).await });
            }
        }
        Ok(lines.len())
    }
}
