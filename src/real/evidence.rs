//! The evidence of a real run, in the simulation's record types so that the same checkers judge it:
//! what crossed each node's fault proxy (connects, closes, every statement with its Bind
//! parameters and `application_name`), the node's role at that moment, and what the clients saw.
//!
//! Outcomes come from the server's own answers where the proxy saw them: the last statement of a
//! successful operation on the node that served it succeeded (with the operation's row version
//! and end); any other statement the server completed was executed (version 0: its client never
//! learnt the row version); one the server refused carries the server's SQLSTATE (so 25006 is
//! what a read-only server said, never assumed from its role). A statement with no answer (its
//! connection or server ended first) failed with the SQLSTATE the router reported for that node,
//! else 08006. Statements held by a partition are not counted as executed (they are still network
//! attempts). Statements whose execution the proxy cannot know (no answer, or held) are tallied
//! per node for the cross-check against the servers' counts.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use crate::real::backend::StatementAnswer;
use crate::real::clock::RunClock;
use crate::real::driver::{DriverRecords, FailedOp};
use crate::real::proxy::{ProxyRecord, ProxyRecordKind};
use crate::record::events::{
    ClientOp, Events, Micros, NetEvent, NetKind, NodeIdx, NodeRole, OpKind, Purpose,
    ServerConnEvent, StatementEvent, StatementKind,
};
use crate::router::WORKLOAD_APPLICATION_NAME;
use crate::router::health::PROBE_APPLICATION_NAME;
use crate::scenario::Scenario;

/// SQLSTATE of a write refused by a server in recovery or fenced read-only.
pub const READ_ONLY_SQLSTATE: &str = "25006";
/// SQLSTATE assumed for an attempt that failed without a server answer (connection failure).
const CONNECTION_FAILURE_SQLSTATE: &str = "08006";

/// What one node's proxy recorded, and when it started.
#[derive(Clone, Debug)]
pub struct NodeRecords {
    /// The node (index in `Scenario::nodes`).
    pub node: NodeIdx,
    /// The proxy's start: a record at `at` happened at `started + at`.
    pub started: Instant,
    /// The records, in order.
    pub records: Vec<ProxyRecord>,
}

/// The evidence, and how much of it had to be inferred.
#[derive(Clone, Debug, Default)]
pub struct Built {
    /// The records for the checkers and the report.
    pub events: Events,
    /// Workload statements that matched no client operation (counted as executed, version 0).
    pub unmatched_statements: u64,
    /// Workload statements that crossed the proxy while the link was partitioned.
    pub held_statements: u64,
    /// Per node, workload reads and writes the server may or may not have run.
    pub uncertain: BTreeMap<NodeIdx, Uncertain>,
}

/// Workload statements of one node that the server may or may not have run: no answer crossed
/// the proxy (the connection was reset or the server stopped first), or a partition held them
/// (the proxy delivers held bytes at the heal if the connection survived).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uncertain {
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
}

impl Uncertain {
    fn add(&mut self, kind: StatementKind) {
        match kind {
            // pg_stat_statements counts the `FOR UPDATE` select with the reads.
            StatementKind::Read | StatementKind::LockingRead => self.reads += 1,
            StatementKind::Write => self.writes += 1,
            _ => {}
        }
    }
}

/// One workload or check statement that crossed a proxy, before its outcome is known.
struct Crossing {
    node: NodeIdx,
    conn: u64,
    at_us: Micros,
    purpose: Purpose,
    kind: StatementKind,
    params: [i64; 3],
    answer: StatementAnswer,
}

