//! The faults a real cluster can suffer on request: crash and restart a server, delay or pause a
//! replica's replay, and promote a replica. The network faults live in the fault proxy.

use std::time::Duration;

use crate::real::cluster::{Cluster, POLL_INTERVAL};
use crate::real::error::ClusterError;
use crate::real::node::{RealNode, RealRole};
use crate::real::sql::{Admin, literal};

/// How long a reloaded setting may take to be visible to new sessions.
const SETTING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a promotion may take (`pg_promote`'s own wait).
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the promoted replica may take to receive what the old primary had flushed.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    /// Stops the node's server at once (`pg_ctl stop -m immediate`): its sessions die and
    /// connects are refused until [`Cluster::restart`].
    pub async fn crash(&self, name: &str) -> Result<(), ClusterError> {
        let _ops = self.ops.lock().await;
        let node = self.node_or_err(name)?;
        if !node.is_running() {
            return Err(ClusterError::NotRunning(name.to_string()));
        }
        node.pg_stop_immediate(&self.runner, self.root()).await
    }

    /// Starts a crashed node again with its data (`pg_ctl start -w`, after removing a
    /// `postmaster.pid` whose process is gone). A replica then reconnects to its primary by itself;
    /// [`Cluster::wait_streaming`] waits for that.
    pub async fn restart(&self, name: &str) -> Result<(), ClusterError> {
        let _ops = self.ops.lock().await;
        let node = self.node_or_err(name)?;
        if node.is_running() {
            return Err(ClusterError::AlreadyRunning(name.to_string()));
        }
        node.pg_start(&self.runner, self.root()).await
    }

    /// Waits until replica `name` streams from its shard's current primary.
    pub async fn wait_streaming(&self, name: &str, timeout: Duration) -> Result<(), ClusterError> {
        let node = self.running_replica(name)?;
        let primary = self.primary_of(&node.shard).ok_or_else(|| {
            ClusterError::InvalidSpec(format!("shard `{}` has no primary", node.shard))
        })?;
        if !primary.is_running() {
            return Err(ClusterError::NotRunning(primary.name.clone()));
        }
        self.wait_streaming_from(primary, name, timeout).await
    }

    /// Sets the replica's `recovery_min_apply_delay` (persisted with `ALTER SYSTEM`, applied with
    /// `pg_reload_conf()`); `Duration::ZERO` resets it. Sub-millisecond parts round up. Returns
    /// once new sessions see the value, i.e. once the server has reloaded.
    pub async fn set_apply_delay(&self, name: &str, delay: Duration) -> Result<(), ClusterError> {
        let _ops = self.ops.lock().await;
        let node = self.running_replica(name)?;
        let delay_ms = delay.as_micros().div_ceil(1000);
        let admin = Admin::connect(name, node.port, "postgres").await?;
        if delay_ms == 0 {
            admin
                .run("ALTER SYSTEM RESET recovery_min_apply_delay")
                .await?;
        } else {
            admin
                .run(&format!(
                    "ALTER SYSTEM SET recovery_min_apply_delay = '{delay_ms}ms'"
                ))
                .await?;
        }
        admin.run("SELECT pg_reload_conf()").await?;
        wait_setting(node, "recovery_min_apply_delay", &delay_ms.to_string()).await
    }

    /// Stops the replica's WAL replay (`pg_wal_replay_pause()`); it keeps receiving WAL and serves
    /// ever staler rows. A restart ends the pause.
    pub async fn pause_replay(&self, name: &str) -> Result<(), ClusterError> {
        let _ops = self.ops.lock().await;
        let node = self.running_replica(name)?;
        let admin = Admin::connect(name, node.port, "postgres").await?;
        admin.run("SELECT pg_wal_replay_pause()").await.map(|_| ())
    }

    /// Resumes the replica's WAL replay (`pg_wal_replay_resume()`).
    pub async fn resume_replay(&self, name: &str) -> Result<(), ClusterError> {
        let _ops = self.ops.lock().await;
        let node = self.running_replica(name)?;
        let admin = Admin::connect(name, node.port, "postgres").await?;
        admin.run("SELECT pg_wal_replay_resume()").await.map(|_| ())
    }

    /// Makes replica `name` its shard's primary.
    ///
    /// 1. The old primary is fenced, not stopped: `default_transaction_read_only = on` (with
    ///    `ALTER SYSTEM` + reload if it runs, else written to its `postgresql.conf`), so it keeps
    ///    answering but refuses writes with SQLSTATE 25006, now and after any restart. If it runs,
    ///    the target first receives (up to 10 s) everything it had flushed, so that no other
    ///    replica is ahead of the new primary.
    /// 2. `pg_promote()` on the target, waiting for the promotion to finish.
    /// 3. Every other replica of the shard gets `primary_conninfo` pointing at the new primary
    ///    (reload if running, else written to `postgresql.auto.conf`). They switch timelines by
    ///    themselves; [`Cluster::wait_streaming`] waits for one.
    pub async fn promote(&self, name: &str) -> Result<(), ClusterError> {
        let _ops = self.ops.lock().await;
        let target = self.running_replica(name)?;
        let old = self.primary_of(&target.shard);
        if let Some(old) = old {
            fence(old, target).await?;
        }
        let admin = Admin::connect(name, target.port, "postgres").await?;
        let promoted = admin
            .value(&format!(
                "SELECT pg_promote(true, {})",
                PROMOTE_TIMEOUT.as_secs()
            ))
            .await?;
        if promoted.as_deref() != Some("t") {
            return Err(ClusterError::WaitTimeout {
                what: format!("`{name}` to finish its promotion"),
                timeout: PROMOTE_TIMEOUT,
            });
        }
        target.set_role(RealRole::Primary);
        if let Some(old) = old {
            old.set_role(RealRole::Retired);
        }
        let followers = self.nodes().iter().filter(|node| {
            node.shard == target.shard && node.role() == RealRole::Replica && node.name != name
        });
        for follower in followers {
            follow(follower, target).await?;
        }
        Ok(())
    }

    fn running_replica(&self, name: &str) -> Result<&RealNode, ClusterError> {
        let node = self.node_or_err(name)?;
        let role = node.role();
        if role != RealRole::Replica {
            return Err(ClusterError::NotReplica {
                name: name.to_string(),
                role: role.as_str(),
            });
        }
        if !node.is_running() {
            return Err(ClusterError::NotRunning(name.to_string()));
        }
        Ok(node)
    }
}

