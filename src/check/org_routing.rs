//! `org_routing`: every workload statement for org X reached only nodes of X's shard.
//!
//! The org is the statement's `$1` as the server received it, and the node's shard is fixed by the
//! scenario, so a misrouted statement is visible even when the wrong node answered it happily.
//! An org that falls in no shard can have no right node, so any statement for it is misrouted.

use crate::check::{Evidence, InvariantResult, format_ms, node_name};
use crate::record::events::{Purpose, StatementEvent, StatementKind};

const KIND: &str = "org_routing";

/// Checks that every workload read and write ran on a node of its org's shard.
pub fn check(evidence: &Evidence) -> InvariantResult {
    let scenario = evidence.scenario;
    let mut total: u64 = 0;
    let mut misrouted: u64 = 0;
    let mut first: Option<&StatementEvent> = None;
    let statements = evidence.events.statements.iter().filter(|s| {
        s.purpose == Purpose::Workload
            && matches!(
                s.kind,
                StatementKind::Read | StatementKind::Write | StatementKind::LockingRead
            )
    });
    for statement in statements {
        total += 1;
        let node_shard = scenario.nodes.get(statement.node).map(|n| n.shard);
        let org_shard = scenario.shard_of_org(statement.org);
        if org_shard.is_some() && node_shard == org_shard {
            continue;
        }
        misrouted += 1;
        let earlier = match first {
            None => true,
            Some(f) => {
                (statement.start_us, statement.node, statement.conn) < (f.start_us, f.node, f.conn)
            }
        };
        if earlier {
            first = Some(statement);
        }
    }
    let Some(f) = first else {
        return InvariantResult::new(KIND, true, format!("0 of {total} statements misrouted"));
    };
    let shard_name = |shard: Option<usize>| {
        shard
            .and_then(|i| scenario.shards.get(i))
            .map_or_else(|| "no shard".to_string(), |s| format!("shard {}", s.name))
    };
    InvariantResult::new(
        KIND,
        false,
        format!(
            "{misrouted} of {total} statements misrouted; first: org {} ({}) on {} ({}) at {} ms",
            f.org,
            shard_name(scenario.shard_of_org(f.org)),
            node_name(scenario, f.node),
            shard_name(scenario.nodes.get(f.node).map(|n| n.shard)),
            format_ms(f.start_us)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{PRIMARY_1, PRIMARY_2, REPLICA_1, REPLICA_3, TestRun, ms};

    #[test]
    fn statements_on_their_shard_pass() {
        let mut run = TestRun::new();
        run.statement(PRIMARY_1, StatementKind::Write, ms(1)).org = 999_999;
        run.statement(REPLICA_1, StatementKind::Read, ms(2)).org = 0;
        run.statement(REPLICA_3, StatementKind::Read, ms(3)).org = 1_500_000;
        run.statement(PRIMARY_2, StatementKind::Write, ms(4)).org = 1_000_000;
        // Probes carry org 0 wherever they run.
        run.statement(REPLICA_3, StatementKind::Probe, ms(5))
            .purpose = Purpose::Check;
        let result = check(&run.evidence());
        assert!(result.passed, "{}", result.detail);
        assert_eq!(result.detail, "0 of 4 statements misrouted");
    }

    #[test]
    fn an_org_of_shard_two_on_a_shard_one_node_fails() {
        let mut run = TestRun::new();
        run.statement(REPLICA_1, StatementKind::Read, ms(2));
        run.statement(REPLICA_1, StatementKind::Read, ms(9)).org = 1_500_000;
        run.statement(PRIMARY_1, StatementKind::Write, ms(7)).org = 1_500_000;
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "2 of 3 statements misrouted; first: org 1500000 (shard s2) on primary-1 (shard s1) at 7 ms"
        );
    }

    #[test]
    fn an_org_outside_every_shard_fails() {
        let mut run = TestRun::new();
        run.statement(PRIMARY_2, StatementKind::Read, ms(3)).org = 2_000_000;
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "1 of 1 statements misrouted; first: org 2000000 (no shard) on primary-2 (shard s2) at 3 ms"
        );
    }
}
