//! Smoke test against real PostgreSQL over TCP. Ignored by default: it needs running servers.
//!
//! `REPLISIM_PG_PRIMARY=127.0.0.1:5433 REPLISIM_PG_REPLICAS=127.0.0.1:5434 \
//!  cargo test --release --test router postgres:: -- --ignored`
//!
//! The replicas must stream from the primary; the user `postgres` must be trusted (database `postgres`).

use std::sync::Arc;
use std::time::Duration;

use replisim::router::{
    NodeAddress, ReadRequest, Router, RouterConfig, ServedRole, ShardConfig, TcpConnector,
    Topology, WriteRequest,
};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS replisim_kv (org_id bigint, key bigint, \
    version bigint NOT NULL, updated_by bigint NOT NULL, PRIMARY KEY (org_id, key))";
const WRITE: &str = "INSERT INTO replisim_kv (org_id, key, version, updated_by) VALUES ($1, $2, 1, $3) \
    ON CONFLICT (org_id, key) DO UPDATE SET version = replisim_kv.version + 1, updated_by = $3 \
    RETURNING version";
const READ: &str =
    "SELECT version, $3::bigint AS reader FROM replisim_kv WHERE org_id = $1 AND key = $2";

fn address(name: &str, host_port: &str) -> NodeAddress {
    let Some((host, port)) = host_port.rsplit_once(':') else {
        panic!("{name}: {host_port:?} is not host:port");
    };
    let Ok(port) = port.parse() else {
        panic!("{name}: bad port in {host_port:?}");
    };
    NodeAddress::new(name, host, port)
}

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) => value,
        Err(_) => panic!("set {name} (see the top of tests/router/postgres.rs)"),
    }
}

#[tokio::test]
#[ignore = "needs a running PostgreSQL primary and replicas"]
async fn routes_reads_and_writes_over_tcp() {
    // A port nothing listens on: a replica that is down from the start.
    let dead_port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(error) => panic!("no free port: {error}"),
    };
    let replicas: Vec<NodeAddress> = env("REPLISIM_PG_REPLICAS")
        .split(',')
        .enumerate()
        .map(|(i, host_port)| address(&format!("replica-{}", i + 1), host_port.trim()))
        .chain([NodeAddress::new("replica-dead", "127.0.0.1", dead_port)])
        .collect();
    let topology = Topology {
        shards: vec![ShardConfig {
            name: "s1".into(),
            orgs: 0..1_000_000,
            primary: address("primary-1", &env("REPLISIM_PG_PRIMARY")),
            replicas: replicas.clone(),
        }],
        user: "postgres".into(),
        dbname: "postgres".into(),
        password: None,
    };
    let config = RouterConfig::builder()
        .failure_threshold(1)
        .health_interval(Duration::from_millis(200))
        .connect_timeout(Duration::from_secs(2))
        .query_timeout(Duration::from_secs(5))
        .build();
    let Ok(config) = config else {
        panic!("configuration refused: {config:?}");
    };
    let router = match Router::start(config, topology, Arc::new(TcpConnector)).await {
        Ok(router) => router,
        Err(error) => panic!("router did not start: {error}"),
    };

    let stats = router.stats();
    assert_eq!(
        stats.node("primary-1").and_then(|n| n.reported_role),
        Some(ServedRole::Primary)
    );
    assert_eq!(
        stats.node("replica-1").and_then(|n| n.reported_role),
        Some(ServedRole::Replica)
    );
    assert_eq!(stats.node("replica-dead").map(|n| n.healthy), Some(false));

    let created = router
        .write(WriteRequest { org: 1, user: 7 }, CREATE, &[])
        .await;
    assert!(created.is_ok(), "{created:?}");
    let (org, key, user) = (42i64, 1i64, 7i64);
    let written = router
        .write(WriteRequest { org, user }, WRITE, &[&org, &key, &user])
        .await;
    let Ok(written) = written else {
        panic!("write failed: {written:?}");
    };
    assert_eq!(written.node, "primary-1");
    let version: i64 = written.value[0].get(0);

    // Replicas apply the write within milliseconds; poll a little.
    let request = ReadRequest {
        org,
        user,
        prefer_replica: true,
    };
    let mut seen = Vec::new();
    for _ in 0..100 {
        let read = router.read(request, READ, &[&org, &key, &user]).await;
        let Ok(read) = read else {
            panic!("read failed: {read:?}");
        };
        assert_eq!(read.role, ServedRole::Replica);
        assert_ne!(read.node, "replica-dead");
        let got = read.value.first().map_or(0, |row| row.get::<_, i64>(0));
        seen.push(read.node);
        if got == version {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fresh = router.read(request, READ, &[&org, &key, &user]).await;
    assert_eq!(
        fresh.map(|r| r.value[0].get::<_, i64>(0)).ok(),
        Some(version)
    );

    let streamed = router
        .read_stream(request, READ, &[&org, &key, &user])
        .await;
    let Ok(mut streamed) = streamed else {
        panic!("streaming read failed to start");
    };
    let first = streamed.value.next_row().await;
    assert_eq!(
        first.map(|row| row.map(|r| r.get::<_, i64>(1))).ok(),
        Some(Some(user))
    );
    assert!(matches!(streamed.value.next_row().await, Ok(None)));
    drop(streamed);

    let stats = router.stats();
    println!("{stats:#?}");
    assert_eq!(stats.node("replica-dead").map(|n| n.attempts), Some(0));
    router.shutdown();
}
