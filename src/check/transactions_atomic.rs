//! `transactions_atomic` (SPEC 6.3): every transaction a client ran ran whole on one connection of
//! its shard's writer, no client read a version that no committed write had made, and no update was
//! lost.
//!
//! The servers' statements are grouped into transactions per connection (see
//! `check::commits`). Then:
//! - each successful transactional client operation must match a committed transaction on one
//!   connection whose write has the operation's row, user and version, that began on a node in its
//!   primary role, and whose `FOR UPDATE` read of the row came first on the same connection;
//! - each committed transaction's write version is exactly one more than its `FOR UPDATE` read
//!   returned when that read found the row (a second locker waited, so nobody wrote the row in
//!   between; in PostgreSQL a read that found no row locked nothing, so it promises nothing);
//! - every autocommit write a client saw succeed had committed by then (it did not run inside a
//!   transaction someone else left open on its connection);
//! - every version a client read (above 0) was made by a committed write, autocommit or
//!   transactional, whose commit had started before the read ended. Comparing with the start of the
//!   commit (when it reached the server) rather than its end keeps the check sound where the
//!   servers' and clients' clocks are only close (real mode): a read that ended before the commit
//!   even began can only have seen uncommitted data.

use std::collections::BTreeMap;

use crate::check::commits::{CommitEdge, ServerTransaction, commit_times, transactions};
use crate::check::{Evidence, InvariantResult, format_ms, node_name};
use crate::record::events::{ClientOp, NodeRole, OpKind};

const KIND: &str = "transactions_atomic";

/// Counts of what broke, with the first example of each.
#[derive(Default)]
struct Findings {
    split: Vec<String>,
    lost_update: Vec<String>,
    dirty_read: Vec<String>,
    unsettled_write: Vec<String>,
}

/// Checks the run's transactions.
pub fn check(evidence: &Evidence) -> InvariantResult {
    let statements = &evidence.events.statements;
    let transactions = transactions(statements);
    let scenario = evidence.scenario;
    let mut findings = Findings::default();

    // (org, key, version) -> earliest start of a commit of a write that made it.
    let committed = commit_times(statements, &transactions, CommitEdge::Start);

    let mut committed_count: u64 = 0;
    // (org, key, user, version) of each committed transaction's write -> its transactions.
    let mut committed_writes: BTreeMap<(i64, i64, i64, i64), Vec<&ServerTransaction>> =
        BTreeMap::new();
    for transaction in &transactions {
        if transaction.committed.is_none() {
            continue;
        }
        committed_count += 1;
        let Some(write) = transaction.write() else {
            continue;
        };
        committed_writes
            .entry((write.org, write.key, write.user, write.version))
            .or_default()
            .push(transaction);
        match transaction.locking_read(write) {
            Some(read) if write.version == read.version + 1 => {}
            // PostgreSQL's FOR UPDATE locks nothing when the row does not exist yet: a second
            // transaction may read "no row" too, then wait on the first one's insert and update
            // its row. Only a locked row promises the next version.
            Some(read) if read.version == 0 => {}
            Some(read) => findings.lost_update.push(format!(
                "{} conn {}: org {} key {} locked at version {} but committed version {}",
                node_name(scenario, transaction.node),
                transaction.conn,
                write.org,
                write.key,
                read.version,
                write.version
            )),
            None => findings.split.push(format!(
                "{} conn {}: committed a write of org {} key {} without locking it first in the \
                 same transaction",
                node_name(scenario, transaction.node),
                transaction.conn,
                write.org,
                write.key
            )),
        }
    }

    let mut client_transactions: u64 = 0;
    for op in evidence
        .events
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Write && op.transaction && op.ok)
    {
        client_transactions += 1;
        let matches = committed_writes
            .get(&(op.org, op.key, op.user, op.version))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let whole = matches.iter().any(|t| {
            t.began_as == Some(NodeRole::Primary)
                && t.statements.iter().all(|s| s.role == NodeRole::Primary)
                && t.write().is_some_and(|w| t.locking_read(w).is_some())
        });
        if !whole {
            findings
                .split
                .push(describe_split(op, matches.first().copied(), scenario));
        }
    }

    // An acknowledged autocommit write must have committed by the time its client saw the answer:
    // one that ran inside a transaction it did not open (a connection handed out mid-transaction)
    // commits later, or never.
    for op in evidence
        .events
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Write && !op.transaction && op.ok && op.version > 0)
    {
        let settled = committed
            .get(&(op.org, op.key, op.version))
            .is_some_and(|&at| at <= op.end_us);
        if !settled {
            findings.unsettled_write.push(format!(
                "client {} wrote org {} key {} version {}, acknowledged at {} ms, {}",
                op.client,
                op.org,
                op.key,
                op.version,
                format_ms(op.end_us),
                match committed.get(&(op.org, op.key, op.version)) {
                    Some(&at) => format!("committed only at {} ms", format_ms(at)),
                    None => "never committed".to_string(),
                }
            ));
        }
    }

    let mut reads: u64 = 0;
    for op in evidence
        .events
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Read && op.ok && op.version > 0)
    {
        reads += 1;
        match committed.get(&(op.org, op.key, op.version)) {
            Some(&at) if at <= op.end_us => {}
            Some(&at) => findings.dirty_read.push(format!(
                "client {} read org {} key {} version {} at {} ms, before its commit at {} ms",
                op.client,
                op.org,
                op.key,
                op.version,
                format_ms(op.end_us),
                format_ms(at)
            )),
            None => findings.dirty_read.push(format!(
                "client {} read org {} key {} version {} at {} ms, which no write committed",
                op.client,
                op.org,
                op.key,
                op.version,
                format_ms(op.end_us)
            )),
        }
    }

    let not_committed = transactions.len() as u64 - committed_count;
    let figures = format!(
        "{client_transactions} client transactions, {committed_count} committed and \
         {not_committed} not committed on the servers, {reads} reads checked"
    );
    let broken = [
        ("split transactions", &findings.split),
        ("lost updates", &findings.lost_update),
        ("reads of uncommitted versions", &findings.dirty_read),
        (
            "writes acknowledged before they committed",
            &findings.unsettled_write,
        ),
    ];
    let failures: Vec<String> = broken
        .iter()
        .filter_map(|(what, list)| {
            let first = list.first()?;
            Some(format!("{} {what} (first: {first})", list.len()))
        })
        .collect();
    if failures.is_empty() {
        InvariantResult::new(KIND, true, format!("0 violations; {figures}"))
    } else {
        InvariantResult::new(KIND, false, format!("{}; {figures}", failures.join("; ")))
    }
}

