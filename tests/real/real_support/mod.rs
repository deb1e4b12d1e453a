//! Shared pieces of the router tests against a real cluster: a cluster whose servers count the
//! statements they execute (`pg_stat_statements`), those counts per node, topologies and router
//! settings; read loops ([`loops`]) and proxies with their records ([`proxied`]).

pub mod loops;
pub mod proxied;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use replisim::real::prerequisites::{Needs, skip_without_postgres};
use replisim::real::{Cluster, ClusterSpec, RealNode, ServerSettings, ShardSpec};
use replisim::record::workload::{READ_SQL, WRITE_SQL};
use replisim::router::{
    NodeAddress, Router, RouterConfig, ShardConfig, TcpConnector, Topology, WriteRequest,
};
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

/// The start of the workload read of SPEC 2a, as `pg_stat_statements` stores it.
fn read_prefix() -> &'static str {
    READ_SQL.split(" WHERE").next().unwrap_or(READ_SQL)
}

/// The start of the workload write. `pg_stat_statements` replaces its constants (`1`) with
/// parameters, so the text is compared up to the first of them.
fn write_prefix() -> &'static str {
    WRITE_SQL.split(" (").next().unwrap_or(WRITE_SQL)
}

/// Whether the test must be skipped: PostgreSQL 15 or its `pg_stat_statements` module is missing
/// on a local run (a line says so); under `CI=true` a missing server fails the test instead.
pub fn postgres_missing() -> bool {
    skip_without_postgres(Needs::ServerAndStatements)
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

/// The first column of the first row, as a workload statement's `version`.
pub fn version_of(rows: &[tokio_postgres::Row]) -> Result<i64, AnyError> {
    Ok(rows
        .first()
        .ok_or("no row where one was expected")?
        .try_get(0)?)
}

/// What every node of `counts` executed, added up.
pub fn totals(counts: &BTreeMap<String, Executed>) -> Executed {
    counts
        .values()
        .fold(Executed::default(), |sum, e| Executed {
            reads: sum.reads + e.reads,
            writes: sum.writes + e.writes,
        })
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

/// Starts a router over plain TCP.
pub async fn start_router(config: RouterConfig, topology: Topology) -> Result<Router, AnyError> {
    step(Router::start(config, topology, Arc::new(TcpConnector))).await
}

/// Polls every node's counts until `done` accepts them (the last statements of a client may be
/// counted a moment after it saw their results), then returns them.
pub async fn settled_counts(
    cluster: &Cluster,
    done: impl Fn(&BTreeMap<String, Executed>) -> bool,
) -> Result<BTreeMap<String, Executed>, AnyError> {
    let limit = Instant::now() + Duration::from_secs(2);
    loop {
        let counts = executed_all(cluster).await?;
        if done(&counts) || Instant::now() > limit {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What `name` executed between the counts `before` and `after`.
pub fn delta(
    after: &BTreeMap<String, Executed>,
    before: &BTreeMap<String, Executed>,
    name: &str,
) -> Executed {
    let a = after.get(name).copied().unwrap_or_default();
    let b = before.get(name).copied().unwrap_or_default();
    Executed {
        reads: a.reads - b.reads,
        writes: a.writes - b.writes,
    }
}
