//! The production router against a real PostgreSQL 15 streaming-replication cluster. Where reads
//! and writes ran is judged from the servers' own statement counts (`pg_stat_statements`), their
//! logs and the fault proxy's records, never from the router's word alone. Faults: a replica killed
//! under load, a replica partitioned, latency on one replica's link. Without PostgreSQL 15 each test
//! prints a line and passes (under `CI=true` it fails instead). Clusters run one at a time.

use crate::real_support;

use std::collections::BTreeMap;
use std::time::Duration;

use real_support::loops::{failures, median, per_node, served, spawn_read_loops, wait_health};
use real_support::proxied::Proxies;
use real_support::{
    READ_ONLY_ERROR, STEP_TIMEOUT, TestResult, connect, delta, direct_topology, executed,
    executed_all, fast_failover_config, log_mentions, node, postgres_missing, seed, settled_counts,
    start_cluster, start_router, step, topology, totals, version_of, wait_for,
};
use replisim::real::Cluster;
use replisim::record::workload::{READ_SQL, WRITE_SQL};
use replisim::router::{ReadRequest, Router, RouterConfig, RouterError, ServedRole, WriteRequest};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;

/// One cluster at a time across the tests of this file.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The org every test works on (inside the one shard's range).
const ORG: i64 = 4_242;
/// Keys written before the reads start.
const KEYS: i64 = 40;
/// The replicas of the cluster the routing checks share.
const REPLICAS: [&str; 3] = ["replica-1", "replica-2", "replica-3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_statements_run_judged_by_the_servers() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let cluster = start_cluster("primary-1", &REPLICAS).await?;
    // Each part judges from count differences, so they can share one cluster.
    reads_on_replicas_and_writes_on_the_primary(&cluster).await?;
    critical_reads_on_the_primary(&cluster).await?;
    a_write_reaching_a_replica_is_refused(&cluster).await?;
    cluster.teardown().await?;
    Ok(())
}

/// Reads spread round robin over the replicas and none runs on the primary; every write runs on
/// the primary and none reaches a replica.
async fn reads_on_replicas_and_writes_on_the_primary(cluster: &Cluster) -> TestResult {
    let router = start_router(RouterConfig::default(), direct_topology(cluster)?).await?;
    let before = executed_all(cluster).await?;

    // 8 clients, 100 operations each, every fifth a write: 640 reads and 160 writes at once.
    let clients: i64 = 8;
    let ops: i64 = 100;
    let tasks: Vec<_> = (0..clients)
        .map(|user| {
            let router = router.clone();
            tokio::spawn(async move {
                let mut served: Vec<(bool, String, ServedRole)> = Vec::new();
                for op in 0..ops {
                    let key = (user * ops + op) % KEYS;
                    let routed = if op % 5 == 0 {
                        let request = WriteRequest { org: ORG, user };
                        (
                            true,
                            step(router.write(request, WRITE_SQL, &[&ORG, &key, &user])).await,
                        )
                    } else {
                        let request = ReadRequest {
                            org: ORG,
                            user,
                            prefer_replica: true,
                        };
                        (
                            false,
                            step(router.read(request, READ_SQL, &[&ORG, &key, &user])).await,
                        )
                    };
                    match routed {
                        (is_write, Ok(routed)) => served.push((is_write, routed.node, routed.role)),
                        (_, Err(error)) => return Err(error.to_string()),
                    }
                }
                Ok(served)
            })
        })
        .collect();
    let mut router_says: BTreeMap<(bool, String), i64> = BTreeMap::new();
    for task in tasks {
        for (is_write, node, role) in step(task).await?? {
            let expected = if is_write {
                ServedRole::Primary
            } else {
                ServedRole::Replica
            };
            assert_eq!(
                role, expected,
                "write = {is_write} served by {node} as {role:?}"
            );
            *router_says.entry((is_write, node)).or_insert(0) += 1;
        }
    }
    let reads = clients * ops * 4 / 5;
    let writes = clients * ops / 5;
    let start = totals(&before);
    let after = settled_counts(cluster, |counts| {
        let now = totals(counts);
        now.reads >= start.reads + reads && now.writes >= start.writes + writes
    })
    .await?;

    let primary = delta(&after, &before, "primary-1");
    println!(
        "executed by the servers (pg_stat_statements), {reads} reads and {writes} writes sent:"
    );
    println!(
        "  primary-1: {} reads, {} writes",
        primary.reads, primary.writes
    );
    assert_eq!(primary.reads, 0, "the primary executed workload reads");
    assert_eq!(primary.writes, writes, "writes the primary executed");
    let fair = reads as f64 / REPLICAS.len() as f64;
    let mut replica_reads = 0;
    for name in REPLICAS {
        let executed = delta(&after, &before, name);
        let claimed = router_says
            .get(&(false, name.to_string()))
            .copied()
            .unwrap_or(0);
        println!(
            "  {name}: {} reads ({:.1}% of the fair share), {} writes; router says {claimed} reads",
            executed.reads,
            100.0 * executed.reads as f64 / fair,
            executed.writes
        );
        assert_eq!(executed.writes, 0, "{name} executed writes");
        assert_eq!(
            executed.reads, claimed,
            "{name}: the server and the router disagree"
        );
        assert!(
            (executed.reads as f64 - fair).abs() <= 0.1 * fair,
            "{name} executed {} reads, fair share {fair:.0}",
            executed.reads
        );
        assert!(
            !log_mentions(node(cluster, name)?, READ_ONLY_ERROR)?,
            "a write reached {name}"
        );
        replica_reads += executed.reads;
    }
    assert_eq!(replica_reads, reads, "reads the replicas executed");

    router.shutdown();
    Ok(())
}

