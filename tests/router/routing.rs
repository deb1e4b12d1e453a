//! The router end to end against in-process fake nodes (see `router_support`): routing, health,
//! retries, timeouts, errors and shutdown, without a PostgreSQL server.

use crate::router_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use replisim::router::{ReadRequest, Router, RouterError, ServedRole, WriteRequest};
use router_support::*;
use tokio_postgres::error::SqlState;

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::test]
async fn router_futures_can_move_between_tasks() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    let value = 1i64;
    let read = assert_send(router.read(replica_read(5, 1), READ, &[&value])).await;
    assert!(read.is_ok());
    let write = assert_send(router.write(WriteRequest { org: 5, user: 1 }, WRITE, &[&value])).await;
    assert!(write.is_ok());
    let stream = assert_send(router.read_stream(replica_read(5, 1), READ, &[&value])).await;
    let Ok(stream) = stream else {
        panic!("streaming read failed");
    };
    let mut stream = assert_send(stream.value);
    let row = assert_send(stream.next_row()).await;
    assert!(matches!(row, Ok(Some(_))));
    router.shutdown();
}

#[tokio::test]
async fn start_runs_the_first_health_round_with_probe_connections() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    let stats = router.stats();
    let names: Vec<_> = stats.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["primary-1", "replica-1", "replica-2", "primary-2"],
        "topology order"
    );
    for node in &stats.nodes {
        assert!(
            node.checks_ok >= 1,
            "{} was not checked before start returned",
            node.name
        );
        assert!(node.healthy);
        assert_eq!(
            node.reported_role,
            Some(node.role),
            "{} reports its role",
            node.name
        );
        assert_eq!(
            node.open_connections, 0,
            "workload connections open on demand"
        );
    }
    let replica = cluster.node("replica-1");
    assert_eq!(replica.logins_named("replisim-health"), 1);
    assert_eq!(replica.logins_named("replisim"), 0);
    router.shutdown();
}

#[tokio::test]
async fn writes_go_to_the_primary_and_reads_rotate_over_replicas() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    let mut served = Vec::new();
    for value in 0..4 {
        let read = read_once(&router, replica_read(5, 1), value).await;
        let Ok((node, echoed)) = read else {
            panic!("read failed: {read:?}");
        };
        assert_eq!(echoed, value);
        served.push(node);
    }
    assert_eq!(served, ["replica-1", "replica-2", "replica-1", "replica-2"]);

    let write = router
        .write(WriteRequest { org: 5, user: 1 }, WRITE, &[&9i64])
        .await;
    let Ok(write) = write else {
        panic!("write failed: {write:?}");
    };
    assert_eq!(
        (write.node.as_str(), write.role, write.attempts),
        ("primary-1", ServedRole::Primary, 1)
    );

    let primary_read = ReadRequest {
        prefer_replica: false,
        ..replica_read(5, 1)
    };
    assert_eq!(
        read_once(&router, primary_read, 1).await.ok(),
        Some(("primary-1".into(), 1))
    );
    let other_shard = router
        .write(WriteRequest { org: 1500, user: 1 }, WRITE, &[&1i64])
        .await;
    assert_eq!(
        other_shard.map(|r| r.node).ok(),
        Some("primary-2".to_string())
    );
    let no_replicas = read_once(&router, replica_read(1999, 1), 3).await;
    assert_eq!(
        no_replicas.ok(),
        Some(("primary-2".into(), 3)),
        "a shard without replicas reads its primary"
    );
    assert_eq!(FakeNode::get(&cluster.node("replica-1").executes), 2);
    router.shutdown();
}

#[tokio::test]
async fn use_read_replicas_false_sends_reads_to_the_primary() {
    let cluster = cluster();
    let mut config = config();
    config.use_read_replicas = false;
    let router = start(config, &cluster).await;
    for value in 0..3 {
        assert_eq!(
            read_once(&router, replica_read(5, 1), value).await.ok(),
            Some(("primary-1".into(), value))
        );
    }
    assert_eq!(FakeNode::get(&cluster.node("replica-1").executes), 0);
    router.shutdown();
}

