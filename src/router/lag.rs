//! Replica lag: measured by the health checks on their probe connection, kept per node as a history,
//! and turned into the shard's *fresh* routing bits that keep a replica lagging past
//! `max_replica_lag` out of reads until it catches up.
//!
//! Two measures, because each misses something: bytes (`pg_current_wal_lsn()` on the primary minus
//! `pg_last_wal_replay_lsn()` on the replica) miss an apply delay, whose WAL has arrived but waits;
//! replay time (`now() - pg_last_xact_replay_timestamp()`) grows on an idle primary, so it counts as
//! 0 while the replica has applied all it received and is not behind the primary in bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio_postgres::types::PgLsn;

use crate::router::conn::Conn;
use crate::router::latency::{LatencySnapshot, StatementLatency};
use crate::router::lsn::Lsn;
use crate::router::route::{RouteTable, ServedRole};
use crate::router::stats::NodeStats;

/// What a probe asks a replica: the role (so a promoted node is recognised), what it received and
/// replayed, and both clocks of the replay-time lag. Answers on a primary too (NULL positions).
pub const REPLICA_LAG_SQL: &str = "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn(), \
     pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp(), now()";

/// What a probe asks a primary: its WAL write position.
pub const PRIMARY_LSN_SQL: &str = "SELECT pg_current_wal_lsn()";

