//! The router's connections end to end against in-process fake nodes (see `router_support`): pooling,
//! prepared statements, caps, idle closing and streaming reads, without a PostgreSQL server.

use crate::router_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use replisim::router::WriteRequest;
use router_support::*;

#[tokio::test]
async fn connections_are_pooled_and_statements_prepared_once() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    for value in 0..10i64 {
        let write = router
            .write(WriteRequest { org: 1, user: 1 }, WRITE, &[&value])
            .await;
        assert!(write.is_ok(), "{write:?}");
    }
    let primary = cluster.node("primary-1");
    assert_eq!(
        primary.logins_named("replisim"),
        1,
        "one workload connection, reused"
    );
    assert_eq!(
        FakeNode::get(&primary.parses),
        1,
        "one Parse for ten executions"
    );
    assert_eq!(FakeNode::get(&primary.executes), 10);
    let stats = router.stats();
    let Some(node) = stats.node("primary-1") else {
        panic!("no stats for primary-1");
    };
    assert_eq!(
        (node.attempts, node.successes, node.errors, node.in_flight),
        (10, 10, 0, 0)
    );
    assert_eq!((node.open_connections, node.idle_connections), (1, 1));
    assert!((node.pool_utilisation - 1.0 / 100.0).abs() < 1e-9);
    router.shutdown();
}

#[tokio::test]
async fn the_user_cap_bounds_concurrent_statements() {
    let cluster = cluster();
    let mut config = config();
    config.max_connections_per_user = 2;
    config.connect_timeout = Duration::from_secs(2);
    let router = start(config, &cluster).await;
    let primary = cluster.node("primary-1");
    primary.delay_ms.store(30, Ordering::SeqCst);
    concurrent_writes(&router, (0..6).map(|org| (org, 7))).await;
    assert_eq!(
        primary.running_max.load(Ordering::SeqCst),
        2,
        "user 7 ran two statements at a time"
    );
    router.shutdown();
}

#[tokio::test]
async fn a_full_cap_fails_with_a_clear_message() {
    let cluster = cluster();
    let mut config = config();
    config.max_connections_per_org = 1;
    config.connect_timeout = Duration::from_millis(50);
    let router = start(config, &cluster).await;
    let blocked = write_behind_a_slow_one(&router, &cluster, (3, 1), (3, 2)).await;
    let Err(error) = blocked else {
        panic!("the org cap let a second statement through");
    };
    assert_eq!(
        error.to_string(),
        "org 3 already holds 1 connections (max_connections_per_org = 1); waited 50ms for one to free"
    );
    router.shutdown();
}

#[tokio::test]
async fn the_pool_never_opens_more_than_its_maximum() {
    let cluster = cluster();
    let mut config = config();
    config.max_connections_per_node = 2;
    config.connect_timeout = Duration::from_secs(2);
    let router = start(config, &cluster).await;
    let primary = cluster.node("primary-1");
    primary.delay_ms.store(20, Ordering::SeqCst);
    concurrent_writes(&router, (0..8).map(|user| (1, user))).await;
    assert_eq!(primary.open_workload_max.load(Ordering::SeqCst), 2);
    assert_eq!(primary.logins_named("replisim"), 2);
    router.shutdown();
}

#[tokio::test]
async fn a_busy_pool_times_out_naming_its_limit() {
    let cluster = cluster();
    let mut config = config();
    config.max_connections_per_node = 1;
    config.connect_timeout = Duration::from_millis(50);
    let router = start(config, &cluster).await;
    let blocked = write_behind_a_slow_one(&router, &cluster, (1, 1), (1, 2)).await;
    let Err(error) = blocked else {
        panic!("a second connection opened past max_connections_per_node = 1");
    };
    assert_eq!(
        error.to_string(),
        "no connection to node primary-1 became free within 50ms: all 1 (max_connections_per_node) are in use"
    );
    router.shutdown();
}

#[tokio::test]
async fn idle_connections_are_closed_after_max_idle_time() {
    let cluster = cluster();
    let mut config = config();
    config.max_idle_time = Duration::from_millis(60);
    let router = start(config, &cluster).await;
    let write = router
        .write(WriteRequest { org: 1, user: 1 }, WRITE, &[&1i64])
        .await;
    assert!(write.is_ok());
    assert_eq!(
        router.stats().node("primary-1").map(|n| n.idle_connections),
        Some(1)
    );
    eventually("the idle connection is closed", || {
        router
            .stats()
            .node("primary-1")
            .is_some_and(|n| n.open_connections == 0)
    })
    .await;
    eventually("the server saw it close", || {
        cluster
            .node("primary-1")
            .open_workload
            .load(Ordering::SeqCst)
            == 0
    })
    .await;
    router.shutdown();
}

#[tokio::test]
async fn min_connections_survive_idleness() {
    let cluster = cluster();
    let mut config = config();
    config.max_idle_time = Duration::from_millis(30);
    config.min_connections_per_node = 1;
    let router = start(config, &cluster).await;
    let write = router
        .write(WriteRequest { org: 1, user: 1 }, WRITE, &[&1i64])
        .await;
    assert!(write.is_ok());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        router.stats().node("primary-1").map(|n| n.open_connections),
        Some(1)
    );
    router.shutdown();
}

#[tokio::test]
async fn streaming_reads_yield_rows_in_order_and_return_the_connection() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    let stream = router
        .read_stream(replica_read(5, 1), "SELECT many $1", &[&5i64])
        .await;
    let Ok(mut routed) = stream else {
        panic!("streaming read failed to start");
    };
    let mut values = Vec::new();
    loop {
        match routed.value.next_row().await {
            Ok(Some(row)) => values.push(row.get::<_, i64>(1)),
            Ok(None) => break,
            Err(error) => panic!("stream failed: {error}"),
        }
    }
    assert_eq!(values, [0, 1, 2, 3, 4]);
    assert_eq!(routed.value.rows_affected(), Some(5));
    let node = routed.node.clone();
    drop(routed);
    let stats = router.stats();
    assert_eq!(
        stats
            .node(&node)
            .map(|n| (n.idle_connections, n.successes, n.in_flight)),
        Some((1, 1, 0))
    );

    let stream = router
        .read_stream(replica_read(5, 1), "SELECT many $1", &[&5i64])
        .await;
    let Ok(mut routed) = stream else {
        panic!("second streaming read failed to start");
    };
    assert!(matches!(routed.value.next_row().await, Ok(Some(_))));
    let node = routed.node.clone();
    drop(routed);
    let stats = router.stats();
    assert_eq!(
        stats.node(&node).map(|n| (n.open_connections, n.cancelled)),
        Some((0, 1)),
        "a half-read connection is closed, the attempt counted as cancelled"
    );
    router.shutdown();
}

#[tokio::test]
async fn a_streaming_read_is_retried_before_its_first_row() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    drop_executes(&cluster, "replica-1", true);
    let stream = router
        .read_stream(replica_read(5, 1), "SELECT many $1", &[&2i64])
        .await;
    let Ok(routed) = stream else {
        panic!("streaming read was not retried");
    };
    assert_eq!((routed.node.as_str(), routed.attempts), ("replica-2", 2));
    router.shutdown();
}
