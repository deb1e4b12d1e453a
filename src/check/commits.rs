//! Which workload writes committed, and when: autocommit writes when they ran, writes inside a
//! transaction when its `COMMIT` ran (never, if it did not commit). Shared by the checkers that
//! judge versions by their commit (`max_staleness`, `transactions_atomic`).
//!
//! The servers' statements are grouped into transactions per connection: a connection runs one
//! statement at a time, so its statements in record order are the order it ran them in. A `BEGIN`
//! opens a transaction; a `COMMIT` that committed closes it as committed; a `ROLLBACK`, the end of
//! the connection, or the end of the records closes it as not committed.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::events::{Micros, NodeIdx, NodeRole, Purpose, StatementEvent, StatementKind};

/// One transaction as a server ran it.
#[derive(Debug, Default)]
pub(crate) struct ServerTransaction<'a> {
    pub(crate) node: NodeIdx,
    pub(crate) conn: u64,
    /// The role the node had when `BEGIN` ran.
    pub(crate) began_as: Option<NodeRole>,
    pub(crate) statements: Vec<&'a StatementEvent>,
    /// The `COMMIT`, if it committed.
    pub(crate) committed: Option<&'a StatementEvent>,
}

impl ServerTransaction<'_> {
    /// The successful write (the SPEC 6.3 transaction has one).
    pub(crate) fn write(&self) -> Option<&StatementEvent> {
        self.statements
            .iter()
            .copied()
            .find(|s| s.kind == StatementKind::Write && s.sqlstate.is_none())
    }

    /// The successful `FOR UPDATE` read of the row `write` touched, before it.
    pub(crate) fn locking_read(&self, write: &StatementEvent) -> Option<&StatementEvent> {
        self.statements
            .iter()
            .copied()
            .take_while(|s| !std::ptr::eq(*s, write))
            .find(|s| {
                s.kind == StatementKind::LockingRead
                    && s.sqlstate.is_none()
                    && (s.org, s.key) == (write.org, write.key)
            })
    }
}

/// Splits every connection's workload statements into transactions.
pub(crate) fn transactions<'a>(statements: &'a [StatementEvent]) -> Vec<ServerTransaction<'a>> {
    let mut open: BTreeMap<(NodeIdx, u64), ServerTransaction<'a>> = BTreeMap::new();
    let mut done = Vec::new();
    for statement in statements.iter().filter(|s| s.purpose == Purpose::Workload) {
        let key = (statement.node, statement.conn);
        match (statement.kind, &statement.sqlstate) {
            // A BEGIN inside a transaction changes nothing, as in PostgreSQL.
            (StatementKind::Begin, None) if open.contains_key(&key) => {}
            (StatementKind::Begin, None) => {
                open.insert(
                    key,
                    ServerTransaction {
                        node: statement.node,
                        conn: statement.conn,
                        began_as: Some(statement.role),
                        ..ServerTransaction::default()
                    },
                );
            }
            (StatementKind::Commit, None) => {
                if let Some(mut transaction) = open.remove(&key) {
                    transaction.committed = Some(statement);
                    done.push(transaction);
                }
            }
            (StatementKind::Rollback, _) => {
                if let Some(transaction) = open.remove(&key) {
                    done.push(transaction);
                }
            }
            _ => {
                if let Some(transaction) = open.get_mut(&key) {
                    transaction.statements.push(statement);
                }
            }
        }
    }
    // Never ended: the connection died or the run stopped first; either way it did not commit.
    done.extend(open.into_values());
    done
}

/// Which instant of the committing statement counts as the commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommitEdge {
    /// When it reached the server: no client can have seen the version committed before then.
    Start,
    /// When the server answered it: every client may have seen the version committed from then on.
    End,
}

/// The earliest commit of each (org, key, version) the workload wrote.
pub(crate) fn commit_times(
    statements: &[StatementEvent],
    transactions: &[ServerTransaction],
    edge: CommitEdge,
) -> BTreeMap<(i64, i64, i64), Micros> {
    let at = |s: &StatementEvent| match edge {
        CommitEdge::Start => s.start_us,
        CommitEdge::End => s.end_us,
    };
    let mut commits: BTreeMap<(i64, i64, i64), Micros> = BTreeMap::new();
    let mut note = |write: &StatementEvent, when: Micros| {
        let earliest = commits
            .entry((write.org, write.key, write.version))
            .or_insert(when);
        *earliest = (*earliest).min(when);
    };
    let inside: BTreeSet<*const StatementEvent> = transactions
        .iter()
        .flat_map(|t| t.statements.iter().map(|s| *s as *const StatementEvent))
        .collect();
    let successful_write =
        |s: &StatementEvent| s.kind == StatementKind::Write && s.sqlstate.is_none();
    for write in statements.iter().filter(|s| {
        s.purpose == Purpose::Workload
            && successful_write(s)
            && !inside.contains(&(*s as *const StatementEvent))
    }) {
        note(write, at(write));
    }
    for transaction in transactions {
        let Some(commit) = transaction.committed else {
            continue;
        };
        for write in transaction
            .statements
            .iter()
            .filter(|s| successful_write(s))
        {
            note(write, at(commit));
        }
    }
    commits
}
