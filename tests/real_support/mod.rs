//! Shared pieces of the router tests against a real cluster: a cluster whose servers count the
//! statements they execute (`pg_stat_statements`), those counts per node, topologies, and read
//! loops that record who served each read.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use replisim::real::{Cluster, ClusterSpec, PG_BIN_DIR, RealNode, ServerSettings, ShardSpec};
use replisim::router::{
    NodeAddress, ReadRequest, Router, RouterConfig, ShardConfig, Topology, WriteRequest,
};
use replisim::sim::workload::{READ_SQL, WRITE_SQL};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};

/// Any error a test step can end with.
pub type AnyError = Box<dyn std::error::Error>;
/// What a test returns.
pub type TestResult = Result<(), AnyError>;

/// Limit on one step a test takes outside the router (connects, statistics, waits for rows).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The org range of the one shard.
pub const ORGS: std::ops::Range<i64> = 0..1_000_000;
/// What a server logs when a write reaches it while it is read-only (SQLSTATE 25006).
pub const READ_ONLY_ERROR: &str = "cannot execute INSERT in a read-only transaction";
/// `application_name` of the tests' own connections to the servers, apart from the router's.
const STATS_APPLICATION_NAME: &str = "replisim-stats";
/// Records kept by one set of read loops; beyond it reads still run but are only counted.
const READ_LOGS_MAX: usize = 200_000;

/// The start of the workload read of SPEC 2a, as `pg_stat_statements` stores it.
fn read_prefix() -> &'static str {
    READ_SQL.split(" WHERE").next().unwrap_or(READ_SQL)
}

/// The start of the workload write. `pg_stat_statements` replaces its constants (`1`) with
/// parameters, so the text is compared up to the first of them.
fn write_prefix() -> &'static str {
    WRITE_SQL.split(" (").next().unwrap_or(WRITE_SQL)
}

/// Whether the servers are missing: then the test prints why and passes without running.
pub fn postgres_missing() -> bool {
    let initdb = Path::new(PG_BIN_DIR).join("initdb");
    if !initdb.is_file() {
        println!(
            "skipped: PostgreSQL 15 is not installed ({} is missing)",
            initdb.display()
        );
        return true;
    }
    let library = Path::new(PG_BIN_DIR).join("../lib/pg_stat_statements.so");
    if !library.is_file() {
        println!(
            "skipped: the pg_stat_statements module of PostgreSQL 15 is not installed ({} is \
             missing)",
            library.display()
        );
        return true;
    }
    false
}

/// A one-shard cluster (primary + replicas) whose servers count statements with
/// `pg_stat_statements`, the extension created and visible on every replica. Counts start at zero
/// on every (re)start of a server.
pub async fn start_cluster(primary: &str, replicas: &[&str]) -> Result<Cluster, AnyError> {
    let spec = ClusterSpec {
        shards: vec![ShardSpec {
            name: "s1".to_string(),
            primary: primary.to_string(),
            replicas: replicas.iter().map(|r| r.to_string()).collect(),
        }],
    };
    let mut settings = ServerSettings::new();
    settings
        .set("shared_preload_libraries", "pg_stat_statements")
        .set("pg_stat_statements.save", "off");
    let cluster = Cluster::start_with(&spec, &settings).await?;
    let admin = connect(node(&cluster, primary)?).await?;
    step(admin.batch_execute("CREATE EXTENSION pg_stat_statements")).await?;
    for replica in replicas {
        let client = &connect(node(&cluster, replica)?).await?;
        wait_for(
            &format!("the extension on {replica}"),
            STEP_TIMEOUT,
            move || async move {
                let row = step(client.query_one(
                    "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'",
                    &[],
                ))
                .await?;
                Ok(row.get::<_, i64>(0) == 1)
            },
        )
        .await?;
    }
    Ok(cluster)
}

/// The node called `name`.
pub fn node<'a>(cluster: &'a Cluster, name: &str) -> Result<&'a RealNode, AnyError> {
    cluster
        .node(name)
        .ok_or_else(|| format!("no node {name} in the cluster").into())
}

