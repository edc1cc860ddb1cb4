//! The asking side of a handoff: counters given to or taken from another node, and a
//! node's word that it leaves or is back.

use std::error::Error;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use tokio::time::Instant;

use super::super::peer_client::PeerClient;
use crate::backend::{within, Held};
use crate::protocol::{
    decode_held, encode_keys, handoff_path_and_query, HandoffOp, MAX_HANDOFF_BYTES,
};
use crate::read_body::read_body;
use crate::BackendError;

/// The least time a handoff request is given: a body of a thousand keys' counters is
/// more to take in than a check.
const LEAST_HANDOFF_TIME: Duration = Duration::from_secs(2);

impl PeerClient {
    /// Sends `member` a handoff `op` from node `from`, with `body`; its answer's body.
    pub(crate) async fn handoff(
        &self,
        member: &str,
        op: HandoffOp,
        from: &str,
        body: String,
        timeout: Duration,
    ) -> Result<Bytes, BackendError> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(member)
            .path_and_query(handoff_path_and_query(op, from))
            .build();
        let request = self.forwarded(Method::POST, member, uri, Bytes::from(body))?;
        let http = self.http.clone();
        let asked = async move {
            let response = http.request(request).await?;
            let status = response.status();
            let body = read_body(response.into_body(), MAX_HANDOFF_BYTES).await?;
            Ok::<_, Box<dyn Error + Send + Sync>>((status, body))
        };
        let (status, body) =
            within(Instant::now() + timeout, timeout, member.to_owned(), asked).await?;
        match status {
            StatusCode::OK => Ok(body),
            // Up, and says no (it does not know this node yet, or hands nothing over).
            other => Err(BackendError::Refused {
                target: member.to_owned(),
                reason: format!("{other}: {}", String::from_utf8_lossy(&body).trim()),
            }),
        }
    }

    /// Gives `member` the counters of `body` (lines of held keys); `done`, the ring they
    /// were handed over for, when they are the last this node has for it.
    pub(crate) async fn give(
        &self,
        member: &str,
        from: &str,
        body: String,
        done: Option<u64>,
    ) -> Result<(), BackendError> {
        let timeout = self.timeout().max(LEAST_HANDOFF_TIME);
        let op = HandoffOp::Give { done };
        self.handoff(member, op, from, body, timeout)
            .await
            .map(drop)
    }

    /// Takes `key`'s counters out of `member`, within the peer timeout (a check waits):
    /// the serial they were handed over as, and what they hold; `None` if it held none.
    pub(crate) async fn take(
        &self,
        member: &str,
        from: &str,
        key: &str,
    ) -> Result<Option<(u64, Vec<Held>)>, BackendError> {
        let body = encode_keys(std::iter::once(key));
        let timeout = self.timeout();
        let answer = self
            .handoff(member, HandoffOp::Take, from, body, timeout)
            .await?;
        let text = String::from_utf8_lossy(&answer);
        let handed = text
            .lines()
            .filter_map(decode_held)
            .find(|(taken, _, _)| taken == key)
            .map(|(_, serial, held)| (serial, held));
        Ok(handed)
    }

    /// Tells `member` that node `from` leaves the ring, or is back (`op`).
    pub(crate) async fn announce(
        &self,
        member: &str,
        from: &str,
        op: HandoffOp,
    ) -> Result<(), BackendError> {
        let timeout = self.timeout().max(LEAST_HANDOFF_TIME);
        self.handoff(member, op, from, String::new(), timeout)
            .await
            .map(drop)
    }
}
