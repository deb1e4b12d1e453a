//! The router's metrics end to end against in-process fake nodes (see `router_support`): each routing
//! reason, cap and pool waits, latency and the Prometheus text, after activity whose counts are known.

use crate::router_support;

use std::time::Duration;

use replisim::router::metrics::{CapTimeouts, MetricsSnapshot, NodeMetrics};
use replisim::router::route_reason::RouteReason;
use replisim::router::{ReadRequest, render_prometheus};
use router_support::*;

fn node<'a>(metrics: &'a MetricsSnapshot, name: &str) -> &'a NodeMetrics {
    match metrics.node(name) {
        Some(node) => node,
        None => panic!("no metrics for {name}"),
    }
}

/// The count of every reason on `name`, in [`RouteReason::ALL`] order.
fn reasons(metrics: &MetricsSnapshot, name: &str) -> Vec<u64> {
    node(metrics, name).routes.iter().map(|(_, n)| n).collect()
}

#[tokio::test]
async fn each_decision_is_counted_on_the_node_it_chose() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    for value in 0..4 {
        assert!(read_once(&router, replica_read(5, 1), value).await.is_ok());
    }
    let primary_read = ReadRequest {
        prefer_replica: false,
        ..replica_read(5, 1)
    };
    assert!(read_once(&router, primary_read, 1).await.is_ok());
    assert!(write(&router, 5, 1, 1).await.is_ok());
    assert!(write(&router, 5, 1, 1).await.is_ok());
    // A shard without replicas: its reads fall back to the primary.
    assert!(read_once(&router, replica_read(1500, 1), 1).await.is_ok());

    let metrics = router.metrics();
    // Order: round_robin, fallback_primary, primary_requested, retry, write, cap_wait,
    // lag_exclusion, read_your_writes.
    assert_eq!(reasons(&metrics, "primary-1"), [0, 0, 1, 0, 2, 0, 0, 0]);
    assert_eq!(reasons(&metrics, "replica-1"), [2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(reasons(&metrics, "replica-2"), [2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(reasons(&metrics, "primary-2"), [0, 1, 0, 0, 0, 0, 0, 0]);
    for node in &metrics.nodes {
        let stats = &node.stats;
        assert_eq!(node.routes.decisions(), stats.attempts, "{}", stats.name);
        assert_eq!(node.latency.count, stats.successes, "{}", stats.name);
        assert_eq!(
            FakeNode::get(&cluster.node(&stats.name).executes),
            stats.successes,
            "{}: what the node executed",
            stats.name
        );
    }
    let primary = node(&metrics, "primary-1");
    assert_eq!(primary.latency.buckets.last().map(|b| b.count), Some(3));
    assert!(primary.latency.max_us > 0 && primary.latency.p50_us <= primary.latency.max_us);
    assert_eq!(metrics.cap_timeouts, CapTimeouts::default());
    router.shutdown();
}

#[tokio::test]
async fn retries_and_use_read_replicas_are_told_apart() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    drop_executes(&cluster, "replica-1", true);
    let routed = router.read(replica_read(5, 1), READ, &[&7i64]).await;
    assert_eq!(routed.map(|r| r.node).ok(), Some("replica-2".to_string()));
    let metrics = router.metrics();
    let failed = node(&metrics, "replica-1");
    assert_eq!(
        (
            failed.routes.get(RouteReason::RoundRobin),
            failed.stats.errors
        ),
        (1, 1)
    );
    assert_eq!(failed.latency.count, 1, "a failed attempt is timed too");
    assert_eq!(
        node(&metrics, "replica-2").routes.get(RouteReason::Retry),
        1
    );
    router.shutdown();

    let mut no_replicas = config();
    no_replicas.use_read_replicas = false;
    let router = start(no_replicas, &cluster).await;
    assert!(read_once(&router, replica_read(5, 1), 1).await.is_ok());
    let metrics = router.metrics();
    assert_eq!(
        node(&metrics, "primary-1")
            .routes
            .get(RouteReason::PrimaryRequested),
        1,
        "use_read_replicas = false: the primary was requested, not a fallback"
    );
    router.shutdown();
}

#[tokio::test]
async fn waits_for_caps_and_pool_slots_are_counted() {
    let cluster = cluster();
    let mut config = config();
    config.max_connections_per_user = 1;
    config.max_connections_per_node = 1;
    config.connect_timeout = Duration::from_secs(2);
    let router = start(config, &cluster).await;
    delay_executes(&cluster, "primary-1", 50);
    // Same user: the second waits for the user cap. Different users: the fourth waits for the
    // primary's only connection.
    concurrent_writes(&router, [(5, 1), (6, 1), (7, 2), (8, 3)]).await;
    let metrics = router.metrics();
    let primary = node(&metrics, "primary-1");
    assert_eq!(primary.routes.get(RouteReason::Write), 4);
    // Each of the three writes that did not get the connection first waited for it; the second of
    // user 1 also waited for its user cap.
    assert_eq!(primary.routes.get(RouteReason::CapWait), 4);
    router.shutdown();
}

#[tokio::test]
async fn requests_refused_at_a_cap_are_counted() {
    let cluster = cluster();
    let mut config = config();
    config.max_connections_per_org = 1;
    config.connect_timeout = Duration::from_millis(50);
    let router = start(config, &cluster).await;
    let blocked = write_behind_a_slow_one(&router, &cluster, (3, 1), (3, 2)).await;
    assert!(blocked.is_err());
    let metrics = router.metrics();
    assert_eq!(metrics.cap_timeouts, CapTimeouts { user: 0, org: 1 });
    assert_eq!(
        node(&metrics, "primary-1").stats.attempts,
        1,
        "the refused write never reached a node"
    );
    let text = render_prometheus(&metrics);
    assert!(
        text.contains("replisim_router_cap_timeouts_total{reason=\"org_cap\"} 1\n"),
        "{text}"
    );
    router.shutdown();
}

#[tokio::test]
async fn the_exposition_shows_the_activity() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    for value in 0..3 {
        assert!(read_once(&router, replica_read(5, 1), value).await.is_ok());
    }
    let text = render_prometheus(&router.metrics());
    for line in [
        "replisim_router_routes_total{node=\"replica-1\",shard=\"s1\",role=\"replica\",reason=\"round_robin\"} 2\n",
        "replisim_router_attempts_ok_total{node=\"replica-2\",shard=\"s1\",role=\"replica\"} 1\n",
        "replisim_router_statement_duration_seconds_count{node=\"replica-1\",shard=\"s1\",role=\"replica\"} 2\n",
        "replisim_router_statement_duration_seconds_bucket{node=\"replica-1\",shard=\"s1\",role=\"replica\",le=\"+Inf\"} 2\n",
        "replisim_router_node_healthy{node=\"primary-2\",shard=\"s2\",role=\"primary\"} 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    router.shutdown();
}
