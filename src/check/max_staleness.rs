//! `max_staleness{max}`: every read returned a version that was still current at most `max` before
//! the read started.
//!
//! A read that returned version v of (org, key) at t_r is stale by `t_r - t_s` when version v + 1
//! was committed at t_s < t_r (commit time = the end of the successful write statement on the
//! server, or of the `COMMIT` of the transaction it ran in). Version 0 is "no row", superseded by version 1. The commit times come from the servers'
//! statement log and the read versions from what the clients received, so neither side takes the
//! router's word for replica lag.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::check::commits::{self, CommitEdge};
use crate::check::{Evidence, InvariantResult, duration_us, format_ms};
use crate::record::events::{ClientOp, Micros, OpKind};

const KIND: &str = "max_staleness";

/// Checks that no successful read was staler than `max`.
pub fn check(evidence: &Evidence, max: Duration) -> InvariantResult {
    let max_us = duration_us(max);
    let commits = commit_times(evidence);
    let mut reads: u64 = 0;
    let mut over: u64 = 0;
    // (staleness, the read, when its successor committed)
    let mut worst: Option<(Micros, &ClientOp, Micros)> = None;
    let successful_reads = evidence
        .events
        .ops
        .iter()
        .filter(|o| o.ok && o.kind == OpKind::Read);
    for read in successful_reads {
        reads += 1;
        let Some(next) = read.version.checked_add(1) else {
            continue;
        };
        let Some(&superseded_us) = commits.get(&(read.org, read.key, next)) else {
            continue;
        };
        if superseded_us >= read.start_us {
            continue;
        }
        let staleness_us = read.start_us - superseded_us;
        if staleness_us > max_us {
            over += 1;
        }
        let worse = match worst {
            None => true,
            Some((w, r, _)) => {
                staleness_us > w
                    || (staleness_us == w && (read.start_us, read.client) < (r.start_us, r.client))
            }
        };
        if worse {
            worst = Some((staleness_us, read, superseded_us));
        }
    }
    let max_text = format_ms(max_us);
    let Some((worst_us, read, superseded_us)) = worst else {
        return InvariantResult::new(
            KIND,
            true,
            format!("worst 0 ms <= {max_text} ms ({reads} reads)"),
        );
    };
    let passed = over == 0;
    let relation = if passed { "<=" } else { ">" };
    InvariantResult::new(
        KIND,
        passed,
        format!(
            "worst {} ms {relation} {max_text} ms ({over} of {reads} reads over): client {} read org {} \
             key {} version {} at {} ms, version {} committed at {} ms",
            format_ms(worst_us),
            read.client,
            read.org,
            read.key,
            read.version,
            format_ms(read.start_us),
            read.version.saturating_add(1),
            format_ms(superseded_us)
        ),
    )
}

/// The earliest commit time of each (org, key, version) written by the workload: a transaction's
/// writes count from its `COMMIT`, and never if it did not commit.
fn commit_times(evidence: &Evidence) -> BTreeMap<(i64, i64, i64), Micros> {
    let statements = &evidence.events.statements;
    commits::commit_times(
        statements,
        &commits::transactions(statements),
        CommitEdge::End,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{PRIMARY_1, REPLICA_1, TestRun, ms};
    use crate::record::events::StatementKind;

    /// Org 5 key 7: version 1 committed at 10 ms, version 2 at 20 ms (end of the statements).
    fn two_versions() -> TestRun {
        let mut run = TestRun::new();
        for (version, start_ms) in [(1, 9), (2, 19)] {
            let write = run.statement(PRIMARY_1, StatementKind::Write, ms(start_ms));
            write.org = 5;
            write.key = 7;
            write.version = version;
        }
        // A refused write of version 3 is no commit.
        let refused = run.statement(REPLICA_1, StatementKind::Write, ms(21));
        refused.org = 5;
        refused.key = 7;
        refused.version = 3;
        refused.sqlstate = Some("25006".to_string());
        run
    }

    fn read(run: &mut TestRun, client: u32, start_ms: u64, version: i64) -> &mut ClientOp {
        let op = run.op(client, OpKind::Read, ms(start_ms), ms(start_ms + 2));
        op.org = 5;
        op.key = 7;
        op.version = version;
        op
    }

    #[test]
    fn a_transaction_write_supersedes_only_from_its_commit() {
        let mut run = two_versions();
        // Version 3 written inside a transaction at 30 ms that commits at 50 ms (end 51 ms) ...
        for (kind, start_ms, version) in [
            (StatementKind::Begin, 29, 0),
            (StatementKind::Write, 30, 3),
            (StatementKind::Commit, 50, 0),
        ] {
            let s = run.statement(PRIMARY_1, kind, ms(start_ms));
            (s.conn, s.org, s.key, s.version) = (9, 5, 7, version);
        }
        // ... and version 4 in one that never commits.
        for (kind, start_ms, version) in
            [(StatementKind::Begin, 60, 0), (StatementKind::Write, 61, 4)]
        {
            let s = run.statement(PRIMARY_1, kind, ms(start_ms));
            (s.conn, s.org, s.key, s.version) = (10, 5, 7, version);
        }
        read(&mut run, 1, 45, 2);
        let fresh = check(&run.evidence(), Duration::from_millis(1));
        assert!(fresh.passed, "{}", fresh.detail);
        read(&mut run, 1, 90, 3);
        let fresh = check(&run.evidence(), Duration::from_millis(1));
        assert!(
            fresh.passed,
            "an uncommitted write superseded: {}",
            fresh.detail
        );
        read(&mut run, 2, 56, 2);
        let stale = check(&run.evidence(), Duration::from_millis(1));
        assert!(!stale.passed);
        assert!(
            stale.detail.contains("version 3 committed at 51 ms"),
            "{}",
            stale.detail
        );
    }

    #[test]
    fn fresh_reads_pass() {
        let mut run = two_versions();
        read(&mut run, 1, 5, 0);
        read(&mut run, 1, 15, 1);
        read(&mut run, 2, 30, 2);
        read(&mut run, 3, 24, 1);
        let result = check(&run.evidence(), Duration::from_millis(4));
        assert!(result.passed, "{}", result.detail);
        assert_eq!(
            result.detail,
            "worst 4 ms <= 4 ms (0 of 4 reads over): client 3 read org 5 key 7 version 1 at 24 ms, \
             version 2 committed at 20 ms"
        );
    }

    #[test]
    fn a_stale_read_fails() {
        let mut run = two_versions();
        read(&mut run, 1, 15, 1);
        read(&mut run, 2, 35, 0);
        read(&mut run, 4, 28, 1);
        // Failed reads return nothing and are not judged.
        read(&mut run, 5, 90, 0).ok = false;
        let result = check(&run.evidence(), Duration::from_millis(5));
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "worst 25 ms > 5 ms (2 of 3 reads over): client 2 read org 5 key 7 version 0 at 35 ms, \
             version 1 committed at 10 ms"
        );
    }

    #[test]
    fn no_reads_pass() {
        let run = two_versions();
        let result = check(&run.evidence(), Duration::from_millis(5));
        assert!(result.passed);
        assert_eq!(result.detail, "worst 0 ms <= 5 ms (0 reads)");
    }
}
