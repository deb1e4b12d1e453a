//! [`SimNode`]: the durable state of one simulated node (its table, its WAL, its replication
//! position, its fault knobs). It lives outside the turmoil host closure, in an `Arc`, so it
//! survives a crash and a restart like data on disk does; connections and tasks do not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::FxHashMap;

use tokio::sync::Notify;

use super::cancel::Cancels;

use super::{LSN_START, LSN_STEP, NodeModel};
use crate::record::events::{EventLog, Micros, NodeIdx, NodeRole};

/// The durable state of one simulated PostgreSQL node, shared by its host body and the harness.
#[derive(Debug)]
pub struct SimNode {
    index: NodeIdx,
    name: String,
    model: NodeModel,
    log: Arc<EventLog>,
    state: Mutex<NodeState>,
    /// Wakes WAL senders: the WAL grew (a commit here, or a record received from upstream).
    wal_grown: Notify,
    /// Wakes the replay task: a record arrived, the delay or pause changed, or a promotion.
    replay_wake: Notify,
    /// Wakes the WAL receiver: the role or the upstream changed.
    upstream_changed: Notify,
    /// Wakes every client connection: they must close now.
    conns_dropped: Notify,
    /// Bumped by every `drop_connections`: a connection from an older generation must close. An
    /// atomic, not part of the locked state: every connection reads it for every message.
    conn_generation: AtomicU64,
    /// The open client connections a CancelRequest may name.
    cancels: Cancels,
    /// Wakes statements waiting for a row lock: a lock was released (commit, rollback, a
    /// connection's end, a fence or promotion), or a waiter's own transaction was terminated.
    lock_released: Notify,
}

/// The transaction state of one connection, as a statement finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnStatus {
    /// No transaction block: every statement commits on its own.
    Idle,
    /// Inside `BEGIN` ... `COMMIT`.
    Open,
    /// Inside a transaction that failed: everything but `COMMIT`/`ROLLBACK` is refused (25P02).
    Failed,
    /// The node rolled the connection's transaction back under it (a fence or a promotion, as a
    /// failover manager's `pg_terminate_backend` would): the connection must close.
    Terminated,
}

/// What taking a row lock found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockAttempt {
    /// The row is free or already this connection's (and now locked by it, if asked to take it).
    Acquired,
    /// Another connection's transaction holds it: wait for [`SimNode::lock_released`].
    Held,
    /// The connection's own transaction was terminated while it waited.
    Terminated,
}

/// How a `COMMIT` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommitEnd {
    /// There was no transaction (PostgreSQL warns and succeeds); the WAL end as it stood.
    NoTransaction(u64),
    /// The transaction committed: its commit LSN (the WAL end after its records).
    Committed(u64),
    /// The transaction had failed: it was rolled back instead (command tag `ROLLBACK`).
    RolledBack,
}

/// An open transaction of one connection.
#[derive(Debug, Default)]
struct Txn {
    /// A statement of it failed.
    failed: bool,
    /// Rows it wrote, with their new versions; applied and logged to the WAL only at commit.
    writes: BTreeMap<(i64, i64), KvRow>,
}

/// One committed change, as shipped to replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalRecord {
    /// WAL position after this commit.
    pub(crate) lsn: u64,
    /// History the record belongs to; a promotion starts a new one.
    pub(crate) timeline: u32,
    /// Org of the row.
    pub(crate) org: i64,
    /// Key of the row.
    pub(crate) key: i64,
    /// The row's version after the commit.
    pub(crate) version: i64,
    /// The user who wrote it.
    pub(crate) updated_by: i64,
    /// When the primary committed it (simulated microseconds).
    pub(crate) commit_us: Micros,
}

/// Why an upstream refuses to stream from a requested position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartRefusal {
    /// The requested position is past the end of this node's WAL.
    Ahead,
    /// The requested position is on a different history (the requester followed another primary).
    Diverged,
}

/// What the replay task should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplayNext {
    /// Nothing to apply (or replay is paused, or this is a primary): wait for a wake-up.
    Wait,
    /// The next record falls due at this simulated time.
    At(Micros),
}

/// What a probe statement sees of the node at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Positions {
    /// Role at that instant.
    pub(crate) role: NodeRole,
    /// End of the WAL: last commit on a primary, last received record on a replica.
    pub(crate) end_lsn: u64,
    /// Last applied record.
    pub(crate) replay_lsn: u64,
    /// Commit time of the last record applied since this server started.
    pub(crate) last_replay_commit_us: Option<Micros>,
}

