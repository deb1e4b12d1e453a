//! pgpool-II as another router under test: writes its configuration from a [`RouterConfig`]
//! (streaming-replication mode, load balancing, health and replication checks), starts
//! `pgpool -n` in a directory of its own, waits until it accepts connections, and stops it on
//! [`Pgpool::stop`] or `Drop`.
//!
//! pgpool 4.3 is not this crate's router: [`unhonoured`] lists the router settings it has no
//! equivalent for, so that a report can say so. Promotion is not handled: there is no
//! `failover_command` nor `follow_primary_command`; pgpool detaches a backend that fails its health
//! checks (or a socket read, `failover_on_backend_error`) and re-attaches a replica that streams
//! again (`auto_failback`). A detached primary stays detached; writes then fail.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::time::Instant;

use crate::real::command;
use crate::real::error::ClusterError;
use crate::real::ports::pick_free_ports;
use crate::router::{Balance, RouterConfig};

/// Where Debian's `pgpool2` package installs the binary.
pub const PGPOOL_BIN: &str = "/usr/sbin/pgpool";
/// How to install it.
pub const INSTALL_HINT: &str = "apt-get install -y pgpool2";
/// Longest wait for pgpool to accept a connection after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Limit of one readiness probe (connect and `SELECT 1`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The database the readiness probe connects to (every PostgreSQL cluster has it).
const PROBE_DATABASE: &str = "postgres";
/// Longest wait for pgpool's processes to exit after a fast shutdown, before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How an error introduces the end of pgpool's log.
const LOG_TAIL_NOTE: &str = "pgpool's log ends with";

/// One PostgreSQL server behind pgpool.
#[derive(Clone, Debug, PartialEq)]
pub struct PgpoolBackend {
    /// The node's name (pgpool's `backend_application_name`).
    pub name: String,
    /// Host pgpool connects to (the node's fault proxy in real mode).
    pub host: String,
    /// Port pgpool connects to.
    pub port: u16,
    /// Whether it is the primary (pgpool finds the primary itself; this only orders the backends).
    pub primary: bool,
    /// Load-balancing weight (`backend_weight`): share of reads relative to the others.
    pub weight: f64,
}

/// Why pgpool could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PgpoolError {
    /// The binary is not installed.
    #[error("pgpool-II is not installed ({} is missing): install it with `{INSTALL_HINT}`", .path.display())]
    NotInstalled {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The backends are not one primary and its replicas.
    #[error("pgpool needs exactly one primary backend and at least one backend: {0}")]
    InvalidBackends(String),
    /// No free port for pgpool or its PCP port.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// pgpool exited during start-up.
    #[error("pgpool exited during start-up ({status}); {LOG_TAIL_NOTE}:\n{log}")]
    Exited {
        /// Its exit status.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// pgpool did not accept a connection in time.
    #[error(
        "pgpool did not accept a connection within {waited:?} ({last}); {LOG_TAIL_NOTE}:\n{log}"
    )]
    NotReady {
        /// How long it was given.
        waited: Duration,
        /// The last probe's error.
        last: String,
        /// The end of its log.
        log: String,
    },
}

impl PgpoolError {
    fn io(what: impl Into<String>, source: std::io::Error) -> PgpoolError {
        PgpoolError::Io {
            what: what.into(),
            source,
        }
    }
}

/// The pgpool binary, or an error naming the package to install.
pub fn installed() -> Result<PathBuf, PgpoolError> {
    let path = PathBuf::from(PGPOOL_BIN);
    if path.is_file() {
        Ok(path)
    } else {
        Err(PgpoolError::NotInstalled { path })
    }
}

/// A running pgpool-II, with its own directory (configuration, log, pid and sockets). Dropping it
/// stops pgpool and removes the directory.
#[derive(Debug)]
pub struct Pgpool {
    port: u16,
    pcp_port: u16,
    dir: PathBuf,
    child: Option<tokio::process::Child>,
    /// pgpool's main process (the child of `runuser` when started as root).
    main_pid: Option<u32>,
    stopped: bool,
}

