//! The node under faults: crashes, partitions, promotions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use replisim::record::events::NodeRole;
use replisim::sim::node::PG_PORT;
use replisim::sim::node::{KvRow, LSN_START, LSN_STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::PgLsn;

use super::cluster::{
    DELAY, PRIMARY, QUERY_TIME, REPLICA, cluster, cluster_of, connect, drive, micros, read,
    run_client, sleep_until_sim, sql_state, statements, write,
};

#[test]
fn primary_crash_and_restart_then_the_replica_reconnects_and_catches_up() {
    let mut c = cluster(6);
    run_client(&mut c.sim, async {
        let primary = connect("primary", "replisim").await?;
        let replica = connect("replica", "replisim").await?;
        sleep_until_sim(Duration::from_millis(200)).await;
        assert_eq!(write(&primary, 9, 9, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(1_500)).await;
        assert!(
            write(&primary, 9, 9, 1).await.is_err(),
            "the primary is down"
        );
        assert!(connect("primary", "replisim").await.is_err());
        sleep_until_sim(Duration::from_millis(3_500)).await;
        let primary = connect("primary", "replisim").await?;
        assert_eq!(
            write(&primary, 9, 9, 1).await?,
            2,
            "the data survived the crash"
        );
        assert_eq!(write(&primary, 9, 10, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(6_000)).await;
        assert_eq!(read(&replica, 9, 9, 1).await?, Some(2));
        assert_eq!(read(&replica, 9, 10, 1).await?, Some(1));
        Ok(())
    });
    drive(
        &mut c.sim,
        vec![
            (Duration::from_secs(1), Box::new(|sim| sim.crash("primary"))),
            (
                Duration::from_secs(3),
                Box::new(|sim| sim.bounce("primary")),
            ),
        ],
    );
    assert_eq!(c.primary().current_lsn(), LSN_START + 3 * LSN_STEP);
    assert_eq!(c.replica().replay_lsn(), c.primary().current_lsn());
    let conns = c.log.server_conns.lock().expect("lock").clone();
    let primary_conns: Vec<_> = conns.iter().filter(|e| e.node == PRIMARY).collect();
    let opened: Vec<u64> = primary_conns
        .iter()
        .filter(|e| e.open)
        .map(|e| e.conn)
        .collect();
    assert_eq!(opened, [1, 2], "numbers continue across the restart");
    let crash_us = micros(Duration::from_secs(1));
    let closed_by_crash = primary_conns
        .iter()
        .find(|e| e.conn == 1 && !e.open)
        .expect("the crash closed connection 1");
    assert!((crash_us..crash_us + 2_000).contains(&closed_by_crash.at_us));
    let reopened = primary_conns
        .iter()
        .find(|e| e.conn == 2 && e.open)
        .expect("connection 2 opened");
    assert!(reopened.at_us > micros(Duration::from_secs(3)));
}

#[test]
fn partition_between_nodes_then_heal_does_not_wedge_replication() {
    let mut c = cluster(7);
    run_client(&mut c.sim, async {
        let primary = connect("primary", "replisim").await?;
        sleep_until_sim(Duration::from_millis(200)).await;
        assert_eq!(write(&primary, 4, 4, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(1_500)).await;
        for _ in 0..50 {
            write(&primary, 4, 4, 1).await?;
        }
        sleep_until_sim(Duration::from_secs(8)).await;
        Ok(())
    });
    let during = Arc::new(Mutex::new(0));
    let (replica, during_at) = (c.replica().clone(), during.clone());
    drive(
        &mut c.sim,
        vec![
            (
                Duration::from_secs(1),
                Box::new(|sim| sim.partition("primary", "replica")),
            ),
            (
                Duration::from_millis(2_900),
                Box::new(move |_| *during_at.lock().expect("lock") = replica.receive_lsn()),
            ),
            (
                Duration::from_secs(3),
                Box::new(|sim| sim.repair("primary", "replica")),
            ),
        ],
    );
    assert_eq!(*during.lock().expect("lock"), LSN_START + LSN_STEP);
    assert_eq!(c.primary().current_lsn(), LSN_START + 51 * LSN_STEP);
    assert_eq!(c.replica().replay_lsn(), c.primary().current_lsn());
    assert_eq!(c.replica().row(4, 4).map(|r| r.version), Some(51));
}

#[test]
fn promoted_replica_takes_writes_and_the_other_replica_follows_it() {
    let mut c = cluster_of(12, 2);
    run_client(&mut c.sim, async {
        let old_primary = connect("primary", "replisim").await?;
        sleep_until_sim(Duration::from_millis(200)).await;
        assert_eq!(write(&old_primary, 20, 1, 1).await?, 1);
        assert_eq!(write(&old_primary, 20, 1, 1).await?, 2);
        sleep_until_sim(Duration::from_millis(580)).await;
        assert_eq!(
            write(&old_primary, 20, 2, 1).await?,
            1,
            "not yet applied at the promotion"
        );

        sleep_until_sim(Duration::from_millis(800)).await;
        let error = write(&old_primary, 20, 1, 1).await.expect_err("fenced");
        assert_eq!(sql_state(&error), Some(SqlState::READ_ONLY_SQL_TRANSACTION));
        let row = old_primary
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?;
        assert!(
            !row.try_get::<_, bool>(0)?,
            "a fenced primary is not in recovery"
        );

        let new_primary = connect("replica", "replisim").await?;
        let row = new_primary
            .query_one("SELECT pg_is_in_recovery(), pg_current_wal_lsn()", &[])
            .await?;
        assert!(!row.try_get::<_, bool>(0)?);
        assert_eq!(
            row.try_get::<_, PgLsn>(1)?,
            PgLsn::from(LSN_START + 3 * LSN_STEP)
        );
        assert_eq!(read(&new_primary, 20, 2, 1).await?, Some(1));
        assert_eq!(write(&new_primary, 20, 1, 1).await?, 3);

        sleep_until_sim(Duration::from_millis(1_500)).await;
        let follower = connect("replica-2", "replisim").await?;
        assert_eq!(read(&follower, 20, 1, 1).await?, Some(3));
        let row = follower
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?;
        assert!(row.try_get::<_, bool>(0)?);
        Ok(())
    });
    let (old, new, follower) = (c.nodes[0].clone(), c.nodes[1].clone(), c.nodes[2].clone());
    drive(
        &mut c.sim,
        vec![(
            Duration::from_millis(600),
            Box::new(move |_| {
                old.set_read_only(true);
                new.promote();
                follower.set_upstream(Some("replica".to_owned()));
            }),
        )],
    );
    assert_eq!(c.replica().role(), NodeRole::Primary);
    assert_eq!(c.primary().current_lsn(), LSN_START + 3 * LSN_STEP);
    assert_eq!(c.replica().current_lsn(), LSN_START + 4 * LSN_STEP);
    assert_eq!(c.nodes[2].replay_lsn(), c.replica().current_lsn());
    let applies = c.log.wal_applies.lock().expect("log lock").clone();
    let early = applies
        .iter()
        .find(|a| a.node == REPLICA && a.lsn == LSN_START + 3 * LSN_STEP)
        .expect("the promotion applied the pending record");
    assert!(
        early.applied_us - early.commit_us < micros(DELAY),
        "{early:?}"
    );
}

#[test]
fn a_replica_ahead_of_the_promoted_one_is_refused_rather_than_mixing_histories() {
    let mut c = cluster_of(13, 2);
    run_client(&mut c.sim, async {
        let old_primary = connect("primary", "replisim").await?;
        sleep_until_sim(Duration::from_millis(200)).await;
        assert_eq!(write(&old_primary, 30, 1, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(400)).await;
        assert_eq!(
            write(&old_primary, 30, 1, 1).await?,
            2,
            "reaches replica-2 only"
        );
        sleep_until_sim(Duration::from_millis(800)).await;
        let new_primary = connect("replica", "replisim").await?;
        assert_eq!(
            write(&new_primary, 30, 1, 2).await?,
            2,
            "its own second version"
        );
        assert_eq!(write(&new_primary, 30, 2, 2).await?, 1);
        sleep_until_sim(Duration::from_secs(3)).await;
        Ok(())
    });
    let (new, ahead) = (c.nodes[1].clone(), c.nodes[2].clone());
    drive(
        &mut c.sim,
        vec![
            (
                Duration::from_millis(300),
                Box::new(|sim| sim.partition("primary", "replica")),
            ),
            (
                Duration::from_millis(600),
                Box::new(move |sim| {
                    sim.crash("primary");
                    new.promote();
                    ahead.set_upstream(Some("replica".to_owned()));
                }),
            ),
        ],
    );
    let ahead = &c.nodes[2];
    assert_eq!(c.replica().current_lsn(), LSN_START + 3 * LSN_STEP);
    assert_eq!(ahead.current_lsn(), LSN_START + 2 * LSN_STEP);
    assert_eq!(ahead.replay_lsn(), LSN_START + 2 * LSN_STEP);
    assert_eq!(
        ahead.row(30, 1),
        Some(KvRow {
            version: 2,
            updated_by: 1
        })
    );
    assert_eq!(ahead.row(30, 2), None, "nothing from the other history");
}

#[test]
fn a_connection_abandoned_during_a_partition_stays_open_at_the_server_as_in_postgres() {
    let mut c = cluster(14);
    run_client(&mut c.sim, async {
        let primary = connect("primary", "replisim").await?;
        assert_eq!(write(&primary, 40, 1, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(1_500)).await;
        // Terminate and FIN are lost in the partition: the server cannot tell, and PostgreSQL
        // sends nothing unsolicited to an idle client that could find out.
        drop(primary);
        sleep_until_sim(Duration::from_secs(40)).await;
        Ok(())
    });
    drive(
        &mut c.sim,
        vec![
            (
                Duration::from_secs(1),
                Box::new(|sim| sim.partition("app", "primary")),
            ),
            (
                Duration::from_secs(2),
                Box::new(|sim| sim.repair("app", "primary")),
            ),
        ],
    );
    let conns = c.log.server_conns.lock().expect("log lock").clone();
    assert!(
        conns.iter().any(|e| e.node == PRIMARY && e.open),
        "{conns:?}"
    );
    assert!(
        !conns.iter().any(|e| e.node == PRIMARY && !e.open),
        "the server still holds the abandoned connection: {conns:?}"
    );
}

#[test]
fn a_connection_its_client_drops_closes_at_the_server_at_once() {
    let mut c = cluster(16);
    run_client(&mut c.sim, async {
        let primary = connect("primary", "replisim").await?;
        assert_eq!(write(&primary, 41, 1, 1).await?, 1);
        sleep_until_sim(Duration::from_secs(30)).await;
        drop(primary);
        sleep_until_sim(Duration::from_secs(31)).await;
        Ok(())
    });
    drive(&mut c.sim, Vec::new());
    let conns = c.log.server_conns.lock().expect("log lock").clone();
    let closed = conns
        .iter()
        .find(|e| e.node == PRIMARY && !e.open)
        .expect("the server closed the dropped connection");
    // Idle for 30 s without a probe, then closed within a link crossing of the drop.
    assert!(
        (micros(Duration::from_secs(30))..=micros(Duration::from_millis(30_010)))
            .contains(&closed.at_us),
        "{closed:?}"
    );
}

#[test]
fn an_idle_connection_gets_no_unsolicited_message() {
    let mut c = cluster(17);
    run_client(&mut c.sim, async {
        let mut stream = turmoil::net::TcpStream::connect(("primary", PG_PORT)).await?;
        let mut startup = Vec::new();
        for part in ["user", "replisim", "database", "replisim", ""] {
            startup.extend_from_slice(part.as_bytes());
            startup.push(0);
        }
        let mut message = ((startup.len() + 8) as u32).to_be_bytes().to_vec();
        message.extend_from_slice(&196_608u32.to_be_bytes());
        message.extend_from_slice(&startup);
        stream.write_all(&message).await?;
        // The startup reply ends with ReadyForQuery ('Z', length 5, status 'I').
        let mut reply = Vec::new();
        let mut buf = [0u8; 1024];
        while !reply.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
            let n = timeout(Duration::from_secs(1), stream.read(&mut buf)).await??;
            assert!(n > 0, "closed during startup");
            reply.extend_from_slice(&buf[..n]);
        }
        let idle = timeout(Duration::from_secs(60), stream.read(&mut buf)).await;
        assert!(idle.is_err(), "the server sent something unasked: {idle:?}");
        Ok(())
    });
    drive(&mut c.sim, Vec::new());
}

#[test]
fn dropped_connections_close_at_once_and_new_ones_work() {
    let mut c = cluster(15);
    run_client(&mut c.sim, async {
        let idle = connect("primary", "replisim").await?;
        let busy = connect("primary", "replisim").await?;
        assert_eq!(write(&idle, 50, 1, 1).await?, 1);
        sleep_until_sim(Duration::from_millis(950)).await;
        // 100 ms of service time: still executing when the connections drop.
        assert!(write(&busy, 50, 2, 1).await.is_err());
        assert!(idle.is_closed());
        let fresh = connect("primary", "replisim").await?;
        assert_eq!(write(&fresh, 50, 1, 1).await?, 2);
        Ok(())
    });
    let (slow, primary) = (c.primary().clone(), c.primary().clone());
    drive(
        &mut c.sim,
        vec![
            (
                Duration::from_millis(500),
                Box::new(move |_| slow.set_slow_factor(100.0)),
            ),
            (
                Duration::from_secs(1),
                Box::new(move |_| primary.drop_connections()),
            ),
        ],
    );
    assert_eq!(
        c.primary().row(50, 2),
        None,
        "the statement in flight never ran"
    );
    let written: Vec<_> = statements(&c.log)
        .iter()
        .map(|e| (e.key, e.version, e.end_us - e.start_us))
        .collect();
    assert_eq!(
        written,
        [(1, 1, micros(QUERY_TIME)), (1, 2, 100 * micros(QUERY_TIME))]
    );
    let conns = c.log.server_conns.lock().expect("log lock").clone();
    let mut closes: Vec<_> = conns
        .iter()
        .filter(|e| !e.open)
        .map(|e| (e.conn, e.at_us))
        .collect();
    closes.sort();
    let dropped_at = micros(Duration::from_secs(1));
    assert_eq!(closes, [(1, dropped_at), (2, dropped_at)]);
    assert!(conns.iter().any(|e| e.open && e.conn == 3));
}
