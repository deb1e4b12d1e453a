//! The router's transactions against a real PostgreSQL 15 streaming-replication cluster: where they
//! run, what they see, what a dropped or broken transaction leaves behind, and that the caps stay
//! held while one is open. Judged from the servers (backend pids, `pg_stat_activity`, the rows
//! themselves). Without PostgreSQL 15 each test prints a line and passes (under `CI=true` it fails
//! instead).

// Shared with the other real-cluster tests; this file uses only part of it.
#[allow(dead_code)]
use crate::real_support;

use std::time::Duration;

use real_support::{
    STEP_TIMEOUT, TestResult, connect, direct_topology, node, postgres_missing, start_cluster,
    start_router, step, wait_for,
};
use replisim::real::Cluster;
use replisim::record::workload::{LOCK_SQL, READ_SQL, WRITE_SQL};
use replisim::router::{
    ReadRequest, Router, RouterConfig, RouterError, ServedRole, Session, WriteRequest,
};
use tokio_postgres::error::SqlState;

/// The org every test works on (inside the one shard's range).
const ORG: i64 = 4_343;
const BACKEND_PID: &str = "SELECT pg_backend_pid()::bigint";

fn write(user: i64) -> WriteRequest {
    WriteRequest { org: ORG, user }
}

fn replica_read(user: i64) -> ReadRequest {
    ReadRequest {
        org: ORG,
        user,
        prefer_replica: true,
    }
}

fn first_i64(rows: &[tokio_postgres::Row]) -> Result<i64, real_support::AnyError> {
    let row = rows.first().ok_or("no row")?;
    Ok(row.try_get(0)?)
}

