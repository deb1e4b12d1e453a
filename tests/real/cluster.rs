//! Real mode against PostgreSQL 15: a primary and replicas started by the crate, their faults, the
//! fault proxy, and teardown. Without PostgreSQL 15 each test prints a line and passes
//! (under `CI=true` it fails instead). Clusters run one at a time (they share ports and memory); the file takes seconds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use replisim::real::prerequisites::{Needs, skip_without_postgres};
use replisim::real::{
    Cluster, ClusterError, ClusterSpec, FaultProxy, ProxyRecordKind, RealNode, RealRole, ShardSpec,
    StatementMessage,
};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One cluster at a time across the tests of this file.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const READ: &str =
    "SELECT version, $3::bigint AS reader FROM replisim_kv WHERE org_id = $1 AND key = $2";
const WRITE: &str = "INSERT INTO replisim_kv (org_id, key, version, updated_by) VALUES ($1, $2, 1, $3) \
                     ON CONFLICT (org_id, key) DO UPDATE SET version = replisim_kv.version + 1, \
                     updated_by = $3 RETURNING version";
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the test must be skipped (a local run without PostgreSQL 15; under `CI=true` it fails).
fn postgres_missing() -> bool {
    skip_without_postgres(Needs::Server)
}

fn spec(primary: &str, replicas: &[&str]) -> ClusterSpec {
    ClusterSpec {
        shards: vec![ShardSpec {
            name: "s1".to_string(),
            primary: primary.to_string(),
            replicas: replicas.iter().map(|r| r.to_string()).collect(),
        }],
    }
}

fn node<'a>(cluster: &'a Cluster, name: &str) -> Result<&'a RealNode, ClusterError> {
    cluster
        .node(name)
        .ok_or_else(|| ClusterError::UnknownNode(name.to_string()))
}

