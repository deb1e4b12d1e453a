//! One PostgreSQL server of a real cluster: where it lives, its role, and starting and stopping it.

use std::ffi::OsString;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::real::command::{Runner, log_tail, process_has_arg};
use crate::real::error::ClusterError;
use crate::real::sql::{CONNECT_TIMEOUT, SUPERUSER};

/// Limit `pg_ctl` waits for a start (`-t`); the command itself gets a little more.
const PG_CTL_START_WAIT: Duration = Duration::from_secs(60);
/// Limit `pg_ctl` waits for an immediate stop (`-t`).
const PG_CTL_STOP_WAIT: Duration = Duration::from_secs(30);
/// Margin between `pg_ctl -t` and the limit on the command around it.
const PG_CTL_MARGIN: Duration = Duration::from_secs(15);
/// How long a previous postmaster of the same data directory may take to disappear.
const PREVIOUS_POSTMASTER_WAIT: Duration = Duration::from_secs(5);
/// The database `Cluster::start` creates on every primary.
pub const DATABASE: &str = "replisim";

/// A node's role in its shard, as the cluster last set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RealRole {
    /// Accepts writes.
    Primary,
    /// In recovery, streaming from its shard's primary; refuses writes with SQLSTATE 25006.
    Replica,
    /// A former primary after a promotion: fenced with `default_transaction_read_only = on`
    /// (persisted, so it stays read-only across a restart) and replicating from nobody.
    Retired,
}

impl RealRole {
    /// Lower-case name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RealRole::Primary => "primary",
            RealRole::Replica => "replica",
            RealRole::Retired => "retired primary",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct NodeState {
    role: RealRole,
    running: bool,
}

/// One server of a real cluster.
#[derive(Debug)]
pub struct RealNode {
    /// Node name (also its `application_name` towards its primary).
    pub name: String,
    /// Name of its shard.
    pub shard: String,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its server log.
    pub log_file: PathBuf,
    state: Mutex<NodeState>,
}

impl RealNode {
    pub(crate) fn new(name: &str, shard: &str, port: u16, root: &Path, role: RealRole) -> RealNode {
        RealNode {
            name: name.to_string(),
            shard: shard.to_string(),
            port,
            data_dir: root.join(name),
            log_file: root.join(format!("{name}.log")),
            state: Mutex::new(NodeState {
                role,
                running: false,
            }),
        }
    }

    /// Its current role.
    pub fn role(&self) -> RealRole {
        self.lock().role
    }

    /// Whether its server is running (started and not crashed since).
    pub fn is_running(&self) -> bool {
        self.lock().running
    }

    /// Its address, 127.0.0.1:`port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// A connection configuration for the `replisim` database as the superuser, with a connect
    /// timeout; statements still need their own.
    pub fn pg_config(&self, application_name: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .dbname(DATABASE)
            .application_name(application_name)
            .connect_timeout(CONNECT_TIMEOUT);
        config
    }