#[tokio::test]
async fn a_crashed_replica_is_avoided_then_used_again_after_recovery() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    let replica = cluster.node("replica-1");
    replica.crash();
    eventually("replica-1 is unhealthy", || {
        router.stats().node("replica-1").is_some_and(|n| !n.healthy)
    })
    .await;
    let executed_before = FakeNode::get(&replica.executes);
    for value in 0..4 {
        let read = read_once(&router, replica_read(5, 1), value).await;
        assert_eq!(read.ok(), Some(("replica-2".into(), value)));
    }
    assert_eq!(
        FakeNode::get(&replica.executes),
        executed_before,
        "no work reached the crashed node"
    );

    replica.restart();
    eventually("replica-1 is healthy again", || {
        router.stats().node("replica-1").is_some_and(|n| n.healthy)
    })
    .await;
    let served = serving_nodes(&router, 4).await;
    assert_eq!(served_by(&served, "replica-1"), 2, "{served:?}");
    router.shutdown();
}

#[tokio::test]
async fn a_read_that_loses_its_node_is_retried_elsewhere() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    drop_executes(&cluster, "replica-1", true);
    let routed = router.read(replica_read(5, 1), READ, &[&7i64]).await;
    let Ok(routed) = routed else {
        panic!("read was not retried: {routed:?}");
    };
    assert_eq!(
        (routed.node.as_str(), routed.role, routed.attempts),
        ("replica-2", ServedRole::Replica, 2)
    );
    let stats = router.stats();
    assert_eq!(
        stats.node("replica-1").map(|n| (n.attempts, n.errors)),
        Some((1, 1))
    );
    assert_eq!(
        stats.node("replica-1").map(|n| n.open_connections),
        Some(0),
        "the broken connection was closed"
    );
    router.shutdown();
}

#[tokio::test]
async fn retries_stop_at_read_retries() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    for name in ["replica-1", "replica-2", "primary-1"] {
        cluster
            .node(name)
            .drop_on_execute
            .store(true, Ordering::SeqCst);
    }
    let read = router.read(replica_read(5, 1), READ, &[&7i64]).await;
    assert!(matches!(&read, Err(RouterError::Query { .. })), "{read:?}");
    let attempts: u64 = router.stats().nodes.iter().map(|n| n.attempts).sum();
    assert_eq!(attempts, 2, "one try and read_retries = 1 retry");
    router.shutdown();
}

#[tokio::test]
async fn writes_are_never_retried() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    drop_executes(&cluster, "primary-1", true);
    let write = router
        .write(WriteRequest { org: 5, user: 1 }, WRITE, &[&1i64])
        .await;
    let Err(error) = write else {
        panic!("write on a failing primary succeeded: {write:?}");
    };
    assert_eq!(error.node(), Some("primary-1"));
    assert!(error.is_node_failure());
    let executes: u64 = ["primary-1", "replica-1", "replica-2", "primary-2"]
        .iter()
        .map(|name| FakeNode::get(&cluster.node(name).executes))
        .sum();
    assert_eq!(executes, 1);
    router.shutdown();
}

#[tokio::test]
async fn statement_errors_are_returned_not_retried() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    let read = router
        .read(replica_read(5, 1), "SELECT $1 FROM missing_table", &[&1i64])
        .await;
    let Err(error) = read else {
        panic!("a failing statement succeeded");
    };
    assert_eq!(error.code(), Some(SqlState::UNDEFINED_TABLE));
    assert!(!error.is_node_failure());
    let message = error.to_string();
    assert!(
        message.contains("replica-1") && message.contains("42P01"),
        "{message}"
    );
    let stats = router.stats();
    assert_eq!(stats.nodes.iter().map(|n| n.attempts).sum::<u64>(), 1);
    assert_eq!(
        stats.node("replica-1").map(|n| n.idle_connections),
        Some(1),
        "the connection survives"
    );
    router.shutdown();
}