async fn connect_config(
    config: &tokio_postgres::Config,
) -> Result<Client, Box<dyn std::error::Error>> {
    let (client, connection) = tokio::time::timeout(STEP_TIMEOUT, config.connect(NoTls)).await??;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn connect(node: &RealNode) -> Result<Client, Box<dyn std::error::Error>> {
    connect_config(&node.pg_config("replisim")).await
}

/// A connection to `port` on 127.0.0.1 (a proxy) as `application_name`.
fn config_at(port: u16, application_name: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("replisim")
        .application_name(application_name);
    config
}

async fn write(client: &Client, key: i64) -> Result<i64, tokio_postgres::Error> {
    let row = tokio::time::timeout(STEP_TIMEOUT, client.query_one(WRITE, &[&1i64, &key, &7i64]))
        .await
        .unwrap_or_else(|_| panic!("write of key {key} took more than {STEP_TIMEOUT:?}"))?;
    Ok(row.get(0))
}

/// The version a read returns (0 = no row).
async fn read(client: &Client, key: i64) -> Result<i64, Box<dyn std::error::Error>> {
    let row =
        tokio::time::timeout(STEP_TIMEOUT, client.query_opt(READ, &[&1i64, &key, &7i64])).await??;
    Ok(row.map(|row| row.get::<_, i64>(0)).unwrap_or(0))
}

/// Polls `read` until it returns `version`; returns how long that took.
async fn until_visible(
    client: &Client,
    key: i64,
    version: i64,
    limit: Duration,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let start = Instant::now();
    while read(client, key).await? != version {
        if start.elapsed() > limit {
            return Err(format!("key {key} not at version {version} after {limit:?}").into());
        }
    }
    Ok(start.elapsed())
}

/// Processes whose command line mentions `tag`, by `pgrep -f`.
fn processes_of(tag: &str) -> Result<String, std::io::Error> {
    let output = std::process::Command::new("pgrep")
        .arg("-a")
        .arg("-f")
        .arg(tag)
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn assert_gone(tag: &str, root: &Path) -> TestResult {
    let left = processes_of(tag)?;
    assert!(left.is_empty(), "processes of {tag} still running:\n{left}");
    assert!(!root.exists(), "{} still exists", root.display());
    Ok(())
}

fn expect_read_only(result: Result<i64, tokio_postgres::Error>, what: &str) {
    match result {
        Ok(version) => {
            panic!("{what}: write succeeded (version {version}), expected SQLSTATE 25006")
        }
        Err(e) => assert_eq!(
            e.code(),
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
            "{what}: {e}"
        ),
    }
}

#[tokio::test]
async fn replicas_follow_writes_and_suffer_faults() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let cluster = Cluster::start(&spec("primary-1", &["replica-1", "replica-2"])).await?;
    println!(
        "cluster start (primary + 2 replicas, all streaming): {:?}",
        started.elapsed()
    );
    assert_eq!(cluster.nodes().len(), 3);
    assert_eq!(node(&cluster, "primary-1")?.role(), RealRole::Primary);
    assert_eq!(node(&cluster, "replica-2")?.role(), RealRole::Replica);
    assert!(cluster.nodes().iter().all(RealNode::is_running));

    let primary = connect(node(&cluster, "primary-1")?).await?;
    let replica_1 = connect(node(&cluster, "replica-1")?).await?;
    let mut visible = Vec::new();
    for key in 1..=7 {
        assert_eq!(write(&primary, key).await?, 1);
        visible.push(until_visible(&replica_1, key, 1, Duration::from_secs(5)).await?);
    }
    println!("visibility delay on a replica, 7 writes (first one cold): {visible:?}");

    expect_read_only(write(&replica_1, 1).await, "write on a replica");

    // Crash and restart of a replica: it refuses connects while down and streams again after.
    let crashed = Instant::now();
    cluster.crash("replica-2").await?;
    println!("crash (immediate stop): {:?}", crashed.elapsed());
    assert!(!node(&cluster, "replica-2")?.is_running());
    assert!(connect(node(&cluster, "replica-2")?).await.is_err());
    assert!(matches!(
        cluster.crash("replica-2").await,
        Err(ClusterError::NotRunning(_))
    ));
    assert_eq!(write(&primary, 12).await?, 1);
    let restarted = Instant::now();
    cluster.restart("replica-2").await?;
    let restart_time = restarted.elapsed();
    cluster.wait_streaming("replica-2", STEP_TIMEOUT).await?;
    println!(
        "restart: {restart_time:?}, streaming again after {:?}",
        restarted.elapsed()
    );
    let replica_2 = connect(node(&cluster, "replica-2")?).await?;
    until_visible(&replica_2, 12, 1, Duration::from_secs(5)).await?;

    // An apply delay hides a new row for about that long.
    let delay = Duration::from_secs(1);
    cluster.set_apply_delay("replica-1", delay).await?;
    assert_eq!(write(&primary, 13).await?, 1);
    let delayed = until_visible(&replica_1, 13, 1, Duration::from_secs(5)).await?;
    println!("visibility with a 1 s apply delay: {delayed:?}");
    assert!(
        delayed >= delay - Duration::from_millis(100),
        "row visible after {delayed:?}"
    );
    assert!(
        delayed <= delay + Duration::from_millis(1000),
        "row visible after {delayed:?}"
    );
    cluster.set_apply_delay("replica-1", Duration::ZERO).await?;
    let setting = replica_1
        .query_one("SHOW recovery_min_apply_delay", &[])
        .await?;
    assert_eq!(setting.get::<_, String>(0), "0");
    assert_eq!(write(&primary, 14).await?, 1);
    let undelayed = until_visible(&replica_1, 14, 1, Duration::from_secs(5)).await?;
    assert!(
        undelayed < Duration::from_millis(500),
        "reset delay still delays: {undelayed:?}"
    );

    // A paused replica serves the old row until resumed.
    cluster.pause_replay("replica-1").await?;
    assert_eq!(write(&primary, 14).await?, 2);
    until_visible(&replica_2, 14, 2, Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        read(&replica_1, 14).await?,
        1,
        "a paused replica applied WAL"
    );
    cluster.resume_replay("replica-1").await?;
    until_visible(&replica_1, 14, 2, Duration::from_secs(5)).await?;

    assert!(matches!(
        cluster.pause_replay("primary-1").await,
        Err(ClusterError::NotReplica { .. })
    ));

    let tag = cluster.process_tag();
    let root = cluster.root().to_path_buf();
    assert!(
        !processes_of(&tag)?.is_empty(),
        "pgrep finds no server of the cluster"
    );
    let stopping = Instant::now();
    cluster.teardown().await?;
    println!("teardown (3 servers): {:?}", stopping.elapsed());
    assert_gone(&tag, &root)
}

#[tokio::test]
async fn promotion_moves_writes_to_the_new_primary() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(&spec("primary-1", &["replica-1", "replica-2"])).await?;
    let old_primary = connect(node(&cluster, "primary-1")?).await?;
    assert_eq!(write(&old_primary, 1).await?, 1);
    let replica_2 = connect(node(&cluster, "replica-2")?).await?;
    until_visible(&replica_2, 1, 1, Duration::from_secs(5)).await?;

    let promoting = Instant::now();
    cluster.promote("replica-1").await?;
    let promote_time = promoting.elapsed();
    cluster.wait_streaming("replica-2", STEP_TIMEOUT).await?;
    println!(
        "promote: {promote_time:?}, other replica following after {:?}",
        promoting.elapsed()
    );
    assert_eq!(node(&cluster, "replica-1")?.role(), RealRole::Primary);
    assert_eq!(node(&cluster, "primary-1")?.role(), RealRole::Retired);
    assert_eq!(node(&cluster, "replica-2")?.role(), RealRole::Replica);
    assert_eq!(
        cluster.primary_of("s1").map(|n| n.name.as_str()),
        Some("replica-1")
    );

    let new_primary = connect(node(&cluster, "replica-1")?).await?;
    assert_eq!(write(&new_primary, 1).await?, 2);
    until_visible(&replica_2, 1, 2, Duration::from_secs(5)).await?;

    // The old primary is fenced: for sessions opened before, new ones, and after a restart.
    expect_read_only(
        write(&old_primary, 2).await,
        "old session on the old primary",
    );
    let fresh = connect(node(&cluster, "primary-1")?).await?;
    expect_read_only(write(&fresh, 2).await, "new session on the old primary");
    cluster.crash("primary-1").await?;
    cluster.restart("primary-1").await?;
    let restarted = connect(node(&cluster, "primary-1")?).await?;
    expect_read_only(write(&restarted, 2).await, "restarted old primary");

    // Dropping the cluster tears it down.
    let tag = cluster.process_tag();
    let root = cluster.root().to_path_buf();
    let dropping = Instant::now();
    drop(cluster);
    println!("teardown by Drop (3 servers): {:?}", dropping.elapsed());
    assert_gone(&tag, &root)
}

