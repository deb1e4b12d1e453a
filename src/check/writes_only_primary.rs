//! `writes_only_primary`: no write statement reached a node that was not a primary at that moment.
//!
//! Judged from the servers' own statement log: the role is what the node itself believed when the
//! statement started. A write the node refused with SQLSTATE 25006 still counts as reached, since the
//! router sent a write where it must not. After a `promote` in a shard, only the promoted node is its
//! primary: an old primary fenced read-only still believes it is out of recovery, but is not.

use crate::check::{Evidence, InvariantResult, format_ms, node_name, promotion};
use crate::record::events::{NodeRole, Purpose, StatementEvent, StatementKind};

const KIND: &str = "writes_only_primary";

/// Checks that every workload write ran on a node whose role was `Primary`.
pub fn check(evidence: &Evidence) -> InvariantResult {
    let writes = evidence
        .events
        .statements
        .iter()
        .filter(|s| s.purpose == Purpose::Workload && s.kind == StatementKind::Write);
    let mut total: u64 = 0;
    let mut offending: u64 = 0;
    let mut first: Option<&StatementEvent> = None;
    for write in writes {
        total += 1;
        let primary = promotion::primary_by_promotion(evidence, write.node, write.start_us)
            .unwrap_or(true)
            && write.role == NodeRole::Primary;
        if primary {
            continue;
        }
        offending += 1;
        let earlier = match first {
            None => true,
            Some(f) => (write.start_us, write.node, write.conn) < (f.start_us, f.node, f.conn),
        };
        if earlier {
            first = Some(write);
        }
    }
    match first {
        None => InvariantResult::new(
            KIND,
            true,
            format!("0 writes reached a non-primary ({total} writes)"),
        ),
        Some(f) => {
            let outcome = match &f.sqlstate {
                Some(code) => format!("refused with {code}"),
                None => "executed".to_string(),
            };
            InvariantResult::new(
                KIND,
                false,
                format!(
                    "{offending} writes reached a non-primary ({total} writes); first on {} at {} ms, {outcome}",
                    node_name(evidence.scenario, f.node),
                    format_ms(f.start_us),
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{PRIMARY_1, PRIMARY_2, REPLICA_1, REPLICA_3, TestRun, ms};

    #[test]
    fn writes_on_primaries_pass() {
        let mut run = TestRun::new();
        run.statement(PRIMARY_1, StatementKind::Write, ms(10));
        run.statement(PRIMARY_2, StatementKind::Write, ms(11));
        run.statement(REPLICA_1, StatementKind::Read, ms(12));
        let result = check(&run.evidence());
        assert!(result.passed, "{}", result.detail);
        assert_eq!(result.detail, "0 writes reached a non-primary (2 writes)");
    }

    #[test]
    fn a_refused_write_on_a_replica_fails() {
        let mut run = TestRun::new();
        run.statement(PRIMARY_1, StatementKind::Write, ms(10));
        run.statement(REPLICA_3, StatementKind::Write, ms(30))
            .sqlstate = Some("25006".to_string());
        run.statement(REPLICA_1, StatementKind::Write, ms(20))
            .sqlstate = Some("25006".to_string());
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "2 writes reached a non-primary (3 writes); first on replica-1 at 20 ms, refused with 25006"
        );
    }

    #[test]
    fn a_write_on_a_demoted_primary_fails() {
        let mut run = TestRun::new();
        run.statement(PRIMARY_1, StatementKind::Write, ms(5)).role = NodeRole::Replica;
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert!(
            result
                .detail
                .contains("first on primary-1 at 5 ms, executed"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn after_a_promotion_only_the_promoted_node_is_the_primary() {
        let mut run = TestRun::new();
        run.fault("promote", REPLICA_1, ms(10_000), None);
        run.statement(PRIMARY_1, StatementKind::Write, ms(9_000));
        run.statement(REPLICA_1, StatementKind::Write, ms(10_500))
            .role = NodeRole::Primary;
        assert!(check(&run.evidence()).passed);
        // The fenced old primary still says it is a primary; a write it refused counts.
        run.statement(PRIMARY_1, StatementKind::Write, ms(10_200))
            .sqlstate = Some("25006".to_string());
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "1 writes reached a non-primary (3 writes); first on primary-1 at 10200 ms, refused with 25006"
        );
    }

    #[test]
    fn probes_are_not_writes() {
        let mut run = TestRun::new();
        run.statement(REPLICA_1, StatementKind::Write, ms(5))
            .purpose = Purpose::Check;
        let result = check(&run.evidence());
        assert!(result.passed);
        assert_eq!(result.detail, "0 writes reached a non-primary (0 writes)");
    }
}
