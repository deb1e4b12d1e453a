//! Transactions on the node (SPEC 6.3): BEGIN / COMMIT / ROLLBACK over both protocols, FOR UPDATE
//! row locks and their waiters, visibility only at COMMIT, and what ends a transaction.

use std::time::Duration;

use replisim::record::events::{StatementEvent, StatementKind};
use replisim::sim::node::{LSN_START, LSN_STEP, PG_PORT};
use tokio::time::timeout;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use turmoil::net::TcpStream;

use super::cluster::{
    BoxError, DELAY, IO_TIMEOUT, PRIMARY, READ, REPLICA, WRITE, cluster, connect, drive, read,
    run_client, sleep_until_sim, sql_state, statements, write,
};

const LOCKING_READ: &str = "SELECT version, $3::bigint AS reader FROM replisim_kv \
     WHERE org_id = $1 AND key = $2 FOR UPDATE";

/// Longer than any statement here takes unless it waits for a lock.
const HOLD: Duration = Duration::from_millis(200);

async fn locking_read(
    client: &Client,
    org: i64,
    key: i64,
    user: i64,
) -> Result<Option<i64>, BoxError> {
    let row = client.query_opt(LOCKING_READ, &[&org, &key, &user]).await?;
    match row {
        Some(row) => {
            assert_eq!(row.try_get::<_, i64>("reader")?, user);
            Ok(Some(row.try_get("version")?))
        }
        None => Ok(None),
    }
}