/// One row of `replisim_kv` as a node holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvRow {
    /// Bumped by every write.
    pub version: i64,
    /// The user of the last write.
    pub updated_by: i64,
}

#[derive(Debug)]
struct NodeState {
    role: NodeRole,
    read_only: bool,
    upstream: Option<String>,
    slow_factor: f64,
    replication_delay: Duration,
    replay_paused: bool,
    promote_requested: bool,
    /// Timeline of commits made here (after a promotion, one more than anything received).
    timeline: u32,
    /// The table. Only ever looked up by key, never iterated, so a hash map's order cannot reach
    /// a trace; a B-tree of 100k rows cost a few percent of a run in its lookups.
    rows: FxHashMap<(i64, i64), KvRow>,
    /// The whole WAL, in LSN order: committed here, or received from upstream.
    wal: Vec<WalRecord>,
    /// How many records of `wal` are applied to `rows`.
    applied: usize,
    /// Reset on every start, like PostgreSQL's shared memory.
    last_replay_commit_us: Option<Micros>,
    /// Connection numbers handed out so far (they continue across restarts).
    conns: u64,
    /// Open transactions, by connection number. Like PostgreSQL's, they live only in memory.
    txns: BTreeMap<u64, Txn>,
    /// Row locks of open transactions: the row and the connection holding it.
    row_locks: BTreeMap<(i64, i64), u64>,
    /// Connections whose transaction the node ended under them (see [`TxnStatus::Terminated`]).
    terminated: BTreeSet<u64>,
    /// Connections whose statement is waiting for a row lock.
    lock_waiters: BTreeSet<u64>,
    /// Test knob: writes inside a transaction apply at once (see
    /// [`SimNode::set_broken_writes_before_commit`]).
    broken_writes_before_commit: bool,
}

impl NodeState {
    fn wal_end(&self) -> u64 {
        self.wal.last().map_or(LSN_START, |r| r.lsn)
    }

    fn replay_lsn(&self) -> u64 {
        match self.applied.checked_sub(1) {
            Some(last) => self.wal.get(last).map_or(LSN_START, |r| r.lsn),
            None => LSN_START,
        }
    }

    /// Releases every row lock `conn` holds; says whether it held any.
    fn release_locks(&mut self, conn: u64) -> bool {
        let before = self.row_locks.len();
        self.row_locks.retain(|_, holder| *holder != conn);
        self.row_locks.len() != before
    }

    /// Rolls back every open transaction (they vanish with a crash, a fence or a promotion); with
    /// `terminate`, their connections are told on their next statement. Says whether any existed.
    fn end_all_transactions(&mut self, terminate: bool) -> bool {
        let txns = std::mem::take(&mut self.txns);
        if terminate {
            self.terminated.extend(txns.keys().copied());
        } else {
            self.terminated.clear();
        }
        self.row_locks.clear();
        !txns.is_empty()
    }

    /// Appends a committed row change to the WAL and applies it: the new LSN.
    fn log_commit(&mut self, org: i64, key: i64, row: KvRow, now_us: Micros) -> u64 {
        let lsn = self.wal_end() + LSN_STEP;
        let timeline = self.timeline;
        self.wal.push(WalRecord {
            lsn,
            timeline,
            org,
            key,
            version: row.version,
            updated_by: row.updated_by,
            commit_us: now_us,
        });
        self.applied = self.wal.len();
        self.rows.insert((org, key), row);
        lsn
    }

    /// Applies the next received record; the caller checked there is one.
    fn apply_next(&mut self) -> Option<WalRecord> {
        let record = *self.wal.get(self.applied)?;
        self.rows.insert(
            (record.org, record.key),
            KvRow {
                version: record.version,
                updated_by: record.updated_by,
            },
        );
        self.applied += 1;
        self.last_replay_commit_us = Some(record.commit_us);
        Some(record)
    }
}