/// A node's role at `at_us`: its initial role, changed by every promotion in its shard before then
/// (the promoted node becomes primary; the shard's previous primary is fenced read-only).
pub fn role_at(
    scenario: &Scenario,
    promotions: &[(Micros, NodeIdx)],
    node: NodeIdx,
    at_us: Micros,
) -> NodeRole {
    let Some(model) = scenario.nodes.get(node) else {
        return NodeRole::Replica;
    };
    let mut primary = scenario.shards.get(model.shard).map(|s| s.primary);
    for &(_, promoted) in promotions.iter().filter(|(when, _)| *when <= at_us) {
        let same_shard = scenario.nodes.get(promoted).map(|n| n.shard) == Some(model.shard);
        if same_shard {
            primary = Some(promoted);
        }
    }
    if primary == Some(node) {
        NodeRole::Primary
    } else {
        NodeRole::Replica
    }
}

/// A statement's kind by the simulated node's rules, so that the router's position queries on
/// workload connections (read-your-writes) count as probes, as they do in the simulation.
fn classify(text: &str) -> StatementKind {
    crate::sim::node::classify(text)
}

fn purpose_of(name: Option<&str>) -> Option<Purpose> {
    match name {
        Some(WORKLOAD_APPLICATION_NAME) => Some(Purpose::Workload),
        Some(PROBE_APPLICATION_NAME) => Some(Purpose::Check),
        // Unnamed connections are the run's own observations (an SSLRequest and nothing else).
        _ => None,
    }
}

/// Builds the evidence of a finished run.
pub fn build(
    scenario: &Scenario,
    clock: RunClock,
    nodes: &[NodeRecords],
    driver: DriverRecords,
    promotions: &[(Micros, NodeIdx)],
) -> Built {
    let mut built = Built::default();
    let mut crossings = Vec::new();
    for node in nodes {
        network(clock, node, &mut built, &mut crossings);
    }
    let DriverRecords { mut ops, failures } = driver;
    ops.sort_by_key(|op| (op.end_us, op.client, op.start_us));
    let (statements, served_by) =
        statements(scenario, promotions, &ops, &failures, crossings, &mut built);
    built.events.statements = statements;
    // A client of another router (pgpool) does not know which node served it: the statement
    // that answered it says.
    for (op, node) in served_by {
        if let Some(op) = ops.get_mut(op) {
            op.node = Some(node);
        }
    }
    built
        .events
        .statements
        .sort_by_key(|s| (s.end_us, s.start_us, s.node, s.conn));
    built.events.net.sort_by_key(|e| (e.at_us, e.node));
    built
        .events
        .server_conns
        .sort_by_key(|e| (e.at_us, e.node, e.conn, e.open));
    built.events.ops = ops;
    built
}

/// Network and connection records of one node; its statements go to `crossings`.
fn network(clock: RunClock, node: &NodeRecords, built: &mut Built, crossings: &mut Vec<Crossing>) {
    let at_us = |record: &ProxyRecord| clock.us_at(node.started + record.at);
    let mut purposes: BTreeMap<u64, Purpose> = BTreeMap::new();
    let mut failed: BTreeSet<u64> = BTreeSet::new();
    for record in &node.records {
        match &record.kind {
            ProxyRecordKind::Connect => {
                if let Some(purpose) = purpose_of(record.application_name.as_deref()) {
                    purposes.insert(record.conn, purpose);
                }
            }
            ProxyRecordKind::ConnectFailed => {
                failed.insert(record.conn);
            }
            _ => {}
        }
    }
    for record in &node.records {
        let Some(&purpose) = purposes.get(&record.conn) else {
            continue;
        };
        let at = at_us(record);
        let net = |kind| NetEvent {
            at_us: at,
            node: node.node,
            purpose,
            kind,
            stream: record.conn,
        };
        let conn = |open| ServerConnEvent {
            node: node.node,
            conn: record.conn,
            purpose,
            at_us: at,
            open,
            stream: record.conn,
        };
        match &record.kind {
            ProxyRecordKind::Connect => {
                built.events.net.push(net(NetKind::Connect));
                if !failed.contains(&record.conn) {
                    built.events.server_conns.push(conn(true));
                }
            }
            ProxyRecordKind::ConnectFailed => built.events.net.push(net(NetKind::ConnectFailed)),
            ProxyRecordKind::Closed => {
                if !failed.contains(&record.conn) {
                    built.events.server_conns.push(conn(false));
                }
            }
            ProxyRecordKind::Statement {
                text,
                params,
                answer,
                ..
            } => {
                built.events.net.push(net(NetKind::Statement));
                if record.partitioned {
                    if purpose == Purpose::Workload {
                        built.held_statements += 1;
                        built
                            .uncertain
                            .entry(node.node)
                            .or_default()
                            .add(classify(text));
                    }
                    continue;
                }
                let param = |i: usize| params.get(i).copied().flatten().unwrap_or(0);
                crossings.push(Crossing {
                    node: node.node,
                    conn: record.conn,
                    at_us: at,
                    purpose,
                    kind: classify(text),
                    params: [param(0), param(1), param(2)],
                    answer: answer.clone(),
                });
            }
        }
    }
}

