//! A simulated PostgreSQL server: speaks the real wire protocol (pgwire) to tokio-postgres clients,
//! serves the one `replisim_kv` table of SPEC section 2a with the transactions and row locks of
//! SPEC 6.3, and streams its WAL to replicas, all over turmoil's simulated TCP.
//!
//! Map of the files:
//! - `state`: [`SimNode`], the durable state of one node (table, WAL, positions, fault knobs), and
//!   its in-memory open transactions and row locks.
//! - `server`: the host body: the listeners, the WAL receiver and the replay task.
//! - `connection`: the message loop of one client connection, and its open/close events.
//! - `reply_buffer`: holds a connection's answers until `Sync`, as PostgreSQL's output buffer does.
//! - `backend`: the pgwire handlers of one connection (startup, simple and extended protocol).
//! - `unnamed_portal`: `Bind` to and full `Execute` of the unnamed portal, answered without
//!   pgwire's portal machinery, and the `Sync` after them (nearly every statement takes this path).
//! - `cancel`: CancelRequest: which connection runs a statement a cancel may end.
//! - `sql`: recognition of the supported statements in SQL text.
//! - `statement`: the statements, their parameter types and result columns.
//! - `execute`: runs a statement against the node and logs it to the event log.
//! - `answer`: what a statement answers (its row and command tag), and that answer as pgwire's
//!   handlers take it.
//! - `value`: result values and their text and binary wire encodings.
//! - `wal_frame`: the framing of the WAL stream between nodes.
//! - `wal_sender` / `wal_receiver` / `replay`: the upstream side, the downstream side, and the
//!   delayed apply of received records.
//! - `clock`: simulated time.
//! - `error`: [`NodeError`].
//!
//! LSNs are byte-like positions: the WAL starts at [`LSN_START`] and every commit advances it by
//! [`LSN_STEP`], so `pg_wal_lsn_diff` between two nodes is a byte count as in PostgreSQL.

mod answer;
mod backend;
mod cancel;
mod clock;
mod connection;
mod error;
mod execute;
mod replay;
mod reply_buffer;
mod server;
mod sql;
mod state;
mod statement;
mod unnamed_portal;
mod value;
mod wal_frame;
mod wal_receiver;
mod wal_sender;

use std::time::Duration;

use crate::record::events::StatementKind;

/// How a simulated node classifies statement `text` (read, write, probe, or unsupported): real mode
/// sorts what crossed its proxies by the same rules.
pub(crate) fn classify(text: &str) -> StatementKind {
    sql::parse(text).kind()
}

pub use error::NodeError;
pub use state::{KvRow, SimNode};

/// TCP port of the SQL service.
pub const PG_PORT: u16 = 5432;

/// TCP port of the WAL stream between simulated nodes.
pub const WAL_PORT: u16 = 5433;

/// LSN of an empty WAL (what every node starts at, like a fresh cluster's `0/3000000`).
pub const LSN_START: u64 = 0x0300_0000;

/// Bytes of WAL one commit adds: the LSN after the n-th commit is `LSN_START + n * LSN_STEP`.
pub const LSN_STEP: u64 = 128;

/// `application_name` of the router's health checks and lag probes.
pub const HEALTH_APPLICATION_NAME: &str = "replisim-health";

/// How fast a node answers and how far its replicas trail it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NodeModel {
    /// Server-side service time of one statement.
    pub query_time: Duration,
    /// Replicas: the whole time from a commit on the primary to its apply here.
    pub replication_delay: Duration,
}