impl SimNode {
    /// A node with an empty table and WAL. `upstream` is the host name a replica streams from.
    pub fn new(
        index: NodeIdx,
        name: &str,
        role: NodeRole,
        upstream: Option<String>,
        model: NodeModel,
        log: Arc<EventLog>,
    ) -> Arc<SimNode> {
        Arc::new(SimNode {
            index,
            name: name.to_owned(),
            model,
            log,
            state: Mutex::new(NodeState {
                role,
                read_only: false,
                upstream,
                slow_factor: 1.0,
                replication_delay: model.replication_delay,
                replay_paused: false,
                promote_requested: false,
                timeline: 1,
                rows: FxHashMap::default(),
                wal: Vec::new(),
                applied: 0,
                last_replay_commit_us: None,
                conns: 0,
                txns: BTreeMap::new(),
                row_locks: BTreeMap::new(),
                terminated: BTreeSet::new(),
                lock_waiters: BTreeSet::new(),
                broken_writes_before_commit: false,
            }),
            wal_grown: Notify::new(),
            replay_wake: Notify::new(),
            upstream_changed: Notify::new(),
            conns_dropped: Notify::new(),
            conn_generation: AtomicU64::new(0),
            cancels: Cancels::default(),
            lock_released: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, NodeState> {
        // A poisoned lock only means a host panicked mid-update; the state is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Index of the node in `Scenario::nodes`.
    pub fn index(&self) -> NodeIdx {
        self.index
    }

    /// Host name of the node.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model the node was built with.
    pub fn model(&self) -> NodeModel {
        self.model
    }

    /// Multiplies the service time of every statement by `factor` (1.0 = normal). A factor that
    /// is not a finite number >= 0 is taken as 1.0.
    pub fn set_slow_factor(&self, factor: f64) {
        let factor = if factor.is_finite() && factor >= 0.0 {
            factor
        } else {
            1.0
        };
        self.lock().slow_factor = factor;
    }

    /// Sets the time from a commit on the primary to its apply here; records already received
    /// fall due by the new delay at once.
    pub fn set_replication_delay(&self, delay: Duration) {
        self.lock().replication_delay = delay;
        self.replay_wake.notify_one();
    }

    /// Pauses or resumes replay: while paused, records are received but not applied. Unlike
    /// PostgreSQL the pause survives a restart (the harness owns the knob).
    pub fn set_replay_paused(&self, paused: bool) {
        self.lock().replay_paused = paused;
        self.replay_wake.notify_one();
    }

    /// Fences the node: writes are refused with SQLSTATE 25006 while it stays out of recovery
    /// (PostgreSQL's `default_transaction_read_only`).
    /// Fencing also rolls back every open transaction and terminates its connection, as a
    /// failover manager does: a transaction begun before the fence must not commit after it.
    pub fn set_read_only(&self, read_only: bool) {
        let mut state = self.lock();
        state.read_only = read_only;
        let ended = read_only && state.end_all_transactions(true);
        drop(state);
        if ended {
            self.lock_released.notify_waiters();
        }
    }

    /// Test knob for a deliberately broken node, to prove that a checker catches one: with `on`,
    /// a write inside a transaction applies to the rows and the WAL at once, as if there were no
    /// transaction (other connections and replicas see it before `COMMIT`, and `ROLLBACK` does not
    /// undo it).
    pub fn set_broken_writes_before_commit(&self, on: bool) {
        self.lock().broken_writes_before_commit = on;
    }

    /// Makes a replica stream from another upstream host (after a promotion elsewhere).
    pub fn set_upstream(&self, upstream: Option<String>) {
        self.lock().upstream = upstream;
        self.upstream_changed.notify_one();
    }

    /// Asks a replica to leave recovery, like `pg_promote()`: once its host runs, it applies every
    /// received record at once, starts a new timeline and accepts writes. A crashed node is
    /// promoted when it restarts.
    pub fn promote(&self) {
        self.lock().promote_requested = true;
        self.replay_wake.notify_one();
    }

    /// Closes every client connection at once, statements in flight included (a proxy restart,
    /// a network blip); new connections work. The WAL streams between nodes are not touched.
    pub fn drop_connections(&self) {
        self.conn_generation.fetch_add(1, Ordering::AcqRel);
        self.conns_dropped.notify_waiters();
    }

    /// The node's role now.
    pub fn role(&self) -> NodeRole {
        self.lock().role
    }

    /// Whether the node is fenced read-only.
    pub fn is_read_only(&self) -> bool {
        self.lock().read_only
    }

    /// The slow factor in force.
    pub fn slow_factor(&self) -> f64 {
        self.lock().slow_factor
    }

    /// Whether replay is paused.
    pub fn is_replay_paused(&self) -> bool {
        self.lock().replay_paused
    }

    /// The apply delay in force.
    pub fn replication_delay(&self) -> Duration {
        self.lock().replication_delay
    }

    /// End of the node's WAL: on a primary the last committed LSN, on a replica the last received.
    pub fn current_lsn(&self) -> u64 {
        self.lock().wal_end()
    }

    /// Last applied LSN (on a primary, the same as [`SimNode::current_lsn`]).
    pub fn replay_lsn(&self) -> u64 {
        self.lock().replay_lsn()
    }

    /// Last received LSN (on a primary, the same as [`SimNode::current_lsn`]).
    pub fn receive_lsn(&self) -> u64 {
        self.lock().wal_end()
    }

    /// A row as this node's reads see it (`None`: no row).
    pub fn row(&self, org: i64, key: i64) -> Option<KvRow> {
        self.lock().rows.get(&(org, key)).copied()
    }

    /// Connection numbers handed out so far (connections that completed startup), across restarts.
    pub fn connections(&self) -> u64 {
        self.lock().conns
    }

    pub(crate) fn log(&self) -> &EventLog {
        &self.log
    }

    pub(crate) fn wal_grown(&self) -> &Notify {
        &self.wal_grown
    }

    pub(crate) fn replay_wake(&self) -> &Notify {
        &self.replay_wake
    }

    pub(crate) fn upstream_changed(&self) -> &Notify {
        &self.upstream_changed
    }

    pub(crate) fn cancels(&self) -> &Cancels {
        &self.cancels
    }

    pub(crate) fn conns_dropped(&self) -> &Notify {
        &self.conns_dropped
    }

    /// The current generation of client connections (see [`SimNode::drop_connections`]).
    pub(crate) fn conn_generation(&self) -> u64 {
        self.conn_generation.load(Ordering::Acquire)
    }

    /// Resets what PostgreSQL keeps only in memory (transactions and their locks included: a
    /// crash rolled them back); called each time the host starts.
    pub(crate) fn begin_run(&self) {
        let mut state = self.lock();
        state.last_replay_commit_us = None;
        state.end_all_transactions(false);
        drop(state);
        self.lock_released.notify_waiters();
        self.replay_wake.notify_one();
    }

    pub(crate) fn lock_released(&self) -> &Notify {
        &self.lock_released
    }

    /// The transaction state of connection `conn`.
    pub(crate) fn txn_status(&self, conn: u64) -> TxnStatus {
        let state = self.lock();
        if state.terminated.contains(&conn) {
            return TxnStatus::Terminated;
        }
        match state.txns.get(&conn) {
            None => TxnStatus::Idle,
            Some(txn) if txn.failed => TxnStatus::Failed,
            Some(_) => TxnStatus::Open,
        }
    }

    /// `BEGIN`: opens a transaction on `conn` (one already open stays as it is, as in PostgreSQL).
    pub(crate) fn begin(&self, conn: u64) {
        self.lock().txns.entry(conn).or_default();
    }

    /// A statement of `conn`'s open transaction failed: the transaction is aborted.
    pub(crate) fn fail_txn(&self, conn: u64) {
        if let Some(txn) = self.lock().txns.get_mut(&conn) {
            txn.failed = true;
        }
    }

    /// `COMMIT` of `conn`: writes its rows and their WAL records, in row order, then releases its
    /// locks.
    pub(crate) fn commit(&self, conn: u64, now_us: Micros) -> CommitEnd {
        let mut state = self.lock();
        let Some(txn) = state.txns.remove(&conn) else {
            return CommitEnd::NoTransaction(state.replay_lsn());
        };
        let end = if txn.failed {
            CommitEnd::RolledBack
        } else {
            for (&(org, key), &row) in &txn.writes {
                state.log_commit(org, key, row, now_us);
            }
            CommitEnd::Committed(state.replay_lsn())
        };
        let released = state.release_locks(conn);
        drop(state);
        if matches!(end, CommitEnd::Committed(_)) && !txn.writes.is_empty() {
            self.wal_grown.notify_waiters();
        }
        if released {
            self.lock_released.notify_waiters();
        }
        end
    }

    /// `ROLLBACK` of `conn`, or the end of its connection: its writes vanish, its locks go.
    pub(crate) fn rollback(&self, conn: u64) {
        let mut state = self.lock();
        state.txns.remove(&conn);
        let released = state.release_locks(conn);
        drop(state);
        if released {
            self.lock_released.notify_waiters();
        }
    }

    /// The connection ended: its transaction rolls back (no statement is logged for it).
    pub(crate) fn end_connection(&self, conn: u64) {
        self.lock().terminated.remove(&conn);
        self.rollback(conn);
    }

    /// Tries to lock row (`org`, `key`) for `conn`; with `take`, the lock is kept until the
    /// transaction ends, else it is only checked to be free (an autocommit statement, done as
    /// soon as it has it).
    pub(crate) fn try_lock_row(&self, conn: u64, org: i64, key: i64, take: bool) -> LockAttempt {
        let mut state = self.lock();
        if state.terminated.contains(&conn) {
            return LockAttempt::Terminated;
        }
        match state.row_locks.get(&(org, key)) {
            Some(holder) if *holder != conn => LockAttempt::Held,
            Some(_) => LockAttempt::Acquired,
            None => {
                if take {
                    state.row_locks.insert((org, key), conn);
                }
                LockAttempt::Acquired
            }
        }
    }

    /// Marks whether `conn`'s statement is waiting for a row lock.
    pub(crate) fn set_lock_waiting(&self, conn: u64, waiting: bool) {
        let mut state = self.lock();
        if waiting {
            state.lock_waiters.insert(conn);
        } else {
            state.lock_waiters.remove(&conn);
        }
    }

    /// Whether `conn`'s statement is waiting for a row lock (it may wait as long as the lock is
    /// held: the connection's response deadline does not apply).
    pub(crate) fn is_lock_waiting(&self, conn: u64) -> bool {
        self.lock().lock_waiters.contains(&conn)
    }

    /// The row's version as `conn` sees it (its own transaction's write first, then the table)
    /// and the LSN the read saw.
    pub(crate) fn read_as(&self, conn: u64, org: i64, key: i64) -> (Option<i64>, u64) {
        let state = self.lock();
        let pending = state
            .txns
            .get(&conn)
            .and_then(|txn| txn.writes.get(&(org, key)));
        let version = pending
            .or_else(|| state.rows.get(&(org, key)))
            .map(|r| r.version);
        (version, state.replay_lsn())
    }

    /// The upsert inside `conn`'s open transaction, which holds the row's lock: the new version,
    /// and the LSN it was logged at (0: it waits for the commit; the broken knob logs it at once).
    pub(crate) fn write_in_txn(
        &self,
        conn: u64,
        org: i64,
        key: i64,
        user: i64,
        now_us: Micros,
    ) -> (i64, u64) {
        let mut state = self.lock();
        let current = state
            .txns
            .get(&conn)
            .and_then(|txn| txn.writes.get(&(org, key)))
            .or_else(|| state.rows.get(&(org, key)))
            .map(|r| r.version);
        let row = KvRow {
            version: current.map_or(1, |v| v.saturating_add(1)),
            updated_by: user,
        };
        if state.broken_writes_before_commit {
            let lsn = state.log_commit(org, key, row, now_us);
            drop(state);
            self.wal_grown.notify_waiters();
            return (row.version, lsn);
        }
        if let Some(txn) = state.txns.get_mut(&conn) {
            txn.writes.insert((org, key), row);
        }
        (row.version, 0)
    }

    /// The next connection number (from 1, continuing across restarts).
    pub(crate) fn next_conn(&self) -> u64 {
        let mut state = self.lock();
        state.conns += 1;
        state.conns
    }

    /// Service time of one statement: `query_time` times the slow factor.
    pub(crate) fn service_time(&self) -> Duration {
        let factor = self.lock().slow_factor;
        if factor == 1.0 {
            return self.model.query_time;
        }
        Duration::try_from_secs_f64(self.model.query_time.as_secs_f64() * factor)
            .unwrap_or(self.model.query_time)
    }

    /// Role and fence at the start of a statement.
    pub(crate) fn role_and_fence(&self) -> (NodeRole, bool) {
        let state = self.lock();
        (state.role, state.read_only)
    }

    /// Commits the upsert: the new version and the commit's LSN. The caller checked the role.
    pub(crate) fn commit_write(&self, org: i64, key: i64, user: i64, now_us: Micros) -> (i64, u64) {
        let mut state = self.lock();
        let version = state
            .rows
            .get(&(org, key))
            .map_or(1, |r| r.version.saturating_add(1));
        let row = KvRow {
            version,
            updated_by: user,
        };
        let lsn = state.log_commit(org, key, row, now_us);
        drop(state);
        self.wal_grown.notify_waiters();
        (version, lsn)
    }

    /// What the probe functions see now.
    pub(crate) fn positions(&self) -> Positions {
        let state = self.lock();
        Positions {
            role: state.role,
            end_lsn: state.wal_end(),
            replay_lsn: state.replay_lsn(),
            last_replay_commit_us: state.last_replay_commit_us,
        }
    }

    /// Copies up to `max` records after `after_lsn` into `out`.
    pub(crate) fn records_after(&self, after_lsn: u64, max: usize, out: &mut Vec<WalRecord>) {
        let state = self.lock();
        let from = state.wal.partition_point(|r| r.lsn <= after_lsn);
        let to = from.saturating_add(max).min(state.wal.len());
        out.extend_from_slice(&state.wal[from..to]);
    }

    /// End of the WAL, for keepalives.
    pub(crate) fn wal_end(&self) -> u64 {
        self.lock().wal_end()
    }

    /// Whether a downstream whose last record is (`after_lsn`, `timeline`) can stream from here.
    pub(crate) fn check_stream_start(
        &self,
        after_lsn: u64,
        timeline: u32,
    ) -> Result<(), StartRefusal> {
        let state = self.lock();
        if after_lsn > state.wal_end() {
            return Err(StartRefusal::Ahead);
        }
        if after_lsn == LSN_START {
            return Ok(());
        }
        let at = state.wal.partition_point(|r| r.lsn < after_lsn);
        match state.wal.get(at) {
            Some(r) if r.lsn == after_lsn && r.timeline == timeline => Ok(()),
            _ => Err(StartRefusal::Diverged),
        }
    }

    /// Where a replica resumes streaming: its last received LSN and that record's timeline.
    pub(crate) fn stream_position(&self) -> (u64, u32) {
        let state = self.lock();
        let timeline = state.wal.last().map_or(state.timeline, |r| r.timeline);
        (state.wal_end(), timeline)
    }

    /// The upstream to stream from, if this node is a replica that has one.
    pub(crate) fn upstream(&self) -> Option<String> {
        let state = self.lock();
        match state.role {
            NodeRole::Replica => state.upstream.clone(),
            NodeRole::Primary => None,
        }
    }

    /// Stores a record received from upstream; duplicates (already received) are ignored.
    pub(crate) fn receive(&self, record: WalRecord) -> bool {
        let mut state = self.lock();
        if state.role != NodeRole::Replica || record.lsn <= state.wal_end() {
            return false;
        }
        state.wal.push(record);
        drop(state);
        self.replay_wake.notify_one();
        self.wal_grown.notify_waiters();
        true
    }

    /// Carries out a requested promotion: applies every received record at once (appending them
    /// to `applied`), starts a new timeline and accepts writes from then on.
    pub(crate) fn promote_if_requested(&self, applied: &mut Vec<WalRecord>) {
        let mut state = self.lock();
        if !std::mem::take(&mut state.promote_requested) || state.role != NodeRole::Replica {
            return;
        }
        while let Some(record) = state.apply_next() {
            applied.push(record);
        }
        let last_timeline = state.wal.last().map_or(0, |r| r.timeline);
        state.timeline = state.timeline.max(last_timeline) + 1;
        state.role = NodeRole::Primary;
        // Transactions begun in recovery were read-only; they must not write as a primary.
        let ended = state.end_all_transactions(true);
        drop(state);
        if ended {
            self.lock_released.notify_waiters();
        }
        self.upstream_changed.notify_one();
    }

    /// Applies, in LSN order, every received record due by `now_us` (commit time + replication
    /// delay), appending them to `applied`; says when the next one falls due.
    pub(crate) fn apply_due(&self, now_us: Micros, applied: &mut Vec<WalRecord>) -> ReplayNext {
        let mut state = self.lock();
        if state.role != NodeRole::Replica || state.replay_paused {
            return ReplayNext::Wait;
        }
        let delay_us = Micros::try_from(state.replication_delay.as_micros()).unwrap_or(Micros::MAX);
        while let Some(record) = state.wal.get(state.applied).copied() {
            let due_us = record.commit_us.saturating_add(delay_us);
            if due_us > now_us {
                return ReplayNext::At(due_us);
            }
            state.apply_next();
            applied.push(record);
        }
        ReplayNext::Wait
    }
}
