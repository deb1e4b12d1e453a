//! The cross-check of a real run: per node, what the evidence inferred (from the fault proxies'
//! records and the servers' answers in them, and from the clients) against what the servers
//! themselves counted (`pg_stat_statements`, their logs). A disagreement beyond its tolerance
//! fails the run.
//!
//! Figures and tolerances, per node:
//! - `reads` and `writes`: workload statements the evidence counts as executed vs the server's
//!   `pg_stat_statements` calls (summed over the snapshots taken before each crash or restart
//!   replisim applied, plus the count at the end). Tolerance: the statements whose execution the
//!   proxy cannot know (no answer crossed it: the connection was reset or the server stopped
//!   first; or a partition held them and may have delivered them at the heal), plus the executed
//!   statements that crossed in a blind window: from [`SNAPSHOT_MARGIN_US`] before a snapshot to
//!   the stop that followed it (the server counted them after the snapshot, and the stop lost
//!   that count). Not compared when a count is unknown (no `pg_stat_statements`, a snapshot
//!   failed, servers given with `--url`).
//! - `refused_writes`: writes the evidence says a server refused with SQLSTATE 25006 (its answer
//!   as it crossed the proxy) vs the refusals in the server's log (which survives restarts).
//!   Tolerance: the node's writes with no answer (a refusal logged but its answer lost).
//! - `refused_writes_seen_by_clients`: writes the clients saw refused with 25006 by the node must
//!   not exceed the refusals in its log (tolerance 0: a client can only see what the server
//!   sent). Fewer is fine: a client sees one error per operation, however many attempts.

use std::fmt::Write;

use serde::Serialize;

use crate::real::evidence::{READ_ONLY_SQLSTATE, Uncertain};
use crate::real::server_counts::{ServerCounts, Snapshot};
use crate::record::events::{Micros, NodeIdx, Purpose, StatementEvent, StatementKind};
use crate::scenario::Scenario;

/// Margin before a snapshot within which an executed statement may have been counted after it
/// (`pg_stat_statements` counts a statement when its executor ends, which for the extended
/// protocol can follow `CommandComplete`, and the snapshot's own session takes time to start).
pub const SNAPSHOT_MARGIN_US: Micros = 100_000;

/// One compared figure.
pub const READS: &str = "reads";
/// One compared figure.
pub const WRITES: &str = "writes";
/// One compared figure.
pub const REFUSED_WRITES: &str = "refused_writes";
/// One compared figure.
pub const REFUSED_SEEN_BY_CLIENTS: &str = "refused_writes_seen_by_clients";

/// What is known of one node, from both sides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFigures {
    /// Node name.
    pub name: String,
    /// Workload reads the evidence counts as executed.
    pub reads_inferred: u64,
    /// Workload writes the evidence counts as executed.
    pub writes_inferred: u64,
    /// Reads the server may or may not have run (no answer, or held by a partition).
    pub reads_uncertain: u64,
    /// Writes the server may or may not have run.
    pub writes_uncertain: u64,
    /// Executed reads that crossed in a blind window (before a snapshot, up to the stop).
    pub reads_blind: u64,
    /// Executed writes that crossed in a blind window.
    pub writes_blind: u64,
    /// Writes refused with 25006, as the server's answers say.
    pub refused_inferred: u64,
    /// Writes the clients saw refused with 25006 by this node.
    pub refused_by_clients: u64,
    /// `pg_stat_statements` reads over every life of the server (`None`: unknown).
    pub reads_server: Option<u64>,
    /// `pg_stat_statements` writes over every life of the server.
    pub writes_server: Option<u64>,
    /// Refusals in the server's log (`None`: no log, e.g. servers given with `--url`).
    pub refused_server: Option<u64>,
}

/// One figure of one node, compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// Node name.
    pub node: String,
    /// Which figure ([`READS`], [`WRITES`], [`REFUSED_WRITES`], [`REFUSED_SEEN_BY_CLIENTS`]).
    pub figure: &'static str,
    /// The evidence's (or, for the clients' figure, the clients') count.
    pub inferred: u64,
    /// The server's count; `null` when it is not known (then the figure is not compared).
    pub server: Option<u64>,
    /// How far apart they may be.
    pub tolerance: u64,
    /// Whether they agree within the tolerance (true when not compared).
    pub agrees: bool,
}

/// The whole cross-check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CrossCheck {
    /// Every compared figure agrees within its tolerance.
    pub passed: bool,
    /// Every figure of every node, in node order.
    pub comparisons: Vec<Comparison>,
}