/// The committed version of `key` on the primary, read directly (0 = no row).
async fn committed_version(cluster: &Cluster, key: i64) -> Result<i64, real_support::AnyError> {
    let primary = connect(node(cluster, "primary-1")?).await?;
    let rows = step(primary.query(READ_SQL, &[&ORG, &key, &0i64])).await?;
    Ok(rows.first().map_or(Ok(0), |row| row.try_get(0))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_on_a_real_cluster() -> TestResult {
    if postgres_missing() {
        return Ok(());
    }
    let cluster = start_cluster("primary-1", &["replica-1", "replica-2"]).await?;
    let router = start_router(RouterConfig::default(), direct_topology(&cluster)?).await?;
    // Each part uses keys of its own, so they can share one cluster.
    a_write_transaction_runs_whole_on_one_primary_connection(&router, &cluster).await?;
    a_dropped_transaction_is_rolled_back(&router, &cluster).await?;
    savepoints_undo_part_of_a_transaction(&router, &cluster).await?;
    a_commit_after_a_failed_statement_is_no_commit(&router, &cluster).await?;
    a_read_transaction_is_one_snapshot_on_a_replica(&router, &cluster).await?;
    a_session_transaction_is_read_back_by_the_session(&router).await?;
    a_killed_connection_loses_the_transaction_without_retry(&router, &cluster).await?;
    router.shutdown();
    caps_are_held_while_a_transaction_is_open(&cluster).await?;
    cluster.teardown().await?;
    Ok(())
}

/// BEGIN, the locking read and the write run on one backend of the primary; COMMIT makes the write
/// visible; the connection then goes back to the pool.
async fn a_write_transaction_runs_whole_on_one_primary_connection(
    router: &Router,
    cluster: &Cluster,
) -> TestResult {
    let key = 1i64;
    let user = 1i64;
    let mut transaction = step(router.begin(write(user))).await?;
    assert_eq!(transaction.node(), "primary-1");
    assert_eq!(transaction.role(), ServedRole::Primary);
    let pid_before = first_i64(&step(transaction.query(BACKEND_PID, &[])).await?)?;
    let locked = step(transaction.query(LOCK_SQL, &[&ORG, &key, &user])).await?;
    assert!(locked.is_empty(), "the row exists before its first write");
    let written = first_i64(&step(transaction.query(WRITE_SQL, &[&ORG, &key, &user])).await?)?;
    assert_eq!(written, 1);
    assert_eq!(
        committed_version(cluster, key).await?,
        0,
        "the write is visible before COMMIT"
    );
    let pid_after = first_i64(&step(transaction.query(BACKEND_PID, &[])).await?)?;
    assert_eq!(pid_before, pid_after, "the transaction changed connections");
    let statement = step(transaction.prepare(READ_SQL)).await?;
    let own = step(transaction.query_prepared(&statement, &[&ORG, &key, &user])).await?;
    assert_eq!(
        first_i64(&own)?,
        1,
        "the transaction does not see its own write"
    );
    let affected = step(transaction.execute(WRITE_SQL, &[&ORG, &key, &user])).await?;
    assert_eq!(affected, 1);
    step(transaction.commit()).await?;
    assert_eq!(committed_version(cluster, key).await?, 2);
    // The connection went back to the pool: the next statement reuses it.
    let next = step(router.write(write(user), BACKEND_PID, &[])).await?;
    assert_eq!(
        first_i64(&next.value)?,
        pid_before,
        "the committed connection was not reused"
    );
    Ok(())
}

/// A transaction dropped without COMMIT leaves nothing behind, and its connection is closed rather
/// than handed to the next caller inside the transaction.
async fn a_dropped_transaction_is_rolled_back(router: &Router, cluster: &Cluster) -> TestResult {
    let key = 2i64;
    let mut transaction = step(router.begin(write(1))).await?;
    step(transaction.query(WRITE_SQL, &[&ORG, &key, &1i64])).await?;
    let pid = first_i64(&step(transaction.query(BACKEND_PID, &[])).await?)?;
    drop(transaction);
    assert_eq!(
        committed_version(cluster, key).await?,
        0,
        "a dropped transaction committed"
    );
    let primary = connect(node(cluster, "primary-1")?).await?;
    let primary = &primary;
    wait_for(
        "the dropped transaction's backend to end",
        STEP_TIMEOUT,
        || async move {
            let rows = step(primary.query(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&(pid as i32)],
            ))
            .await?;
            Ok(first_i64(&rows)? == 0)
        },
    )
    .await?;
    // An explicit rollback returns the connection instead.
    let mut transaction = step(router.begin(write(1))).await?;
    step(transaction.query(WRITE_SQL, &[&ORG, &key, &1i64])).await?;
    step(transaction.rollback()).await?;
    assert_eq!(
        committed_version(cluster, key).await?,
        0,
        "a rolled back write committed"
    );
    Ok(())
}

/// ROLLBACK TO SAVEPOINT undoes what ran after the savepoint, including a failed statement.
async fn savepoints_undo_part_of_a_transaction(router: &Router, cluster: &Cluster) -> TestResult {
    let key = 3i64;
    let mut transaction = step(router.begin(write(1))).await?;
    step(transaction.query(WRITE_SQL, &[&ORG, &key, &1i64])).await?;
    step(transaction.savepoint("before \"second\"")).await?;
    step(transaction.query(WRITE_SQL, &[&ORG, &key, &1i64])).await?;
    let failed = step(transaction.query("SELECT 1 / 0", &[])).await;
    assert!(failed.is_err(), "division by zero succeeded");
    let aborted = transaction.query(READ_SQL, &[&ORG, &key, &1i64]).await;
    assert_eq!(
        aborted.err().and_then(|e| e.code()),
        Some(SqlState::IN_FAILED_SQL_TRANSACTION),
        "an aborted transaction ran another statement"
    );
    step(transaction.rollback_to("before \"second\"")).await?;
    step(transaction.release("before \"second\"")).await?;
    step(transaction.commit()).await?;
    assert_eq!(
        committed_version(cluster, key).await?,
        1,
        "the savepoint did not undo the second write"
    );
    Ok(())
}

/// PostgreSQL answers the COMMIT of a transaction with a failed statement with ROLLBACK, not an
/// error: the router must not report it as committed.
async fn a_commit_after_a_failed_statement_is_no_commit(
    router: &Router,
    cluster: &Cluster,
) -> TestResult {
    let key = 8i64;
    let mut transaction = step(router.begin(write(1))).await?;
    step(transaction.query(WRITE_SQL, &[&ORG, &key, &1i64])).await?;
    assert!(step(transaction.query("SELECT 1 / 0", &[])).await.is_err());
    let commit = transaction.commit().await;
    let Err(error) = commit else {
        return Err("COMMIT of a failed transaction reported success".into());
    };
    assert!(
        matches!(
            error,
            RouterError::TransactionLost {
                outcome_unknown: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("rolled it back"), "{error}");
    assert_eq!(committed_version(cluster, key).await?, 0);
    // Its connection is clean again: the next statement on the pool runs in autocommit.
    step(router.write(write(1), WRITE_SQL, &[&ORG, &key, &1i64])).await?;
    assert_eq!(committed_version(cluster, key).await?, 1);
    Ok(())
}

/// A read-only transaction runs on a replica, in REPEATABLE READ: a row committed while it is open
/// stays invisible to it, and it refuses writes.
async fn a_read_transaction_is_one_snapshot_on_a_replica(
    router: &Router,
    cluster: &Cluster,
) -> TestResult {
    let key = 4i64;
    let mut snapshot = step(router.begin_read(replica_read(2))).await?;
    assert_eq!(snapshot.role(), ServedRole::Replica);
    assert!(
        snapshot.node().starts_with("replica-"),
        "{}",
        snapshot.node()
    );
    let rows = step(snapshot.query("SHOW transaction_isolation", &[])).await?;
    let isolation: String = rows.first().ok_or("no row")?.try_get(0)?;
    assert_eq!(isolation, "repeatable read");
    let before = step(snapshot.query(READ_SQL, &[&ORG, &key, &2i64])).await?;
    assert!(before.is_empty());
    step(router.write(write(2), WRITE_SQL, &[&ORG, &key, &2i64])).await?;
    // The replica applies the write; a fresh connection to it sees it, the snapshot does not.
    let replica = connect(node(cluster, snapshot.node())?).await?;
    let replica = &replica;
    wait_for(
        "the replica to apply the write",
        STEP_TIMEOUT,
        || async move {
            Ok(!step(replica.query(READ_SQL, &[&ORG, &key, &2i64]))
                .await?
                .is_empty())
        },
    )
    .await?;
    let after = step(snapshot.query(READ_SQL, &[&ORG, &key, &2i64])).await?;
    assert!(
        after.is_empty(),
        "the snapshot moved while the transaction was open"
    );
    let refused = snapshot.query(WRITE_SQL, &[&ORG, &key, &2i64]).await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(SqlState::READ_ONLY_SQL_TRANSACTION)
    );
    step(snapshot.rollback()).await?;
    Ok(())
}

/// A session's committed transaction is seen by the session's next read, wherever it runs.
async fn a_session_transaction_is_read_back_by_the_session(router: &Router) -> TestResult {
    let key = 5i64;
    let mut session = Session::new(router.clone());
    let scope = replisim::router::Scope::row(ORG, key);
    for expected in 1..=3i64 {
        let mut transaction = step(router.begin(write(3))).await?;
        step(transaction.query(LOCK_SQL, &[&ORG, &key, &3i64])).await?;
        step(transaction.query(WRITE_SQL, &[&ORG, &key, &3i64])).await?;
        step(session.commit_in(scope, ORG, transaction)).await?;
        let read =
            step(session.read_in(scope, replica_read(3), READ_SQL, &[&ORG, &key, &3i64])).await?;
        assert_eq!(version(&read.value)?, expected, "read on {}", read.node);
        let mut snapshot = step(session.begin_read_in(scope, replica_read(3))).await?;
        let seen = step(snapshot.query(READ_SQL, &[&ORG, &key, &3i64])).await?;
        assert_eq!(version(&seen)?, expected, "snapshot on {}", snapshot.node());
        step(snapshot.commit()).await?;
    }
    Ok(())
}

fn version(rows: &[tokio_postgres::Row]) -> Result<i64, real_support::AnyError> {
    rows.first().map_or(Ok(0), |row| Ok(row.try_get(0)?))
}

/// The server ends the transaction's backend: the next statement says the transaction is lost and
/// not retried, and so does every later call; nothing it wrote commits.
async fn a_killed_connection_loses_the_transaction_without_retry(
    router: &Router,
    cluster: &Cluster,
) -> TestResult {
    let key = 6i64;
    let mut transaction = step(router.begin(write(4))).await?;
    step(transaction.query(WRITE_SQL, &[&ORG, &key, &4i64])).await?;
    let pid = first_i64(&step(transaction.query(BACKEND_PID, &[])).await?)? as i32;
    let primary = connect(node(cluster, "primary-1")?).await?;
    step(primary.query("SELECT pg_terminate_backend($1)", &[&pid])).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lost = transaction.query(WRITE_SQL, &[&ORG, &key, &4i64]).await;
    let Err(error) = lost else {
        return Err("a statement ran on a terminated backend".into());
    };
    assert!(
        matches!(
            error,
            RouterError::TransactionLost {
                outcome_unknown: false,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("primary-1") && message.contains("not retried"),
        "{message}"
    );
    let again = transaction.commit().await;
    assert!(
        matches!(again, Err(RouterError::TransactionLost { .. })),
        "{again:?}"
    );
    assert_eq!(committed_version(cluster, key).await?, 0);
    Ok(())
}

/// With one connection per user, a second write of the user waits for the open transaction and
/// gives up after `connect_timeout`; after COMMIT it runs.
async fn caps_are_held_while_a_transaction_is_open(cluster: &Cluster) -> TestResult {
    let config = RouterConfig::builder()
        .max_connections_per_user(1)
        .connect_timeout(Duration::from_millis(300))
        .build()?;
    let router = start_router(config, direct_topology(cluster)?).await?;
    let transaction = step(router.begin(write(9))).await?;
    let blocked = router
        .write(write(9), WRITE_SQL, &[&ORG, &7i64, &9i64])
        .await;
    assert!(
        matches!(blocked, Err(RouterError::CapExceeded { .. })),
        "{blocked:?}"
    );
    let other_user = step(router.write(write(10), WRITE_SQL, &[&ORG, &7i64, &10i64])).await?;
    assert_eq!(other_user.node, "primary-1");
    step(transaction.commit()).await?;
    step(router.write(write(9), WRITE_SQL, &[&ORG, &7i64, &9i64])).await?;
    router.shutdown();
    Ok(())
}
