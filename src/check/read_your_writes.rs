//! `read_your_writes`: for every key, no client reads a version older than one it wrote or read
//! before.
//!
//! Each client runs one operation at a time, so walking its operations in start order gives the
//! order it saw them in. Only successful operations teach the client a version: a failed write may
//! or may not have committed, and the client cannot know which.

use std::collections::BTreeMap;

use crate::check::{Evidence, InvariantResult, format_ms};
use crate::record::events::{ClientOp, OpKind};

const KIND: &str = "read_your_writes";

/// A read that returned an older version than its client had already seen.
struct Violation<'a> {
    read: &'a ClientOp,
    seen_version: i64,
}

/// Checks that no client's read went back in time on a key.
pub fn check(evidence: &Evidence) -> InvariantResult {
    let ops = &evidence.events.ops;
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| (ops[i].client, ops[i].start_us, ops[i].end_us, i));

    let mut reads: u64 = 0;
    let mut violations: u64 = 0;
    let mut first: Option<Violation> = None;
    // Highest version the current client has seen, per (org, key).
    let mut seen: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    let mut current_client: Option<u32> = None;
    for op in order.into_iter().map(|i| &ops[i]) {
        if current_client != Some(op.client) {
            current_client = Some(op.client);
            seen.clear();
        }
        if !op.ok {
            continue;
        }
        let highest = seen.entry((op.org, op.key)).or_insert(0);
        if op.kind == OpKind::Read {
            reads += 1;
            if op.version < *highest {
                violations += 1;
                let earlier = match &first {
                    None => true,
                    Some(f) => (op.start_us, op.client) < (f.read.start_us, f.read.client),
                };
                if earlier {
                    first = Some(Violation {
                        read: op,
                        seen_version: *highest,
                    });
                }
            }
        }
        *highest = (*highest).max(op.version);
    }
    match first {
        None => InvariantResult::new(KIND, true, format!("0 violations ({reads} reads)")),
        Some(Violation { read, seen_version }) => InvariantResult::new(
            KIND,
            false,
            format!(
                "{violations} violations ({reads} reads); first: client {} read org {} key {} version {} \
                 at {} ms after seeing version {seen_version}",
                read.client,
                read.org,
                read.key,
                read.version,
                format_ms(read.start_us)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{TestRun, ms};

    fn op(
        run: &mut TestRun,
        client: u32,
        kind: OpKind,
        start_ms: u64,
        key: i64,
        version: i64,
    ) -> &mut ClientOp {
        let op = run.op(client, kind, ms(start_ms), ms(start_ms + 1));
        op.org = 1;
        op.key = key;
        op.version = version;
        op
    }

    #[test]
    fn monotonic_reads_per_client_pass() {
        let mut run = TestRun::new();
        // Recorded in completion order, not start order.
        op(&mut run, 1, OpKind::Read, 30, 2, 4);
        op(&mut run, 1, OpKind::Write, 10, 2, 4);
        // Another client may read older versions; other keys are independent.
        op(&mut run, 2, OpKind::Read, 20, 2, 1);
        op(&mut run, 1, OpKind::Read, 40, 3, 0);
        // A failed write teaches nothing.
        op(&mut run, 3, OpKind::Write, 5, 2, 9).ok = false;
        op(&mut run, 3, OpKind::Read, 6, 2, 4);
        let result = check(&run.evidence());
        assert!(result.passed, "{}", result.detail);
        assert_eq!(result.detail, "0 violations (4 reads)");
    }

    #[test]
    fn reading_version_three_after_writing_four_fails() {
        let mut run = TestRun::new();
        op(&mut run, 1, OpKind::Write, 10, 2, 4);
        op(&mut run, 1, OpKind::Read, 20, 2, 3);
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "1 violations (1 reads); first: client 1 read org 1 key 2 version 3 at 20 ms after seeing \
             version 4"
        );
    }

    #[test]
    fn reading_an_older_version_after_a_newer_read_fails() {
        let mut run = TestRun::new();
        op(&mut run, 4, OpKind::Read, 50, 8, 6);
        op(&mut run, 4, OpKind::Read, 60, 8, 0);
        op(&mut run, 2, OpKind::Read, 10, 8, 6);
        op(&mut run, 2, OpKind::Read, 55, 8, 5);
        let result = check(&run.evidence());
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "2 violations (4 reads); first: client 2 read org 1 key 8 version 5 at 55 ms after seeing \
             version 6"
        );
    }
}
