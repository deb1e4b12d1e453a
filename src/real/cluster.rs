//! A local PostgreSQL 15 streaming-replication cluster: one primary and its replicas per shard, on
//! 127.0.0.1, in a fresh directory under /tmp, started by [`Cluster::start`] and always torn down
//! (explicitly, on error, on drop during a panic, or on Ctrl-C through [`Cluster::run_until_ctrl_c`]).

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use futures::future::try_join_all;

use crate::real::command::{PG_BIN_DIR, Runner};
use crate::real::error::ClusterError;
use crate::real::node::{DATABASE, RealNode, RealRole, replica_settings, server_settings};
use crate::real::ports::pick_free_ports;
use crate::real::settings::ServerSettings;
use crate::real::sql::{Admin, SUPERUSER, literal};
use crate::scenario::model::Scenario;

/// Limit of one `initdb` (slow on a busy machine).
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
/// Limit of one `pg_basebackup`.
const BASEBACKUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long replicas may take to be streaming after they start.
pub(crate) const STREAMING_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two polls of a server's state.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Counter that makes each cluster directory of this process unique.
static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

/// What to run: shards, each with one primary and any number of replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    /// The shards.
    pub shards: Vec<ShardSpec>,
}

/// One shard: node names of its primary and replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSpec {
    /// Shard name.
    pub name: String,
    /// The primary's node name.
    pub primary: String,
    /// The replicas' node names.
    pub replicas: Vec<String>,
}

impl ClusterSpec {
    /// The topology of a scenario.
    pub fn from_scenario(scenario: &Scenario) -> ClusterSpec {
        let name = |idx: usize| {
            scenario
                .nodes
                .get(idx)
                .map(|node| node.name.clone())
                .unwrap_or_default()
        };
        ClusterSpec {
            shards: scenario
                .shards
                .iter()
                .map(|shard| ShardSpec {
                    name: shard.name.clone(),
                    primary: name(shard.primary),
                    replicas: shard.replicas.iter().map(|&idx| name(idx)).collect(),
                })
                .collect(),
        }
    }

