//! The simulated PostgreSQL node, driven by the real tokio-postgres client over turmoil TCP: a
//! primary, its replicas, and one application host.

#[path = "sim_node/cluster.rs"]
mod cluster;
#[path = "sim_node/faults.rs"]
mod faults;
#[path = "sim_node/throughput.rs"]
mod throughput;
#[path = "sim_node/transactions.rs"]
mod transactions;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster::{
    BoxError, Cluster, DELAY, EPOCH_SECS, PRIMARY, QUERY_TIME, REPLICA, cluster, connect,
    db_message, drive, first_row, micros, read, run_client, sleep_until_sim, sql_state, statements,
    write,
};
use replisim::record::events::{NodeRole, Purpose, StatementEvent, StatementKind};
use replisim::sim::node::{HEALTH_APPLICATION_NAME, KvRow, LSN_START, LSN_STEP, SimNode};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{PgLsn, Type};

#[test]
fn node_state_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SimNode>();
}

#[test]
fn write_on_primary_returns_version_1_then_2() {
    let mut c = cluster(1);
    run_client(&mut c.sim, async {
        let primary = connect("primary", "replisim").await?;
        assert_eq!(write(&primary, 7, 1, 42).await?, 1);
        assert_eq!(write(&primary, 7, 1, 43).await?, 2);
        assert_eq!(write(&primary, 7, 2, 42).await?, 1);
        assert_eq!(read(&primary, 7, 1, 44).await?, Some(2));
        assert_eq!(read(&primary, 7, 3, 44).await?, None);
        Ok(())
    });
    c.sim.run().expect("simulation");
    assert_eq!(
        c.primary().row(7, 1),
        Some(KvRow {
            version: 2,
            updated_by: 43
        })
    );
    assert_eq!(c.primary().current_lsn(), LSN_START + 3 * LSN_STEP);
    assert_eq!(c.primary().replay_lsn(), c.primary().current_lsn());
}

