//! Passive ejection end to end against in-process fake nodes (see `router_support`): a replica on
//! which a read fails or hangs leaves rotation at once, reads waiting on it move on, its probe lets it
//! back, and the primary is never ejected by a failed write.

use crate::router_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use replisim::router::{RouterConfig, RouterError, ServedRole, WriteRequest};
use router_support::*;
use tokio::time::Instant;

/// The standard test configuration with health checks too rare to matter, so that only passive
/// ejection and its probes act, and a short first ban.
fn ejecting() -> RouterConfig {
    let mut config = config();
    config.health_interval = Duration::from_secs(60);
    config.ejection_time = Duration::from_millis(200);
    config.ejection_time_max = Duration::from_secs(5);
    config.slow_request_ejection = Duration::from_millis(100);
    config.query_timeout = Duration::from_secs(5);
    config
}

fn attempts_on(router: &replisim::router::Router, name: &str) -> u64 {
    router.stats().node(name).map_or(0, |n| n.attempts)
}

#[tokio::test]
async fn a_failed_read_ejects_the_replica_until_its_probe_passes() {
    let cluster = cluster();
    let router = start(ejecting(), &cluster).await;
    let replica = cluster.node("replica-1");
    replica.drop_on_execute.store(true, Ordering::SeqCst);
    let routed = router.read(replica_read(5, 1), READ, &[&1i64]).await;
    assert_eq!(
        routed.map(|r| (r.node, r.attempts)).ok(),
        Some(("replica-2".to_string(), 2))
    );
    assert_eq!(
        router.stats().node("replica-1").map(|n| n.healthy),
        Some(false),
        "ejected at once, long before a health check"
    );
    replica.drop_on_execute.store(false, Ordering::SeqCst);
    for value in 0..4 {
        let read = read_once(&router, replica_read(5, 1), value).await;
        assert_eq!(read.ok(), Some(("replica-2".into(), value)));
    }
    assert_eq!(attempts_on(&router, "replica-1"), 1, "no read while banned");
    let probes_before = FakeNode::get(&replica.probes);
    eventually(
        "the probe at the end of the ban lets replica-1 back",
        || router.stats().node("replica-1").is_some_and(|n| n.healthy),
    )
    .await;
    assert!(FakeNode::get(&replica.probes) > probes_before);
    let served = serving_nodes(&router, 4).await;
    assert_eq!(served_by(&served, "replica-1"), 2, "{served:?}");
    router.shutdown();
}