/// pgpool's settings derived from a router configuration and the backends, before the ports and
/// paths of one instance are known.
#[derive(Clone, Debug, PartialEq)]
pub struct PgpoolSettings {
    /// `health_check_period`, seconds (pgpool's unit; at least 1).
    pub health_check_period_s: u64,
    /// `health_check_timeout`, seconds.
    pub health_check_timeout_s: u64,
    /// `health_check_max_retries`: a node is detached after `1 + retries` failed checks in a row.
    pub health_check_max_retries: u32,
    /// `health_check_retry_delay`, seconds.
    pub health_check_retry_delay_s: u64,
    /// `connect_timeout`, milliseconds (connects to backends, health checks included).
    pub connect_timeout_ms: u64,
    /// `sr_check_period`, seconds; 0 turns the replication check (and lag routing) off.
    pub sr_check_period_s: u64,
    /// `delay_threshold`, bytes of WAL; 0 turns lag-aware routing off.
    pub delay_threshold_bytes: u64,
    /// `auto_failback_interval`, seconds.
    pub auto_failback_interval_s: u64,
    /// `num_init_children`: client connections served at once.
    pub num_init_children: u32,
    /// `max_pool`: cached backend connection sets per child.
    pub max_pool: u32,
    /// `connection_life_time`, seconds (0: forever).
    pub connection_life_time_s: u64,
    /// `load_balance_mode`.
    pub load_balance: bool,
}

/// Whole seconds, rounded up, at least `min` (pgpool's periods are integers in seconds).
fn seconds_up(d: Duration, min: u64) -> u64 {
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    whole.max(min)
}

impl PgpoolSettings {
    /// The closest pgpool equivalents of `config`.
    pub fn from_router(config: &RouterConfig) -> PgpoolSettings {
        let health_period = seconds_up(config.health_interval, 1);
        // pgpool 4.3 judges lag in WAL bytes only; a time bound has no byte equivalent, so the
        // strictest one is used: a replica that had not replayed everything at the last check.
        let (sr_check_period_s, delay_threshold_bytes) = match config.max_replica_lag {
            Some(_) => (health_period, 1),
            None => (health_period, 0),
        };
        PgpoolSettings {
            health_check_period_s: health_period,
            health_check_timeout_s: seconds_up(config.health_timeout, 1),
            health_check_max_retries: config.failure_threshold.saturating_sub(1),
            health_check_retry_delay_s: health_period,
            connect_timeout_ms: u64::try_from(config.connect_timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            sr_check_period_s,
            delay_threshold_bytes,
            auto_failback_interval_s: health_period,
            num_init_children: config.max_connections_per_node.max(1),
            max_pool: 1,
            connection_life_time_s: config.max_idle_time.as_secs(),
            load_balance: config.use_read_replicas,
        }
    }
}

/// The router settings of `config` that pgpool-II 4.3 cannot honour, one line each (for reports).
/// `shards`: how many shards the topology has (pgpool fronts one primary).
pub fn unhonoured(config: &RouterConfig, shards: usize) -> Vec<String> {
    let defaults = RouterConfig::default();
    let mut list = Vec::new();
    if shards > 1 {
        list.push(format!(
            "org-range shards: pgpool fronts one primary; this run has {shards} shards"
        ));
    }
    match config.balance {
        Balance::Weighted => {}
        other => list.push(format!(
            "balance = {}: pgpool picks a replica at random in proportion to backend_weight \
             for each statement (statement_level_load_balance), like `weighted`",
            crate::scenario::router_section::balance_name(other)
        )),
    }
    if config.read_your_writes {
        list.push(
            "read_your_writes: pgpool has no causal tokens; its clients read from any replica"
                .to_string(),
        );
    }
    if config.max_replica_lag.is_some() {
        list.push(
            "max_replica_lag is a time bound; pgpool 4.3 judges lag in WAL bytes \
             (delay_threshold = 1: a replica behind by any byte at its last replication check, \
             every sr_check_period) and cannot see an apply delay between checks"
                .to_string(),
        );
    }
    if config.health_interval.subsec_nanos() != 0 {
        list.push(format!(
            "health_interval = {:?}: pgpool's health_check_period is whole seconds (rounded up to {} s)",
            config.health_interval,
            seconds_up(config.health_interval, 1)
        ));
    }
    if config.recovery_threshold != defaults.recovery_threshold {
        list.push(format!(
            "recovery_threshold = {}: pgpool re-attaches a replica at the first auto_failback check \
             that finds it streaming",
            config.recovery_threshold
        ));
    }
    if !config.ejection_time.is_zero() || !config.slow_request_ejection.is_zero() {
        list.push(
            "passive ejection (ejection_time, slow_request_ejection, max_ejection_percent): pgpool \
             detaches a backend on a socket error (failover_on_backend_error) until auto_failback \
             finds it streaming again; it never ejects a slow replica"
                .to_string(),
        );
    }
    if config.read_retries > 0 {
        list.push(format!(
            "read_retries = {}: pgpool does not retry a failed read on another node; the client \
             sees the error",
            config.read_retries
        ));
    }
    list.push(format!(
        "query_timeout = {:?}: pgpool has none; each client applies it to its own statements",
        config.query_timeout
    ));
    if config.max_connections_per_user > 0 || config.max_connections_per_org > 0 {
        list.push("per-user and per-org connection caps: pgpool has none".to_string());
    }
    if config.follow_promotion {
        list.push(
            "follow_promotion: no failover_command or follow_primary_command is configured; \
             pgpool does not follow a promotion it did not make"
                .to_string(),
        );
    }
    list
}

/// What a report says when the workload has critical reads (`primary_read_ratio` > 0).
pub const CRITICAL_READS_UNHONOURED: &str = "critical reads (primary_read_ratio > 0): clients send \
     them as plain reads, which pgpool balances like any other";

/// One `key = 'value'` line, quoting strings the way pgpool.conf wants.
fn quoted(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key} = '{}'", value.replace('\'', "''"));
}