    /// The `primary_conninfo` a replica of this node uses.
    pub(crate) fn conninfo_for(&self, replica: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} application_name={replica}",
            self.port
        )
    }

    pub(crate) fn set_role(&self, role: RealRole) {
        self.lock().role = role;
    }

    pub(crate) fn set_running(&self, running: bool) {
        self.lock().running = running;
    }

    fn lock(&self) -> MutexGuard<'_, NodeState> {
        // The state is two plain fields: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends settings to one of its configuration files (`postgresql.conf`, or
    /// `postgresql.auto.conf` to override what `pg_basebackup -R` or `ALTER SYSTEM` wrote there).
    pub(crate) fn append_config(&self, file: &str, text: &str) -> Result<(), ClusterError> {
        let path = self.data_dir.join(file);
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| ClusterError::io(format!("opening {}", path.display()), e))?;
        out.write_all(text.as_bytes())
            .map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))
    }

    /// `pg_ctl start -w`; a failure quotes the end of the server log.
    pub(crate) async fn pg_start(&self, runner: &Runner, cwd: &Path) -> Result<(), ClusterError> {
        self.clear_stale_pid_file().await?;
        let args: Vec<OsString> = vec![
            "start".into(),
            "-w".into(),
            "-s".into(),
            "-t".into(),
            PG_CTL_START_WAIT.as_secs().to_string().into(),
            "-D".into(),
            self.data_dir.clone().into(),
            "-l".into(),
            self.log_file.clone().into(),
        ];
        match runner
            .run("pg_ctl", &args, cwd, PG_CTL_START_WAIT + PG_CTL_MARGIN)
            .await
        {
            Ok(_) => {
                self.set_running(true);
                Ok(())
            }
            Err(e) => Err(ClusterError::StartFailed {
                node: self.name.clone(),
                reason: e.to_string(),
                log: self.log_file.clone(),
                log_tail: log_tail(&self.log_file),
            }),
        }
    }

    /// `pg_ctl stop -m immediate -w`: the postmaster and its children quit at once, without a
    /// checkpoint, like a crash.
    pub(crate) async fn pg_stop_immediate(
        &self,
        runner: &Runner,
        cwd: &Path,
    ) -> Result<(), ClusterError> {
        let args: Vec<OsString> = vec![
            "stop".into(),
            "-m".into(),
            "immediate".into(),
            "-w".into(),
            "-s".into(),
            "-t".into(),
            PG_CTL_STOP_WAIT.as_secs().to_string().into(),
            "-D".into(),
            self.data_dir.clone().into(),
        ];
        let result = runner
            .run("pg_ctl", &args, cwd, PG_CTL_STOP_WAIT + PG_CTL_MARGIN)
            .await;
        self.set_running(false);
        result.map(|_| ())
    }

    /// The postmaster pid recorded in `postmaster.pid`, if the file exists and is readable.
    pub(crate) fn recorded_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Removes a `postmaster.pid` left by a server that is gone. Its pid may since belong to
    /// another process (often a backend of another node), which would make PostgreSQL refuse to
    /// start; a postmaster of this directory still exiting is waited for.
    async fn clear_stale_pid_file(&self) -> Result<(), ClusterError> {
        let Some(pid) = self.recorded_pid() else {
            return Ok(());
        };
        let data_dir = self.data_dir.to_string_lossy().into_owned();
        let gone = tokio::time::timeout(PREVIOUS_POSTMASTER_WAIT, async {
            while process_has_arg(pid, &data_dir) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if gone.is_err() {
            return Err(ClusterError::AlreadyRunning(self.name.clone()));
        }
        let path = self.data_dir.join("postmaster.pid");
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ClusterError::io(format!("removing {}", path.display()), e)),
        }
    }
}

/// Settings every server gets (replicas override `port` and `cluster_name`).
pub(crate) fn server_settings(port: u16, cluster_name: &str, max_wal_senders: usize) -> String {
    format!(
        "\n# replisim\n\
         port = {port}\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = ''\n\
         cluster_name = '{cluster_name}'\n\
         fsync = off\n\
         synchronous_commit = on\n\
         max_connections = 300\n\
         shared_buffers = '32MB'\n\
         wal_level = replica\n\
         max_wal_senders = {max_wal_senders}\n\
         wal_keep_size = '256MB'\n\
         hot_standby = on\n\
         wal_retrieve_retry_interval = '100ms'\n\
         logging_collector = off\n"
    )
}

/// Settings a replica overrides after `pg_basebackup` copied its primary's.
pub(crate) fn replica_settings(port: u16, cluster_name: &str) -> String {
    format!("\n# replisim replica\nport = {port}\ncluster_name = '{cluster_name}'\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_port_and_title() {
        let text = server_settings(20001, "replisim-1-0/p", 10);
        assert!(text.contains("port = 20001\n"));
        assert!(text.contains("cluster_name = 'replisim-1-0/p'\n"));
        assert!(text.contains("max_wal_senders = 10\n"));
        assert!(text.contains("unix_socket_directories = ''\n"));
    }

    #[test]
    fn conninfo_names_the_replica() {
        let node = RealNode::new("p", "s1", 20001, Path::new("/tmp/x"), RealRole::Primary);
        assert_eq!(
            node.conninfo_for("r1"),
            "host=127.0.0.1 port=20001 user=postgres application_name=r1"
        );
        assert_eq!(node.data_dir, Path::new("/tmp/x/p"));
        assert!(!node.is_running());
    }
}