#[tokio::test]
async fn a_replica_that_keeps_failing_is_banned_for_longer_each_time() {
    let cluster = cluster();
    let router = start(ejecting(), &cluster).await;
    // Its probes pass but its reads fail: each return ends at the first read sent to it, in a new ban
    // twice as long as the one before.
    drop_executes(&cluster, "replica-1", true);
    let start = Instant::now();
    let mut tries = Vec::new();
    while tries.len() < 4 && start.elapsed() < Duration::from_secs(5) {
        let read = router.read(replica_read(5, 1), READ, &[&1i64]).await;
        let Ok(routed) = read else {
            panic!("a read failed: {read:?}");
        };
        if routed.attempts == 2 {
            tries.push(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gaps: Vec<Duration> = tries.windows(2).map(|pair| pair[1] - pair[0]).collect();
    // Bans of 200, 400 and 800 ms (each followed by a probe and the next read).
    let expected = [200, 400, 800].map(Duration::from_millis);
    assert_eq!(gaps.len(), 3, "replica-1 was tried at {tries:?}");
    for (gap, ban) in gaps.iter().zip(expected) {
        assert!(
            *gap >= ban && *gap < ban + Duration::from_millis(300),
            "gaps {gaps:?} should follow bans {expected:?}"
        );
    }
    router.shutdown();
}

#[tokio::test]
async fn reads_waiting_on_a_wedged_replica_move_on_well_before_query_timeout() {
    let cluster = cluster();
    let router = start(ejecting(), &cluster).await;
    cluster
        .node("replica-1")
        .wedge
        .store(true, Ordering::SeqCst);
    let started = Instant::now();
    let reads = (0..4).map(|value: i64| {
        let router = router.clone();
        tokio::spawn(async move { router.read(replica_read(5, 1), READ, &[&value]).await })
    });
    let mut served = Vec::new();
    for read in futures::future::join_all(reads).await {
        match read {
            Ok(Ok(routed)) => served.push((routed.node, routed.role)),
            other => panic!("a read failed: {other:?}"),
        }
    }
    assert!(
        served
            .iter()
            .all(|(node, role)| node == "replica-2" && *role == ServedRole::Replica),
        "{served:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}; query_timeout is 5 s",
        started.elapsed()
    );
    let stats = router.stats();
    let Some(wedged) = stats.node("replica-1") else {
        panic!("no stats for replica-1");
    };
    assert!(!wedged.healthy);
    assert_eq!(
        (wedged.cancelled, wedged.in_flight, wedged.abandoned),
        (2, 0, 2),
        "both reads sent there were given up"
    );
    // Their statements got a cancel each; a wedged node never answers behind them, so their
    // connections do not settle and are closed once `connect_timeout` runs out.
    let wedged_node = cluster.node("replica-1");
    eventually("both statements got a cancel request", || {
        wedged_node.cancel_requests.load(Ordering::SeqCst) == 2
    })
    .await;
    eventually("the unsettled connections are closed", || {
        router
            .stats()
            .node("replica-1")
            .is_some_and(|n| n.open_connections == 0)
    })
    .await;
    router.shutdown();
}

#[tokio::test]
async fn a_slow_read_with_nowhere_else_to_go_is_not_given_up() {
    let cluster = cluster();
    for name in ["primary-1", "replica-2"] {
        cluster.node(name).crash();
    }
    let mut config = ejecting();
    config.failure_threshold = 1;
    // A ban that outlasts the read: with the 200 ms default it would end, and the probe readmit the
    // node, just as the 300 ms read returns.
    config.ejection_time = Duration::from_secs(2);
    let router = start(config, &cluster).await;
    delay_executes(&cluster, "replica-1", 300);
    let started = Instant::now();
    let read = read_once(&router, replica_read(5, 1), 8).await;
    assert_eq!(read.ok(), Some(("replica-1".into(), 8)));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        router.stats().node("replica-1").map(|n| n.healthy),
        Some(true),
        "slow with no peer answering anything younger is no outlier: it stays in"
    );
    router.shutdown();
}

#[tokio::test]
async fn a_failed_write_never_ejects_the_primary() {
    let cluster = cluster();
    let router = start(ejecting(), &cluster).await;
    let primary = cluster.node("primary-1");
    primary.drop_on_execute.store(true, Ordering::SeqCst);
    let write = router
        .write(WriteRequest { org: 5, user: 1 }, WRITE, &[&1i64])
        .await;
    assert!(matches!(write, Err(RouterError::Query { .. })), "{write:?}");
    primary.drop_on_execute.store(false, Ordering::SeqCst);
    let write = router
        .write(WriteRequest { org: 5, user: 1 }, WRITE, &[&2i64])
        .await;
    assert_eq!(write.map(|r| r.node).ok(), Some("primary-1".to_string()));
    assert_eq!(
        router.stats().node("primary-1").map(|n| n.healthy),
        Some(true)
    );
    router.shutdown();
}

#[tokio::test]
async fn with_ejection_off_a_failing_replica_stays_in_rotation() {
    let cluster = cluster();
    let mut config = ejecting();
    config.ejection_time = Duration::ZERO;
    config.ejection_time_max = Duration::ZERO;
    let router = start(config, &cluster).await;
    drop_executes(&cluster, "replica-1", true);
    for value in 0..4i64 {
        let read = router.read(replica_read(5, 1), READ, &[&value]).await;
        assert_eq!(read.map(|r| r.node).ok(), Some("replica-2".to_string()));
    }
    assert!(
        attempts_on(&router, "replica-1") >= 2,
        "round robin kept trying replica-1"
    );
    assert_eq!(
        router.stats().node("replica-1").map(|n| n.healthy),
        Some(true)
    );
    router.shutdown();
}