fn plain(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{key} = {value}");
}

/// The text of pgpool.conf for one instance.
pub fn render_conf(
    backends: &[PgpoolBackend],
    settings: &PgpoolSettings,
    user: &str,
    dbname: &str,
    port: u16,
    pcp_port: u16,
    dir: &Path,
) -> String {
    let dir = dir.display().to_string();
    let on_off = |b: bool| if b { "on" } else { "off" };
    let mut out = String::new();
    quoted(&mut out, "backend_clustering_mode", "streaming_replication");
    quoted(&mut out, "listen_addresses", "127.0.0.1");
    plain(&mut out, "port", port);
    quoted(&mut out, "unix_socket_directories", &dir);
    quoted(&mut out, "pcp_listen_addresses", "127.0.0.1");
    plain(&mut out, "pcp_port", pcp_port);
    quoted(&mut out, "pcp_socket_dir", &dir);
    quoted(&mut out, "pid_file_name", &format!("{dir}/pgpool.pid"));
    quoted(&mut out, "logdir", &dir);
    quoted(&mut out, "log_destination", "stderr");
    quoted(&mut out, "log_min_messages", "warning");
    plain(&mut out, "use_watchdog", "off");
    plain(&mut out, "memory_cache_enabled", "off");
    plain(&mut out, "ssl", "off");
    plain(&mut out, "enable_pool_hba", "on");
    quoted(&mut out, "pool_passwd", "");
    plain(&mut out, "num_init_children", settings.num_init_children);
    plain(&mut out, "max_pool", settings.max_pool);
    plain(&mut out, "reserved_connections", 0);
    plain(&mut out, "child_life_time", 0);
    plain(
        &mut out,
        "connection_life_time",
        settings.connection_life_time_s,
    );
    plain(&mut out, "load_balance_mode", on_off(settings.load_balance));
    // The router picks a replica per read; pgpool's default is one replica per session.
    plain(&mut out, "statement_level_load_balance", "on");
    quoted(&mut out, "disable_load_balance_on_write", "transaction");
    plain(&mut out, "sr_check_period", settings.sr_check_period_s);
    quoted(&mut out, "sr_check_user", user);
    quoted(&mut out, "sr_check_password", "");
    quoted(&mut out, "sr_check_database", dbname);
    plain(&mut out, "delay_threshold", settings.delay_threshold_bytes);
    // Like the router: a lagging replica's reads go to the other replicas before the primary.
    plain(&mut out, "prefer_lower_delay_standby", "on");
    plain(
        &mut out,
        "health_check_period",
        settings.health_check_period_s,
    );
    plain(
        &mut out,
        "health_check_timeout",
        settings.health_check_timeout_s,
    );
    quoted(&mut out, "health_check_user", user);
    quoted(&mut out, "health_check_password", "");
    quoted(&mut out, "health_check_database", dbname);
    plain(
        &mut out,
        "health_check_max_retries",
        settings.health_check_max_retries,
    );
    plain(
        &mut out,
        "health_check_retry_delay",
        settings.health_check_retry_delay_s,
    );
    plain(&mut out, "connect_timeout", settings.connect_timeout_ms);
    quoted(&mut out, "failover_command", "");
    quoted(&mut out, "follow_primary_command", "");
    plain(&mut out, "failover_on_backend_error", "on");
    plain(&mut out, "auto_failback", "on");
    plain(
        &mut out,
        "auto_failback_interval",
        settings.auto_failback_interval_s,
    );
    plain(&mut out, "search_primary_node_timeout", 10);
    for (i, backend) in backends.iter().enumerate() {
        quoted(&mut out, &format!("backend_hostname{i}"), &backend.host);
        plain(&mut out, format!("backend_port{i}").as_str(), backend.port);
        plain(
            &mut out,
            format!("backend_weight{i}").as_str(),
            format_args!("{:.6}", backend.weight.max(0.0)),
        );
        quoted(&mut out, &format!("backend_flag{i}"), "ALLOW_TO_FAILOVER");
        quoted(
            &mut out,
            &format!("backend_application_name{i}"),
            &backend.name,
        );
    }
    out
}