/// Median time of `count` round trips of a prepared `SELECT 1`.
async fn median_round_trip(
    client: &Client,
    count: usize,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let statement = client.prepare("SELECT 1").await?;
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        tokio::time::timeout(STEP_TIMEOUT, client.query_one(&statement, &[])).await??;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    Ok(times[count / 2])
}

#[tokio::test]
async fn fault_proxy_adds_latency_partitions_and_resets() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(&spec("primary-1", &[])).await?;
    let proxy = FaultProxy::start(node(&cluster, "primary-1")?.addr()).await?;
    let port = proxy.local_addr().port();
    let workload = connect_config(&config_at(port, "replisim")).await?;
    let health = connect_config(&config_at(port, "replisim-health")).await?;
    health.simple_query("SELECT pg_is_in_recovery()").await?;

    // Latency: added to each direction, so twice per round trip.
    let direct = connect(node(&cluster, "primary-1")?).await?;
    let direct_base = median_round_trip(&direct, 21).await?;
    let base = median_round_trip(&workload, 21).await?;
    println!("proxy overhead: round trip {direct_base:?} direct, {base:?} through the proxy");
    assert!(
        base < direct_base + Duration::from_millis(5),
        "proxy overhead {base:?} vs {direct_base:?}"
    );
    let one_way = Duration::from_millis(20);
    proxy.set_latency(one_way);
    let slowed = median_round_trip(&workload, 11).await?;
    proxy.set_latency(Duration::ZERO);
    let added = slowed.saturating_sub(base);
    println!(
        "proxy latency: base round trip {base:?}, with 2 x {one_way:?}: {slowed:?} (added {added:?})"
    );
    assert!(
        added >= 2 * one_way - Duration::from_millis(1),
        "added only {added:?}"
    );
    assert!(
        added <= 2 * one_way + Duration::from_millis(20),
        "added {added:?}"
    );

    // What crossed: connects named by their startup, statements attributed to their connection.
    let records = proxy.records();
    let named = |name: &str| {
        records
            .iter()
            .filter(|r| r.application_name.as_deref() == Some(name))
            .collect::<Vec<_>>()
    };
    let workload_records = named("replisim");
    assert!(matches!(
        workload_records.first().map(|r| &r.kind),
        Some(ProxyRecordKind::Connect)
    ));
    let selects = workload_records
        .iter()
        .filter(|r| {
            matches!(&r.kind, ProxyRecordKind::Statement { message: StatementMessage::Execute, text, .. } if &**text == "SELECT 1")
        })
        .count();
    assert_eq!(selects, 32, "recorded executes of SELECT 1");
    let health_records = named("replisim-health");
    assert!(health_records.iter().any(|r| matches!(
        &r.kind,
        ProxyRecordKind::Statement { message: StatementMessage::Query, text, .. } if &**text == "SELECT pg_is_in_recovery()"
    )));
    assert!(records.iter().all(|r| !r.partitioned));
    assert_eq!(proxy.records_dropped(), 0);

    // Partition: an open connection's query and a new connect both hang.
    proxy.set_partitioned(true);
    let hung = tokio::time::timeout(
        Duration::from_millis(500),
        workload.simple_query("SELECT 2"),
    )
    .await;
    assert!(hung.is_err(), "a query crossed a partition");
    let connecting = tokio::time::timeout(
        Duration::from_millis(500),
        connect_config(&config_at(port, "replisim")),
    )
    .await;
    assert!(
        connecting.is_err(),
        "a connect completed across a partition"
    );
    let during: Vec<_> = proxy
        .records()
        .into_iter()
        .filter(|r| r.partitioned)
        .collect();
    assert!(
        during.iter().any(|r| r.kind == ProxyRecordKind::Connect),
        "{during:?}"
    );
    assert!(during.iter().any(
        |r| matches!(&r.kind, ProxyRecordKind::Statement { text, .. } if &**text == "SELECT 2")
    ));
    proxy.set_partitioned(false);
    let healed = connect_config(&config_at(port, "replisim")).await?;
    tokio::time::timeout(STEP_TIMEOUT, healed.simple_query("SELECT 1")).await??;

    // Resets: every open connection fails at its next statement; new connects work.
    let victim = connect_config(&config_at(port, "replisim")).await?;
    victim.simple_query("SELECT 3").await?;
    let dropped = proxy.drop_connections();
    assert!(dropped >= 3, "dropped {dropped} connections");
    let after = tokio::time::timeout(STEP_TIMEOUT, victim.simple_query("SELECT 4")).await?;
    assert!(after.is_err(), "a query succeeded on a reset connection");
    let fresh = connect_config(&config_at(port, "replisim")).await?;
    fresh.simple_query("SELECT 5").await?;

    proxy.shutdown().await;
    cluster.teardown().await?;
    Ok(())
}

