//! Promotions and a primary crash without one: the router follows a promoted replica through its
//! health checks, never writes to a node that is not the primary, and fails writes fast and clearly
//! while no primary is usable; reads never fail. Each run prints its figures per seed.

use replisim::check::Evidence;
use replisim::check::promotion::{Promotion, promotions};
use replisim::record::events::{ClientOp, OpKind};
use replisim::router::RouterConfig;
use replisim::sim::harness::ConfigEdit;

use super::*;

/// What one seed of a promotion scenario showed.
struct Figures {
    failed_writes: usize,
    failed_reads: usize,
    promotion: Option<Promotion>,
}

fn figures(s: &Scenario, outcome: &RunOutcome) -> Figures {
    let failed = |kind: OpKind| {
        outcome
            .events
            .ops
            .iter()
            .filter(|o| o.kind == kind && !o.ok)
            .count()
    };
    let evidence = Evidence {
        scenario: s,
        events: &outcome.events,
        faults: &outcome.faults,
        run_end_us: outcome.run_end_us,
    };
    Figures {
        failed_writes: failed(OpKind::Write),
        failed_reads: failed(OpKind::Read),
        promotion: promotions(&evidence).into_iter().next(),
    }
}

/// Runs `file` over every seed: each must pass with every fault observed and no failed read. Prints
/// the figures of each seed and returns them with the runs.
fn over_seeds(file: &str) -> Vec<(RunOutcome, Report, Figures)> {
    let s = load(file);
    SEEDS
        .iter()
        .map(|&seed| {
            let (outcome, r) = simulate_outcome(&s, seed, &RunOptions::default(), "");
            assert!(r.passed, "expected a pass:\n{}", describe(&r));
            assert!(
                r.faults.iter().all(|f| f.took_effect),
                "a fault was not observed:\n{}",
                describe(&r)
            );
            let f = figures(&s, &outcome);
            let (resumed, rejected) = match &f.promotion {
                Some(p) => (
                    p.resumed_ms
                        .map_or("none".to_string(), |ms| format!("{ms} ms")),
                    p.rejected_writes,
                ),
                None => ("-".to_string(), 0),
            };
            println!(
                "{file} seed {seed}: failed writes {}, failed reads {}, promotion to first write \
                 {resumed}, writes rejected by the old primary {rejected}",
                f.failed_writes, f.failed_reads
            );
            assert_eq!(f.failed_reads, 0, "a read failed:\n{}", describe(&r));
            (outcome, r, f)
        })
        .collect()
}

fn failed_writes(outcome: &RunOutcome) -> impl Iterator<Item = &ClientOp> {
    outcome
        .events
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Write && !o.ok)
}

fn no_following() -> RunOptions {
    let edit: ConfigEdit = Arc::new(|c: &mut RouterConfig| c.follow_promotion = false);
    RunOptions {
        config_edit: Some(edit),
        ..RunOptions::default()
    }
}

#[test]
fn writes_move_to_a_replica_promoted_after_the_primary_crashed() {
    for (_, r, f) in over_seeds("promote-replica") {
        let Some(p) = f.promotion else {
            panic!("no promotion figures:\n{}", describe(&r));
        };
        // Checks every 250 ms, and a failed write asks for one at once: well within one interval.
        assert!(
            p.resumed_ms.is_some_and(|ms| ms <= 250),
            "writes resumed late: {p:?}\n{}",
            describe(&r)
        );
        assert!(
            f.failed_writes > 0,
            "the crash cost no write?\n{}",
            describe(&r)
        );
    }
}

#[test]
fn a_fenced_old_primary_gets_no_write_once_the_promotion_is_seen() {
    for (outcome, r, f) in over_seeds("promote-fenced-primary") {
        let Some(p) = f.promotion else {
            panic!("no promotion figures:\n{}", describe(&r));
        };
        assert!(
            p.resumed_ms.is_some_and(|ms| ms <= 250),
            "writes resumed late: {p:?}\n{}",
            describe(&r)
        );
        // Every failed write is the fenced primary's clean refusal, nothing else.
        assert_eq!(
            f.failed_writes as u64,
            p.rejected_writes,
            "{}",
            describe(&r)
        );
        for op in failed_writes(&outcome) {
            let error = op.error.as_deref().unwrap_or("");
            assert!(
                error.contains("read-only transaction (SQLSTATE 25006)"),
                "{error}"
            );
        }
    }
}

