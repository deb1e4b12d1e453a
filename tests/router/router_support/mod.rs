//! Shared pieces of the router tests: fake PostgreSQL nodes ([`fake_pg`]) and a standard cluster and
//! configuration to run a router against them.

#![allow(dead_code)]

pub mod fake_pg;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use replisim::router::{
    NodeAddress, ReadRequest, Routed, Router, RouterConfig, RouterError, ShardConfig, Topology,
    WriteRequest,
};
use tokio_postgres::Row;

#[allow(unused_imports)]
pub use fake_pg::{FakeCluster, FakeNode};

/// A read in the fake dialect: one row `(node, $1)`.
pub const READ: &str = "SELECT $1::bigint";
/// A write in the fake dialect: one row `(node, $1)`.
pub const WRITE: &str = "INSERT INTO kv VALUES ($1)";

/// A fake node's address.
pub fn address(name: &str) -> NodeAddress {
    NodeAddress::new(name, "fake", 5432)
}

/// Shard s1 (orgs 0..1000): primary-1, replica-1, replica-2. Shard s2 (orgs 1000..2000): primary-2
/// alone.
pub fn topology() -> Topology {
    Topology {
        shards: vec![
            ShardConfig {
                name: "s1".into(),
                orgs: 0..1000,
                primary: address("primary-1"),
                replicas: vec![address("replica-1"), address("replica-2")],
            },
            ShardConfig {
                name: "s2".into(),
                orgs: 1000..2000,
                primary: address("primary-2"),
                replicas: vec![],
            },
        ],
        user: "app".into(),
        dbname: "app".into(),
        password: None,
    }
}

/// Fake nodes for [`topology`].
pub fn cluster() -> Arc<FakeCluster> {
    Arc::new(FakeCluster::new(
        &["primary-1", "primary-2"],
        &["replica-1", "replica-2"],
    ))
}

/// Fast timers so failures show within a test's patience.
pub fn config() -> RouterConfig {
    let built = RouterConfig::builder()
        .health_interval(Duration::from_millis(40))
        .health_timeout(Duration::from_millis(100))
        .failure_threshold(2)
        .recovery_threshold(1)
        .connect_timeout(Duration::from_millis(300))
        .query_timeout(Duration::from_millis(300))
        .min_connections_per_node(0)
        .build();
    match built {
        Ok(config) => config,
        Err(error) => panic!("test configuration refused: {error}"),
    }
}

/// A router over [`topology`] and `cluster`.
pub async fn start(config: RouterConfig, cluster: &Arc<FakeCluster>) -> Router {
    match Router::start(config, topology(), Arc::clone(cluster) as _).await {
        Ok(router) => router,
        Err(error) => panic!("router did not start: {error}"),
    }
}

/// A read of `org` by `user` that may use a replica.
pub fn replica_read(org: i64, user: i64) -> ReadRequest {
    ReadRequest {
        org,
        user,
        prefer_replica: true,
    }
}

/// Polls `condition` every 10 ms for up to 3 s.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..300 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The node name and value of a read's single row.
pub async fn read_once(
    router: &Router,
    request: ReadRequest,
    value: i64,
) -> Result<(String, i64), RouterError> {
    let routed = router.read(request, READ, &[&value]).await?;
    assert_eq!(routed.value.len(), 1);
    let row = &routed.value[0];
    assert_eq!(
        row.get::<_, String>(0),
        routed.node,
        "the row came from the node the router reports"
    );
    Ok((routed.node, row.get(1)))
}

/// Makes `name` drop its connection on every statement it is asked to execute (`on`), or stop doing so.
pub fn drop_executes(cluster: &FakeCluster, name: &str, on: bool) {
    cluster
        .node(name)
        .drop_on_execute
        .store(on, Ordering::SeqCst);
}

/// Makes every statement on `name` take `delay_ms` before it is answered.
pub fn delay_executes(cluster: &FakeCluster, name: &str, delay_ms: u64) {
    cluster
        .node(name)
        .delay_ms
        .store(delay_ms, Ordering::SeqCst);
}

/// The nodes that served `reads` replica reads of org 5 by user 1, in order; failed reads are left out.
pub async fn serving_nodes(router: &Router, reads: i64) -> Vec<String> {
    let mut served = Vec::new();
    for value in 0..reads {
        if let Ok((node, _)) = read_once(router, replica_read(5, 1), value).await {
            served.push(node);
        }
    }
    served
}

/// How many entries of `served` are `name`.
pub fn served_by(served: &[String], name: &str) -> usize {
    served.iter().filter(|node| *node == name).count()
}

/// A write of `value` for `org` by `user`.
pub async fn write(
    router: &Router,
    org: i64,
    user: i64,
    value: i64,
) -> Result<Routed<Vec<Row>>, RouterError> {
    router
        .write(WriteRequest { org, user }, WRITE, &[&value])
        .await
}

/// Runs one write per `(org, user)` at once (the value is its index) and panics if any failed.
pub async fn concurrent_writes(router: &Router, requests: impl IntoIterator<Item = (i64, i64)>) {
    let writes = requests.into_iter().zip(0..).map(|((org, user), value)| {
        let router = router.clone();
        tokio::spawn(async move { write(&router, org, user, value).await })
    });
    for written in futures::future::join_all(writes).await {
        assert!(matches!(written, Ok(Ok(_))), "{written:?}");
    }
}

/// Starts a write for `slow` (org, user), which `primary-1` holds for 250 ms, then 20 ms later a
/// write for `blocked`; returns the second's outcome once the first has succeeded.
pub async fn write_behind_a_slow_one(
    router: &Router,
    cluster: &FakeCluster,
    slow: (i64, i64),
    blocked: (i64, i64),
) -> Result<Routed<Vec<Row>>, RouterError> {
    delay_executes(cluster, "primary-1", 250);
    let first = {
        let router = router.clone();
        tokio::spawn(async move { write(&router, slow.0, slow.1, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = write(router, blocked.0, blocked.1, 2).await;
    assert!(matches!(first.await, Ok(Ok(_))), "the slow write failed");
    second
}
