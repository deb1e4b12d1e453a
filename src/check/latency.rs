//! `latency{op, percentile, max}`: client-observed latency at a percentile <= max. Also the
//! histograms behind the report's `latency_ms`.
//!
//! Latency is what the client saw, `end_us - start_us` of each operation, failed ones included: a
//! request that timed out after 5 s was a 5 s wait for the application. In open loop `start_us` is
//! the intended arrival, so waiting for a free client counts (no coordinated omission).

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::check::{Evidence, InvariantResult, duration_us, format_ms};
use crate::record::events::ClientOp;
use crate::scenario::LatencyOp;

const KIND: &str = "latency";

/// Precision of every latency histogram: values are kept within 0.1%.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Histogram of the latencies, in microseconds, of the operations `op` selects.
pub fn op_latency_histogram(ops: &[ClientOp], op: LatencyOp) -> Histogram<u64> {
    let mut histogram = empty_histogram();
    for client_op in ops.iter().filter(|o| op.includes(o.kind)) {
        record_latency(&mut histogram, client_op);
    }
    histogram
}

/// Records the latency of `op`, in microseconds, in `histogram` (one of [`empty_histogram`]'s).
pub fn record_latency(histogram: &mut Histogram<u64>, op: &ClientOp) {
    let latency_us = op.end_us.saturating_sub(op.start_us);
    // `record` grows the histogram to fit; `saturating_record` alone would clamp to its current top.
    if histogram.record(latency_us).is_err() {
        // Only values beyond hdrhistogram's auto-resize range (~2^62 us) get here.
        histogram.saturating_record(latency_us);
    }
}

/// The latency at `percentile` (in (0, 100]) in microseconds; 0 for an empty histogram.
///
/// This is the lowest value of the histogram bucket holding that percentile, so a recorded value
/// that is a multiple of its bucket width (every whole millisecond up to 16 ms, for instance) comes
/// back exactly as recorded rather than rounded up.
pub fn percentile_us(h: &Histogram<u64>, percentile: f64) -> u64 {
    if h.is_empty() {
        return 0;
    }
    h.lowest_equivalent(h.value_at_percentile(percentile))
}

/// Checks that the latency of `op` operations at `percentile` is at most `max`.
pub fn check(
    evidence: &Evidence,
    op: LatencyOp,
    percentile: f64,
    max: Duration,
) -> InvariantResult {
    let name = op_name(op);
    let histogram = op_latency_histogram(&evidence.events.ops, op);
    if histogram.is_empty() {
        return InvariantResult::new(KIND, false, format!("no {name} operations"));
    }
    let observed_us = percentile_us(&histogram, percentile);
    let max_us = duration_us(max);
    let passed = observed_us <= max_us;
    let relation = if passed { "<=" } else { ">" };
    InvariantResult::new(
        KIND,
        passed,
        format!(
            "{name} p{percentile} {} ms {relation} {} ms",
            format_ms(observed_us),
            format_ms(max_us)
        ),
    )
}

fn op_name(op: LatencyOp) -> &'static str {
    match op {
        LatencyOp::Read => "read",
        LatencyOp::Write => "write",
        LatencyOp::All => "all",
    }
}

/// An empty latency histogram at the project's precision ([`SIGNIFICANT_DIGITS`]).
pub fn empty_histogram() -> Histogram<u64> {
    // hdrhistogram accepts 0 to 5 significant digits; only a different constant could be refused.
    Histogram::new(SIGNIFICANT_DIGITS)
        .expect("3 significant digits are within hdrhistogram's 0..=5")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{TestRun, ms};
    use crate::record::events::OpKind;

    /// 99 reads of 4 ms, one failed read of 48 ms, and writes of 480 ms.
    fn run() -> TestRun {
        let mut run = TestRun::new();
        for i in 0..99 {
            run.op(
                i,
                OpKind::Read,
                ms(u64::from(i) * 10),
                ms(u64::from(i) * 10 + 4),
            );
        }
        run.op(99, OpKind::Read, ms(2_000), ms(2_048)).ok = false;
        for i in 0..3 {
            run.op(i, OpKind::Write, ms(3_000), ms(3_480));
        }
        run
    }

    #[test]
    fn percentile_within_max_passes() {
        let run = run();
        let result = check(
            &run.evidence(),
            LatencyOp::Read,
            99.0,
            Duration::from_millis(5),
        );
        assert!(result.passed, "{}", result.detail);
        assert_eq!(result.detail, "read p99 4 ms <= 5 ms");
    }

    #[test]
    fn failed_operations_count_and_can_break_it() {
        let run = run();
        let result = check(
            &run.evidence(),
            LatencyOp::Read,
            99.5,
            Duration::from_millis(20),
        );
        assert!(!result.passed);
        assert_eq!(result.detail, "read p99.5 48 ms > 20 ms");
    }

    #[test]
    fn op_selects_the_operations() {
        let run = run();
        let writes = check(
            &run.evidence(),
            LatencyOp::Write,
            50.0,
            Duration::from_millis(100),
        );
        assert!(!writes.passed);
        assert_eq!(writes.detail, "write p50 480 ms > 100 ms");
        let all = op_latency_histogram(&run.events.ops, LatencyOp::All);
        assert_eq!(all.len(), 103);
        assert_eq!(percentile_us(&all, 100.0), ms(480));
    }

    #[test]
    fn no_operations_fails() {
        let run = TestRun::new();
        let result = check(
            &run.evidence(),
            LatencyOp::Write,
            99.0,
            Duration::from_secs(1),
        );
        assert!(!result.passed);
        assert_eq!(result.detail, "no write operations");
    }

    #[test]
    fn percentiles_stay_within_a_tenth_of_a_percent() {
        let mut run = TestRun::new();
        for (i, latency_us) in [12_345u64, 99_999, 1_234_567].into_iter().enumerate() {
            run.op(i as u32, OpKind::Read, 0, latency_us);
        }
        let histogram = op_latency_histogram(&run.events.ops, LatencyOp::Read);
        for (percentile, exact_us) in [(33.0, 12_345u64), (66.0, 99_999), (100.0, 1_234_567)] {
            let got = percentile_us(&histogram, percentile);
            assert!(
                got <= exact_us && exact_us - got <= exact_us / 1000,
                "{got} vs {exact_us}"
            );
        }
    }
}