/// Whether this process runs as root (then pgpool runs as `postgres`, like the servers).
fn running_as_root() -> Result<bool, PgpoolError> {
    let uid = std::fs::metadata("/proc/self")
        .map_err(|e| PgpoolError::io("reading /proc/self", e))?
        .uid();
    Ok(uid == 0)
}

impl Pgpool {
    /// Writes pgpool.conf and pool_hba.conf (trust for 127.0.0.1, streaming-replication mode,
    /// load balancing, health and replication checks from `config`) in a fresh directory under the
    /// system's temporary directory, starts `pgpool -n` on free ports and waits until it accepts
    /// connections as `user` to `dbname`.
    pub async fn start(
        backends: &[PgpoolBackend],
        config: &RouterConfig,
        user: &str,
        dbname: &str,
    ) -> Result<Pgpool, PgpoolError> {
        let binary = installed()?;
        let primaries = backends.iter().filter(|b| b.primary).count();
        if backends.is_empty() || primaries != 1 {
            return Err(PgpoolError::InvalidBackends(format!(
                "{} backends, {primaries} primaries",
                backends.len()
            )));
        }
        // pgpool's main node is backend 0: the primary first, then the replicas in order.
        let mut ordered: Vec<PgpoolBackend> =
            backends.iter().filter(|b| b.primary).cloned().collect();
        ordered.extend(backends.iter().filter(|b| !b.primary).cloned());

        let ports = pick_free_ports(2)?;
        let (port, pcp_port) = match ports.as_slice() {
            [a, b] => (*a, *b),
            _ => {
                return Err(PgpoolError::Cluster(ClusterError::NoFreePort {
                    first: crate::real::ports::PORT_FIRST,
                    last: crate::real::ports::PORT_LAST,
                }));
            }
        };
        let dir =
            std::env::temp_dir().join(format!("replisim-pgpool-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| PgpoolError::io(format!("creating {}", dir.display()), e))?;
        let mut pgpool = Pgpool {
            port,
            pcp_port,
            dir: dir.clone(),
            child: None,
            main_pid: None,
            stopped: false,
        };
        let settings = PgpoolSettings::from_router(config);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| PgpoolError::io(format!("writing {}", path.display()), e))
        };
        write(
            "pgpool.conf",
            &render_conf(&ordered, &settings, user, dbname, port, pcp_port, &dir),
        )?;
        write("pool_hba.conf", "host all all 127.0.0.1/32 trust\n")?;
        write("pcp.conf", "")?;
        let as_root = running_as_root()?;
        if as_root {
            let (uid, gid) = command::postgres_user_ids()?;
            for name in ["", "pgpool.conf", "pool_hba.conf", "pcp.conf"] {
                let path = dir.join(name);
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|e| {
                    PgpoolError::io(format!("chown postgres {}", path.display()), e)
                })?;
            }
        }
        let log = std::fs::File::create(dir.join("pgpool.log"))
            .map_err(|e| PgpoolError::io("creating pgpool.log", e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| PgpoolError::io("opening pgpool.log", e))?;
        let conf = dir.join("pgpool.conf");
        let pcp = dir.join("pcp.conf");
        let hba = dir.join("pool_hba.conf");
        let args: Vec<std::ffi::OsString> = vec![
            "-n".into(),
            // Discard a pgpool_status file: every run starts with every backend attached.
            "-D".into(),
            "-f".into(),
            conf.into(),
            "-F".into(),
            pcp.into(),
            "-a".into(),
            hba.into(),
        ];
        let mut cmd = if as_root {
            let mut cmd = tokio::process::Command::new(command::runuser_path());
            cmd.args(["-u", "postgres", "--"]).arg(&binary).args(&args);
            cmd
        } else {
            let mut cmd = tokio::process::Command::new(&binary);
            cmd.args(&args);
            cmd
        };
        cmd.current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| PgpoolError::io(format!("starting {}", binary.display()), e))?;
        let spawned = child.id();
        pgpool.child = Some(child);
        // pgpool's pid file does not last its whole life: the process tree is what is kept.
        pgpool.main_pid = match (spawned, as_root) {
            (Some(runuser), true) => command::children_of(runuser).first().copied(),
            (pid, _) => pid,
        };
        let ready = pgpool.wait_ready(user).await;
        if pgpool.main_pid.is_none()
            && let Some(runuser) = spawned
        {
            pgpool.main_pid = command::children_of(runuser).first().copied();
        }
        ready?;
        Ok(pgpool)
    }

    /// The port pgpool accepts clients on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of pgpool's PCP interface (127.0.0.1).
    pub fn pcp_port(&self) -> u16 {
        self.pcp_port
    }

    /// pgpool's directory (configuration and `pgpool.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of pgpool's log.
    pub fn log_tail(&self) -> String {
        command::log_tail(&self.dir.join("pgpool.log"))
    }

    async fn wait_ready(&mut self, user: &str) -> Result<(), PgpoolError> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(PgpoolError::Exited {
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            let last = match probe(self.port, user).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if start.elapsed() > START_TIMEOUT {
                return Err(PgpoolError::NotReady {
                    waited: START_TIMEOUT,
                    last,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// pgpool's processes: the main one and its children, while the main one lives.
    fn processes(&self) -> Vec<u32> {
        let Some(main) = self.main_pid else {
            return Vec::new();
        };
        if !command::process_has_arg(main, "-n") {
            return Vec::new();
        }
        let mut pids = command::children_of(main);
        pids.push(main);
        pids
    }

    /// Stops pgpool (immediate shutdown, then a kill of whatever lingers) and removes its directory.
    pub async fn stop(mut self) {
        let before = self.processes();
        if let Some(main) = self.main_pid {
            command::signal("QUIT", &[main]).await;
            let start = Instant::now();
            while start.elapsed() < STOP_TIMEOUT && !self.processes().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            command::signal("KILL", &still_pgpool(&before)).await;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        self.stopped = true;
    }
}

/// Those of `pids` that are still pgpool processes (not exited, their number not reused).
fn still_pgpool(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("pgpool"))
        })
        .collect()
}

impl Drop for Pgpool {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let before = self.processes();
        if let Some(main) = self.main_pid {
            command::signal_blocking("QUIT", &[main]);
            // 250 polls of 20 ms: the same bound as `stop`.
            for _ in 0..250 {
                if self.processes().is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            command::signal_blocking("KILL", &still_pgpool(&before));
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One connection to pgpool and `SELECT 1`, under [`PROBE_TIMEOUT`].
async fn probe(port: u16, user: &str) -> Result<(), String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        // Not the clients' database: pgpool caches a child's backend connections per user and
        // database, and a client handed the probe's cached connections would reach the nodes under
        // the probe's application_name, which the evidence does not count as workload.
        .dbname(PROBE_DATABASE)
        .application_name("replisim-pgpool-probe")
        .connect_timeout(PROBE_TIMEOUT);
    let attempt = async {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let result = client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string());
        drop(client);
        driver.abort();
        result.map(|_| ())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends() -> Vec<PgpoolBackend> {
        ["primary-1", "replica-1"]
            .iter()
            .enumerate()
            .map(|(i, name)| PgpoolBackend {
                name: name.to_string(),
                host: "127.0.0.1".to_string(),
                port: 20_000 + i as u16,
                primary: i == 0,
                weight: if i == 0 { 0.0 } else { 1.0 },
            })
            .collect()
    }

    #[test]
    fn health_settings_follow_the_router_in_whole_seconds() {
        let config = RouterConfig {
            health_interval: Duration::from_millis(250),
            health_timeout: Duration::from_millis(1500),
            failure_threshold: 3,
            connect_timeout: Duration::from_millis(800),
            ..RouterConfig::default()
        };
        let s = PgpoolSettings::from_router(&config);
        assert_eq!(s.health_check_period_s, 1);
        assert_eq!(s.health_check_timeout_s, 2);
        assert_eq!(s.health_check_max_retries, 2);
        assert_eq!(s.connect_timeout_ms, 800);
        assert_eq!(s.delay_threshold_bytes, 0);
        let lagged = RouterConfig {
            max_replica_lag: Some(Duration::from_millis(500)),
            ..config
        };
        assert_eq!(
            PgpoolSettings::from_router(&lagged).delay_threshold_bytes,
            1
        );
    }

    #[test]
    fn the_conf_names_every_backend_with_its_weight() {
        let s = PgpoolSettings::from_router(&RouterConfig::default());
        let text = render_conf(
            &backends(),
            &s,
            "postgres",
            "replisim",
            21_000,
            21_001,
            Path::new("/tmp/x"),
        );
        assert!(text.contains("backend_clustering_mode = 'streaming_replication'"));
        assert!(text.contains("port = 21000\n"));
        assert!(text.contains("pcp_port = 21001\n"));
        assert!(text.contains("backend_port1 = 20001\n"));
        assert!(text.contains("backend_weight0 = 0.000000\n"));
        assert!(text.contains("backend_weight1 = 1.000000\n"));
        assert!(text.contains("backend_application_name1 = 'replica-1'"));
        assert!(text.contains("health_check_period = 30\n"));
        assert!(text.contains("health_check_database = 'replisim'\n"));
    }

    #[test]
    fn unhonoured_settings_are_named() {
        let list = unhonoured(
            &RouterConfig {
                read_your_writes: true,
                max_connections_per_user: 3,
                ..RouterConfig::default()
            },
            2,
        );
        let joined = list.join("\n");
        for needle in [
            "read_your_writes",
            "per-user",
            "shards",
            "passive ejection",
            "round_robin",
        ] {
            assert!(joined.contains(needle), "{needle} missing from {joined}");
        }
    }
}
