//! Promotions as the servers and clients saw them: the part of `failover_within` that judges a
//! `promote` fault, the fence a promotion puts on the old primary (for `writes_only_primary`), and the
//! figures of each promotion.
//!
//! For a `promote` of node n of shard S at t0, until the next promotion in S or the end of the run
//! (t1), the window is `[t0 + max, t1)`: every write of an org of S that started in it must succeed on
//! n (as the client observed it), and no workload write may reach another node of S in it (as the
//! servers logged it). So writes resume on the new primary within `max`, and the old primary, fenced
//! or dead, gets none once the router had `max` to find the new one.

use crate::check::{Evidence, format_ms, node_name};
use crate::record::events::{FaultRecord, Micros, NodeIdx, OpKind, Purpose, StatementKind};

/// What one promotion looked like.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Promotion {
    /// The promoted node.
    pub node: String,
    /// When the promotion was asked for, in integer ms (floor).
    pub fault_at_ms: u64,
    /// Start of the first write the new primary executed after it (server side), in integer ms.
    pub first_write_ms: Option<u64>,
    /// `first_write_ms - fault_at_ms`: how long writes took to resume.
    pub resumed_ms: Option<u64>,
    /// Writes that other nodes of the shard refused (SQLSTATE 25006) from the promotion on.
    pub rejected_writes: u64,
    /// Client writes of the shard that failed from the promotion on.
    pub failed_writes: u64,
}

/// Promote faults, in fault order.
pub(crate) fn promote_faults<'a>(evidence: &Evidence<'a>) -> Vec<&'a FaultRecord> {
    let mut faults: Vec<&FaultRecord> = evidence
        .faults
        .iter()
        .filter(|f| f.kind == "promote")
        .collect();
    faults.sort_by_key(|f| (f.at_us, f.index));
    faults
}

fn shard_of(evidence: &Evidence, node: NodeIdx) -> Option<usize> {
    evidence.scenario.nodes.get(node).map(|n| n.shard)
}

/// When a promotion's rule ends: the next promotion in the same shard, or the end of the run.
fn end_us(evidence: &Evidence, fault: &FaultRecord) -> Micros {
    let shard = shard_of(evidence, fault.target);
    promote_faults(evidence)
        .into_iter()
        .filter(|f| f.at_us > fault.at_us && shard_of(evidence, f.target) == shard)
        .map(|f| f.at_us)
        .min()
        .unwrap_or(evidence.run_end_us)
}

/// Whether `node` was its shard's primary when a write started at `at_us`, as far as promotions
/// tell: after a promotion in the shard, only the promoted node is, whatever the others believe
/// (a fenced old primary still says it is out of recovery, but refuses writes). `None`: no
/// promotion in the shard by then, so the server's own role decides.
pub(crate) fn primary_by_promotion(
    evidence: &Evidence,
    node: NodeIdx,
    at_us: Micros,
) -> Option<bool> {
    let shard = shard_of(evidence, node)?;
    promote_faults(evidence)
        .into_iter()
        .rfind(|f| f.at_us <= at_us && shard_of(evidence, f.target) == Some(shard))
        .map(|f| f.target == node)
}

/// One entry per promote fault, in time order.
pub fn promotions(evidence: &Evidence) -> Vec<Promotion> {
    promote_faults(evidence)
        .into_iter()
        .map(|fault| promotion_of(evidence, fault))
        .collect()
}

fn promotion_of(evidence: &Evidence, fault: &FaultRecord) -> Promotion {
    let shard = shard_of(evidence, fault.target);
    let (from, to) = (fault.at_us, end_us(evidence, fault));
    let writes = || {
        evidence.events.statements.iter().filter(move |s| {
            s.purpose == Purpose::Workload
                && s.kind == StatementKind::Write
                && s.start_us >= from
                && s.start_us < to
        })
    };
    let first_write_us = writes()
        .filter(|s| s.node == fault.target && s.sqlstate.is_none())
        .map(|s| s.start_us)
        .min();
    let rejected_writes = writes()
        .filter(|s| s.node != fault.target && shard_of(evidence, s.node) == shard)
        .filter(|s| s.sqlstate.as_deref() == Some("25006"))
        .count() as u64;
    let failed_writes = evidence
        .events
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Write && !o.ok && o.start_us >= from && o.start_us < to)
        .filter(|o| evidence.scenario.shard_of_org(o.org) == shard)
        .count() as u64;
    let fault_at_ms = from / 1000;
    let first_write_ms = first_write_us.map(|us| us / 1000);
    Promotion {
        node: node_name(evidence.scenario, fault.target),
        fault_at_ms,
        first_write_ms,
        resumed_ms: first_write_ms.map(|ms| ms.saturating_sub(fault_at_ms)),
        rejected_writes,
        failed_writes,
    }
}