#[test]
fn a_dead_primary_fails_writes_fast_and_clearly_while_reads_go_on() {
    let s = load("primary-crash");
    let restart_us = 15_000_000;
    for (outcome, r, f) in over_seeds("primary-crash") {
        assert!(f.failed_writes > 0, "{}", describe(&r));
        let mut refused_at_once = 0;
        for op in failed_writes(&outcome) {
            let error = op.error.as_deref().unwrap_or("");
            // Caught by the crash (a dead connection, a connect that never completes), or refused
            // by the router because the primary is known to be down.
            let clear = error
                .contains("no healthy node can serve this write in shard s1: primary-1 unhealthy")
                || error.contains("primary-1 failed: connection closed")
                || error.contains("connecting to node primary-1 timed out after 500ms");
            assert!(clear, "unclear error: {error}");
            if error.contains("no healthy node") {
                refused_at_once += 1;
                assert!(op.end_us - op.start_us < 1_000, "{op:?}");
            }
        }
        assert!(refused_at_once > 0, "{}", describe(&r));
        let resumed = outcome
            .events
            .ops
            .iter()
            .filter(|o| o.kind == OpKind::Write && o.ok && o.start_us >= restart_us)
            .count();
        assert!(resumed > 0, "no write after the restart:\n{}", describe(&r));
    }
    assert_eq!(s.faults.len(), 1, "no promotion in this scenario");
}

#[test]
fn failover_within_fails_when_the_router_does_not_follow_promotions() {
    let s = load("promote-replica");
    let r = failing_run(&s, &no_following(), "failover_within");
    assert!(
        invariant(&r, "failover_within")
            .detail
            .contains("did not succeed on the new primary"),
        "{}",
        describe(&r)
    );
    let s = load("promote-fenced-primary");
    let r = failing_run(&s, &no_following(), "failover_within");
    assert!(
        invariant(&r, "failover_within")
            .detail
            .contains("(not the new primary)"),
        "{}",
        describe(&r)
    );
}

#[test]
fn a_router_told_a_replica_is_the_primary_writes_nowhere() {
    // The router is given replica-1 as the primary. Its first check finds it in recovery, so no
    // primary is known: every write fails at once, and none reaches a replica.
    let s = shorter(lighter(load("mixed-load"), 10), Duration::from_secs(3));
    let options = RunOptions {
        topology_edit: Some(super::replica_as_primary()),
        ..RunOptions::default()
    };
    let (outcome, r) = simulate_outcome(&s, 1, &options, "variant");
    assert!(
        invariant(&r, "writes_only_primary").passed,
        "{}",
        describe(&r)
    );
    let writes: Vec<&ClientOp> = outcome
        .events
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Write)
        .collect();
    assert!(!writes.is_empty());
    for op in writes {
        assert!(!op.ok, "{op:?}");
        assert!(
            op.error
                .as_deref()
                .is_some_and(|e| e.contains("no primary is known for shard s1")),
            "{op:?}"
        );
    }
}

#[test]
fn writes_only_primary_counts_writes_the_fenced_old_primary_refused() {
    // The fenced old primary still believes it is a primary; the checker knows of the promotion.
    // Writes sent before the router saw the promotion reached it, so the invariant cannot hold here.
    let mut s = load("promote-fenced-primary");
    s.invariants.push(Invariant::WritesOnlyPrimary);
    let r = failing_run(&s, &RunOptions::default(), "writes_only_primary");
    let detail = &invariant(&r, "writes_only_primary").detail;
    assert!(
        detail.contains("first on primary-1 at 8") && detail.contains("refused with 25006"),
        "{detail}"
    );
    assert!(invariant(&r, "failover_within").passed, "{}", describe(&r));
}
