//! Lag-aware routing and read-your-writes sessions against a real PostgreSQL 15 streaming-replication
//! cluster: a replica whose replay is paused leaves reads under `max_replica_lag` and comes back after
//! resume; sessions see their own writes through a 2 s apply delay. Without PostgreSQL 15 each test
//! prints a line and passes (under `CI=true` it fails instead). Clusters run one at a time.

// Shared with the other real-cluster tests; this file uses only part of it.
#[allow(dead_code)]
use crate::real_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use real_support::{
    TestResult, direct_topology, postgres_missing, seed, start_cluster, start_router, step,
    version_of, wait_for,
};
use replisim::record::workload::{READ_SQL, WRITE_SQL};
use replisim::router::route_reason::RouteReason;
use replisim::router::{
    ReadRequest, Router, RouterConfig, Scope, ServedRole, Session, WriteRequest,
};
use tokio::task::JoinHandle;

/// One cluster at a time across the tests of this file.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ORG: i64 = 77;
const KEYS: i64 = 20;

/// Writes key after key through `router` every 20 ms until `stop` is set, so that a replica that
/// stops replaying falls behind in time as well as in bytes.
fn keep_writing(router: Router, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut key = 0;
        while !stop.load(Ordering::Relaxed) {
            let request = WriteRequest { org: ORG, user: 9 };
            let _ = step(router.write(request, WRITE_SQL, &[&ORG, &key, &9i64])).await;
            key = (key + 1) % KEYS;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// The nodes that served `n` replica reads.
async fn read_nodes(router: &Router, n: i64) -> Result<Vec<String>, real_support::AnyError> {
    let mut nodes = Vec::new();
    for key in 0..n {
        let request = ReadRequest {
            org: ORG,
            user: 1,
            prefer_replica: true,
        };
        let key = key % KEYS;
        let routed = step(router.read(request, READ_SQL, &[&ORG, &key, &1i64])).await?;
        nodes.push(routed.node);
    }
    Ok(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replica_leaves_reads_and_returns_after_resume() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let cluster = start_cluster("primary-1", &["replica-1", "replica-2"]).await?;
    let config = RouterConfig::builder()
        .health_interval(Duration::from_millis(100))
        .health_timeout(Duration::from_millis(500))
        .max_replica_lag(Some(Duration::from_millis(500)))
        .build()?;
    let router = start_router(config, direct_topology(&cluster)?).await?;
    seed(&router, ORG, KEYS).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(router.clone(), Arc::clone(&stop));

    let before = read_nodes(&router, 40).await?;
    assert!(before.iter().any(|n| n == "replica-1"), "{before:?}");
    cluster.pause_replay("replica-1").await?;
    let left = wait_for("replica-1 leaves reads", Duration::from_secs(5), || {
        let router = router.clone();
        async move {
            let lag = router.metrics().node("replica-1").map(|n| n.lag.time_us);
            Ok(lag.is_some_and(|us| us > 500_000))
        }
    })
    .await?;
    // One more probe round so the fresh bit follows the measure the metrics showed.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let paused = read_nodes(&router, 40).await?;
    assert!(
        paused.iter().all(|n| n == "replica-2"),
        "reads while replica-1 is paused: {paused:?}"
    );
    let excluded: u64 = router
        .metrics()
        .nodes
        .iter()
        .map(|n| n.routes.get(RouteReason::LagExclusion))
        .sum();
    assert!(excluded >= 40, "lag_exclusion {excluded}");

    cluster.resume_replay("replica-1").await?;
    let back = wait_for(
        "replica-1 takes reads again",
        Duration::from_secs(5),
        || {
            let router = router.clone();
            async move {
                let nodes = read_nodes(&router, 4).await?;
                Ok(nodes.iter().any(|n| n == "replica-1"))
            }
        },
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    writer.await?;
    let history = router
        .metrics()
        .node("replica-1")
        .map(|n| n.lag.history.max_us)
        .unwrap_or(0);
    println!(
        "paused replica: out of reads {left:?} after the pause, back {back:?} after resume, \
         worst lag probed {history} us"
    );
    router.shutdown();
    cluster.teardown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_read_their_writes_through_an_apply_delay() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let cluster = start_cluster("primary-1", &["replica-1", "replica-2"]).await?;
    let config = RouterConfig::builder()
        .health_interval(Duration::from_millis(100))
        .health_timeout(Duration::from_millis(500))
        .read_your_writes(true)
        .build()?;
    let router = start_router(config, direct_topology(&cluster)?).await?;
    seed(&router, ORG, KEYS).await?;
    for replica in ["replica-1", "replica-2"] {
        cluster
            .set_apply_delay(replica, Duration::from_secs(2))
            .await?;
    }
    let mut session = Session::new(router.clone());
    let mut on_primary = 0;
    for round in 0..20i64 {
        let key = round % KEYS;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&ORG, &key, &3i64];
        let written =
            step(session.write(WriteRequest { org: ORG, user: 3 }, WRITE_SQL, &params)).await?;
        let wrote = version_of(&written.value)?;
        let request = ReadRequest {
            org: ORG,
            user: 3,
            prefer_replica: true,
        };
        let read = step(session.read(request, READ_SQL, &params)).await?;
        let version = version_of(&read.value)?;
        assert!(
            version >= wrote,
            "round {round}: wrote version {wrote}, read {version} from {}",
            read.node
        );
        on_primary += i32::from(read.role == ServedRole::Primary);
    }
    assert!(
        on_primary > 0,
        "a 2 s delay hid every write from the replicas"
    );
    // Once the replicas have applied the session's writes, its reads go back to them.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let request = ReadRequest {
        org: ORG,
        user: 3,
        prefer_replica: true,
    };
    let later = step(session.read(request, READ_SQL, &[&ORG, &0i64, &3i64])).await?;
    assert_eq!(later.role, ServedRole::Replica, "served by {}", later.node);
    let token = session.token(ORG).map(|t| t.to_string());
    println!("read-your-writes: {on_primary} of 20 reads on the primary; token {token:?}");
    // Row scopes: a write to one row keeps only that row's reads off the delayed replicas.
    let (written_row, other_row) = (Scope::row(ORG, 1), Scope::row(ORG, 2));
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&ORG, &1i64, &3i64];
    let written = step(session.write_in(
        written_row,
        WriteRequest { org: ORG, user: 3 },
        WRITE_SQL,
        &params,
    ))
    .await?;
    let wrote = version_of(&written.value)?;
    let own = step(session.read_in(written_row, request, READ_SQL, &params)).await?;
    assert!(
        version_of(&own.value)? >= wrote,
        "the row's own write is missing"
    );
    assert_eq!(own.role, ServedRole::Primary, "served by {}", own.node);
    let other = step(session.read_in(other_row, request, READ_SQL, &[&ORG, &2i64, &3i64])).await?;
    assert_eq!(
        other.role,
        ServedRole::Replica,
        "another row's read waited for the write: served by {}",
        other.node
    );
    assert!(
        session.token_in(ORG, other_row) < session.token_in(ORG, written_row),
        "the other row does not wait for the write"
    );
    println!(
        "read-your-writes by row: the written row read on {}, another row on {}",
        own.node, other.node
    );
    for replica in ["replica-1", "replica-2"] {
        cluster.set_apply_delay(replica, Duration::ZERO).await?;
    }
    router.shutdown();
    cluster.teardown().await?;
    Ok(())
}