impl CrossCheck {
    /// The figures that disagree.
    pub fn disagreements(&self) -> impl Iterator<Item = &Comparison> {
        self.comparisons.iter().filter(|c| !c.agrees)
    }
}

/// Compares every node's figures.
pub fn compare(nodes: &[NodeFigures]) -> CrossCheck {
    let mut comparisons = Vec::with_capacity(nodes.len() * 4);
    for n in nodes {
        let both_ways = |figure, inferred: u64, server: Option<u64>, tolerance: u64| Comparison {
            node: n.name.clone(),
            figure,
            inferred,
            server,
            tolerance,
            agrees: server.is_none_or(|server| server.abs_diff(inferred) <= tolerance),
        };
        comparisons.push(both_ways(
            READS,
            n.reads_inferred,
            n.reads_server,
            n.reads_uncertain + n.reads_blind,
        ));
        comparisons.push(both_ways(
            WRITES,
            n.writes_inferred,
            n.writes_server,
            n.writes_uncertain + n.writes_blind,
        ));
        comparisons.push(both_ways(
            REFUSED_WRITES,
            n.refused_inferred,
            n.refused_server,
            n.writes_uncertain,
        ));
        comparisons.push(Comparison {
            node: n.name.clone(),
            figure: REFUSED_SEEN_BY_CLIENTS,
            inferred: n.refused_by_clients,
            server: n.refused_server,
            tolerance: 0,
            agrees: n
                .refused_server
                .is_none_or(|server| n.refused_by_clients <= server),
        });
    }
    CrossCheck {
        passed: comparisons.iter().all(|c| c.agrees),
        comparisons,
    }
}

/// Everything a run knows, for [`node_figures`].
pub struct RunFigures<'a> {
    /// The scenario (its nodes, in order).
    pub scenario: &'a Scenario,
    /// The evidence's statements.
    pub statements: &'a [StatementEvent],
    /// Per node, statements the server may or may not have run.
    pub uncertain: &'a std::collections::BTreeMap<NodeIdx, Uncertain>,
    /// Per node, the servers' counts at the end (empty for servers given with `--url`).
    pub server_counts: &'a [ServerCounts],
    /// Counts taken before each stop replisim applied.
    pub snapshots: &'a [Snapshot],
    /// Per node (by name), writes the clients saw refused with 25006.
    pub refused_by_clients: &'a std::collections::BTreeMap<String, u64>,
}

/// Each node's figures, from both sides.
pub fn node_figures(run: &RunFigures<'_>) -> Vec<NodeFigures> {
    run.scenario
        .nodes
        .iter()
        .enumerate()
        .map(|(idx, model)| {
            let counts = run.server_counts.iter().find(|c| c.name == model.name);
            let snapshots: Vec<&Snapshot> =
                run.snapshots.iter().filter(|s| s.node == idx).collect();
            // The blind windows: before each snapshot up to its stop. The counts at the end need
            // none: they are taken after the workload ended and every answer came back.
            let windows: Vec<(Micros, Micros)> = snapshots
                .iter()
                .map(|s| (s.taken_us.saturating_sub(SNAPSHOT_MARGIN_US), s.stopped_us))
                .collect();
            // pg_stat_statements counts a transaction's `FOR UPDATE` select with the reads (its
            // text starts like theirs).
            let counted_as = |kind: StatementKind| match kind {
                StatementKind::LockingRead => StatementKind::Read,
                other => other,
            };
            let workload = move |kind: StatementKind| {
                run.statements.iter().filter(move |s| {
                    s.node == idx && s.purpose == Purpose::Workload && counted_as(s.kind) == kind
                })
            };
            let executed = |kind| workload(kind).filter(|s| s.sqlstate.is_none());
            let blind = |kind| {
                executed(kind)
                    .filter(|s| {
                        windows
                            .iter()
                            .any(|&(from, to)| from <= s.start_us && s.start_us <= to)
                    })
                    .count() as u64
            };
            // Over every life of the server: its snapshots, and its count at the end if it runs
            // (a stopped server's last life was snapshotted before replisim stopped it).
            let server_total = |at_end: Option<Option<i64>>, of: fn(&Snapshot) -> Option<i64>| {
                let mut total: i64 = match at_end? {
                    Some(count) => count,
                    None => return None,
                };
                for snapshot in &snapshots {
                    total = total.checked_add(of(snapshot)?)?;
                }
                u64::try_from(total).ok()
            };
            let at_end = |count: Option<i64>| {
                counts.and_then(|c| {
                    if !c.statements_counted {
                        None
                    } else if c.running_at_end {
                        Some(count)
                    } else {
                        Some(Some(0))
                    }
                })
            };
            let uncertain = run.uncertain.get(&idx).copied().unwrap_or_default();
            NodeFigures {
                name: model.name.clone(),
                reads_inferred: executed(StatementKind::Read).count() as u64,
                writes_inferred: executed(StatementKind::Write).count() as u64,
                reads_uncertain: uncertain.reads,
                writes_uncertain: uncertain.writes,
                reads_blind: blind(StatementKind::Read),
                writes_blind: blind(StatementKind::Write),
                refused_inferred: workload(StatementKind::Write)
                    .filter(|s| s.sqlstate.as_deref() == Some(READ_ONLY_SQLSTATE))
                    .count() as u64,
                refused_by_clients: run
                    .refused_by_clients
                    .get(&model.name)
                    .copied()
                    .unwrap_or(0),
                reads_server: server_total(at_end(counts.and_then(|c| c.stat_reads)), |s| s.reads),
                writes_server: server_total(at_end(counts.and_then(|c| c.stat_writes)), |s| {
                    s.writes
                }),
                refused_server: counts.map(|c| c.log_read_only_errors),
            }
        })
        .collect()
}