/// One answer to [`REPLICA_LAG_SQL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaSample {
    /// `pg_last_wal_receive_lsn()`: WAL received so far.
    pub receive_lsn: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()`: WAL applied so far.
    pub replay_lsn: Option<Lsn>,
    /// `pg_last_xact_replay_timestamp()`: commit time of the last transaction applied.
    pub replayed_commit_at: Option<SystemTime>,
    /// `now()` on the replica.
    pub now: SystemTime,
}

/// How far one replica is behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaLag {
    /// WAL bytes the primary had written (at its last probe) that the replica has not applied.
    pub bytes: u64,
    /// How old the newest change the replica applied is; 0 while it is caught up.
    pub time: Duration,
}

/// The time lag of a replica known to be behind that has replayed nothing since it started.
pub const UNKNOWN_LAG: Duration = Duration::from_secs(3600);

/// The lag of a replica from its `sample` and the primary's last known WAL position.
pub fn replica_lag(sample: &ReplicaSample, primary_lsn: Option<Lsn>) -> ReplicaLag {
    let replayed = sample.replay_lsn.unwrap_or_default();
    let bytes = primary_lsn.map_or(0, |primary| primary.bytes_after(replayed));
    // Caught up with all it received and not behind the primary: an idle primary makes the replay
    // timestamp old without making the replica stale.
    let caught_up =
        sample.receive_lsn.is_some() && sample.receive_lsn <= sample.replay_lsn && bytes == 0;
    let time = match sample.replayed_commit_at {
        _ if caught_up => Duration::ZERO,
        Some(commit) => sample.now.duration_since(commit).unwrap_or_default(),
        // Behind, and no transaction replayed since the replica started (PostgreSQL's replay
        // timestamp is NULL until then, e.g. after a restart while its primary is down): how far
        // behind is unknown, so it counts as past any bound until a replay dates it.
        None if bytes > 0 => UNKNOWN_LAG,
        None => Duration::ZERO,
    };
    ReplicaLag { bytes, time }
}

/// Whether a replica with `lag` may serve reads under `max_replica_lag` (`None`: any lag).
pub fn is_fresh(lag: ReplicaLag, max_replica_lag: Option<Duration>) -> bool {
    max_replica_lag.is_none_or(|max| lag.time <= max)
}

/// The lag record of one node: the last measure and its history.
#[derive(Debug, Default)]
pub struct NodeLag {
    measured: AtomicBool,
    bytes: AtomicU64,
    time_us: AtomicU64,
    /// The newest replay position seen, 0 if none (a replica's replay only moves forward).
    replay_lsn: AtomicU64,
    /// A causal token the replica was found short of, 0 if none: until it is seen to reach it,
    /// reads that need at least as much skip it instead of checking it again.
    behind_lsn: AtomicU64,
    /// Every measured replay-time lag.
    history: StatementLatency,
}

impl NodeLag {
    /// Records one measure of a replica that had replayed up to `replay_lsn`.
    pub fn record(&self, lag: ReplicaLag, replay_lsn: Option<Lsn>) {
        let time_us = u64::try_from(lag.time.as_micros()).unwrap_or(u64::MAX);
        self.bytes.store(lag.bytes, Ordering::Relaxed);
        self.time_us.store(time_us, Ordering::Relaxed);
        if let Some(lsn) = replay_lsn {
            self.observe_replay(lsn);
        }
        self.measured.store(true, Ordering::Relaxed);
        // An unknown lag is a marker, not a measure: it stays out of the history.
        if lag.time < UNKNOWN_LAG {
            self.history.record(lag.time);
        }
    }

    /// Notes that the replica had replayed up to `lsn` (seen by a probe or around a read).
    pub fn observe_replay(&self, lsn: Lsn) {
        self.replay_lsn.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// Notes that a read needing `lsn` found the replica short of it.
    pub fn mark_behind(&self, lsn: Lsn) {
        self.behind_lsn.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// Whether the replica was found short of a token it has not been seen to reach since.
    pub fn seems_behind(&self) -> bool {
        self.replay_lsn.load(Ordering::Relaxed) < self.behind_lsn.load(Ordering::Relaxed)
    }

    /// The newest replay position seen; `None` before any.
    pub fn replay_lsn(&self) -> Option<Lsn> {
        let lsn = self.replay_lsn.load(Ordering::Relaxed);
        (lsn != 0).then_some(Lsn(lsn))
    }

    /// The record now.
    pub fn snapshot(&self) -> LagSnapshot {
        LagSnapshot {
            measured: self.measured.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            time_us: self.time_us.load(Ordering::Relaxed),
            history: self.history.snapshot(),
        }
    }
}

/// A node's lag at the time of a snapshot. Primaries, and replicas while lag is not probed (neither
/// `max_replica_lag` nor `read_your_writes` is set), have none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LagSnapshot {
    /// Whether any probe measured the lag.
    pub measured: bool,
    /// WAL bytes behind the primary at the last probe.
    pub bytes: u64,
    /// Replay-time lag at the last probe, in microseconds.
    pub time_us: u64,
    /// Every probe's replay-time lag (count, sum, percentiles, buckets in microseconds).
    pub history: LatencySnapshot,
}

/// What the lag probes of every node share: each shard's last known primary WAL position.
#[derive(Debug)]
pub(crate) struct LagBoard {
    /// Per shard (route table order); 0 = not known yet.
    primary_lsn: Vec<AtomicU64>,
}

impl LagBoard {
    /// A board for `shards` shards, nothing known.
    pub(crate) fn new(shards: usize) -> LagBoard {
        LagBoard {
            primary_lsn: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn primary_lsn(&self, shard: usize) -> Option<Lsn> {
        let lsn = self.primary_lsn.get(shard)?.load(Ordering::Relaxed);
        (lsn != 0).then_some(Lsn(lsn))
    }

    /// The shard's primary's WAL position, as far as any probe or write has seen it.
    pub(crate) fn observe_primary(&self, shard: usize, lsn: Lsn) {
        if let Some(slot) = self.primary_lsn.get(shard) {
            slot.fetch_max(lsn.0, Ordering::Relaxed);
        }
    }
}

/// The lag measure of one node, run after each of its good health checks.
pub(crate) struct LagProbe {
    pub(crate) routes: Arc<RouteTable>,
    pub(crate) board: Arc<LagBoard>,
    pub(crate) stats: Arc<NodeStats>,
    pub(crate) shard: usize,
    pub(crate) position: u32,
    pub(crate) max_replica_lag: Option<Duration>,
    pub(crate) timeout: Duration,
}

impl LagProbe {
    /// Forgets that the node was fresh, once its health checks find it down: whatever it replayed
    /// before, it may come back behind (restarted while its primary was away, say), and only a new
    /// measure after a good check lets it serve reads again. A primary is never kept out.
    pub(crate) fn forget(&self) {
        let Some(shard) = self.routes.shards().get(self.shard) else {
            return;
        };
        if shard.writer_position() != Some(self.position) && shard.is_fresh(self.position) {
            shard.set_fresh(self.position, false);
            tracing::info!(position = self.position, shard = %shard.name, "replica found down: its lag is unknown until measured again");
        }
    }

    /// Measures the node on `conn` (the probe connection of a check that found it in `role`) and
    /// publishes whether it is fresh. A failed measure changes nothing: the health check of the same
    /// connection is what judges a node that does not answer.
    pub(crate) async fn measure(&self, conn: &mut Conn, role: ServedRole) {
        let measured = tokio::time::timeout(self.timeout, self.measure_untimed(conn, role)).await;
        match measured {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "lag probe failed"),
            Err(_) => tracing::debug!(timeout = ?self.timeout, "lag probe timed out"),
        }
    }

    async fn measure_untimed(
        &self,
        conn: &mut Conn,
        role: ServedRole,
    ) -> Result<(), tokio_postgres::Error> {
        if role == ServedRole::Primary {
            let rows = conn.query(PRIMARY_LSN_SQL, &[]).await?;
            if let Some(row) = rows.first() {
                let lsn: Option<PgLsn> = row.try_get(0)?;
                if let Some(lsn) = lsn {
                    self.board.observe_primary(self.shard, lsn.into());
                }
            }
            return Ok(());
        }
        let rows = conn.query(REPLICA_LAG_SQL, &[]).await?;
        let Some(row) = rows.first() else {
            return Ok(());
        };
        let in_recovery: bool = row.try_get(0)?;
        if !in_recovery {
            // Promoted between the check and this probe; the next check tells the rest.
            return Ok(());
        }
        let sample = ReplicaSample {
            receive_lsn: row.try_get::<_, Option<PgLsn>>(1)?.map(Lsn::from),
            replay_lsn: row.try_get::<_, Option<PgLsn>>(2)?.map(Lsn::from),
            replayed_commit_at: row.try_get(3)?,
            now: row.try_get(4)?,
        };
        let lag = replica_lag(&sample, self.board.primary_lsn(self.shard));
        self.stats.lag.record(lag, sample.replay_lsn);
        let fresh = is_fresh(lag, self.max_replica_lag);
        if let Some(shard) = self.routes.shards().get(self.shard)
            && shard.is_fresh(self.position) != fresh
        {
            shard.set_fresh(self.position, fresh);
            if fresh {
                tracing::info!(position = self.position, shard = %shard.name, ?lag, "replica caught up: back in reads");
            } else {
                tracing::warn!(position = self.position, shard = %shard.name, ?lag, "replica lags: kept out of reads");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(ms: u64) -> SystemTime {
        EPOCH + Duration::from_millis(ms)
    }

    fn sample(receive: u64, replay: u64, commit_ms: Option<u64>, now_ms: u64) -> ReplicaSample {
        ReplicaSample {
            receive_lsn: Some(Lsn(receive)),
            replay_lsn: Some(Lsn(replay)),
            replayed_commit_at: commit_ms.map(at),
            now: at(now_ms),
        }
    }

    #[test]
    fn an_apply_delay_shows_in_time_even_when_bytes_look_small() {
        // Received up to 900, applied 800 whose commit is 3 s old; the primary probe saw 850.
        let lag = replica_lag(&sample(900, 800, Some(7_000), 10_000), Some(Lsn(850)));
        assert_eq!(lag.bytes, 50);
        assert_eq!(lag.time, Duration::from_secs(3));
    }

    #[test]
    fn an_idle_caught_up_replica_has_no_lag() {
        let lag = replica_lag(&sample(800, 800, Some(1_000), 60_000), Some(Lsn(800)));
        assert_eq!(
            lag,
            ReplicaLag::default(),
            "old replay timestamp, nothing to apply"
        );
        let unknown_primary = replica_lag(&sample(800, 800, Some(1_000), 60_000), None);
        assert_eq!(unknown_primary.time, Duration::ZERO);
    }

    #[test]
    fn a_replica_cut_off_from_its_primary_lags_though_it_applied_all_it_received() {
        let lag = replica_lag(&sample(800, 800, Some(1_000), 5_000), Some(Lsn(1_800)));
        assert_eq!(lag.bytes, 1_000);
        assert_eq!(lag.time, Duration::from_secs(4));
    }

    #[test]
    fn missing_values_with_nothing_behind_and_clock_skew_mean_no_time_lag() {
        let never_replayed = ReplicaSample {
            receive_lsn: None,
            replay_lsn: None,
            replayed_commit_at: None,
            now: at(5_000),
        };
        assert_eq!(replica_lag(&never_replayed, None).time, Duration::ZERO);
        // Behind the primary in bytes with nothing replayed: its time lag is unknown, not zero.
        assert_eq!(replica_lag(&never_replayed, Some(Lsn(10))).bytes, 10);
        assert_eq!(
            replica_lag(&never_replayed, Some(Lsn(10))).time,
            UNKNOWN_LAG
        );
        assert_eq!(
            replica_lag(&never_replayed, Some(Lsn(0))).time,
            Duration::ZERO
        );
        let future_commit = sample(900, 800, Some(6_000), 5_000);
        assert_eq!(replica_lag(&future_commit, None).time, Duration::ZERO);
    }

    #[test]
    fn a_replica_behind_with_nothing_replayed_since_it_started_is_not_fresh() {
        // Restarted while its primary is down: it applied up to 800 before the crash, the primary
        // was last seen at 1,800, and no transaction has replayed since the restart.
        let restarted = sample(800, 800, None, 5_000);
        let lag = replica_lag(&restarted, Some(Lsn(1_800)));
        assert_eq!((lag.bytes, lag.time), (1_000, UNKNOWN_LAG));
        assert!(!is_fresh(lag, Some(Duration::from_secs(60))));
        assert!(is_fresh(lag, None), "no bound: always fresh");
        let record = NodeLag::default();
        record.record(lag, Some(Lsn(800)));
        assert_eq!(
            record.snapshot().history.count,
            0,
            "a marker, not a measure"
        );
        // Once a replay dates it, its lag is measured again.
        let replayed = replica_lag(&sample(1_000, 900, Some(4_000), 5_000), Some(Lsn(1_800)));
        assert_eq!(replayed.time, Duration::from_secs(1));
    }

    #[test]
    fn freshness_compares_time_lag_with_the_bound() {
        let lag = |ms| ReplicaLag {
            bytes: 1 << 30,
            time: Duration::from_millis(ms),
        };
        let max = Some(Duration::from_millis(500));
        assert!(is_fresh(lag(500), max), "at the bound");
        assert!(!is_fresh(lag(501), max));
        assert!(is_fresh(lag(60_000), None), "no bound: always fresh");
    }

    #[test]
    fn the_record_keeps_the_newest_replay_position_and_every_measure() {
        let record = NodeLag::default();
        assert_eq!(record.replay_lsn(), None);
        assert!(!record.snapshot().measured);
        let lag = |ms| ReplicaLag {
            bytes: ms,
            time: Duration::from_millis(ms),
        };
        record.record(lag(3_000), Some(Lsn(900)));
        record.record(lag(10), Some(Lsn(500)));
        assert_eq!(record.replay_lsn(), Some(Lsn(900)), "never moves back");
        assert!(!record.seems_behind());
        record.mark_behind(Lsn(950));
        assert!(record.seems_behind(), "short of 950");
        record.observe_replay(Lsn(950));
        assert!(!record.seems_behind(), "reached it");
        let snapshot = record.snapshot();
        assert_eq!((snapshot.bytes, snapshot.time_us), (10, 10_000));
        assert_eq!(snapshot.history.count, 2);
        assert_eq!(snapshot.history.max_us, 3_000_000);
    }

    #[test]
    fn the_board_keeps_the_highest_primary_position_per_shard() {
        let board = LagBoard::new(2);
        assert_eq!(board.primary_lsn(0), None);
        board.observe_primary(1, Lsn(70));
        board.observe_primary(1, Lsn(40));
        board.observe_primary(5, Lsn(1));
        assert_eq!(
            (board.primary_lsn(0), board.primary_lsn(1)),
            (None, Some(Lsn(70)))
        );
    }
}
