//! Which connection a call uses: the connection manager's for one server, or the cluster
//! client's, made on first use.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionInfo, RedisFuture, RedisResult, Value};

use super::slot_owners::SlotOwners;

/// A connection to one server or to a cluster, as one type for the calls above.
pub(super) enum Live {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Live {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// A cluster connection made on first use, and again after a failed attempt.
pub(super) struct LazyCluster {
    client: redis::cluster::ClusterClient,
    connection: ArcSwapOption<ClusterConnection>,
    connecting: tokio::sync::Mutex<()>,
    /// Which master serves each slot, as last read, and a connection of its own to each.
    owners: SlotOwners,
}

impl LazyCluster {
    /// The cluster of `client`, not connected yet; `base` says how to connect to each of
    /// its masters (all but the address: credentials, database, timeouts).
    pub(super) fn new(client: redis::cluster::ClusterClient, base: ConnectionInfo) -> Self {
        Self {
            client,
            connection: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            owners: SlotOwners::new(base),
        }
    }

    /// Which master serves each slot, as last read.
    pub(super) fn owners(&self) -> &SlotOwners {
        &self.owners
    }

    /// Reads the slot map again in the background, unless a read is under way or one
    /// began less than a second ago. Needs a Tokio runtime (a dispatcher runs there).
    pub(super) fn refresh_slots(self: &Arc<Self>) {
        if !self.owners.claim_refresh() {
            return;
        }
        let reading = ReadingSlots(Arc::clone(self));
        tokio::spawn(async move {
            let cluster = &reading.0;
            let read = tokio::time::timeout(SLOTS_TIMEOUT, cluster.slots()).await;
            let stored = match read {
                Ok(Ok(reply)) => cluster.owners.store(&reply),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
            };
            if let Err(error) = stored {
                // Checks of unknown slots go alone meanwhile, routed by the cluster client.
                tracing::debug!(%error, "could not read the cluster's slots");
            }
        });
    }

    /// The cluster's `CLUSTER SLOTS`, asked of any of its nodes.
    async fn slots(&self) -> RedisResult<Value> {
        let mut connection = self.connection().await?;
        redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut connection)
            .await
    }

    /// The cluster's connection, made now if there is none yet.
    pub(super) async fn connection(&self) -> RedisResult<ClusterConnection> {
        if let Some(connection) = self.connection.load_full() {
            return Ok((*connection).clone());
        }
        // One attempt at a time; the others wait for it (bounded by the caller's timeout).
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.connection.load_full() {
            return Ok((*connection).clone());
        }
        let connection = self.client.get_async_connection().await?;
        self.connection.store(Some(Arc::new(connection.clone())));
        Ok(connection)
    }
}

/// How long a read of the slot map may take.
const SLOTS_TIMEOUT: Duration = Duration::from_secs(2);

/// A read of the slot map under way: over when dropped, even with its task unpolled (its
/// runtime gone), else no read would ever start again.
struct ReadingSlots(Arc<LazyCluster>);

impl Drop for ReadingSlots {
    fn drop(&mut self) {
        self.0.owners.end_refresh();
    }
}
