//! `no_failed_queries{max_error_rate}`: failed client operations / all operations <= max_error_rate.
//!
//! Judged from what the clients observed, since an operation the router gave up on before any
//! server saw it is a failure for the application all the same. A run without operations fails:
//! a verdict over nothing would hide a workload that never started.

use crate::check::{Evidence, InvariantResult, format_ms};
use crate::record::events::ClientOp;

const KIND: &str = "no_failed_queries";

/// Checks that at most `max_error_rate` of the client operations failed.
pub fn check(evidence: &Evidence, max_error_rate: f64) -> InvariantResult {
    let ops = &evidence.events.ops;
    if ops.is_empty() {
        return InvariantResult::new(KIND, false, "no operations".to_string());
    }
    let mut failed: u64 = 0;
    let mut first: Option<&ClientOp> = None;
    for op in ops.iter().filter(|o| !o.ok) {
        failed += 1;
        let earlier = match first {
            None => true,
            Some(f) => (op.start_us, op.client) < (f.start_us, f.client),
        };
        if earlier {
            first = Some(op);
        }
    }
    let total = ops.len();
    let rate = failed as f64 / total as f64;
    let passed = rate <= max_error_rate;
    let relation = if passed { "<=" } else { ">" };
    let mut detail = format!(
        "{failed} of {total} operations failed (rate {rate:.4} {relation} {max_error_rate:.4})"
    );
    if let Some(f) = first {
        let message = f.error.as_deref().unwrap_or("no error message");
        detail.push_str(&format!(
            "; first: client {} at {} ms: {message}",
            f.client,
            format_ms(f.start_us)
        ));
    }
    InvariantResult::new(KIND, passed, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{TestRun, ms};
    use crate::record::events::OpKind;

    /// 200 operations, two of which failed (client 7 first).
    fn two_failures() -> TestRun {
        let mut run = TestRun::new();
        for i in 0..200u32 {
            let kind = if i % 5 == 0 {
                OpKind::Write
            } else {
                OpKind::Read
            };
            run.op(i % 10, kind, ms(u64::from(i)), ms(u64::from(i) + 2));
        }
        let later = &mut run.events.ops[150];
        later.ok = false;
        later.error = Some("query timed out".to_string());
        let earlier = &mut run.events.ops[17];
        earlier.ok = false;
        earlier.error = Some("connection refused by replica-1".to_string());
        run
    }

    #[test]
    fn no_failures_pass() {
        let mut run = TestRun::new();
        run.op(0, OpKind::Read, ms(1), ms(2));
        let result = check(&run.evidence(), 0.0);
        assert!(result.passed, "{}", result.detail);
        assert_eq!(
            result.detail,
            "0 of 1 operations failed (rate 0.0000 <= 0.0000)"
        );
    }

    #[test]
    fn failures_above_the_rate_fail_with_the_first_message() {
        let run = two_failures();
        let result = check(&run.evidence(), 0.005);
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "2 of 200 operations failed (rate 0.0100 > 0.0050); first: client 7 at 17 ms: \
             connection refused by replica-1"
        );
    }

    #[test]
    fn failures_within_the_rate_pass() {
        let run = two_failures();
        let result = check(&run.evidence(), 0.01);
        assert!(result.passed, "{}", result.detail);
    }

    #[test]
    fn no_operations_fail() {
        let run = TestRun::new();
        let result = check(&run.evidence(), 1.0);
        assert!(!result.passed);
        assert_eq!(result.detail, "no operations");
    }
}
