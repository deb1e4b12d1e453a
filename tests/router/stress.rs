//! The router under ordinary stress, against in-process fake nodes (see `router_support`): a query
//! slow on every replica is not a failure, waiting for a pool slot is backpressure that never ejects
//! a node nor spills onto the primary, and a statement that timed out is retried elsewhere once at
//! most.

use crate::router_support;

use std::time::Duration;

use replisim::router::{RouterConfig, RouterError};
use router_support::*;

/// Fast timers, passive ejection on, health checks too rare to matter.
fn stressed() -> RouterConfig {
    let mut config = config();
    config.health_interval = Duration::from_secs(60);
    config.slow_request_ejection = Duration::from_millis(100);
    config.query_timeout = Duration::from_secs(5);
    config
}

#[tokio::test]
async fn a_read_slow_on_every_replica_runs_once_where_it_was_sent() {
    let cluster = cluster();
    let router = start(stressed(), &cluster).await;
    for replica in ["replica-1", "replica-2"] {
        delay_executes(&cluster, replica, 300);
    }
    let reads = (0..4).map(|value: i64| {
        let router = router.clone();
        tokio::spawn(async move { read_once(&router, replica_read(5, 1), value).await })
    });
    for read in futures::future::join_all(reads).await {
        match read {
            Ok(Ok((node, _))) => assert!(node.starts_with("replica"), "{node}"),
            other => panic!("a read failed: {other:?}"),
        }
    }
    let stats = router.stats();
    for replica in ["replica-1", "replica-2"] {
        let Some(node) = stats.node(replica) else {
            panic!("no stats for {replica}");
        };
        assert!(
            node.healthy,
            "{replica} was ejected for a slowness all share"
        );
        assert_eq!(
            (node.attempts, node.cancelled, node.abandoned),
            (2, 0, 0),
            "{replica}: each read ran once, none was given up"
        );
    }
    assert_eq!(
        stats.node("primary-1").map(|n| n.attempts),
        Some(0),
        "no read moved to the primary"
    );
    router.shutdown();
}

#[tokio::test]
async fn a_full_pool_is_backpressure_it_never_ejects_nor_spills_onto_the_primary() {
    let cluster = cluster();
    let mut config = stressed();
    config.max_connections_per_node = 1;
    config.connect_timeout = Duration::from_millis(60);
    let router = start(config, &cluster).await;
    for replica in ["replica-1", "replica-2"] {
        delay_executes(&cluster, replica, 400);
    }
    // Two reads hold both replicas' only slots; the third waits for one and gives up.
    let holders: Vec<_> = (0..2)
        .map(|value: i64| {
            let router = router.clone();
            tokio::spawn(async move { read_once(&router, replica_read(5, 1), value).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let waited = read_once(&router, replica_read(5, 2), 9).await;
    let Err(error) = waited else {
        panic!("a read found a slot on a full pool: {waited:?}");
    };
    assert!(
        matches!(error, RouterError::PoolTimeout { .. }) && error.is_backpressure(),
        "{error}"
    );
    assert!(!error.is_node_failure(), "waiting is no node's fault");
    for holder in futures::future::join_all(holders).await {
        assert!(matches!(holder, Ok(Ok(_))), "{holder:?}");
    }
    let stats = router.stats();
    for replica in ["replica-1", "replica-2"] {
        assert_eq!(
            stats.node(replica).map(|n| n.healthy),
            Some(true),
            "{replica} stayed in rotation"
        );
    }
    assert_eq!(
        stats.node("primary-1").map(|n| n.attempts),
        Some(0),
        "the primary took no read"
    );
    router.shutdown();
}

#[tokio::test]
async fn a_read_that_waited_out_a_full_pool_takes_another_replica_with_a_free_slot() {
    let cluster = cluster();
    let mut config = stressed();
    // Only the pool acts here: the slow holder is not judged an outlier.
    config.slow_request_ejection = Duration::ZERO;
    config.max_connections_per_node = 1;
    config.connect_timeout = Duration::from_millis(60);
    let router = start(config, &cluster).await;
    delay_executes(&cluster, "replica-1", 400);
    // The first read holds replica-1's slot; round robin sends the second to replica-2 and the
    // third to replica-1 again, where it waits out its slot and then finds replica-2 free.
    let holder = {
        let router = router.clone();
        tokio::spawn(async move { read_once(&router, replica_read(5, 1), 0).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = read_once(&router, replica_read(5, 2), 1).await;
    assert!(
        matches!(&second, Ok((node, _)) if node == "replica-2"),
        "{second:?}"
    );
    let third = read_once(&router, replica_read(5, 3), 2).await;
    assert!(
        matches!(&third, Ok((node, _)) if node == "replica-2"),
        "{third:?}"
    );
    assert!(matches!(holder.await, Ok(Ok(_))));
    assert_eq!(
        router.stats().node("replica-1").map(|n| n.healthy),
        Some(true)
    );
    router.shutdown();
}

#[tokio::test]
async fn a_statement_that_timed_out_is_retried_elsewhere_once_at_most() {
    let cluster = cluster();
    let mut config = stressed();
    config.slow_request_ejection = Duration::ZERO;
    config.query_timeout = Duration::from_millis(80);
    config.read_retries = 5;
    let router = start(config, &cluster).await;
    for node in ["primary-1", "replica-1", "replica-2"] {
        delay_executes(&cluster, node, 300);
    }
    let read = read_once(&router, replica_read(5, 1), 0).await;
    assert!(
        matches!(read, Err(RouterError::QueryTimeout { .. })),
        "{read:?}"
    );
    let attempts: u64 = router.stats().nodes.iter().map(|n| n.attempts).sum();
    assert_eq!(
        attempts, 2,
        "one try and one retry, though 5 retries were allowed"
    );
    router.shutdown();
}

#[tokio::test]
async fn an_abandoned_statement_keeps_its_slot_until_settled_and_its_connection_is_reused() {
    let cluster = cluster();
    let mut config = stressed();
    config.max_connections_per_node = 1;
    config.query_timeout = Duration::from_millis(50);
    config.connect_timeout = Duration::from_millis(600);
    let router = start(config, &cluster).await;
    delay_executes(&cluster, "primary-1", 200);
    let first = write(&router, 1, 1, 1).await;
    assert!(
        matches!(first, Err(RouterError::QueryTimeout { .. })),
        "{first:?}"
    );
    delay_executes(&cluster, "primary-1", 0);
    // The timed-out statement still runs at the node: the pool's one slot stays taken until it has
    // answered, and the connection is then reused rather than a second one opened beside it.
    let second = write(&router, 1, 1, 2).await;
    assert!(second.is_ok(), "{second:?}");
    let primary = cluster.node("primary-1");
    assert_eq!(
        primary
            .open_workload_max
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "never two connections at once"
    );
    assert_eq!(
        primary.logins_named("replisim"),
        1,
        "the settled connection was reused"
    );
    let stats = router.stats();
    assert_eq!(
        stats
            .node("primary-1")
            .map(|n| (n.abandoned, n.cancels_sent)),
        Some((1, 1)),
        "the abandoned statement got a cancel request"
    );
    assert_eq!(
        primary
            .cancel_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "and the node received it"
    );
    router.shutdown();
}