/// Attributes every crossing to a client operation and gives it an outcome. Also returns, for each
/// successful operation whose client did not know its node, the node whose answer served it.
fn statements(
    scenario: &Scenario,
    promotions: &[(Micros, NodeIdx)],
    ops: &[ClientOp],
    failures: &[FailedOp],
    crossings: Vec<Crossing>,
    built: &mut Built,
) -> (Vec<StatementEvent>, Vec<(usize, NodeIdx)>) {
    // (kind, org, key, user) -> operations, by start.
    let mut by_identity: BTreeMap<(bool, i64, i64, i64), Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        by_identity
            .entry((op.kind == OpKind::Write, op.org, op.key, op.user))
            .or_default()
            .push(i);
    }
    for list in by_identity.values_mut() {
        list.sort_by_key(|&i| ops.get(i).map(|op| op.start_us));
    }
    let failure_of: BTreeMap<(u32, Micros), &FailedOp> = failures
        .iter()
        .map(|f| ((f.client, f.start_us), f))
        .collect();

    let mut events = Vec::with_capacity(crossings.len());
    // The server's answer of each workload statement, by its index in `events`.
    let mut answers: Vec<StatementAnswer> = Vec::new();
    let mut answer_of: BTreeMap<usize, usize> = BTreeMap::new();
    // Per operation, the indexes of its statements in `events`, in time order.
    let mut of_op: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    // Connections inside a transaction (a BEGIN succeeded, no COMMIT or ROLLBACK yet), and the
    // version each transaction's write returned, by its index in `events`: it is the write's
    // version even when its client never learnt it (the transaction may still have committed).
    let mut in_transaction: BTreeSet<(NodeIdx, u64)> = BTreeSet::new();
    let mut returned_in_transaction: BTreeMap<usize, i64> = BTreeMap::new();
    for crossing in crossings {
        let role = role_at(scenario, promotions, crossing.node, crossing.at_us);
        let on_conn = (crossing.node, crossing.conn);
        match (crossing.kind, &crossing.answer) {
            (StatementKind::Begin, StatementAnswer::Completed | StatementAnswer::Returned(_)) => {
                in_transaction.insert(on_conn);
            }
            (StatementKind::Commit | StatementKind::Rollback, _) => {
                in_transaction.remove(&on_conn);
            }
            (StatementKind::Write, StatementAnswer::Returned(version))
                if in_transaction.contains(&on_conn) =>
            {
                returned_in_transaction.insert(events.len(), *version);
            }
            _ => {}
        }
        let [org, key, user] = crossing.params;
        let mut event = StatementEvent {
            node: crossing.node,
            conn: crossing.conn,
            purpose: crossing.purpose,
            kind: crossing.kind,
            role,
            org,
            key,
            user,
            start_us: crossing.at_us,
            end_us: crossing.at_us,
            version: 0,
            sqlstate: None,
            lsn: 0,
        };
        let workload_op = matches!(crossing.kind, StatementKind::Read | StatementKind::Write)
            && crossing.purpose == Purpose::Workload;
        if !workload_op {
            event.sqlstate = match (crossing.kind, &crossing.answer) {
                (StatementKind::Unsupported, _) => Some("0A000".to_string()),
                // A transaction's statements are judged by their own answers (SPEC 6.3).
                (
                    StatementKind::Begin
                    | StatementKind::Commit
                    | StatementKind::Rollback
                    | StatementKind::LockingRead,
                    answer,
                ) => match answer {
                    StatementAnswer::Completed | StatementAnswer::Returned(_) => None,
                    StatementAnswer::Failed(sqlstate) => Some(sqlstate.to_string()),
                    StatementAnswer::Unanswered => Some(CONNECTION_FAILURE_SQLSTATE.to_string()),
                },
                _ => None,
            };
            if let (StatementKind::LockingRead, StatementAnswer::Returned(version)) =
                (crossing.kind, &crossing.answer)
            {
                event.version = *version;
            }
            if crossing.kind == StatementKind::LockingRead
                && crossing.purpose == Purpose::Workload
                && crossing.answer == StatementAnswer::Unanswered
            {
                built
                    .uncertain
                    .entry(crossing.node)
                    .or_default()
                    .add(crossing.kind);
            }
            events.push(event);
            continue;
        }
        if crossing.answer == StatementAnswer::Unanswered {
            built
                .uncertain
                .entry(crossing.node)
                .or_default()
                .add(crossing.kind);
        }
        answers.push(crossing.answer.clone());
        let identity = (crossing.kind == StatementKind::Write, org, key, user);
        let op = by_identity.get(&identity).and_then(|list| {
            list.iter().copied().find(|&i| {
                ops.get(i)
                    .is_some_and(|op| op.start_us <= crossing.at_us && crossing.at_us <= op.end_us)
            })
        });
        match op {
            Some(i) => of_op.entry(i).or_default().push(events.len()),
            None => {
                built.unmatched_statements += 1;
                event.sqlstate = match &crossing.answer {
                    StatementAnswer::Completed | StatementAnswer::Returned(_) => None,
                    StatementAnswer::Failed(sqlstate) => Some(sqlstate.to_string()),
                    StatementAnswer::Unanswered => Some(CONNECTION_FAILURE_SQLSTATE.to_string()),
                };
                if let Some(&version) = returned_in_transaction.get(&events.len()) {
                    event.version = version;
                }
            }
        }
        answer_of.insert(events.len(), answers.len() - 1);
        events.push(event);
    }

    // A connection runs one statement at a time: each statement ended before the next one on its
    // connection reached the server (a transaction's write before its COMMIT).
    let mut next_on_conn: Vec<Option<Micros>> = vec![None; events.len()];
    let mut later: BTreeMap<(NodeIdx, u64), Micros> = BTreeMap::new();
    for (i, event) in events.iter().enumerate().rev() {
        if let Some(next) = next_on_conn.get_mut(i) {
            *next = later.get(&(event.node, event.conn)).copied();
        }
        later.insert((event.node, event.conn), event.start_us);
    }
    let mut served_by = Vec::new();
    for (op_index, statement_indexes) in &of_op {
        let Some(op) = ops.get(*op_index) else {
            continue;
        };
        let failure = failure_of.get(&(op.client, op.start_us));
        let served = if op.ok && op.node.is_none() {
            // The last of its statements that a server answered successfully.
            let inferred = statement_indexes.iter().rev().copied().find(|s| {
                matches!(
                    answer_of.get(s).and_then(|&a| answers.get(a)),
                    Some(StatementAnswer::Completed | StatementAnswer::Returned(_))
                )
            });
            if let Some(node) = inferred.and_then(|s| events.get(s)).map(|e| e.node) {
                served_by.push((*op_index, node));
            }
            inferred
        } else {
            statement_indexes
                .iter()
                .rev()
                .copied()
                .find(|&s| op.ok && events.get(s).map(|e| Some(e.node)) == Some(op.node))
        };
        for (position, &s) in statement_indexes.iter().enumerate() {
            let next_at = statement_indexes
                .get(position + 1)
                .and_then(|&n| events.get(n))
                .map(|e| e.start_us);
            let Some(event) = events.get_mut(s) else {
                continue;
            };
            let mut end = next_at.unwrap_or(op.end_us);
            if let Some(next) = next_on_conn.get(s).copied().flatten() {
                end = end.min(next);
            }
            event.end_us = end.max(event.start_us);
            if Some(s) == served {
                event.version = op.version;
                continue;
            }
            let answer = answer_of.get(&s).and_then(|&a| answers.get(a));
            event.sqlstate = match answer {
                Some(StatementAnswer::Completed | StatementAnswer::Returned(_)) => {
                    if let Some(&version) = returned_in_transaction.get(&s) {
                        event.version = version;
                    }
                    None
                }
                Some(StatementAnswer::Failed(sqlstate)) => Some(sqlstate.to_string()),
                Some(StatementAnswer::Unanswered) | None => Some(
                    failure
                        .filter(|f| f.node == Some(event.node))
                        .and_then(|f| f.sqlstate.clone())
                        .unwrap_or_else(|| CONNECTION_FAILURE_SQLSTATE.to_string()),
                ),
            };
        }
    }
    (events, served_by)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{REPLICA_1, REPLICA_2, TestRun, ms};
    use crate::real::frames::StatementMessage;
    use crate::record::workload::{READ_SQL, WRITE_SQL};
    use std::sync::Arc;

    #[test]
    fn a_promotion_moves_the_primary_role_from_then_on() {
        let run = TestRun::new();
        let scenario = &run.scenario;
        let shard = &scenario.shards[0];
        let (old, new) = (shard.primary, shard.replicas[0]);
        let promotions = [(5_000, new)];
        assert_eq!(
            role_at(scenario, &promotions, old, 4_999),
            NodeRole::Primary
        );
        assert_eq!(
            role_at(scenario, &promotions, new, 4_999),
            NodeRole::Replica
        );
        assert_eq!(
            role_at(scenario, &promotions, old, 5_000),
            NodeRole::Replica
        );
        assert_eq!(
            role_at(scenario, &promotions, new, 5_000),
            NodeRole::Primary
        );
    }

    fn record(at_ms: u64, conn: u64, kind: ProxyRecordKind) -> ProxyRecord {
        ProxyRecord {
            at: std::time::Duration::from_millis(at_ms),
            conn,
            application_name: Some(Arc::from(WORKLOAD_APPLICATION_NAME)),
            partitioned: false,
            kind,
        }
    }

    fn statement(text: &str, org: i64, key: i64, user: i64) -> ProxyRecordKind {
        answered(text, org, key, user, StatementAnswer::Completed)
    }

    fn answered(
        text: &str,
        org: i64,
        key: i64,
        user: i64,
        answer: StatementAnswer,
    ) -> ProxyRecordKind {
        ProxyRecordKind::Statement {
            message: StatementMessage::Execute,
            text: Arc::from(text),
            params: Arc::from([Some(org), Some(key), Some(user)].as_slice()),
            answer,
        }
    }

    fn refused() -> StatementAnswer {
        StatementAnswer::Failed(Arc::from(READ_ONLY_SQLSTATE))
    }

    fn op(kind: OpKind, start_ms: u64, end_ms: u64, node: Option<NodeIdx>) -> ClientOp {
        ClientOp {
            client: 3,
            user: 3,
            org: 10,
            key: 4,
            kind,
            prefer_replica: true,
            transaction: false,
            start_us: ms(start_ms),
            end_us: ms(end_ms),
            ok: node.is_some(),
            node,
            version: 7,
            error: node.is_none().then(|| "failed".to_string()),
        }
    }

    #[test]
    fn the_serving_attempt_succeeds_and_the_others_failed() {
        let run = TestRun::new();
        let clock = RunClock::start();
        let on = |node: NodeIdx, records: Vec<ProxyRecord>| NodeRecords {
            node,
            started: clock.zero(),
            records,
        };
        let nodes = [
            // A read tried on replica-2 first (its connection broke), then served by replica-1.
            on(
                REPLICA_2,
                vec![
                    record(9, 1, ProxyRecordKind::Connect),
                    record(
                        10,
                        1,
                        answered(READ_SQL, 10, 4, 3, StatementAnswer::Unanswered),
                    ),
                    record(11, 1, ProxyRecordKind::Closed),
                ],
            ),
            on(
                REPLICA_1,
                vec![
                    record(9, 1, ProxyRecordKind::Connect),
                    record(12, 1, statement(READ_SQL, 10, 4, 3)),
                    // A write that reached a replica: the server refused it.
                    record(30, 1, answered(WRITE_SQL, 10, 4, 3, refused())),
                ],
            ),
        ];
        let driver = DriverRecords {
            ops: vec![
                op(OpKind::Read, 5, 15, Some(REPLICA_1)),
                op(OpKind::Write, 25, 35, None),
            ],
            failures: vec![FailedOp {
                client: 3,
                start_us: ms(25),
                node: Some(REPLICA_1),
                sqlstate: Some(READ_ONLY_SQLSTATE.to_string()),
            }],
        };
        let built = build(&run.scenario, clock, &nodes, driver, &[]);
        let outcomes: Vec<(NodeIdx, StatementKind, Option<&str>, i64, Micros)> = built
            .events
            .statements
            .iter()
            .map(|s| (s.node, s.kind, s.sqlstate.as_deref(), s.version, s.end_us))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (REPLICA_2, StatementKind::Read, Some("08006"), 0, ms(12)),
                (REPLICA_1, StatementKind::Read, None, 7, ms(15)),
                (REPLICA_1, StatementKind::Write, Some("25006"), 0, ms(35)),
            ]
        );
        assert_eq!(built.unmatched_statements, 0);
        assert_eq!(
            built.uncertain.get(&REPLICA_2),
            Some(&Uncertain {
                reads: 1,
                writes: 0
            })
        );
        assert_eq!(built.uncertain.get(&REPLICA_1), None);
        assert_eq!(built.events.net.len(), 5);
        let opens = built.events.server_conns.iter().filter(|c| c.open).count();
        assert_eq!((opens, built.events.server_conns.len()), (2, 3));
    }

    /// 25006 used to be stamped on every failed write that reached a non-primary, whatever the
    /// server said; now it is what the server answered.
    #[test]
    fn read_only_refusals_come_from_the_server_not_the_role() {
        let run = TestRun::new();
        let clock = RunClock::start();
        let primary = run.scenario.shards[0].primary;
        let nodes = [
            NodeRecords {
                node: REPLICA_1,
                started: clock.zero(),
                records: vec![
                    record(1, 1, ProxyRecordKind::Connect),
                    // Its connection was reset before any answer: no 25006 is assumed.
                    record(
                        2,
                        1,
                        answered(WRITE_SQL, 10, 4, 3, StatementAnswer::Unanswered),
                    ),
                ],
            },
            NodeRecords {
                node: primary,
                started: clock.zero(),
                records: vec![
                    record(1, 1, ProxyRecordKind::Connect),
                    // A primary (by the scenario's roles) that said 25006: fenced by hand.
                    record(3, 1, answered(WRITE_SQL, 10, 4, 3, refused())),
                ],
            },
        ];
        let driver = DriverRecords {
            ops: vec![op(OpKind::Write, 0, 5, None)],
            failures: Vec::new(),
        };
        let built = build(&run.scenario, clock, &nodes, driver, &[]);
        let outcomes: Vec<(NodeIdx, NodeRole, Option<&str>)> = built
            .events
            .statements
            .iter()
            .map(|s| (s.node, s.role, s.sqlstate.as_deref()))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (REPLICA_1, NodeRole::Replica, Some("08006")),
                (primary, NodeRole::Primary, Some("25006")),
            ]
        );
        assert_eq!(built.uncertain.get(&REPLICA_1).map(|u| u.writes), Some(1));
    }

    #[test]
    fn statements_are_classified_as_the_simulated_node_does() {
        assert_eq!(classify(READ_SQL), StatementKind::Read);
        assert_eq!(classify(WRITE_SQL), StatementKind::Write);
        assert_eq!(classify("SELECT pg_is_in_recovery()"), StatementKind::Probe);
        assert_eq!(
            classify(crate::router::causal::REPLAY_LSN_SQL),
            StatementKind::Probe,
            "a session's position query on a workload connection"
        );
        assert_eq!(classify("SELECT 1"), StatementKind::Unsupported);
        assert_eq!(classify("BEGIN"), StatementKind::Begin);
        assert_eq!(classify("COMMIT"), StatementKind::Commit);
        assert_eq!(classify("ROLLBACK"), StatementKind::Rollback);
        assert_eq!(
            classify(&format!("{READ_SQL} FOR UPDATE")),
            StatementKind::LockingRead
        );
    }

    #[test]
    fn a_transactions_statements_keep_their_answers_and_the_locking_reads_version() {
        let run = TestRun::new();
        let clock = RunClock::start();
        let primary = run.scenario.shards[0].primary;
        let simple = |text: &str, answer| ProxyRecordKind::Statement {
            message: StatementMessage::Query,
            text: Arc::from(text),
            params: Arc::from([].as_slice()),
            answer,
        };
        let locking = format!("{READ_SQL} FOR UPDATE");
        let nodes = [NodeRecords {
            node: primary,
            started: clock.zero(),
            records: vec![
                record(1, 1, ProxyRecordKind::Connect),
                record(2, 1, simple("BEGIN", StatementAnswer::Completed)),
                record(
                    3,
                    1,
                    answered(&locking, 10, 4, 3, StatementAnswer::Returned(6)),
                ),
                record(4, 1, answered(&locking, 10, 4, 3, refused())),
                record(5, 1, simple("COMMIT", StatementAnswer::Completed)),
                record(6, 1, simple("ROLLBACK", StatementAnswer::Unanswered)),
            ],
        }];
        let driver = DriverRecords {
            ops: Vec::new(),
            failures: Vec::new(),
        };
        let built = build(&run.scenario, clock, &nodes, driver, &[]);
        let outcomes: Vec<(StatementKind, Option<&str>, i64, i64)> = built
            .events
            .statements
            .iter()
            .map(|s| (s.kind, s.sqlstate.as_deref(), s.version, s.org))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (StatementKind::Begin, None, 0, 0),
                (StatementKind::LockingRead, None, 6, 10),
                (StatementKind::LockingRead, Some("25006"), 0, 10),
                (StatementKind::Commit, None, 0, 0),
                (StatementKind::Rollback, Some("08006"), 0, 0),
            ]
        );
    }

    /// A transaction's write used to end with its operation (after the session's position query),
    /// so it sorted after its COMMIT and fell out of its transaction; and a write whose client
    /// never saw the COMMIT's outcome lost the version the server returned.
    #[test]
    fn a_transactions_write_ends_before_its_commit_and_keeps_its_returned_version() {
        let run = TestRun::new();
        let clock = RunClock::start();
        let primary = run.scenario.shards[0].primary;
        let simple = |text: &str, answer| ProxyRecordKind::Statement {
            message: StatementMessage::Query,
            text: Arc::from(text),
            params: Arc::from([].as_slice()),
            answer,
        };
        let locking = format!("{READ_SQL} FOR UPDATE");
        let transaction = |conn: u64, at: u64, key: i64, version: i64| {
            vec![
                record(at, conn, ProxyRecordKind::Connect),
                record(at + 1, conn, simple("BEGIN", StatementAnswer::Completed)),
                record(
                    at + 2,
                    conn,
                    answered(&locking, 10, key, 3, StatementAnswer::Returned(version - 1)),
                ),
                record(
                    at + 3,
                    conn,
                    answered(WRITE_SQL, 10, key, 3, StatementAnswer::Returned(version)),
                ),
                record(at + 4, conn, simple("COMMIT", StatementAnswer::Completed)),
                // The session's position query after the commit.
                record(
                    at + 5,
                    conn,
                    simple(
                        crate::router::causal::REPLAY_LSN_SQL,
                        StatementAnswer::Unanswered,
                    ),
                ),
            ]
        };
        let mut records = transaction(1, 0, 4, 7);
        records.extend(transaction(2, 100, 5, 9));
        let nodes = [NodeRecords {
            node: primary,
            started: clock.zero(),
            records,
        }];
        let mut served = op(OpKind::Write, 0, 20, Some(primary));
        served.transaction = true;
        // Committed, but its client failed reading the position after the commit.
        let mut unacknowledged = op(OpKind::Write, 100, 120, None);
        unacknowledged.key = 5;
        unacknowledged.transaction = true;
        let driver = DriverRecords {
            ops: vec![served, unacknowledged],
            failures: Vec::new(),
        };
        let built = build(&run.scenario, clock, &nodes, driver, &[]);
        let per_conn = |conn: u64| -> Vec<(StatementKind, Option<&str>, i64)> {
            built
                .events
                .statements
                .iter()
                .filter(|s| s.conn == conn && s.kind != StatementKind::Probe)
                .map(|s| (s.kind, s.sqlstate.as_deref(), s.version))
                .collect()
        };
        let expected = |version: i64| {
            vec![
                (StatementKind::Begin, None, 0),
                (StatementKind::LockingRead, None, version - 1),
                (StatementKind::Write, None, version),
                (StatementKind::Commit, None, 0),
            ]
        };
        assert_eq!(per_conn(1), expected(7));
        assert_eq!(per_conn(2), expected(9));
        let write = built
            .events
            .statements
            .iter()
            .find(|s| s.conn == 1 && s.kind == StatementKind::Write)
            .map(|s| s.end_us);
        assert_eq!(
            write,
            Some(ms(4)),
            "it ended when its COMMIT reached the server"
        );
        let transactions = crate::check::commits::transactions(&built.events.statements);
        let committed: Vec<(u64, Option<i64>)> = transactions
            .iter()
            .filter(|t| t.committed.is_some())
            .map(|t| (t.conn, t.write().map(|w| w.version)))
            .collect();
        assert_eq!(committed, vec![(1, Some(7)), (2, Some(9))]);
    }

    #[test]
    fn an_unanswered_locking_read_is_an_uncertain_read() {
        let run = TestRun::new();
        let clock = RunClock::start();
        let primary = run.scenario.shards[0].primary;
        let locking = format!("{READ_SQL} FOR UPDATE");
        let nodes = [NodeRecords {
            node: primary,
            started: clock.zero(),
            records: vec![
                record(1, 1, ProxyRecordKind::Connect),
                record(
                    2,
                    1,
                    answered(&locking, 10, 4, 3, StatementAnswer::Unanswered),
                ),
            ],
        }];
        let driver = DriverRecords {
            ops: Vec::new(),
            failures: Vec::new(),
        };
        let built = build(&run.scenario, clock, &nodes, driver, &[]);
        assert_eq!(
            built.uncertain.get(&primary),
            Some(&Uncertain {
                reads: 1,
                writes: 0
            })
        );
    }
}
