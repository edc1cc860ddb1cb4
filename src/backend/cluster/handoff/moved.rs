//! Keys this node handed to another node: their checks go there, and what was handed is
//! kept a while, so that the new owner gets it again if it asks (its own ask and this
//! node's push may cross).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::Held;

/// How long a key handed over is remembered: long enough for every member to learn of
/// the new ring (a members file is looked at every 2 s, DNS every 5 s) and for the new
/// owner to ask.
pub const MOVED_FOR: Duration = Duration::from_secs(30);

/// The most keys remembered as handed over (a few hundred MB at most): a node holds
/// at most its key cap per policy, and peers choose which keys they ask for.
pub(crate) const MOST_MOVED: usize = 4 << 20;

/// Where a key went, and what went with it.
#[derive(Clone, Debug)]
pub(crate) struct Moved {
    pub(crate) to: Arc<str>,
    /// Names this handing over: sent twice, the counters are taken in once.
    pub(crate) serial: u64,
    pub(crate) held: Vec<Held>,
    at: Instant,
}

/// The keys handed over in the last [`MOVED_FOR`].
#[derive(Debug, Default)]
pub(crate) struct MovedKeys {
    /// How many there are: a check reads only this while there are none.
    count: AtomicUsize,
    keys: Mutex<HashMap<Box<str>, Moved, foldhash::fast::RandomState>>,
}

impl MovedKeys {
    /// Whether any key is remembered as handed over.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }

    /// Where `key` went, if it was handed over lately.
    #[inline]
    pub(crate) fn to(&self, key: &str) -> Option<Arc<str>> {
        if !self.any() {
            return None;
        }
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let moved = keys.get(key)?;
        (moved.at.elapsed() < MOVED_FOR).then(|| Arc::clone(&moved.to))
    }

    /// What was handed over of `key`, and to whom.
    pub(crate) fn get(&self, key: &str) -> Option<Moved> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let moved = keys.get(key)?;
        (moved.at.elapsed() < MOVED_FOR).then(|| moved.clone())
    }

    /// Remembers that `key` went to `to` as `serial` (what went with it follows, see
    /// [`record`](Self::record)); false, remembering nothing, when [`MOST_MOVED`] keys
    /// are remembered already.
    pub(crate) fn mark(&self, key: &str, to: &Arc<str>, serial: u64) -> bool {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MOST_MOVED && !keys.contains_key(key) {
            return false;
        }
        let moved = Moved {
            to: Arc::clone(to),
            serial,
            held: Vec::new(),
            at: Instant::now(),
        };
        keys.insert(key.into(), moved);
        self.count.store(keys.len(), Ordering::SeqCst);
        true
    }

    /// Records what went with `key` (marked as moved already).
    pub(crate) fn record(&self, key: &str, held: Vec<Held>) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(moved) = keys.get_mut(key) {
            moved.held = held;
        }
    }

    /// Forgets `key`: it is back here.
    pub(crate) fn clear(&self, key: &str) {
        if !self.any() {
            return;
        }
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.remove(key);
        self.count.store(keys.len(), Ordering::SeqCst);
    }

    /// Forgets the keys handed over longer than [`MOVED_FOR`] ago.
    pub(crate) fn expire(&self) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.retain(|_, moved| moved.at.elapsed() < MOVED_FOR);
        self.count.store(keys.len(), Ordering::SeqCst);
    }
}