/// `future` within [`STEP_TIMEOUT`].
pub async fn step<T, E: Into<AnyError>>(
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, AnyError> {
    match tokio::time::timeout(STEP_TIMEOUT, future).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(format!("a step took more than {STEP_TIMEOUT:?}").into()),
    }
}

/// A direct connection to `node`, bypassing the router.
pub async fn connect(node: &RealNode) -> Result<Client, AnyError> {
    let (client, connection) = step(node.pg_config(STATS_APPLICATION_NAME).connect(NoTls)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Polls `check` every 10 ms until it returns true; an error if it never does within `limit`.
pub async fn wait_for<F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<Duration, AnyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, AnyError>>,
{
    let start = Instant::now();
    loop {
        if check().await? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Workload statements one server executed to completion, by its own `pg_stat_statements`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Executed {
    /// Workload reads (SPEC 2a).
    pub reads: i64,
    /// Workload writes (SPEC 2a).
    pub writes: i64,
}

/// What `node` executed since it last started.
pub async fn executed(node: &RealNode) -> Result<Executed, AnyError> {
    let client = connect(node).await?;
    let row = step(client.query_one(
        "SELECT coalesce(sum(calls) FILTER (WHERE starts_with(query, $1)), 0)::bigint, \
                coalesce(sum(calls) FILTER (WHERE starts_with(query, $2)), 0)::bigint \
         FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[&read_prefix(), &write_prefix()],
    ))
    .await?;
    Ok(Executed {
        reads: row.get(0),
        writes: row.get(1),
    })
}

/// What every running node executed, by name.
pub async fn executed_all(cluster: &Cluster) -> Result<BTreeMap<String, Executed>, AnyError> {
    let mut all = BTreeMap::new();
    for node in cluster.nodes().iter().filter(|n| n.is_running()) {
        all.insert(node.name.clone(), executed(node).await?);
    }
    Ok(all)
}

/// Whether `node`'s server log contains `text`.
pub fn log_mentions(node: &RealNode, text: &str) -> Result<bool, AnyError> {
    let bytes = std::fs::read(&node.log_file)?;
    Ok(String::from_utf8_lossy(&bytes).contains(text))
}

/// One shard over `orgs` [`ORGS`]: `primary` and `replicas` as (name, port on 127.0.0.1).
pub fn topology(primary: (&str, u16), replicas: &[(&str, u16)]) -> Topology {
    let address = |(name, port): (&str, u16)| NodeAddress::new(name, "127.0.0.1", port);
    Topology {
        shards: vec![ShardConfig {
            name: "s1".into(),
            orgs: ORGS,
            primary: address(primary),
            replicas: replicas.iter().copied().map(address).collect(),
        }],
        user: "postgres".into(),
        dbname: replisim::real::DATABASE.into(),
        password: None,
    }
}

/// The nodes of `cluster` at their own ports, as a router topology.
pub fn direct_topology(cluster: &Cluster) -> Result<Topology, AnyError> {
    let mut nodes = cluster.nodes().iter();
    let primary = nodes.next().ok_or("the cluster has no node")?;
    let replicas: Vec<(&str, u16)> = nodes.map(|n| (n.name.as_str(), n.port)).collect();
    Ok(topology((&primary.name, primary.port), &replicas))
}

/// Settings for failover tests: a dead node is found within about 0.4 s and every wait is short.
pub fn fast_failover_config() -> Result<RouterConfig, AnyError> {
    Ok(RouterConfig::builder()
        .health_interval(Duration::from_millis(200))
        .health_timeout(Duration::from_millis(200))
        .failure_threshold(1)
        .recovery_threshold(1)
        .connect_timeout(Duration::from_millis(500))
        .query_timeout(Duration::from_secs(1))
        .read_retries(1)
        .build()?)
}

/// Writes version 1 of `keys` keys of `org` through the router (key i at version 1).
pub async fn seed(router: &Router, org: i64, keys: i64) -> TestResult {
    for key in 0..keys {
        let request = WriteRequest { org, user: 1 };
        let routed = step(router.write(request, WRITE_SQL, &[&org, &key, &1i64])).await?;
        assert_eq!(
            routed.node, "primary-1",
            "a write was served by {}",
            routed.node
        );
    }
    Ok(())
}

/// One read of a read loop, as the client saw it.
#[derive(Clone, Debug)]
pub struct ReadLog {
    /// When it started.
    pub start: Instant,
    /// How long it took.
    pub took: Duration,
    /// The node that served it, if it succeeded.
    pub node: Option<String>,
    /// Attempts it took (retries included).
    pub attempts: u32,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Concurrent clients that read through a router until stopped.
pub struct ReadLoops {
    stop: Arc<AtomicBool>,
    logs: Arc<Mutex<Vec<ReadLog>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts `clients` loops, each reading key `i mod keys` of `org` (replica allowed), pausing
/// `pause` between reads.
pub fn spawn_read_loops(
    router: &Router,
    clients: usize,
    org: i64,
    keys: i64,
    pause: Duration,
) -> ReadLoops {
    let stop = Arc::new(AtomicBool::new(false));
    let logs = Arc::new(Mutex::new(Vec::new()));
    let tasks = (0..clients)
        .map(|client| {
            let router = router.clone();
            let stop = Arc::clone(&stop);
            let logs = Arc::clone(&logs);
            let user = i64::try_from(client).unwrap_or(i64::MAX);
            tokio::spawn(async move {
                let mut key = user % keys.max(1);
                while !stop.load(Ordering::Relaxed) {
                    let log = read_once(&router, org, key, user).await;
                    {
                        let mut logs = logs.lock().unwrap_or_else(PoisonError::into_inner);
                        if logs.len() < READ_LOGS_MAX {
                            logs.push(log);
                        }
                    }
                    key = (key + 1) % keys.max(1);
                    tokio::time::sleep(pause).await;
                }
            })
        })
        .collect();
    ReadLoops { stop, logs, tasks }
}

async fn read_once(router: &Router, org: i64, key: i64, user: i64) -> ReadLog {
    let start = Instant::now();
    let request = ReadRequest {
        org,
        user,
        prefer_replica: true,
    };
    let result = step(router.read(request, READ_SQL, &[&org, &key, &user])).await;
    let took = start.elapsed();
    match result {
        Ok(routed) => ReadLog {
            start,
            took,
            node: Some(routed.node),
            attempts: routed.attempts,
            error: None,
        },
        Err(error) => ReadLog {
            start,
            took,
            node: None,
            attempts: 0,
            error: Some(error.to_string()),
        },
    }
}

impl ReadLoops {
    /// Reads served by `node` that started at or after `since`, so far.
    pub fn served_since(&self, node: &str, since: Instant) -> usize {
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        served(&logs, node, since, None)
    }

    /// Stops every loop after its current read and returns every read, in completion order.
    pub async fn stop(self) -> Result<Vec<ReadLog>, AnyError> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            step(task).await?;
        }
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(logs.clone())
    }
}

/// Reads served by `node` that started in `[since, until)` (`until` open when `None`).
pub fn served(logs: &[ReadLog], node: &str, since: Instant, until: Option<Instant>) -> usize {
    logs.iter()
        .filter(|log| log.node.as_deref() == Some(node))
        .filter(|log| log.start >= since && until.is_none_or(|until| log.start < until))
        .count()
}

/// The failed reads, as their error messages.
pub fn failures(logs: &[ReadLog]) -> Vec<String> {
    logs.iter().filter_map(|log| log.error.clone()).collect()
}

/// Reads per serving node (failed reads under `failed`).
pub fn per_node(logs: &[ReadLog]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for log in logs {
        let node = log.node.clone().unwrap_or_else(|| "failed".to_string());
        *counts.entry(node).or_insert(0) += 1;
    }
    counts
}

/// The median of `times` (zero when empty).
pub fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Polls the router's view of `node` every 5 ms until its health is `healthy`; returns how long
/// that took.
pub async fn wait_health(
    router: &Router,
    node: &str,
    healthy: bool,
    limit: Duration,
) -> Result<Duration, AnyError> {
    let start = Instant::now();
    loop {
        let now_healthy = router.stats().node(node).map(|n| n.healthy);
        if now_healthy == Some(healthy) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(format!(
                "the router did not see {node} as healthy = {healthy} within {limit:?}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