/// Why a client's committed transaction has no whole server transaction behind it.
fn describe_split(
    op: &ClientOp,
    found: Option<&ServerTransaction>,
    scenario: &crate::scenario::Scenario,
) -> String {
    let row = format!(
        "client {} transaction on org {} key {} (version {}, at {} ms)",
        op.client,
        op.org,
        op.key,
        op.version,
        format_ms(op.start_us)
    );
    match found {
        None => format!("{row}: its write committed in no server transaction"),
        Some(t) => format!(
            "{row}: the transaction on {} conn {} did not run whole on a primary with its lock",
            node_name(scenario, t.node),
            t.conn
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{PRIMARY_1, TestRun, ms};
    use crate::record::events::StatementKind;

    /// A transaction of `client` on `conn` of primary-1 starting at `at` ms: BEGIN, the locking read
    /// of `read`, the write of `read + 1`, and COMMIT if `commit`. Returns the written version.
    fn transaction(
        run: &mut TestRun,
        client: u32,
        conn: u64,
        at: u64,
        read: i64,
        commit: bool,
    ) -> i64 {
        let user = i64::from(client);
        let kinds = [
            (StatementKind::Begin, 0),
            (StatementKind::LockingRead, read),
            (StatementKind::Write, read + 1),
        ];
        for (i, (kind, version)) in kinds.into_iter().enumerate() {
            let s = run.statement(PRIMARY_1, kind, ms(at + i as u64));
            s.conn = conn;
            s.user = user;
            s.version = version;
        }
        if commit {
            run.statement(PRIMARY_1, StatementKind::Commit, ms(at + 3))
                .conn = conn;
            let op = run.op(client, OpKind::Write, ms(at), ms(at + 4));
            op.transaction = true;
            op.version = read + 1;
        }
        read + 1
    }

    fn read(run: &mut TestRun, client: u32, at: u64, version: i64) {
        run.op(client, OpKind::Read, ms(at), ms(at + 1)).version = version;
    }

    #[test]
    fn whole_committed_transactions_and_reads_of_committed_versions_pass() {
        let mut run = TestRun::new();
        transaction(&mut run, 1, 7, 10, 0, true);
        transaction(&mut run, 2, 8, 20, 1, true);
        read(&mut run, 3, 30, 2);
        let result = check(&run.evidence());
        assert!(result.passed, "{}", result.detail);
        assert!(
            result.detail.contains("2 client transactions, 2 committed"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn a_read_of_a_version_whose_transaction_never_committed_fails() {
        let mut run = TestRun::new();
        let version = transaction(&mut run, 1, 7, 10, 4, false);
        read(&mut run, 2, 12, version);
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert!(
            result.detail.contains("1 reads of uncommitted versions"),
            "{}",
            result.detail
        );
        assert!(
            result.detail.contains("which no write committed"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn a_read_that_ends_before_the_commit_fails() {
        let mut run = TestRun::new();
        let version = transaction(&mut run, 1, 7, 10, 4, true);
        // The commit started at 13 ms: this read ended at 12 ms.
        read(&mut run, 2, 11, version);
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert!(
            result.detail.contains("before its commit"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn a_committed_version_not_one_above_its_locked_read_is_a_lost_update() {
        let mut run = TestRun::new();
        transaction(&mut run, 1, 7, 10, 4, true);
        // The write's version is bumped as if another writer slipped in after the lock.
        run.events.statements[2].version = 7;
        run.events.ops[0].version = 7;
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert!(
            result.detail.contains("1 lost updates"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn a_write_outside_the_transaction_that_locked_the_row_is_a_split_transaction() {
        let mut run = TestRun::new();
        run.statement(PRIMARY_1, StatementKind::Begin, ms(10)).conn = 7;
        let lock = run.statement(PRIMARY_1, StatementKind::LockingRead, ms(11));
        lock.conn = 7;
        lock.user = 1;
        // The write went out on another connection, in autocommit.
        let write = run.statement(PRIMARY_1, StatementKind::Write, ms(12));
        write.conn = 8;
        write.user = 1;
        write.version = 1;
        run.statement(PRIMARY_1, StatementKind::Commit, ms(13)).conn = 7;
        let op = run.op(1, OpKind::Write, ms(10), ms(14));
        op.transaction = true;
        op.version = 1;
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert!(
            result.detail.contains("1 split transactions"),
            "{}",
            result.detail
        );
        assert!(
            result.detail.contains("committed in no server transaction"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn an_autocommit_write_inside_a_leftover_transaction_is_caught() {
        let mut run = TestRun::new();
        // Conn 7 began a transaction whose client gave up; the connection then served an
        // autocommit write, which the server ran inside that transaction.
        run.statement(PRIMARY_1, StatementKind::Begin, ms(10)).conn = 7;
        let write = run.statement(PRIMARY_1, StatementKind::Write, ms(20));
        (write.conn, write.user, write.version) = (7, 2, 1);
        run.op(2, OpKind::Write, ms(19), ms(22)).version = 1;
        let never = check(&run.evidence());
        assert!(!never.passed);
        assert!(never.detail.contains("never committed"), "{}", never.detail);
        // A later BEGIN on the connection changes nothing; its COMMIT commits the write, late.
        run.statement(PRIMARY_1, StatementKind::Begin, ms(30)).conn = 7;
        run.statement(PRIMARY_1, StatementKind::Commit, ms(40)).conn = 7;
        let late = check(&run.evidence());
        assert!(!late.passed);
        assert!(
            late.detail.contains("committed only at 40 ms"),
            "{}",
            late.detail
        );
        // The same write in autocommit passes.
        let mut run = TestRun::new();
        run.statement(PRIMARY_1, StatementKind::Write, ms(20))
            .version = 1;
        run.op(2, OpKind::Write, ms(19), ms(22)).version = 1;
        assert!(check(&run.evidence()).passed);
    }

    #[test]
    fn a_transaction_begun_on_a_replica_is_not_whole() {
        let mut run = TestRun::new();
        transaction(&mut run, 1, 7, 10, 0, true);
        run.events.statements[0].role = NodeRole::Replica;
        let result = check(&run.evidence());
        assert!(!result.passed, "{}", result.detail);
        assert!(
            result.detail.contains("did not run whole on a primary"),
            "{}",
            result.detail
        );
        // A replica's statement counts too.
        let mut run = TestRun::new();
        transaction(&mut run, 1, 7, 10, 0, true);
        run.events.statements[1].role = NodeRole::Replica;
        assert!(!check(&run.evidence()).passed);
    }
}
