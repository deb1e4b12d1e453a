//! The ground truth of a run: what the servers executed, what crossed the network to them (the
//! simulation's stream wrapper, or real mode's fault proxies), and what the clients observed.
//! Invariant checkers read only these records.
//!
//! Every time is in microseconds since the start of the run: simulated time in the simulation, the
//! run clock's wall time in real mode. Nodes are indexes into `Scenario::nodes`. Records are
//! appended in the order they happened; in the (single-threaded, seeded) simulation that order is
//! deterministic.

use std::sync::Mutex;

/// Simulated microseconds since the start of the run.
pub type Micros = u64;

/// Index of a node in `Scenario::nodes`.
pub type NodeIdx = usize;

/// Why a connection or statement exists: the application's work, or the router's own probing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Purpose {
    /// A client operation (connect or statement on behalf of a read or write).
    Workload,
    /// A health check or lag probe (`application_name = 'replisim-health'`).
    Check,
}

/// A node's role at one moment, as the node itself saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeRole {
    /// Accepts writes.
    Primary,
    /// In recovery: applies WAL, refuses writes with SQLSTATE 25006.
    Replica,
}

/// What a statement was, as the server classified it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatementKind {
    /// `SELECT version ... FROM replisim_kv`.
    Read,
    /// `INSERT ... ON CONFLICT ... RETURNING version`.
    Write,
    /// One of the probe functions (`pg_is_in_recovery()`, LSN functions, `now()`, ...).
    Probe,
    /// Anything else; answered with SQLSTATE 0A000.
    Unsupported,
    /// `BEGIN` (`version` 0).
    Begin,
    /// A `COMMIT` that committed: `lsn` is the commit LSN, the WAL end after its records (a
    /// `COMMIT` outside a transaction: version 0, and the WAL end as it stood).
    Commit,
    /// A `ROLLBACK`, or a `COMMIT` of a failed transaction (answered, like PostgreSQL, with the
    /// command tag `ROLLBACK`).
    Rollback,
    /// `SELECT version ... FROM replisim_kv ... FOR UPDATE`: `version` is what it returned
    /// (0 = no row), after it got the row's lock.
    LockingRead,
}

/// One statement a simulated server executed or refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementEvent {
    /// The node that ran it.
    pub node: NodeIdx,
    /// The node's connection number (counts from 1 per node, across restarts).
    pub conn: u64,
    /// Workload or check, from the connection's `application_name`.
    pub purpose: Purpose,
    /// How the server classified the statement.
    pub kind: StatementKind,
    /// The node's role when the statement started.
    pub role: NodeRole,
    /// `$1` of a workload statement (0 for probes).
    pub org: i64,
    /// `$2` of a workload statement (0 for probes).
    pub key: i64,
    /// `$3` of a workload statement (0 for probes).
    pub user: i64,
    /// When the server started executing it (after receiving the Execute / Query message).
    pub start_us: Micros,
    /// When the server finished it (the result was handed to the socket).
    pub end_us: Micros,
    /// Row version returned by a read or locking read (0 = no row) or written by a write (0 if
    /// refused); a write inside a transaction records the new, not yet committed, version.
    pub version: i64,
    /// `None` if it succeeded, else the SQLSTATE it was answered with (e.g. "25006").
    pub sqlstate: Option<String>,
    /// The primary's LSN after a write commits (0 for a write inside a transaction: it commits
    /// with its `Commit`); a commit's LSN; a replica's replay LSN when it answered a read.
    pub lsn: u64,
}

/// A server-side connection opening (after startup) or closing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConnEvent {
    /// The node.
    pub node: NodeIdx,
    /// The node's connection number.
    pub conn: u64,
    /// Workload or check.
    pub purpose: Purpose,
    /// When it happened.
    pub at_us: Micros,
    /// true: the startup completed; false: the connection ended (either side, or a crash).
    pub open: bool,
    /// The TCP connection, named alike at both of its ends so that what the client sent and what
    /// the node received can be paired: the client's local port in the simulation, the proxy's
    /// connection number in real mode; 0 for a connect attempt that made no connection.
    pub stream: u64,
}

/// What the application host's stream wrapper saw going towards a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NetKind {
    /// A TCP connect was started.
    Connect,
    /// A connect attempt failed or was abandoned (refused, timed out, blackholed).
    ConnectFailed,
    /// A statement-bearing frontend message (`Query` or `Execute`) was written.
    Statement,
    /// A statement-bearing frontend message was handed to a stream whose write failed (the
    /// connection was already reset or closed): an attempt all the same, that reached no server.
    StatementFailed,
}

/// One record of the application host's view of the network (the wrapper around the stream trait).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetEvent {
    /// When it happened.
    pub at_us: Micros,
    /// The node the stream goes to.
    pub node: NodeIdx,
    /// Workload or check.
    pub purpose: Purpose,
    /// What happened.
    pub kind: NetKind,
    /// The TCP connection, named alike at both of its ends so that what the client sent and what
    /// the node received can be paired: the client's local port in the simulation, the proxy's
    /// connection number in real mode; 0 for a connect attempt that made no connection.
    pub stream: u64,
}

