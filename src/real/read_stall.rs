//! The read stall of a run: the longest interval in which no read completed successfully, from the
//! workload's start to its end. One figure that shows, for any router, how long a fault kept every
//! client from reading, whether its reads failed or hung.

use serde::Serialize;

use crate::record::events::{ClientOp, Micros, OpKind};

/// The longest interval without a successful read completion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReadStall {
    /// Its length, ms.
    pub longest_ms: u64,
    /// When it began (the completion before it, or the workload's start), ms on the run's clock.
    pub from_ms: u64,
}

/// The read stall of `ops` over `[0, end_us]`.
pub fn read_stall(ops: &[ClientOp], end_us: Micros) -> ReadStall {
    let mut ends: Vec<Micros> = ops
        .iter()
        .filter(|op| op.ok && op.kind == OpKind::Read)
        .map(|op| op.end_us.min(end_us))
        .collect();
    ends.sort_unstable();
    let mut previous = 0;
    let mut longest = (0, 0);
    for end in ends.into_iter().chain(std::iter::once(end_us)) {
        let gap = end.saturating_sub(previous);
        if gap > longest.0 {
            longest = (gap, previous);
        }
        previous = previous.max(end);
    }
    ReadStall {
        longest_ms: longest.0 / 1000,
        from_ms: longest.1 / 1000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, ok: bool, end_ms: u64) -> ClientOp {
        ClientOp {
            client: 0,
            user: 0,
            org: 0,
            key: 0,
            kind,
            prefer_replica: true,
            transaction: false,
            start_us: 0,
            end_us: end_ms * 1000,
            ok,
            node: None,
            version: 0,
            error: None,
        }
    }

    #[test]
    fn the_longest_gap_between_successful_reads_counts() {
        let ops = [
            op(OpKind::Read, true, 100),
            op(OpKind::Read, true, 200),
            // Neither a failed read nor a write ends a stall.
            op(OpKind::Read, false, 500),
            op(OpKind::Write, true, 600),
            op(OpKind::Read, true, 900),
            op(OpKind::Read, true, 950),
        ];
        let stall = read_stall(&ops, 1_000_000);
        assert_eq!(
            stall,
            ReadStall {
                longest_ms: 700,
                from_ms: 200
            }
        );
    }

    #[test]
    fn no_read_at_all_is_one_stall_over_the_whole_run() {
        let stall = read_stall(&[op(OpKind::Write, true, 10)], 2_000_000);
        assert_eq!(
            stall,
            ReadStall {
                longest_ms: 2000,
                from_ms: 0
            }
        );
    }

    #[test]
    fn the_end_of_the_workload_closes_the_last_gap() {
        let stall = read_stall(&[op(OpKind::Read, true, 100)], 1_000_000);
        assert_eq!(
            stall,
            ReadStall {
                longest_ms: 900,
                from_ms: 100
            }
        );
    }
}