#[tokio::test]
async fn a_wedged_statement_times_out_and_its_connection_is_discarded() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    cluster
        .node("replica-1")
        .wedge
        .store(true, Ordering::SeqCst);
    let routed = router.read(replica_read(5, 1), READ, &[&3i64]).await;
    assert_eq!(
        routed.map(|r| (r.node, r.attempts)).ok(),
        Some(("replica-2".to_string(), 2))
    );
    // The timed-out statement gets a cancel; the wedged node never answers behind it, so the
    // connection does not settle and is closed once `connect_timeout` runs out.
    eventually("the unsettled connection is closed", || {
        router
            .stats()
            .node("replica-1")
            .is_some_and(|n| (n.abandoned, n.cancels_sent, n.open_connections) == (1, 1, 0))
    })
    .await;

    let write_cluster = cluster.node("primary-1");
    write_cluster.wedge.store(true, Ordering::SeqCst);
    let write = router
        .write(WriteRequest { org: 5, user: 1 }, WRITE, &[&1i64])
        .await;
    let Err(error) = write else {
        panic!("a wedged write succeeded");
    };
    assert!(matches!(error, RouterError::QueryTimeout { .. }));
    assert_eq!(
        error.to_string(),
        "statement on node primary-1 timed out after 300ms (query_timeout)"
    );
    router.shutdown();
}

#[tokio::test]
async fn a_connect_that_never_completes_times_out() {
    let cluster = cluster();
    cluster
        .node("primary-2")
        .hang_connect
        .store(true, Ordering::SeqCst);
    let router = start(config(), &cluster).await;
    let write = router
        .write(WriteRequest { org: 1500, user: 1 }, WRITE, &[&1i64])
        .await;
    let Err(error) = write else {
        panic!("a write through a blackhole succeeded");
    };
    assert_eq!(
        error.to_string(),
        "connecting to node primary-2 timed out after 300ms (connect_timeout)"
    );
    router.shutdown();
}

#[tokio::test]
async fn nothing_healthy_is_reported_with_each_node_state() {
    let cluster = cluster();
    for name in ["primary-1", "replica-1", "replica-2"] {
        cluster.node(name).crash();
    }
    let mut config = config();
    config.failure_threshold = 1;
    let router = start(config, &cluster).await;
    let read = router.read(replica_read(5, 1), READ, &[&1i64]).await;
    let Err(RouterError::NoHealthyNode { shard, detail, .. }) = read else {
        panic!("expected NoHealthyNode, got {read:?}");
    };
    assert_eq!(shard, "s1");
    for name in ["primary-1", "replica-1", "replica-2"] {
        assert!(
            detail.contains(&format!("{name} unhealthy after 1 failed check (last: ")),
            "{detail}"
        );
    }
    let write = router
        .write(WriteRequest { org: 1, user: 1 }, WRITE, &[&1i64])
        .await;
    assert!(matches!(
        write,
        Err(RouterError::NoHealthyNode {
            operation: "write",
            ..
        })
    ));
    router.shutdown();
}

#[tokio::test]
async fn unknown_orgs_invalid_topologies_and_shutdown_are_errors() {
    let cluster = cluster();
    let router = start(config(), &cluster).await;
    let read = router.read(replica_read(2000, 1), READ, &[&1i64]).await;
    assert!(
        matches!(read, Err(RouterError::NoShardForOrg { org: 2000 })),
        "{read:?}"
    );

    let mut weightless = topology();
    weightless.shards[0].replicas[0].weight = 0;
    let refused = Router::start(config(), weightless, Arc::clone(&cluster) as _).await;
    assert!(matches!(refused, Err(RouterError::InvalidConfig(m)) if m.contains("weight 0")));
    let mut overlapping = topology();
    overlapping.shards[1].orgs = 999..2000;
    let refused = Router::start(config(), overlapping, Arc::clone(&cluster) as _).await;
    assert!(matches!(refused, Err(RouterError::InvalidConfig(m)) if m.contains("overlap")));

    router.shutdown();
    router.shutdown();
    let read = router.read(replica_read(5, 1), READ, &[&1i64]).await;
    assert!(matches!(read, Err(RouterError::ShutDown)), "{read:?}");
    let checks = router
        .stats()
        .node("replica-1")
        .map(|n| n.checks_ok + n.checks_failed);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        router
            .stats()
            .node("replica-1")
            .map(|n| n.checks_ok + n.checks_failed),
        checks,
        "checks stopped"
    );
}
