//! `replica_read_share{min}`: reads executed by replicas / all reads executed >= min.
//!
//! Counted on the server side: a read counts where it was executed successfully, by the role the
//! node had at that moment, so reads the router meant for a replica but retried on the primary count
//! for the primary. Health checks and lag probes are not reads.

use crate::check::{Evidence, InvariantResult};
use crate::record::events::{NodeRole, Purpose, StatementKind};

const KIND: &str = "replica_read_share";

/// Checks that replicas executed at least `min` of the workload reads.
pub fn check(evidence: &Evidence, min: f64) -> InvariantResult {
    let mut total: u64 = 0;
    let mut on_replicas: u64 = 0;
    for read in &evidence.events.statements {
        let executed = read.purpose == Purpose::Workload
            && read.kind == StatementKind::Read
            && read.sqlstate.is_none();
        if executed {
            total += 1;
            if read.role == NodeRole::Replica {
                on_replicas += 1;
            }
        }
    }
    if total == 0 {
        return InvariantResult::new(KIND, false, "no reads executed".to_string());
    }
    let share = on_replicas as f64 / total as f64;
    let passed = share >= min;
    let relation = if passed { ">=" } else { "<" };
    InvariantResult::new(
        KIND,
        passed,
        format!(
            "replicas executed {on_replicas} of {total} reads = {share:.3} {relation} {min:.3}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{PRIMARY_1, REPLICA_1, REPLICA_2, TestRun, ms};

    /// Three reads on replicas and one on the primary, plus records that must not count.
    fn three_of_four() -> TestRun {
        let mut run = TestRun::new();
        run.statement(REPLICA_1, StatementKind::Read, ms(1));
        run.statement(REPLICA_2, StatementKind::Read, ms(2));
        run.statement(REPLICA_1, StatementKind::Read, ms(3));
        run.statement(PRIMARY_1, StatementKind::Read, ms(4));
        run.statement(REPLICA_1, StatementKind::Probe, ms(5))
            .purpose = Purpose::Check;
        run.statement(PRIMARY_1, StatementKind::Read, ms(6)).purpose = Purpose::Check;
        run.statement(PRIMARY_1, StatementKind::Write, ms(7));
        run.statement(PRIMARY_1, StatementKind::Read, ms(8))
            .sqlstate = Some("57P01".to_string());
        run
    }

    #[test]
    fn share_at_or_above_min_passes() {
        let run = three_of_four();
        let result = check(&run.evidence(), 0.75);
        assert!(result.passed, "{}", result.detail);
        assert_eq!(
            result.detail,
            "replicas executed 3 of 4 reads = 0.750 >= 0.750"
        );
    }

    #[test]
    fn share_below_min_fails() {
        let run = three_of_four();
        let result = check(&run.evidence(), 0.8);
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "replicas executed 3 of 4 reads = 0.750 < 0.800"
        );
    }

    #[test]
    fn the_role_at_that_moment_counts_not_the_initial_one() {
        let mut run = TestRun::new();
        run.statement(REPLICA_1, StatementKind::Read, ms(1)).role = NodeRole::Primary;
        let result = check(&run.evidence(), 0.5);
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "replicas executed 0 of 1 reads = 0.000 < 0.500"
        );
    }

    #[test]
    fn no_reads_fails() {
        let run = TestRun::new();
        let result = check(&run.evidence(), 0.0);
        assert!(!result.passed);
        assert_eq!(result.detail, "no reads executed");
    }
}