#[tokio::test]
async fn interruption_and_panic_leave_nothing_behind() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;

    // A stop signal (Ctrl-C in the command) tears the cluster down before returning.
    let cluster = Cluster::start(&spec("primary-1", &[])).await?;
    let tag = cluster.process_tag();
    let root = cluster.root().to_path_buf();
    let outcome = cluster
        .run_until(
            std::future::pending::<()>(),
            tokio::time::sleep(Duration::from_millis(10)),
        )
        .await;
    assert!(
        matches!(outcome, Err(ClusterError::Interrupted)),
        "{outcome:?}"
    );
    assert_gone(&tag, &root)?;
    assert!(matches!(
        cluster.crash("primary-1").await,
        Err(ClusterError::TornDown)
    ));
    drop(cluster);

    // A panic drops the cluster while unwinding.
    let (found, located) = tokio::sync::oneshot::channel::<Result<(String, PathBuf), String>>();
    let task = tokio::spawn(async move {
        match Cluster::start(&spec("primary-1", &[])).await {
            Ok(cluster) => {
                let _ = found.send(Ok((cluster.process_tag(), cluster.root().to_path_buf())));
                panic!(
                    "deliberate panic with a running cluster in {}",
                    cluster.root().display()
                );
            }
            Err(e) => {
                let _ = found.send(Err(e.to_string()));
            }
        }
    });
    let joined = task.await;
    let (tag, root) = located.await??;
    assert!(joined.is_err_and(|e| e.is_panic()));
    assert_gone(&tag, &root)
}