/// One line per disagreement: node, figure, inferred vs server, tolerance.
pub fn describe(comparison: &Comparison) -> String {
    let server = comparison
        .server
        .map_or_else(|| "unknown".to_string(), |s| s.to_string());
    let mut line = format!(
        "{} {}: inferred {} vs server {server}",
        comparison.node, comparison.figure, comparison.inferred
    );
    if comparison.figure == REFUSED_SEEN_BY_CLIENTS {
        line.push_str(" (clients may not see more than the server refused)");
    } else {
        let _ = write!(line, ", tolerance {}", comparison.tolerance);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{REPLICA_1, REPLICA_2, REPLICA_3, TestRun, ms};

    fn agreeing() -> NodeFigures {
        NodeFigures {
            name: "replica-1".to_string(),
            reads_inferred: 100,
            writes_inferred: 0,
            reads_uncertain: 2,
            reads_blind: 3,
            refused_inferred: 4,
            refused_by_clients: 4,
            reads_server: Some(96),
            writes_server: Some(0),
            refused_server: Some(4),
            ..NodeFigures::default()
        }
    }

    fn figure<'a>(check: &'a CrossCheck, name: &str) -> &'a Comparison {
        match check.comparisons.iter().find(|c| c.figure == name) {
            Some(c) => c,
            None => panic!("no {name} comparison"),
        }
    }

    #[test]
    fn counts_within_their_tolerance_pass() {
        let check = compare(&[agreeing()]);
        assert!(check.passed, "{check:?}");
        assert_eq!(check.comparisons.len(), 4);
        assert_eq!(figure(&check, READS).tolerance, 5);
    }

    #[test]
    fn executed_reads_beyond_the_tolerance_fail_and_say_where() {
        let mut node = agreeing();
        // 100 inferred, 94 counted, 5 uncertain or blind: one too many.
        node.reads_server = Some(94);
        let check = compare(&[node]);
        assert!(!check.passed);
        let wrong: Vec<String> = check.disagreements().map(describe).collect();
        assert_eq!(
            wrong,
            vec!["replica-1 reads: inferred 100 vs server 94, tolerance 5".to_string()]
        );
    }

    #[test]
    fn more_counted_than_inferred_fails_too() {
        let mut node = agreeing();
        node.writes_server = Some(1);
        let check = compare(&[node]);
        assert!(!figure(&check, WRITES).agrees);
        assert!(!check.passed);
    }

    #[test]
    fn refusals_the_log_does_not_show_fail() {
        let mut node = agreeing();
        node.refused_server = Some(1);
        let check = compare(&[node]);
        assert!(!figure(&check, REFUSED_WRITES).agrees);
        let clients = figure(&check, REFUSED_SEEN_BY_CLIENTS);
        assert!(!clients.agrees);
        assert_eq!(
            describe(clients),
            "replica-1 refused_writes_seen_by_clients: inferred 4 vs server 1 (clients may not \
             see more than the server refused)"
        );
    }

    #[test]
    fn clients_seeing_fewer_refusals_than_the_log_agree() {
        let mut node = agreeing();
        node.refused_by_clients = 1;
        assert!(compare(&[node]).passed);
    }

    fn read_at(node: NodeIdx, start_ms: u64, sqlstate: Option<&str>) -> StatementEvent {
        StatementEvent {
            node,
            conn: 1,
            purpose: Purpose::Workload,
            kind: StatementKind::Read,
            role: crate::record::events::NodeRole::Replica,
            org: 1,
            key: 1,
            user: 1,
            start_us: ms(start_ms),
            end_us: ms(start_ms),
            version: 0,
            sqlstate: sqlstate.map(str::to_string),
            lsn: 0,
        }
    }

    fn counts(name: &str, reads: Option<i64>, running_at_end: bool) -> ServerCounts {
        ServerCounts {
            name: name.to_string(),
            stat_reads: reads,
            stat_writes: reads.map(|_| 0),
            log_read_only_errors: 0,
            running_at_end,
            statements_counted: true,
        }
    }

    #[test]
    fn a_crashed_server_counts_its_snapshot_and_the_blind_window_is_tolerated() {
        let run = TestRun::new();
        let name = |idx: NodeIdx| run.scenario.nodes[idx].name.clone();
        // replica-1: crashed at 2 s after a snapshot at 1.95 s (3 reads counted), restarted,
        // then 2 more reads counted; one read ran in the blind window and was lost.
        // replica-2: crashed at the end, after a snapshot of 1 read.
        let statements = vec![
            read_at(REPLICA_1, 1_000, None),
            read_at(REPLICA_1, 1_200, None),
            read_at(REPLICA_1, 1_900, None),
            read_at(REPLICA_1, 1_960, None),
            read_at(REPLICA_1, 1_990, Some("08006")),
            read_at(REPLICA_1, 3_000, None),
            read_at(REPLICA_1, 3_100, None),
            read_at(REPLICA_2, 500, None),
        ];
        let snapshots = vec![
            Snapshot {
                node: REPLICA_1,
                taken_us: ms(1_950),
                stopped_us: ms(2_000),
                reads: Some(3),
                writes: Some(0),
            },
            Snapshot {
                node: REPLICA_2,
                taken_us: ms(4_000),
                stopped_us: ms(4_010),
                reads: Some(1),
                writes: Some(0),
            },
        ];
        let server_counts = vec![
            counts(&name(REPLICA_1), Some(2), true),
            counts(&name(REPLICA_2), None, false),
        ];
        let uncertain = std::collections::BTreeMap::from([(
            REPLICA_1,
            Uncertain {
                reads: 1,
                writes: 0,
            },
        )]);
        let refused_by_clients = std::collections::BTreeMap::new();
        let figures = node_figures(&RunFigures {
            scenario: &run.scenario,
            statements: &statements,
            uncertain: &uncertain,
            server_counts: &server_counts,
            snapshots: &snapshots,
            refused_by_clients: &refused_by_clients,
        });
        let of = |idx: NodeIdx| match figures.iter().find(|f| f.name == name(idx)) {
            Some(f) => f.clone(),
            None => panic!("no figures for node {idx}"),
        };
        let replica_1 = of(REPLICA_1);
        assert_eq!(
            (
                replica_1.reads_inferred,
                replica_1.reads_server,
                replica_1.reads_uncertain,
                replica_1.reads_blind
            ),
            // 1.9 s and 1.96 s fall from 100 ms before the snapshot to the stop.
            (6, Some(5), 1, 2)
        );
        assert_eq!(of(REPLICA_2).reads_server, Some(1));
        // A node without counts of its own is not compared.
        assert_eq!(of(REPLICA_3).reads_server, None);
        assert!(compare(&figures).passed);
        // Without the snapshot, the crashed replica's reads disagree beyond the tolerance.
        let figures = node_figures(&RunFigures {
            scenario: &run.scenario,
            statements: &statements,
            uncertain: &uncertain,
            server_counts: &server_counts,
            snapshots: &snapshots[1..],
            refused_by_clients: &refused_by_clients,
        });
        let check = compare(&figures);
        assert!(!check.passed);
        assert_eq!(
            check.disagreements().map(describe).collect::<Vec<_>>(),
            vec![format!(
                "{} reads: inferred 6 vs server 2, tolerance 1",
                name(REPLICA_1)
            )]
        );
    }

    #[test]
    fn unknown_server_counts_are_not_compared() {
        let mut node = agreeing();
        node.reads_server = None;
        node.refused_server = None;
        node.refused_by_clients = 99;
        let check = compare(&[node]);
        assert!(check.passed);
        assert_eq!(figure(&check, READS).server, None);
    }
}