/// Read or write, from the client's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// A read (`prefer_replica` tells whether it may use a replica).
    Read,
    /// A write.
    Write,
}

/// One client operation as the client observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOp {
    /// Client (session) number, 0-based.
    pub client: u32,
    /// The client's user id.
    pub user: i64,
    /// Org id.
    pub org: i64,
    /// Key within the org.
    pub key: i64,
    /// Read or write.
    pub kind: OpKind,
    /// false = a critical read that asked for the primary.
    pub prefer_replica: bool,
    /// true = a write run as a transaction (SPEC 6.3).
    pub transaction: bool,
    /// Start: the intended arrival time in open loop (waiting included), else the call time.
    pub start_us: Micros,
    /// When the router returned.
    pub end_us: Micros,
    /// Whether it succeeded.
    pub ok: bool,
    /// The node that served it, if it succeeded.
    pub node: Option<NodeIdx>,
    /// Row version returned (read) or written (write); 0 = no row or failed.
    pub version: i64,
    /// The router's error message, if it failed.
    pub error: Option<String>,
}

/// A replica applied one WAL record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalApplyEvent {
    /// The replica.
    pub node: NodeIdx,
    /// LSN of the record.
    pub lsn: u64,
    /// When the primary committed it.
    pub commit_us: Micros,
    /// When the replica applied it.
    pub applied_us: Micros,
}

/// All records of one run. Shared by every simulated host through an `Arc`.
#[derive(Debug, Default)]
pub struct EventLog {
    /// Server-side statements, in completion order.
    pub statements: Mutex<Vec<StatementEvent>>,
    /// Server-side connection opens and closes.
    pub server_conns: Mutex<Vec<ServerConnEvent>>,
    /// The application host's network view.
    pub net: Mutex<Vec<NetEvent>>,
    /// Client operations, in completion order.
    pub ops: Mutex<Vec<ClientOp>>,
    /// WAL applies on replicas.
    pub wal_applies: Mutex<Vec<WalApplyEvent>>,
}

impl EventLog {
    /// A log with room for about `ops` client operations, so that recording never stops the
    /// simulation to copy a long list into a bigger one.
    pub fn with_capacity(ops: usize) -> EventLog {
        EventLog {
            statements: Mutex::new(Vec::with_capacity(ops + ops / 8)),
            server_conns: Mutex::default(),
            net: Mutex::new(Vec::with_capacity(ops + ops / 8)),
            ops: Mutex::new(Vec::with_capacity(ops)),
            wal_applies: Mutex::default(),
        }
    }

    /// Appends a server-side statement.
    pub fn statement(&self, event: StatementEvent) {
        push(&self.statements, event);
    }

    /// Appends a server-side connection open or close.
    pub fn server_conn(&self, event: ServerConnEvent) {
        push(&self.server_conns, event);
    }

    /// Appends a network record.
    pub fn net(&self, event: NetEvent) {
        push(&self.net, event);
    }

    /// Appends a client operation.
    pub fn op(&self, op: ClientOp) {
        push(&self.ops, op);
    }

    /// Appends a WAL apply.
    pub fn wal_apply(&self, event: WalApplyEvent) {
        push(&self.wal_applies, event);
    }

    /// Takes every record out, leaving the log empty (used once the simulation is over).
    pub fn take(&self) -> Events {
        Events {
            statements: take(&self.statements),
            server_conns: take(&self.server_conns),
            net: take(&self.net),
            ops: take(&self.ops),
            wal_applies: take(&self.wal_applies),
        }
    }
}

/// The records of a finished run, owned, for the checkers and the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// Server-side statements, in completion order.
    pub statements: Vec<StatementEvent>,
    /// Server-side connection opens and closes.
    pub server_conns: Vec<ServerConnEvent>,
    /// The application host's network view.
    pub net: Vec<NetEvent>,
    /// Client operations, in completion order.
    pub ops: Vec<ClientOp>,
    /// WAL applies on replicas.
    pub wal_applies: Vec<WalApplyEvent>,
}

fn push<T>(list: &Mutex<Vec<T>>, item: T) {
    // A poisoned lock only means another host panicked; the records are still valid.
    list.lock().unwrap_or_else(|e| e.into_inner()).push(item);
}

fn take<T>(list: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A scheduled fault as it was applied, with what the harness observed of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// Position in `Scenario::faults`.
    pub index: usize,
    /// The fault kind's name (`crash`, `partition`, ...).
    pub kind: &'static str,
    /// The target node.
    pub target: NodeIdx,
    /// When it started.
    pub at_us: Micros,
    /// When it ended (its own `duration`, or a later undo fault); `None` = lasted to the end of the run.
    pub until_us: Option<Micros>,
    /// Whether the harness saw its effect in the recorded evidence.
    pub took_effect: bool,
    /// What was seen (or not seen) that decided `took_effect`, in one line.
    pub evidence: String,
}