    /// Checks that there is a shard, and that node names are unique and usable as file names.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.shards.is_empty() {
            return Err(ClusterError::InvalidSpec("no shard".to_string()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for shard in &self.shards {
            for name in std::iter::once(&shard.primary).chain(&shard.replicas) {
                let usable = !name.is_empty()
                    && name.len() <= 48
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !usable {
                    return Err(ClusterError::InvalidSpec(format!(
                        "node name `{name}` in shard `{}`: use 1-48 characters of [A-Za-z0-9_-]",
                        shard.name
                    )));
                }
                if !seen.insert(name.as_str()) {
                    return Err(ClusterError::InvalidSpec(format!(
                        "node name `{name}` is used twice"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A running cluster. Dropping it tears everything down (immediate stop, data removed).
pub struct Cluster {
    pub(crate) runner: Runner,
    root: PathBuf,
    /// `replisim-<pid>-<n>`: the directory name, also in every server's `cluster_name`, so that
    /// `<tag>/` finds every process of this cluster.
    tag: String,
    pub(crate) nodes: Vec<RealNode>,
    /// Serialises fault operations, which may touch several nodes (promote).
    pub(crate) ops: tokio::sync::Mutex<()>,
    torn_down: AtomicBool,
}

impl Cluster {
    /// Creates, starts and connects every server; returns once every replica is streaming.
    /// On failure everything started so far is torn down.
    pub async fn start(spec: &ClusterSpec) -> Result<Cluster, ClusterError> {
        Cluster::start_with(spec, &ServerSettings::default()).await
    }

    /// [`Cluster::start`] with extra server settings on every node (e.g. a preloaded extension).
    pub async fn start_with(
        spec: &ClusterSpec,
        settings: &ServerSettings,
    ) -> Result<Cluster, ClusterError> {
        spec.validate()?;
        settings.validate()?;
        let runner = Runner::detect(Path::new(PG_BIN_DIR))?;
        let (root, tag) = create_root(&runner)?;
        let mut members: Vec<(&str, &str, RealRole)> = Vec::new();
        for shard in &spec.shards {
            members.push((&shard.primary, &shard.name, RealRole::Primary));
            for replica in &shard.replicas {
                members.push((replica, &shard.name, RealRole::Replica));
            }
        }
        let ports = match pick_free_ports(members.len()) {
            Ok(ports) => ports,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root);
                return Err(e);
            }
        };
        let nodes = members
            .iter()
            .zip(ports)
            .map(|(&(name, shard, role), port)| RealNode::new(name, shard, port, &root, role))
            .collect();
        let cluster = Cluster {
            runner,
            root,
            tag,
            nodes,
            ops: tokio::sync::Mutex::new(()),
            torn_down: AtomicBool::new(false),
        };
        let shards = spec
            .shards
            .iter()
            .map(|shard| cluster.start_shard(shard, settings));
        match try_join_all(shards).await {
            Ok(_) => Ok(cluster),
            Err(e) => {
                // The start error is the one worth reporting; teardown is best effort here.
                let _ = cluster.shut_down().await;
                Err(e)
            }
        }
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&RealNode> {
        self.nodes.iter().find(|node| node.name == name)
    }

    /// Every node: for each shard in order, its primary then its replicas.
    pub fn nodes(&self) -> &[RealNode] {
        &self.nodes
    }

    /// The directory holding every data directory and log.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A string that appears in the command line of every process of this cluster (for `pgrep -f`).
    pub fn process_tag(&self) -> String {
        format!("{}/", self.tag)
    }

    /// The current primary of `shard`.
    pub fn primary_of(&self, shard: &str) -> Option<&RealNode> {
        self.nodes
            .iter()
            .find(|node| node.shard == shard && node.role() == RealRole::Primary)
    }

    pub(crate) fn node_or_err(&self, name: &str) -> Result<&RealNode, ClusterError> {
        if self.torn_down.load(Ordering::SeqCst) {
            return Err(ClusterError::TornDown);
        }
        self.node(name)
            .ok_or_else(|| ClusterError::UnknownNode(name.to_string()))
    }

    async fn start_shard(
        &self,
        shard: &ShardSpec,
        settings: &ServerSettings,
    ) -> Result<(), ClusterError> {
        let primary = self.node_or_err(&shard.primary)?;
        let args: Vec<OsString> = vec![
            "-D".into(),
            primary.data_dir.clone().into(),
            "--no-sync".into(),
            "--no-instructions".into(),
            "--locale=C.UTF-8".into(),
            "-A".into(),
            "trust".into(),
            "-U".into(),
            SUPERUSER.into(),
        ];
        self.runner
            .run("initdb", &args, &self.root, INITDB_TIMEOUT)
            .await?;
        // Each base backup holds two WAL senders while it runs; keep room for reconnects.
        let max_wal_senders = 10.max(3 * shard.replicas.len() + 4);
        primary.append_config(
            "postgresql.conf",
            &server_settings(primary.port, &self.cluster_name(primary), max_wal_senders),
        )?;
        primary.append_config("postgresql.conf", &settings.config_text())?;
        primary.pg_start(&self.runner, &self.root).await?;

        let admin = Admin::connect(&primary.name, primary.port, "postgres").await?;
        admin.run(&format!("CREATE DATABASE {DATABASE}")).await?;
        drop(admin);
        let admin = Admin::connect(&primary.name, primary.port, DATABASE).await?;
        admin
            .run(
                "CREATE TABLE replisim_kv (org_id bigint, key bigint, version bigint NOT NULL, \
                 updated_by bigint NOT NULL, PRIMARY KEY (org_id, key))",
            )
            .await?;

        try_join_all(
            shard
                .replicas
                .iter()
                .map(|name| self.start_replica(primary, name)),
        )
        .await?;
        for name in &shard.replicas {
            self.wait_streaming_from(primary, name, STREAMING_TIMEOUT)
                .await?;
        }
        Ok(())
    }

    async fn start_replica(&self, primary: &RealNode, name: &str) -> Result<(), ClusterError> {
        let replica = self.node_or_err(name)?;
        let args: Vec<OsString> = vec![
            "-d".into(),
            primary.conninfo_for(name).into(),
            "-D".into(),
            replica.data_dir.clone().into(),
            "-R".into(),
            "-X".into(),
            "stream".into(),
            "-c".into(),
            "fast".into(),
            "--no-sync".into(),
        ];
        self.runner
            .run("pg_basebackup", &args, &self.root, BASEBACKUP_TIMEOUT)
            .await?;
        replica.append_config(
            "postgresql.conf",
            &replica_settings(replica.port, &self.cluster_name(replica)),
        )?;
        replica.pg_start(&self.runner, &self.root).await
    }

    fn cluster_name(&self, node: &RealNode) -> String {
        format!("{}/{}", self.tag, node.name)
    }

    /// Waits until `primary` lists `replica` in `pg_stat_replication` as streaming.
    pub(crate) async fn wait_streaming_from(
        &self,
        primary: &RealNode,
        replica: &str,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let sql = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' \
             AND application_name = {}",
            literal(replica)
        );
        let admin = Admin::connect(&primary.name, primary.port, "postgres").await?;
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if admin.value(&sql).await?.as_deref() == Some("1") {
                    return Ok(());
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            Err(ClusterError::WaitTimeout {
                what: format!("`{replica}` to stream from `{}`", primary.name),
                timeout,
            })
        })
    }

    /// Stops every server (immediate) and removes the data. Idempotent; runs once.
    pub async fn teardown(self) -> Result<(), ClusterError> {
        self.shut_down().await
    }

    /// Runs `work`; if Ctrl-C arrives first, drops `work`, tears the cluster down and returns
    /// [`ClusterError::Interrupted`].
    pub async fn run_until_ctrl_c<T>(
        &self,
        work: impl Future<Output = T>,
    ) -> Result<T, ClusterError> {
        let ctrl_c = async {
            // Without a signal handler there is nothing to wait for, not a reason to stop.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        self.run_until(work, ctrl_c).await
    }

    /// Runs `work`; if `stop` completes first, drops `work`, tears the cluster down and returns
    /// [`ClusterError::Interrupted`].
    pub async fn run_until<T>(
        &self,
        work: impl Future<Output = T>,
        stop: impl Future,
    ) -> Result<T, ClusterError> {
        let outcome = tokio::select! {
            biased;
            _ = stop => None,
            value = work => Some(value),
        };
        match outcome {
            Some(value) => Ok(value),
            None => {
                self.shut_down().await?;
                Err(ClusterError::Interrupted)
            }
        }
    }

    pub(crate) async fn shut_down(&self) -> Result<(), ClusterError> {
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        crate::real::teardown::stop_all(self).await
    }

    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.torn_down.swap(true, Ordering::SeqCst) {
            crate::real::teardown::stop_all_blocking(self);
        }
    }
}

/// Creates `/tmp/replisim-<pid>-<n>`, owned by the user the servers run as.
fn create_root(runner: &Runner) -> Result<(PathBuf, String), ClusterError> {
    let pid = std::process::id();
    // A directory left by an earlier process with the same pid is skipped, never reused.
    for _ in 0..1000 {
        let tag = format!(
            "replisim-{pid}-{}",
            NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
        );
        let root = std::env::temp_dir().join(&tag);
        match std::fs::create_dir(&root) {
            Ok(()) => {
                if let Err(e) = runner.hand_over(&root) {
                    let _ = std::fs::remove_dir(&root);
                    return Err(e);
                }
                return Ok((root, tag));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(ClusterError::io(format!("creating {}", root.display()), e));
            }
        }
    }
    Err(ClusterError::InvalidSpec(format!(
        "no unused directory name replisim-{pid}-<n> in {}",
        std::env::temp_dir().display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(names: &[&str]) -> ClusterSpec {
        ClusterSpec {
            shards: vec![ShardSpec {
                name: "s1".to_string(),
                primary: names[0].to_string(),
                replicas: names[1..].iter().map(|n| n.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn validate_accepts_plain_names() {
        assert!(spec(&["primary-1", "replica_1"]).validate().is_ok());
    }

    #[test]
    fn validate_rejects_duplicates_and_paths() {
        assert!(spec(&["a", "a"]).validate().is_err());
        assert!(spec(&["a", "../b"]).validate().is_err());
        assert!(spec(&[""]).validate().is_err());
        assert!(ClusterSpec { shards: vec![] }.validate().is_err());
    }
}
