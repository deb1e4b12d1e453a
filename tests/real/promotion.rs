//! The router against a real PostgreSQL 15 cluster through a promotion: after `pg_promote()` on a
//! replica (the old primary fenced read-only), its health checks find the new primary through
//! `pg_is_in_recovery()` and writes succeed there; writes sent in between are refused cleanly
//! (SQLSTATE 25006), never run twice. Then the new primary dies with nothing to promote: writes fail
//! fast with a clear error while reads go on. Without PostgreSQL 15 it passes with a printed line
//! (under `CI=true` it fails instead).

// Shared with `real_router`, which uses the parts this file does not.
#[allow(dead_code)]
use crate::real_support;

use std::time::Duration;

use real_support::{
    STEP_TIMEOUT, TestResult, direct_topology, executed, fast_failover_config, node,
    postgres_missing, seed, start_cluster, start_router, step,
};
use replisim::record::workload::{READ_SQL, WRITE_SQL};
use replisim::router::{ReadRequest, RouterError, ServedRole, WriteRequest};
use tokio::time::Instant;
use tokio_postgres::types::ToSql;

/// The org every write and read is for.
const ORG: i64 = 7_007;
/// Keys seeded before the promotion.
const KEYS: i64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promoted_replica_and_fail_fast_without_a_primary() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let cluster = start_cluster("primary-1", &["replica-1", "replica-2"]).await?;
    let router = start_router(fast_failover_config()?, direct_topology(&cluster)?).await?;
    seed(&router, ORG, KEYS).await?;

    let promoting = Instant::now();
    step(cluster.promote("replica-1")).await?;
    // One write every 20 ms until one succeeds; each must fail cleanly or succeed on replica-1.
    let mut refused = 0;
    let resumed = loop {
        let request = WriteRequest { org: ORG, user: 2 };
        let key = 0i64;
        let params: [&(dyn ToSql + Sync); 3] = [&ORG, &key, &2i64];
        let write = router.write(request, WRITE_SQL, &params);
        match tokio::time::timeout(STEP_TIMEOUT, write).await? {
            Ok(routed) => {
                assert_eq!(routed.node, "replica-1", "a write after the promotion");
                assert_eq!(routed.role, ServedRole::Primary);
                break promoting.elapsed();
            }
            Err(error) if error.is_read_only() => refused += 1,
            Err(error) => return Err(format!("unexpected write error: {error}").into()),
        }
        assert!(
            promoting.elapsed() < Duration::from_secs(5),
            "no write succeeded within 5 s of the promotion"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "writes resumed on replica-1 {resumed:?} after pg_promote ({refused} refused cleanly)"
    );
    for key in 0..KEYS {
        let request = WriteRequest { org: ORG, user: 3 };
        let routed = step(router.write(request, WRITE_SQL, &[&ORG, &key, &3i64])).await?;
        assert_eq!(routed.node, "replica-1");
    }
    let stats = router.stats();
    let role = |name: &str| stats.node(name).map(|n| n.role);
    assert_eq!(role("replica-1"), Some(ServedRole::Primary));
    assert_eq!(
        role("primary-1"),
        Some(ServedRole::Replica),
        "fenced, not followed back"
    );
    assert_eq!(
        stats.node("primary-1").and_then(|n| n.reported_role),
        Some(ServedRole::Primary),
        "the fenced old primary still says it is out of recovery"
    );
    // The servers: the fenced primary executed none of the writes after the seed.
    assert_eq!(executed(node(&cluster, "primary-1")?).await?.writes, KEYS);

    // The new primary dies and nothing is promoted: writes fail fast, reads go on on replica-2.
    step(cluster.crash("replica-1")).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let request = WriteRequest { org: ORG, user: 4 };
    let params: [&(dyn ToSql + Sync); 3] = [&ORG, &1i64, &4i64];
    let write = router.write(request, WRITE_SQL, &params);
    let write = tokio::time::timeout(STEP_TIMEOUT, write).await?;
    let waited = started.elapsed();
    match write {
        Err(RouterError::NoHealthyNode {
            operation, detail, ..
        }) => {
            assert_eq!(operation, "write");
            assert!(detail.contains("replica-1 unhealthy"), "{detail}");
        }
        Err(error) => return Err(format!("expected a fast NoHealthyNode, got {error}").into()),
        Ok(routed) => return Err(format!("a write succeeded on {}", routed.node).into()),
    }
    assert!(
        waited < Duration::from_millis(100),
        "the write waited {waited:?}"
    );
    for key in 0..KEYS {
        let request = ReadRequest {
            org: ORG,
            user: 5,
            prefer_replica: true,
        };
        let routed = step(router.read(request, READ_SQL, &[&ORG, &key, &5i64])).await?;
        assert_eq!(routed.node, "replica-2");
    }
    router.shutdown();
    cluster.teardown().await?;
    Ok(())
}