/// Makes the old primary refuse writes for good, and gives `target` a bounded time to receive
/// everything the old primary flushed.
async fn fence(old: &RealNode, target: &RealNode) -> Result<(), ClusterError> {
    if !old.is_running() {
        return old.append_config(
            "postgresql.conf",
            "\n# replisim: retired by a promotion\ndefault_transaction_read_only = on\n",
        );
    }
    let admin = Admin::connect(&old.name, old.port, "postgres").await?;
    admin
        .run("ALTER SYSTEM SET default_transaction_read_only = on")
        .await?;
    admin.run("SELECT pg_reload_conf()").await?;
    wait_setting(old, "default_transaction_read_only", "on").await?;
    let Some(flushed) = admin.value("SELECT pg_current_wal_flush_lsn()").await? else {
        return Ok(());
    };
    let sql = format!(
        "SELECT coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), {}) >= 0, false)",
        literal(&flushed)
    );
    let target_admin = Admin::connect(&target.name, target.port, "postgres").await?;
    let caught_up = tokio::time::timeout(CATCH_UP_TIMEOUT, async {
        while target_admin.value(&sql).await?.as_deref() != Some("t") {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok::<(), ClusterError>(())
    })
    .await;
    match caught_up {
        Ok(result) => result,
        // A real failover loses what the new primary never received; so does this one, and a
        // replica that had received more will not be able to follow.
        Err(_) => {
            tracing::warn!(
                target = %target.name,
                old = %old.name,
                %flushed,
                "promoting before the target received all the old primary's WAL"
            );
            Ok(())
        }
    }
}

/// Points `follower` at `primary`.
async fn follow(follower: &RealNode, primary: &RealNode) -> Result<(), ClusterError> {
    let conninfo = literal(&primary.conninfo_for(&follower.name));
    if !follower.is_running() {
        return follower.append_config(
            "postgresql.auto.conf",
            &format!("primary_conninfo = {conninfo}\n"),
        );
    }
    let admin = Admin::connect(&follower.name, follower.port, "postgres").await?;
    admin
        .run(&format!("ALTER SYSTEM SET primary_conninfo = {conninfo}"))
        .await?;
    admin.run("SELECT pg_reload_conf()").await.map(|_| ())
}

/// Waits until a new session on `node` sees `setting` = `value` (`pg_settings.setting`, in the
/// setting's base unit), i.e. the server reloaded its configuration and signalled its processes.
async fn wait_setting(node: &RealNode, setting: &str, value: &str) -> Result<(), ClusterError> {
    let sql = format!(
        "SELECT setting FROM pg_settings WHERE name = {}",
        literal(setting)
    );
    let waited = tokio::time::timeout(SETTING_TIMEOUT, async {
        loop {
            let admin = Admin::connect(&node.name, node.port, "postgres").await?;
            if admin.value(&sql).await?.as_deref() == Some(value) {
                return Ok(());
            }
            drop(admin);
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| {
        Err(ClusterError::WaitTimeout {
            what: format!("`{}` to reload `{setting}` = {value}", node.name),
            timeout: SETTING_TIMEOUT,
        })
    })
}