/// Runs a transaction-control statement over the simple protocol (as `Client::transaction` does).
async fn simple(client: &Client, sql: &str) -> Result<(), BoxError> {
    timeout(IO_TIMEOUT, client.batch_execute(sql)).await??;
    Ok(())
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// The statements one connection of `node` ran, in order, without probes.
fn of_conn(events: &[StatementEvent], node: usize, conn: u64) -> Vec<StatementEvent> {
    events
        .iter()
        .filter(|e| e.node == node && e.conn == conn && e.kind != StatementKind::Probe)
        .cloned()
        .collect()
}

fn kinds(events: &[StatementEvent]) -> Vec<StatementKind> {
    events.iter().map(|e| e.kind).collect()
}

#[test]
fn commit_makes_the_writes_visible_and_ships_them_to_the_replica_only_then() {
    let mut c = cluster(21);
    run_client(&mut c.sim, async {
        let mut a = connect("primary", "replisim").await?;
        let b = connect("primary", "replisim").await?;
        let replica = connect("replica", "replisim").await?;
        sleep_until_sim(HOLD).await;
        assert_eq!(write(&b, 3, 1, 9).await?, 1);
        let tx = a.transaction().await?;
        let locked = tx
            .query_one(LOCKING_READ, &[&3_i64, &1_i64, &7_i64])
            .await?;
        assert_eq!(locked.try_get::<_, i64>("version")?, 1);
        let written = tx.query_one(WRITE, &[&3_i64, &1_i64, &7_i64]).await?;
        assert_eq!(written.try_get::<_, i64>(0)?, 2);
        let own = tx.query_opt(READ, &[&3_i64, &1_i64, &7_i64]).await?;
        assert_eq!(
            own.map(|r| r.get::<_, i64>(0)),
            Some(2),
            "own write visible"
        );
        assert_eq!(read(&b, 3, 1, 8).await?, Some(1), "not to others");
        tokio::time::sleep(DELAY * 3).await;
        assert_eq!(
            read(&replica, 3, 1, 8).await?,
            Some(1),
            "not to the replica"
        );
        tx.commit().await?;
        assert_eq!(read(&b, 3, 1, 8).await?, Some(2), "committed");
        tokio::time::sleep(DELAY * 3).await;
        assert_eq!(read(&replica, 3, 1, 8).await?, Some(2), "shipped at commit");
        Ok(())
    });
    c.sim.run().expect("simulation");
    assert_eq!(c.primary().current_lsn(), LSN_START + 2 * LSN_STEP);
    assert_eq!(c.replica().replay_lsn(), LSN_START + 2 * LSN_STEP);

    let events = statements(&c.log);
    let a = of_conn(&events, PRIMARY, 1);
    assert_eq!(
        kinds(&a),
        [
            StatementKind::Begin,
            StatementKind::LockingRead,
            StatementKind::Write,
            StatementKind::Read,
            StatementKind::Commit,
        ]
    );
    assert!(a.iter().all(|e| e.sqlstate.is_none()), "{a:?}");
    assert_eq!((a[0].version, a[0].lsn), (0, 0), "begin");
    assert_eq!((a[1].org, a[1].key, a[1].user), (3, 1, 7), "attributed");
    assert_eq!(a[1].version, 1, "the locking read's version");
    assert_eq!((a[2].version, a[2].lsn), (2, 0), "a pending write");
    assert_eq!(a[4].lsn, LSN_START + 2 * LSN_STEP, "the commit LSN");
    let applied = c.log.wal_applies.lock().expect("log").clone();
    let second = applied
        .iter()
        .find(|w| w.node == REPLICA && w.lsn == LSN_START + 2 * LSN_STEP)
        .expect("the commit reached the replica");
    assert!(second.commit_us >= a[4].start_us, "WAL made at COMMIT");
}

#[test]
fn rollback_discards_the_writes_over_the_extended_protocol_too() {
    let mut c = cluster(22);
    run_client(&mut c.sim, async {
        let a = connect("primary", "replisim").await?;
        sleep_until_sim(HOLD).await;
        // The extended protocol: Parse/Bind/Execute of BEGIN and ROLLBACK.
        a.execute("BEGIN", &[]).await?;
        assert_eq!(write(&a, 4, 1, 1).await?, 1);
        assert_eq!(write(&a, 4, 1, 1).await?, 2, "sees its own write");
        a.execute("ROLLBACK", &[]).await?;
        assert_eq!(read(&a, 4, 1, 1).await?, None, "rolled back");
        simple(&a, "BEGIN").await?;
        assert_eq!(write(&a, 4, 1, 1).await?, 1);
        simple(&a, "ROLLBACK").await?;
        // Outside a transaction, COMMIT and ROLLBACK succeed and do nothing.
        simple(&a, "COMMIT").await?;
        simple(&a, "ROLLBACK").await?;
        assert_eq!(write(&a, 4, 1, 1).await?, 1, "autocommit after rollbacks");
        Ok(())
    });
    c.sim.run().expect("simulation");
    assert_eq!(c.primary().current_lsn(), LSN_START + LSN_STEP);
    let a = of_conn(&statements(&c.log), PRIMARY, 1);
    use StatementKind::*;
    assert_eq!(
        kinds(&a),
        [
            Begin, Write, Write, Rollback, Read, Begin, Write, Rollback, Commit, Rollback, Write
        ]
    );
    assert!(a.iter().all(|e| e.sqlstate.is_none()), "{a:?}");
    assert_eq!(a[8].version, 0, "commit outside a transaction");
}

#[test]
fn a_connection_that_ends_inside_a_transaction_rolls_back_and_releases_its_lock() {
    let mut c = cluster(23);
    run_client(&mut c.sim, async {
        let b = connect("primary", "replisim").await?;
        sleep_until_sim(HOLD).await;
        assert_eq!(write(&b, 5, 1, 2).await?, 1);
        {
            let a = connect("primary", "replisim").await?;
            simple(&a, "BEGIN").await?;
            assert_eq!(locking_read(&a, 5, 1, 1).await?, Some(1));
            assert_eq!(write(&a, 5, 1, 1).await?, 2);
            let started = now();
            let (waited, ()) = tokio::join!(locking_read(&b, 5, 1, 2), async move {
                tokio::time::sleep(HOLD).await;
                drop(a);
            });
            assert_eq!(waited?, Some(1), "the dead transaction's write is gone");
            assert!(now() - started >= HOLD, "it waited for the lock");
        }
        assert_eq!(write(&b, 5, 1, 2).await?, 2);
        Ok(())
    });
    c.sim.run().expect("simulation");
    let events = statements(&c.log);
    let a = of_conn(&events, PRIMARY, 2);
    assert_eq!(
        kinds(&a),
        [
            StatementKind::Begin,
            StatementKind::LockingRead,
            StatementKind::Write
        ],
        "a connection that dies records no rollback"
    );
    assert_eq!(c.primary().current_lsn(), LSN_START + 2 * LSN_STEP);
}

#[test]
fn a_crash_or_dropped_connections_end_open_transactions() {
    let mut c = cluster(24);
    let node = c.primary().clone();
    run_client(&mut c.sim, async {
        let a = connect("primary", "replisim").await?;
        sleep_until_sim(HOLD).await;
        simple(&a, "BEGIN").await?;
        assert_eq!(write(&a, 6, 1, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(1_000)).await;
        assert!(simple(&a, "COMMIT").await.is_err(), "connection dropped");
        let a = connect("primary", "replisim").await?;
        assert_eq!(read(&a, 6, 1, 1).await?, None);
        simple(&a, "BEGIN").await?;
        assert_eq!(locking_read(&a, 6, 1, 1).await?, None, "no lock left");
        assert_eq!(write(&a, 6, 1, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(3_000)).await;
        assert!(simple(&a, "COMMIT").await.is_err(), "the node crashed");
        let a = connect("primary", "replisim").await?;
        assert_eq!(read(&a, 6, 1, 1).await?, None, "the crash rolled it back");
        assert_eq!(
            timeout(HOLD, locking_read(&a, 6, 1, 1)).await??,
            None,
            "no lock survives a crash"
        );
        Ok(())
    });
    drive(
        &mut c.sim,
        vec![
            (
                Duration::from_millis(500),
                Box::new(move |_| node.drop_connections()),
            ),
            (
                Duration::from_millis(2_000),
                Box::new(|sim| sim.crash("primary")),
            ),
            (
                Duration::from_millis(2_500),
                Box::new(|sim| sim.bounce("primary")),
            ),
        ],
    );
    assert_eq!(c.primary().current_lsn(), LSN_START);
}

#[test]
fn a_second_for_update_waits_for_the_commit_and_reads_the_committed_version() {
    let mut c = cluster(25);
    run_client(&mut c.sim, async {
        let a = connect("primary", "replisim").await?;
        let b = connect("primary", "replisim").await?;
        let other = connect("primary", "replisim").await?;
        sleep_until_sim(HOLD).await;
        assert_eq!(write(&a, 7, 1, 1).await?, 1);
        simple(&a, "BEGIN").await?;
        assert_eq!(locking_read(&a, 7, 1, 1).await?, Some(1));
        assert_eq!(write(&a, 7, 1, 1).await?, 2);
        simple(&b, "BEGIN").await?;
        let mut committed_at = Duration::ZERO;
        let (waited, done) = tokio::join!(
            async {
                let version = locking_read(&b, 7, 1, 2).await;
                (version, now())
            },
            async {
                tokio::time::sleep(HOLD).await;
                // Other rows and plain reads do not wait.
                assert_eq!(timeout(HOLD, read(&other, 7, 1, 3)).await??, Some(1));
                assert_eq!(timeout(HOLD, write(&other, 7, 2, 3)).await??, 1);
                committed_at = now();
                simple(&a, "COMMIT").await
            }
        );
        done?;
        let (version, read_at) = waited;
        assert_eq!(version?, Some(2), "the committed version");
        assert!(read_at >= committed_at, "{read_at:?} < {committed_at:?}");
        assert_eq!(write(&b, 7, 1, 2).await?, 3);
        simple(&b, "COMMIT").await?;
        assert_eq!(read(&a, 7, 1, 1).await?, Some(3));
        Ok(())
    });
    c.sim.run().expect("simulation");
    let events = statements(&c.log);
    let b = of_conn(&events, PRIMARY, 2);
    assert_eq!(b[1].kind, StatementKind::LockingRead);
    assert_eq!(b[1].version, 2);
    let a_commit = of_conn(&events, PRIMARY, 1)
        .into_iter()
        .find(|e| e.kind == StatementKind::Commit)
        .expect("a committed");
    assert!(
        b[1].end_us >= a_commit.end_us,
        "the waiter ended after the commit"
    );
}

#[test]
fn an_autocommit_write_waits_for_the_lock_too() {
    let mut c = cluster(26);
    run_client(&mut c.sim, async {
        let a = connect("primary", "replisim").await?;
        let b = connect("primary", "replisim").await?;
        sleep_until_sim(HOLD).await;
        assert_eq!(write(&b, 8, 1, 2).await?, 1);
        simple(&a, "BEGIN").await?;
        assert_eq!(locking_read(&a, 8, 1, 1).await?, Some(1));
        let mut committed_at = Duration::ZERO;
        let (waited, done) = tokio::join!(
            async {
                let version = write(&b, 8, 1, 2).await;
                (version, now())
            },
            async {
                tokio::time::sleep(HOLD).await;
                assert_eq!(write(&a, 8, 1, 1).await?, 2);
                committed_at = now();
                simple(&a, "COMMIT").await
            }
        );
        done?;
        let (version, written_at) = waited;
        assert_eq!(version?, 3, "written after the transaction's version 2");
        assert!(written_at >= committed_at);
        Ok(())
    });
    c.sim.run().expect("simulation");
    assert_eq!(c.primary().row(8, 1).map(|r| r.version), Some(3));
}

#[test]
fn a_replica_takes_read_only_transactions_but_refuses_for_update_and_writes() {
    let mut c = cluster(27);
    run_client(&mut c.sim, async {
        let r = connect("replica", "replisim").await?;
        sleep_until_sim(HOLD).await;
        simple(&r, "BEGIN").await?;
        assert_eq!(read(&r, 9, 1, 1).await?, None);
        simple(&r, "COMMIT").await?;
        let refused = locking_read(&r, 9, 1, 1).await.expect_err("refused");
        assert_eq!(
            sql_state(&refused),
            Some(SqlState::READ_ONLY_SQL_TRANSACTION)
        );
        simple(&r, "BEGIN").await?;
        let refused = write(&r, 9, 1, 1).await.expect_err("refused");
        assert_eq!(
            sql_state(&refused),
            Some(SqlState::READ_ONLY_SQL_TRANSACTION)
        );
        simple(&r, "COMMIT").await?;
        Ok(())
    });
    c.sim.run().expect("simulation");
    let r = of_conn(&statements(&c.log), REPLICA, 1);
    use StatementKind::*;
    assert_eq!(
        kinds(&r),
        [Begin, Read, Commit, LockingRead, Begin, Write, Rollback],
        "a COMMIT of the failed transaction is a rollback"
    );
    let states: Vec<Option<&str>> = r.iter().map(|e| e.sqlstate.as_deref()).collect();
    assert_eq!(
        states,
        [None, None, None, Some("25006"), None, Some("25006"), None]
    );
    assert_eq!(
        (r[3].org, r[3].key, r[3].user),
        (9, 1, 1),
        "refused, attributed"
    );
}

#[test]
fn after_an_error_every_statement_gets_25p02_until_the_transaction_ends() {
    let mut c = cluster(28);
    run_client(&mut c.sim, async {
        let a = connect("primary", "replisim").await?;
        sleep_until_sim(HOLD).await;
        simple(&a, "BEGIN").await?;
        assert_eq!(write(&a, 10, 1, 1).await?, 1);
        assert!(a.simple_query("SELECT 1").await.is_err());
        for attempt in [
            read(&a, 10, 1, 1).await.map(|_| ()),
            write(&a, 10, 1, 1).await.map(|_| ()),
        ] {
            let error = attempt.expect_err("aborted transaction");
            assert_eq!(sql_state(&error), Some(SqlState::IN_FAILED_SQL_TRANSACTION));
        }
        // COMMIT of a failed transaction succeeds as a rollback, as in PostgreSQL.
        simple(&a, "COMMIT").await?;
        assert_eq!(read(&a, 10, 1, 1).await?, None, "nothing committed");
        Ok(())
    });
    c.sim.run().expect("simulation");
    let a = of_conn(&statements(&c.log), PRIMARY, 1);
    use StatementKind::*;
    assert_eq!(
        kinds(&a),
        [Begin, Write, Unsupported, Read, Write, Rollback, Read]
    );
    let states: Vec<Option<&str>> = a.iter().map(|e| e.sqlstate.as_deref()).collect();
    assert_eq!(
        states,
        [
            None,
            None,
            Some("0A000"),
            Some("25P02"),
            Some("25P02"),
            None,
            None
        ]
    );
    assert_eq!(c.primary().current_lsn(), LSN_START);
}

#[test]
fn a_cancel_request_ends_a_lock_wait() {
    let mut c = cluster(29);
    run_client(&mut c.sim, async {
        let a = connect("primary", "replisim").await?;
        let b = connect("primary", "replisim").await?;
        sleep_until_sim(HOLD).await;
        simple(&a, "BEGIN").await?;
        assert_eq!(write(&a, 11, 1, 1).await?, 1);
        simple(&b, "BEGIN").await?;
        let token = b.cancel_token();
        let (waited, cancelled) = tokio::join!(locking_read(&b, 11, 1, 2), async {
            tokio::time::sleep(HOLD).await;
            let stream = TcpStream::connect(("primary", PG_PORT)).await?;
            token.cancel_query_raw(stream, NoTls).await?;
            Ok::<_, BoxError>(now())
        });
        let cancelled_at = cancelled?;
        let error = waited.expect_err("cancelled");
        assert_eq!(sql_state(&error), Some(SqlState::QUERY_CANCELED));
        assert!(now() - cancelled_at < HOLD, "ended by the cancel");
        let error = read(&b, 11, 1, 2).await.expect_err("aborted");
        assert_eq!(sql_state(&error), Some(SqlState::IN_FAILED_SQL_TRANSACTION));
        simple(&b, "ROLLBACK").await?;
        simple(&a, "COMMIT").await?;
        assert_eq!(read(&b, 11, 1, 2).await?, Some(1));
        Ok(())
    });
    c.sim.run().expect("simulation");
    let b = of_conn(&statements(&c.log), PRIMARY, 2);
    assert_eq!(b[1].kind, StatementKind::LockingRead);
    assert_eq!(b[1].sqlstate.as_deref(), Some("57014"));
    assert_eq!((b[1].org, b[1].key, b[1].user), (11, 1, 2));
}

#[test]
fn a_fence_terminates_open_transactions_before_they_commit() {
    let mut c = cluster(30);
    let node = c.primary().clone();
    run_client(&mut c.sim, async {
        let a = connect("primary", "replisim").await?;
        sleep_until_sim(HOLD).await;
        simple(&a, "BEGIN").await?;
        assert_eq!(write(&a, 12, 1, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(1_000)).await;
        let error = simple(&a, "COMMIT").await.expect_err("terminated");
        assert_eq!(sql_state(&error), Some(SqlState::ADMIN_SHUTDOWN));
        tokio::time::sleep(HOLD).await;
        assert!(a.is_closed(), "FATAL closes the connection");
        Ok(())
    });
    drive(
        &mut c.sim,
        vec![(
            Duration::from_millis(500),
            Box::new(move |_| node.set_read_only(true)),
        )],
    );
    assert_eq!(c.primary().current_lsn(), LSN_START);
    assert_eq!(c.primary().row(12, 1), None);
}

#[test]
fn the_broken_node_knob_makes_an_uncommitted_write_visible() {
    for broken in [false, true] {
        let mut c = cluster(31);
        c.primary().set_broken_writes_before_commit(broken);
        run_client(&mut c.sim, async move {
            let a = connect("primary", "replisim").await?;
            let b = connect("primary", "replisim").await?;
            sleep_until_sim(HOLD).await;
            simple(&a, "BEGIN").await?;
            assert_eq!(write(&a, 13, 1, 1).await?, 1);
            let seen = read(&b, 13, 1, 2).await?;
            assert_eq!(seen, broken.then_some(1), "broken = {broken}");
            simple(&a, "ROLLBACK").await?;
            Ok(())
        });
        c.sim.run().expect("simulation");
        let lsn = if broken {
            LSN_START + LSN_STEP
        } else {
            LSN_START
        };
        assert_eq!(c.primary().current_lsn(), lsn, "broken = {broken}");
    }
}

#[test]
fn a_lock_wait_outlasts_the_response_deadline() {
    let mut c = cluster(32);
    run_client(&mut c.sim, async {
        let a = connect("primary", "replisim").await?;
        let b = connect("primary", "replisim").await?;
        sleep_until_sim(HOLD).await;
        simple(&a, "BEGIN").await?;
        assert_eq!(write(&a, 14, 1, 1).await?, 1);
        // Longer than the node's 10 s limit on writing a response.
        let held = Duration::from_secs(15);
        let (waited, committed) = tokio::join!(locking_read(&b, 14, 1, 2), async {
            tokio::time::sleep(held).await;
            simple(&a, "COMMIT").await
        });
        committed?;
        assert_eq!(waited?, Some(1));
        assert!(now() >= held);
        Ok(())
    });
    c.sim.run().expect("simulation");
}