/// Critical reads (`prefer_replica = false`) run on the primary and see the write just before them.
async fn critical_reads_on_the_primary(cluster: &Cluster) -> TestResult {
    let router = start_router(RouterConfig::default(), direct_topology(cluster)?).await?;
    let before = executed_all(cluster).await?;

    // Read-after-write: a critical read sees the version the write just returned.
    let critical = |user: i64| ReadRequest {
        org: ORG,
        user,
        prefer_replica: false,
    };
    let rounds: i64 = 40;
    for round in 0..rounds {
        let key = round % 10;
        let write = WriteRequest { org: ORG, user: 1 };
        let written = step(router.write(write, WRITE_SQL, &[&ORG, &key, &1i64])).await?;
        let version = version_of(&written.value)?;
        let read = step(router.read(critical(1), READ_SQL, &[&ORG, &key, &1i64])).await?;
        assert_eq!(
            (read.node.as_str(), read.role),
            ("primary-1", ServedRole::Primary)
        );
        let seen = version_of(&read.value)?;
        assert_eq!(seen, version, "critical read of key {key} after its write");
    }
    // More critical reads from 4 clients at once, and replica reads to compare with.
    let tasks: Vec<_> = (0..4i64)
        .map(|user| {
            let router = router.clone();
            tokio::spawn(async move {
                for op in 0..25i64 {
                    let key = op % 10;
                    let routed = step(router.read(critical(user), READ_SQL, &[&ORG, &key, &user]))
                        .await
                        .map_err(|e| e.to_string())?;
                    if routed.role != ServedRole::Primary {
                        return Err(format!("a critical read was served by {}", routed.node));
                    }
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for task in tasks {
        step(task).await??;
    }
    let replica_reads: i64 = 60;
    for op in 0..replica_reads {
        let request = ReadRequest {
            org: ORG,
            user: 9,
            prefer_replica: true,
        };
        let routed = step(router.read(request, READ_SQL, &[&ORG, &(op % 10), &9i64])).await?;
        assert_eq!(
            routed.role,
            ServedRole::Replica,
            "served by {}",
            routed.node
        );
    }
    let critical_reads = rounds + 100;
    let start = totals(&before).reads;
    let after = settled_counts(cluster, |counts| {
        totals(counts).reads >= start + critical_reads + replica_reads
    })
    .await?;
    let primary = delta(&after, &before, "primary-1");
    let on_replicas: Vec<i64> = REPLICAS
        .iter()
        .map(|name| delta(&after, &before, name).reads)
        .collect();
    println!(
        "{critical_reads} critical reads + {replica_reads} replica reads sent; executed: \
         primary-1 {} reads / {} writes, replicas {on_replicas:?} reads",
        primary.reads, primary.writes
    );
    assert_eq!(primary.reads, critical_reads, "reads the primary executed");
    assert_eq!(primary.writes, rounds, "writes the primary executed");
    assert_eq!(
        on_replicas.iter().sum::<i64>(),
        replica_reads,
        "reads the replicas executed"
    );
    assert!(on_replicas.iter().all(|&n| n > 0), "a replica was left out");

    router.shutdown();
    Ok(())
}

/// A write that reaches a replica (through a primary address that is in fact a replica's) is
/// refused by the server with SQLSTATE 25006, which logs it; nothing is written anywhere.
async fn a_write_reaching_a_replica_is_refused(cluster: &Cluster) -> TestResult {
    let replica = node(cluster, "replica-3")?;
    // Miswired on purpose: the router's "primary-1" is in fact the replica. Following promotions,
    // the router sees it in recovery and writes nowhere; with static roles the write reaches it.
    let miswired = topology(("primary-1", replica.port), &[]);
    let following = start_router(RouterConfig::default(), miswired.clone()).await?;
    let request = WriteRequest {
        org: ORG + 1,
        user: 1,
    };
    let result = tokio::time::timeout(
        STEP_TIMEOUT,
        following.write(request, WRITE_SQL, &[&(ORG + 1), &9i64, &1i64]),
    )
    .await?;
    match result {
        Err(RouterError::NoPrimary { shard }) => assert_eq!(shard, "s1"),
        Err(error) => panic!("expected NoPrimary, got {error}"),
        Ok(routed) => panic!("a write on a replica succeeded on {}", routed.node),
    }
    following.shutdown();
    let static_roles = RouterConfig {
        follow_promotion: false,
        ..RouterConfig::default()
    };
    let router = start_router(static_roles, miswired).await?;

    // An org nothing was written for: any row of it would be the refused write's.
    let (org, key) = (ORG + 1, 9i64);
    let request = WriteRequest { org, user: 1 };
    let result = tokio::time::timeout(
        STEP_TIMEOUT,
        router.write(request, WRITE_SQL, &[&org, &key, &1i64]),
    )
    .await?;
    let error = match result {
        Ok(routed) => panic!("a write on a replica succeeded on {}", routed.node),
        Err(error) => error,
    };
    println!("write through a primary address that is a replica: {error}");
    assert_eq!(
        error.code(),
        Some(SqlState::READ_ONLY_SQL_TRANSACTION),
        "{error}"
    );
    assert_eq!(error.node(), Some("primary-1"));
    assert!(
        !error.is_node_failure(),
        "a refused write is not the node's failure"
    );
    let stats = router.stats();
    let seen = stats
        .node("primary-1")
        .ok_or("no statistics for primary-1")?;
    assert_eq!(
        (seen.attempts, seen.errors),
        (1, 1),
        "a write is tried once"
    );
    assert_eq!(
        seen.reported_role,
        Some(ServedRole::Replica),
        "what the probe saw"
    );

    // The server side: the replica logged the refusal and executed nothing; the primary saw nothing.
    assert!(
        log_mentions(replica, READ_ONLY_ERROR)?,
        "the replica did not log the refusal"
    );
    assert_eq!(executed(replica).await?.writes, 0);
    let primary = node(cluster, "primary-1")?;
    assert!(!log_mentions(primary, READ_ONLY_ERROR)?);
    let direct = connect(primary).await?;
    let rows = step(direct.query_one(
        "SELECT count(*) FROM replisim_kv WHERE org_id = $1 AND key = $2",
        &[&org, &key],
    ))
    .await?;
    assert_eq!(rows.get::<_, i64>(0), 0, "the refused write left a row");

    router.shutdown();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_costs_no_read() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let cluster = start_cluster("primary-1", &["replica-1", "replica-2"]).await?;
    let router = start_router(fast_failover_config()?, direct_topology(&cluster)?).await?;
    seed(&router, ORG, KEYS).await?;
    let loops = spawn_read_loops(&router, 8, ORG, KEYS, Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(800)).await;

    let crashed_at = Instant::now();
    cluster.crash("replica-2").await?;
    wait_health(&router, "replica-2", false, Duration::from_secs(5)).await?;
    let detected = crashed_at.elapsed();
    tokio::time::sleep_until(crashed_at + Duration::from_millis(1500)).await;
    let restarting = Instant::now();
    cluster.restart("replica-2").await?;
    let restarted_at = Instant::now();
    wait_health(&router, "replica-2", true, Duration::from_secs(5)).await?;
    let back_in = restarting.elapsed();
    let watched = &loops;
    wait_for(
        "replica-2 serving again",
        Duration::from_secs(10),
        move || async move { Ok(watched.served_since("replica-2", restarted_at) >= 20) },
    )
    .await?;
    let logs = loops.stop().await?;
    // Every read replica-2 executed since its restart (its counts start at zero then) was served
    // by it, or failed there and was retried elsewhere; none of those started before the restart.
    let router_since_restart = served(&logs, "replica-2", restarting, None);
    let retried_since_restart = logs
        .iter()
        .filter(|log| log.start >= restarting && log.attempts > 1)
        .count();
    let replica_2 = node(&cluster, "replica-2")?;
    let mut since_restart = executed(replica_2).await?.reads;
    let settle = Instant::now() + Duration::from_secs(2);
    while since_restart < i64::try_from(router_since_restart)? && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
        since_restart = executed(replica_2).await?.reads;
    }

    let failed = failures(&logs);
    let window = |since: Instant, until: Instant| {
        logs.iter()
            .filter(|log| log.start >= since && log.start < until)
            .collect::<Vec<_>>()
    };
    let down = window(crashed_at, restarting);
    let retried = down.iter().filter(|log| log.attempts > 1).count();
    let slowest = down.iter().map(|log| log.took).max().unwrap_or_default();
    let served_down = |name: &str| served(&logs, name, crashed_at, Some(restarting));
    println!(
        "replica killed under load: {} reads, {} failed; per node {:?}",
        logs.len(),
        failed.len(),
        per_node(&logs)
    );
    println!(
        "  unhealthy {detected:?} after the crash; while down: {} reads (replica-1 {}, primary-1 \
         {}, replica-2 {}), {retried} retried, slowest {slowest:?}",
        down.len(),
        served_down("replica-1"),
        served_down("primary-1"),
        served_down("replica-2"),
    );
    println!(
        "  back in rotation {back_in:?} after the restart began; since then replica-2 executed \
         {since_restart} reads, the router says {router_since_restart} (+{retried_since_restart} \
         retried)"
    );
    assert!(failed.is_empty(), "failed reads: {failed:?}");
    assert!(
        detected <= Duration::from_secs(1),
        "detection took {detected:?}"
    );
    assert!(
        served_down("replica-1") > 0,
        "no read ran on replica-1 while replica-2 was down"
    );
    let (served_there, tried_there) = (
        i64::try_from(router_since_restart)?,
        i64::try_from(router_since_restart + retried_since_restart)?,
    );
    assert!(
        (served_there..=tried_there).contains(&since_restart),
        "replica-2 executed {since_restart} reads since its restart; the router says \
         {router_since_restart} (+{retried_since_restart} retried)"
    );

    router.shutdown();
    cluster.teardown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_latency_and_partition_seen_through_the_router() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let cluster = start_cluster("primary-1", &["replica-1", "replica-2"]).await?;
    let proxies = Proxies::start(&cluster).await?;
    let through_proxies = proxies.topology()?;
    let proxied = |name: &str| proxies.get(name);

    // Latency on replica-2's link shows in the reads it serves, and only in those.
    let patient = RouterConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .query_timeout(Duration::from_secs(2))
        .build()?;
    let router = start_router(patient, through_proxies.clone()).await?;
    seed(&router, ORG, KEYS).await?;
    let read = |router: &Router, key: i64| {
        let request = ReadRequest {
            org: ORG,
            user: 3,
            prefer_replica: true,
        };
        let router = router.clone();
        async move { step(router.read(request, READ_SQL, &[&ORG, &key, &3i64])).await }
    };
    let mut times: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for key in 0..20 {
        read(&router, key).await?;
    }
    let one_way = Duration::from_millis(25);
    proxied("replica-2")?.proxy.set_latency(one_way);
    for key in 0..40 {
        let started = Instant::now();
        let routed = read(&router, key).await?;
        times
            .entry(routed.node)
            .or_default()
            .push(started.elapsed());
    }
    proxied("replica-2")?.proxy.set_latency(Duration::ZERO);
    let mut slow = times.remove("replica-2").unwrap_or_default();
    let mut fast = times.remove("replica-1").unwrap_or_default();
    let (slow_count, fast_count) = (slow.len(), fast.len());
    let (slow_median, fast_median) = (median(&mut slow), median(&mut fast));
    println!(
        "latency {one_way:?} each way on replica-2: median read {slow_median:?} there \
         ({slow_count} reads), {fast_median:?} on replica-1 ({fast_count} reads)"
    );
    assert!(
        slow_count >= 10 && fast_count >= 10,
        "round robin skipped a replica"
    );
    assert!(
        fast_median < one_way,
        "replica-1 slowed down too: {fast_median:?}"
    );
    let added = slow_median.saturating_sub(fast_median);
    assert!(
        added >= 2 * one_way - Duration::from_millis(2),
        "added only {added:?}"
    );
    assert!(
        added <= 2 * one_way + Duration::from_millis(40),
        "added {added:?}"
    );
    // What crossed each link: the writes went to the primary's only.
    let writes_seen: Vec<usize> = ["primary-1", "replica-1", "replica-2"]
        .into_iter()
        .map(|name| proxied(name).map(|p| p.statements_like("INSERT INTO replisim_kv")))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        writes_seen,
        [usize::try_from(KEYS)?, 0, 0],
        "writes per link"
    );
    router.shutdown();

    // A partition of replica-1: health checks take it out, retries save the reads it held.
    let router = start_router(fast_failover_config()?, through_proxies).await?;
    let loops = spawn_read_loops(&router, 6, ORG, KEYS, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let partitioned_at = Instant::now();
    proxied("replica-1")?.proxy.set_partitioned(true);
    let detected = wait_health(&router, "replica-1", false, Duration::from_secs(3)).await?;
    tokio::time::sleep_until(partitioned_at + Duration::from_secs(2)).await;
    let healed_at = Instant::now();
    proxied("replica-1")?.proxy.set_partitioned(false);
    let back_in = wait_health(&router, "replica-1", true, Duration::from_secs(5)).await?;
    let watched = &loops;
    wait_for(
        "replica-1 serving again",
        Duration::from_secs(10),
        move || async move { Ok(watched.served_since("replica-1", healed_at) >= 20) },
    )
    .await?;
    let logs = loops.stop().await?;
    router.shutdown();

    let failed = failures(&logs);
    let during: Vec<_> = logs
        .iter()
        .filter(|log| log.start >= partitioned_at && log.start < healed_at)
        .collect();
    let slowest = during.iter().map(|log| log.took).max().unwrap_or_default();
    let retried = during.iter().filter(|log| log.attempts > 1).count();
    let statements = proxied("replica-1")?.workload_statements();
    let held: Vec<Instant> = statements
        .iter()
        .filter(|(_, r)| r.partitioned)
        .map(|(at, _)| *at)
        .collect();
    let last_held = held
        .iter()
        .max()
        .map(|at| at.saturating_duration_since(partitioned_at));
    let after_heal = statements
        .iter()
        .filter(|(at, r)| !r.partitioned && *at >= healed_at)
        .count();
    println!(
        "replica-1 partitioned: {} reads, {} failed, per node {:?}; unhealthy after {detected:?}, \
         healthy {back_in:?} after the heal",
        logs.len(),
        failed.len(),
        per_node(&logs)
    );
    println!(
        "  during the partition: {} reads, {retried} retried, slowest {slowest:?}; {} workload \
         statements held by the partition (the last {} after it began); {after_heal} reached \
         replica-1 after the heal",
        during.len(),
        held.len(),
        last_held.map_or_else(|| "none".to_string(), |after| format!("{after:?}"))
    );
    assert!(failed.is_empty(), "failed reads: {failed:?}");
    assert!(
        detected <= Duration::from_secs(1),
        "detection took {detected:?}"
    );
    assert!(
        last_held.is_none_or(|after| after < Duration::from_secs(1)),
        "workload statements went to the partitioned replica {last_held:?} after the partition"
    );
    assert!(
        served(&logs, "replica-2", partitioned_at, Some(healed_at)) > 0,
        "replica-2 served no read during the partition"
    );
    assert!(
        after_heal > 0,
        "no workload statement reached replica-1 after the heal"
    );
    assert!(
        slowest <= Duration::from_millis(2500),
        "a read took {slowest:?}"
    );

    proxies.shutdown().await;
    cluster.teardown().await?;
    Ok(())
}