/// Why a promotion broke `failover_within{max}`, or `None` if it held.
pub(crate) fn violations(
    evidence: &Evidence,
    fault: &FaultRecord,
    max_us: Micros,
) -> Option<String> {
    let shard = shard_of(evidence, fault.target);
    let window_start_us = fault.at_us.saturating_add(max_us);
    let window_end_us = end_us(evidence, fault);
    if window_start_us >= window_end_us {
        return None;
    }
    let in_window = |start_us: Micros| start_us >= window_start_us && start_us < window_end_us;
    let mut reasons = Vec::new();
    let mut bad_ops = evidence
        .events
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Write && in_window(o.start_us))
        .filter(|o| evidence.scenario.shard_of_org(o.org) == shard)
        .filter(|o| !o.ok || o.node != Some(fault.target))
        .collect::<Vec<_>>();
    bad_ops.sort_by_key(|o| (o.start_us, o.client));
    if let Some(first) = bad_ops.first() {
        let what = match (&first.error, first.node) {
            (Some(error), _) => error.clone(),
            (None, Some(node)) => format!("served by {}", node_name(evidence.scenario, node)),
            (None, None) => "no error message".to_string(),
        };
        reasons.push(format!(
            "{} writes started from {} ms did not succeed on the new primary, first at {} ms: {what}",
            bad_ops.len(),
            format_ms(window_start_us),
            format_ms(first.start_us)
        ));
    }
    let mut elsewhere = evidence
        .events
        .statements
        .iter()
        .filter(|s| s.purpose == Purpose::Workload && s.kind == StatementKind::Write)
        .filter(|s| in_window(s.start_us) && s.node != fault.target)
        .filter(|s| shard_of(evidence, s.node) == shard)
        .collect::<Vec<_>>();
    elsewhere.sort_by_key(|s| (s.start_us, s.node, s.conn));
    if let Some(first) = elsewhere.first() {
        reasons.push(format!(
            "{} writes reached {} (not the new primary) from {} ms, first at {} ms",
            elsewhere.len(),
            node_name(evidence.scenario, first.node),
            format_ms(window_start_us),
            format_ms(first.start_us)
        ));
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{PRIMARY_1, PRIMARY_2, REPLICA_1, REPLICA_2, TestRun, ms};
    use crate::record::events::NodeRole;

    const MAX: Micros = 2_000_000;

    /// primary-1 crashed at 10 s and replica-1 was promoted at 10.5 s.
    fn promoted() -> TestRun {
        let mut run = TestRun::new();
        run.fault("crash", PRIMARY_1, ms(10_000), None);
        run.fault("promote", REPLICA_1, ms(10_500), None);
        run
    }

    fn write_on(run: &mut TestRun, node: NodeIdx, at: Micros, ok: bool) {
        let op = run.op(7, OpKind::Write, at, at + ms(2));
        op.ok = ok;
        op.node = ok.then_some(node);
        if !ok {
            op.error = Some("no healthy node can serve this write in shard s1".to_string());
        }
        if ok {
            run.statement(node, StatementKind::Write, at + ms(1)).role = NodeRole::Primary;
        }
    }

    #[test]
    fn writes_resuming_on_the_new_primary_in_time_pass_with_their_figures() {
        let mut run = promoted();
        write_on(&mut run, REPLICA_1, ms(9_000), false);
        write_on(&mut run, REPLICA_1, ms(11_000), false);
        write_on(&mut run, REPLICA_1, ms(11_250), true);
        write_on(&mut run, REPLICA_1, ms(13_000), true);
        let fault = run.faults[1].clone();
        assert_eq!(violations(&run.evidence(), &fault, MAX), None);
        assert_eq!(
            promotions(&run.evidence()),
            vec![Promotion {
                node: "replica-1".to_string(),
                fault_at_ms: 10_500,
                first_write_ms: Some(11_251),
                resumed_ms: Some(751),
                rejected_writes: 0,
                failed_writes: 1,
            }]
        );
    }

    #[test]
    fn a_failed_write_after_max_breaks_it() {
        let mut run = promoted();
        write_on(&mut run, REPLICA_1, ms(12_600), false);
        let fault = run.faults[1].clone();
        assert_eq!(
            violations(&run.evidence(), &fault, MAX).as_deref(),
            Some(
                "1 writes started from 12500 ms did not succeed on the new primary, first at \
                 12600 ms: no healthy node can serve this write in shard s1"
            )
        );
    }

    #[test]
    fn a_write_reaching_the_fenced_old_primary_after_max_breaks_it() {
        let mut run = TestRun::new();
        run.fault("promote", REPLICA_1, ms(10_000), None);
        run.statement(PRIMARY_1, StatementKind::Write, ms(10_100))
            .sqlstate = Some("25006".to_string());
        run.statement(PRIMARY_1, StatementKind::Write, ms(12_100))
            .sqlstate = Some("25006".to_string());
        // Another shard's primary is no concern of this promotion.
        run.statement(PRIMARY_2, StatementKind::Write, ms(12_200));
        let fault = run.faults[0].clone();
        assert_eq!(
            violations(&run.evidence(), &fault, MAX).as_deref(),
            Some(
                "1 writes reached primary-1 (not the new primary) from 12000 ms, first at 12100 ms"
            )
        );
        assert_eq!(promotions(&run.evidence())[0].rejected_writes, 2);
        assert_eq!(promotions(&run.evidence())[0].first_write_ms, None);
    }

    #[test]
    fn only_the_latest_promoted_node_of_a_shard_is_its_primary() {
        let mut run = TestRun::new();
        run.fault("promote", REPLICA_1, ms(10_000), None);
        run.fault("promote", REPLICA_2, ms(20_000), None);
        let evidence = run.evidence();
        assert_eq!(primary_by_promotion(&evidence, PRIMARY_1, ms(9_999)), None);
        assert_eq!(
            primary_by_promotion(&evidence, PRIMARY_1, ms(10_000)),
            Some(false)
        );
        assert_eq!(
            primary_by_promotion(&evidence, REPLICA_1, ms(15_000)),
            Some(true)
        );
        assert_eq!(
            primary_by_promotion(&evidence, REPLICA_1, ms(20_000)),
            Some(false)
        );
        assert_eq!(
            primary_by_promotion(&evidence, REPLICA_2, ms(20_000)),
            Some(true)
        );
        assert_eq!(primary_by_promotion(&evidence, PRIMARY_2, ms(30_000)), None);
    }
}