#[test]
fn replica_answers_with_the_new_version_only_after_the_replication_delay() {
    let mut c = cluster(2);
    run_client(&mut c.sim, async {
        let primary = connect("primary", "replisim").await?;
        let replica = connect("replica", "replisim").await?;
        sleep_until_sim(Duration::from_millis(300)).await;
        assert_eq!(write(&primary, 1, 1, 5).await?, 1);
        for _ in 0..100 {
            if read(&replica, 1, 1, 6).await? == Some(1) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        Err("the replica never showed the write".into())
    });
    c.sim.run().expect("simulation");

    let events = statements(&c.log);
    let commit = events
        .iter()
        .find(|e| e.kind == StatementKind::Write && e.node == PRIMARY)
        .expect("the write was logged");
    let visible_from = commit.end_us + micros(DELAY);
    let replica_reads: Vec<&StatementEvent> = events
        .iter()
        .filter(|e| e.kind == StatementKind::Read && e.node == REPLICA)
        .collect();
    let before: Vec<_> = replica_reads
        .iter()
        .filter(|e| e.end_us < visible_from)
        .collect();
    assert!(
        before.len() >= 5,
        "too few reads inside the delay: {before:?}"
    );
    assert!(before.iter().all(|e| e.version == 0), "{before:?}");
    let first_new = replica_reads
        .iter()
        .find(|e| e.version == 1)
        .expect("a read saw the write");
    assert!(
        first_new.end_us >= visible_from,
        "{first_new:?} before {visible_from}"
    );
    assert!(
        first_new.end_us <= visible_from + 10_000,
        "{first_new:?} long after {visible_from}"
    );
    let apply = c
        .log
        .wal_applies
        .lock()
        .expect("log lock")
        .first()
        .cloned()
        .expect("the replica applied the record");
    assert_eq!(apply.commit_us, commit.end_us);
    assert_eq!(apply.lsn, commit.lsn);
    let apply_delay = apply.applied_us - apply.commit_us;
    assert!(
        (micros(DELAY)..=micros(DELAY) + 2_000).contains(&apply_delay),
        "applied {apply_delay} us after the commit"
    );
}

#[test]
fn write_on_replica_fails_with_25006() {
    let mut c = cluster(3);
    run_client(&mut c.sim, async {
        let replica = connect("replica", "replisim").await?;
        let error = write(&replica, 2, 2, 9)
            .await
            .expect_err("a replica refuses writes");
        assert_eq!(sql_state(&error), Some(SqlState::READ_ONLY_SQL_TRANSACTION));
        assert_eq!(
            db_message(&error).as_deref(),
            Some("cannot execute INSERT in a read-only transaction")
        );
        // The connection stays usable after the error.
        assert_eq!(read(&replica, 2, 2, 9).await?, None);
        Ok(())
    });
    c.sim.run().expect("simulation");
    assert_eq!(c.replica().row(2, 2), None);
    let refused = statements(&c.log)
        .into_iter()
        .find(|e| e.kind == StatementKind::Write)
        .expect("the write was logged");
    assert_eq!(
        (
            refused.node,
            refused.role,
            refused.org,
            refused.key,
            refused.user
        ),
        (REPLICA, NodeRole::Replica, 2, 2, 9)
    );
    assert_eq!(refused.sqlstate.as_deref(), Some("25006"));
    assert_eq!((refused.version, refused.lsn), (0, 0));
}

/// What the probe test's client saw, checked against the event log afterwards.
#[derive(Default)]
struct ProbeSeen {
    replay_timestamp: Option<SystemTime>,
    primary_now: Option<SystemTime>,
}

#[test]
fn probe_functions_return_postgres_types_and_values() {
    let mut c = cluster(4);
    let seen = Arc::new(Mutex::new(ProbeSeen::default()));
    let seen_in = seen.clone();
    run_client(&mut c.sim, async move {
        let workload = connect("primary", "replisim").await?;
        let primary = connect("primary", HEALTH_APPLICATION_NAME).await?;
        let replica = connect("replica", HEALTH_APPLICATION_NAME).await?;
        let all = "SELECT pg_is_in_recovery(), pg_current_wal_lsn(), pg_last_wal_receive_lsn(), \
                   pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp(), now()";
        let row = primary.query_one(all, &[]).await?;
        assert!(!row.try_get::<_, bool>(0)?);
        assert_eq!(row.try_get::<_, PgLsn>(1)?, PgLsn::from(LSN_START));
        assert_eq!(row.try_get::<_, Option<PgLsn>>(2)?, None);
        assert_eq!(row.try_get::<_, Option<PgLsn>>(3)?, None);
        assert_eq!(row.try_get::<_, Option<SystemTime>>(4)?, None);
        let now: SystemTime = row.try_get(5)?;
        seen_in.lock().expect("lock").primary_now = Some(now);

        assert_eq!(write(&workload, 1, 1, 1).await?, 1);
        let lsn: PgLsn = primary
            .query_one("SELECT pg_current_wal_lsn()", &[])
            .await?
            .try_get(0)?;
        assert_eq!(
            lsn,
            PgLsn::from(LSN_START + LSN_STEP),
            "the LSN moves on commit"
        );
        tokio::time::sleep(DELAY + Duration::from_millis(20)).await;

        let replica_all = "SELECT pg_is_in_recovery() AS rec, pg_last_wal_receive_lsn(), \
                           pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp(), now()";
        let row = replica.query_one(replica_all, &[]).await?;
        assert!(row.try_get::<_, bool>("rec")?);
        let applied = PgLsn::from(LSN_START + LSN_STEP);
        assert_eq!(row.try_get::<_, Option<PgLsn>>(1)?, Some(applied));
        assert_eq!(row.try_get::<_, Option<PgLsn>>(2)?, Some(applied));
        let replayed: Option<SystemTime> = row.try_get(3)?;
        assert!(replayed.is_some());
        seen_in.lock().expect("lock").replay_timestamp = replayed;
        let replica_now: SystemTime = row.try_get(4)?;
        assert!(replica_now > replayed.unwrap_or(replica_now) + DELAY);

        let error: BoxError = replica
            .query_one("SELECT pg_current_wal_lsn()", &[])
            .await
            .expect_err("no current LSN in recovery")
            .into();
        assert_eq!(
            sql_state(&error),
            Some(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
        );

        assert_eq!(write(&workload, 1, 2, 1).await?, 1);
        assert_eq!(write(&workload, 1, 3, 1).await?, 1);
        let target = PgLsn::from(LSN_START + 3 * LSN_STEP);
        let lag_sql = "SELECT pg_wal_lsn_diff($1, pg_last_wal_replay_lsn())::bigint AS lag";
        let lag: i64 = replica
            .query_one(lag_sql, &[&target])
            .await?
            .try_get("lag")?;
        assert_eq!(
            lag,
            2 * i64::try_from(LSN_STEP)?,
            "two commits not yet applied"
        );

        let diff_sql = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/3000000')";
        let statement = primary.prepare(diff_sql).await?;
        assert_eq!(statement.columns()[0].type_(), &Type::NUMERIC);
        let as_float: f64 = primary
            .query_one(&format!("{diff_sql}::float8"), &[])
            .await?
            .try_get(0)?;
        assert_eq!(as_float, (3 * LSN_STEP) as f64);
        let text = primary.simple_query(diff_sql).await?;
        let row = first_row(&text)?;
        assert_eq!(row.get(0), Some("384"));

        let text = replica
            .simple_query("select pg_is_in_recovery() r, pg_last_wal_replay_lsn()::text")
            .await?;
        let row = first_row(&text)?;
        assert_eq!((row.get("r"), row.get(1)), (Some("t"), Some("0/3000080")));
        Ok(())
    });
    c.sim.run().expect("simulation");

    let events = statements(&c.log);
    let first_commit = events
        .iter()
        .find(|e| e.kind == StatementKind::Write)
        .expect("a write");
    let epoch = UNIX_EPOCH + Duration::from_secs(EPOCH_SECS);
    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.replay_timestamp,
        Some(epoch + Duration::from_micros(first_commit.end_us))
    );
    let first_probe = events
        .iter()
        .find(|e| e.kind == StatementKind::Probe)
        .expect("a probe");
    assert_eq!(
        seen.primary_now,
        Some(epoch + Duration::from_micros(first_probe.start_us))
    );
    assert!(
        events
            .iter()
            .filter(|e| e.kind == StatementKind::Probe)
            .all(|e| e.purpose == Purpose::Check)
    );
}

#[test]
fn paused_replay_keeps_receiving_and_resume_catches_up() {
    let mut c = cluster(5);
    let observed = Arc::new(Mutex::new(None));
    let (replica, observed_at) = (c.replica().clone(), observed.clone());
    run_client(&mut c.sim, async {
        let primary = connect("primary", "replisim").await?;
        let replica = connect("replica", "replisim").await?;
        sleep_until_sim(Duration::from_millis(200)).await;
        assert_eq!(write(&primary, 3, 3, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(1_100)).await;
        assert_eq!(write(&primary, 3, 3, 1).await?, 2);
        assert_eq!(write(&primary, 3, 4, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(1_500)).await;
        assert_eq!(
            read(&replica, 3, 3, 1).await?,
            Some(1),
            "paused: old version"
        );
        assert_eq!(read(&replica, 3, 4, 1).await?, None);
        sleep_until_sim(Duration::from_millis(2_200)).await;
        assert_eq!(
            read(&replica, 3, 3, 1).await?,
            Some(2),
            "resumed: caught up"
        );
        assert_eq!(read(&replica, 3, 4, 1).await?, Some(1));
        Ok(())
    });
    let pause = c.replica().clone();
    let resume = c.replica().clone();
    drive(
        &mut c.sim,
        vec![
            (
                Duration::from_secs(1),
                Box::new(move |_| pause.set_replay_paused(true)),
            ),
            (
                Duration::from_millis(1_900),
                Box::new(move |_| {
                    *observed_at.lock().expect("lock") =
                        Some((replica.receive_lsn(), replica.replay_lsn()));
                }),
            ),
            (
                Duration::from_secs(2),
                Box::new(move |_| resume.set_replay_paused(false)),
            ),
        ],
    );
    assert_eq!(
        *observed.lock().expect("lock"),
        Some((LSN_START + 3 * LSN_STEP, LSN_START + LSN_STEP)),
        "received everything, applied only what came before the pause"
    );
    assert_eq!(c.replica().replay_lsn(), c.primary().current_lsn());
    let applies = c.log.wal_applies.lock().expect("lock").clone();
    assert!(
        applies[1..]
            .iter()
            .all(|a| a.applied_us >= micros(Duration::from_secs(2))),
        "nothing applied while paused: {applies:?}"
    );
}

#[test]
fn unsupported_statement_gets_0a000() {
    let mut c = cluster(8);
    run_client(&mut c.sim, async {
        let primary = connect("primary", "replisim").await?;
        let error: BoxError = primary
            .simple_query("SELECT 1")
            .await
            .expect_err("unsupported")
            .into();
        assert_eq!(sql_state(&error), Some(SqlState::FEATURE_NOT_SUPPORTED));
        let error: BoxError = primary
            .execute("DELETE FROM replisim_kv WHERE org_id = $1", &[&5i64])
            .await
            .expect_err("unsupported")
            .into();
        assert_eq!(sql_state(&error), Some(SqlState::FEATURE_NOT_SUPPORTED));
        assert_eq!(
            write(&primary, 5, 5, 5).await?,
            1,
            "the connection still works"
        );
        Ok(())
    });
    c.sim.run().expect("simulation");
    let refused: Vec<_> = statements(&c.log)
        .into_iter()
        .filter(|e| e.kind == StatementKind::Unsupported)
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(
        refused
            .iter()
            .all(|e| e.sqlstate.as_deref() == Some("0A000"))
    );
}

/// One scripted exchange of every kind, from workload and health connections.
fn mixed_run(seed: u64) -> (Cluster, replisim::record::events::Events) {
    let mut c = cluster(seed);
    run_client(&mut c.sim, async {
        let health_primary = connect("primary", HEALTH_APPLICATION_NAME).await?;
        let health_replica = connect("replica", HEALTH_APPLICATION_NAME).await?;
        let primary = connect("primary", "replisim").await?;
        let replica = connect("replica", "replisim").await?;
        health_primary
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?;
        health_replica
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?;
        assert_eq!(write(&primary, 11, 1, 100).await?, 1);
        tokio::time::sleep(DELAY * 2).await;
        assert_eq!(read(&replica, 11, 1, 101).await?, Some(1));
        assert!(write(&replica, 12, 1, 102).await.is_err());
        assert!(primary.simple_query("VACUUM").await.is_err());
        drop((health_primary, health_replica, primary, replica));
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    });
    c.sim.run().expect("simulation");
    let events = c.log.take();
    (c, events)
}

#[test]
fn event_log_holds_statements_with_kinds_roles_orgs_and_purposes() {
    let (_, events) = mixed_run(9);
    let summary: Vec<_> = events
        .statements
        .iter()
        .map(|e| {
            (
                e.node,
                e.kind,
                e.role,
                e.purpose,
                e.org,
                e.key,
                e.user,
                e.sqlstate.as_deref(),
            )
        })
        .collect();
    use NodeRole::{Primary, Replica};
    use Purpose::{Check, Workload};
    use StatementKind::{Probe, Read, Unsupported, Write};
    assert_eq!(
        summary,
        [
            (PRIMARY, Probe, Primary, Check, 0, 0, 0, None),
            (REPLICA, Probe, Replica, Check, 0, 0, 0, None),
            (PRIMARY, Write, Primary, Workload, 11, 1, 100, None),
            (REPLICA, Read, Replica, Workload, 11, 1, 101, None),
            (REPLICA, Write, Replica, Workload, 12, 1, 102, Some("25006")),
            (
                PRIMARY,
                Unsupported,
                Primary,
                Workload,
                0,
                0,
                0,
                Some("0A000")
            ),
        ]
    );
    for e in &events.statements {
        assert!(e.end_us - e.start_us >= micros(QUERY_TIME), "{e:?}");
    }
    let read = &events.statements[3];
    assert_eq!((read.version, read.lsn), (1, LSN_START + LSN_STEP));

    let conns: Vec<_> = events
        .server_conns
        .iter()
        .map(|e| (e.node, e.conn, e.purpose, e.open))
        .collect();
    for expected in [
        (PRIMARY, 1, Check, true),
        (REPLICA, 1, Check, true),
        (PRIMARY, 2, Workload, true),
        (REPLICA, 2, Workload, true),
        (PRIMARY, 1, Check, false),
        (REPLICA, 1, Check, false),
        (PRIMARY, 2, Workload, false),
        (REPLICA, 2, Workload, false),
    ] {
        assert!(conns.contains(&expected), "{expected:?} not in {conns:?}");
    }
    assert_eq!(conns.len(), 8);
}

#[test]
fn the_same_seed_gives_the_same_event_log() {
    let (_, first) = mixed_run(10);
    let (_, second) = mixed_run(10);
    assert!(!first.statements.is_empty());
    assert_eq!(first, second);
}

/// Nearly every statement's Bind and Execute are answered by the node itself (`unnamed_portal`);
/// a named portal read a row at a time still goes through pgwire's portals, and the unnamed path
/// keeps answering around it.
#[test]
fn a_named_portal_is_read_a_row_at_a_time() {
    let mut c = cluster(1);
    run_client(&mut c.sim, async {
        let mut primary = connect("primary", "replisim").await?;
        assert_eq!(write(&primary, 3, 1, 9).await?, 1);
        let transaction = primary.transaction().await?;
        let statement = transaction.prepare(cluster::READ).await?;
        let portal = transaction.bind(&statement, &[&3i64, &1i64, &9i64]).await?;
        let first = transaction.query_portal(&portal, 1).await?;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].try_get::<_, i64>("version")?, 1);
        // The read has one row: the portal, suspended after it, has none left.
        assert!(transaction.query_portal(&portal, 1).await?.is_empty());
        transaction.commit().await?;
        assert_eq!(read(&primary, 3, 1, 9).await?, Some(1));
        Ok(())
    });
    c.sim.run().expect("simulation");
}
