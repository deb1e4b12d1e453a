//! The host body of a simulated node: the SQL listener, the WAL listener, the WAL receiver and
//! the replay task, all until the host crashes.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use turmoil::net::TcpListener;

use super::error::NodeError;
use super::state::SimNode;
use super::{PG_PORT, WAL_PORT, connection, replay, wal_receiver, wal_sender};

impl SimNode {
    /// The host body: `sim.host(name, move || SimNode::serve(node.clone()))`. Listens on
    /// [`PG_PORT`] and [`WAL_PORT`]; a replica also streams from its upstream and replays.
    /// Runs until the host is crashed; errors only if a port cannot be opened.
    pub async fn serve(self: Arc<Self>) -> turmoil::Result {
        self.begin_run();
        let sql = self.listen(PG_PORT).await?;
        let wal = self.listen(WAL_PORT).await?;
        let result = tokio::select! {
            biased;
            result = accept_sql(self.clone(), sql) => result,
            result = accept_wal(self.clone(), wal) => result,
            () = wal_receiver::run(self.clone()) => Ok(()),
            () = replay::run(self.clone()) => Ok(()),
        };
        result.map_err(Into::into)
    }

    async fn listen(&self, port: u16) -> Result<TcpListener, NodeError> {
        TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
            .await
            .map_err(|source| NodeError::Listen {
                node: self.name().to_owned(),
                port,
                source,
            })
    }
}

async fn accept_sql(node: Arc<SimNode>, listener: TcpListener) -> Result<(), NodeError> {
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|source| NodeError::Accept {
                node: node.name().to_owned(),
                port: PG_PORT,
                source,
            })?;
        spawn_on_host(connection::serve(node.clone(), stream));
    }
}

async fn accept_wal(node: Arc<SimNode>, listener: TcpListener) -> Result<(), NodeError> {
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|source| NodeError::Accept {
                node: node.name().to_owned(),
                port: WAL_PORT,
                source,
            })?;
        // A downstream that fails or goes silent simply ends its stream; it will reconnect.
        let node = node.clone();
        spawn_on_host(async move {
            let _ = wal_sender::serve(node, stream).await;
        });
    }
}

/// Spawns a task of this simulated host on the host's `LocalSet`, never on its runtime.
///
/// A crash drops the host's runtime and then its `LocalSet`, cancelling their tasks. The runtime
/// cancels its tasks shard by shard, and a task's shard comes from its process-wide task id, so
/// the order in which a crashed node's connections close (and its peers see the closes) would
/// depend on how many tasks the process had spawned before: a second simulation in the same
/// process would differ from the first. The `LocalSet` cancels its tasks in the order they were
/// spawned, which only the simulation decides.
fn spawn_on_host<F>(task: F)
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    tokio::task::spawn_local(task);
}
