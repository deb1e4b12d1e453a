//! `failover_within{max}`: a crashed or partitioned node stops getting workload within `max`, and
//! reads that may use a replica keep succeeding meanwhile; after a `promote`, writes succeed on the
//! new primary from `max` on (see [`promotion`]). Also the report's `failovers[]`.
//!
//! A dead node cannot log what it did not see, so attempts are taken from the application host's
//! network records (connects and statement messages on behalf of client operations, including those
//! written into a connection that was already dead), never from the router's own view of which
//! nodes it considers healthy.
//!
//! For a fault on node n from t0 to t1 (its end, or the end of the run), the window is
//! `[t0 + max, t1)`: no workload attempt on n may start in it, and every read with
//! `prefer_replica = true` of an org of n's shard that started in it must succeed. Reads of other
//! shards could never have used n, so their failures belong to other faults. Writes and primary-only
//! reads are never required to succeed: when n is the primary they have nowhere else to go.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::check::{Evidence, InvariantResult, duration_us, format_ms, node_name, promotion};
use crate::record::events::{FaultRecord, Micros, NetKind, NodeIdx, OpKind, Purpose};
use crate::scenario::FaultKind;

const KIND: &str = "failover_within";

/// How long the router kept sending workload to a node after it crashed or was partitioned.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Failover {
    /// The node's name.
    pub node: String,
    /// When the fault started, in integer ms (floor).
    pub fault_at_ms: u64,
    /// Start of the last workload attempt on the node while the fault lasted, or `fault_at_ms`.
    pub last_attempt_ms: u64,
    /// `last_attempt_ms - fault_at_ms`.
    pub failover_ms: u64,
}

/// One failover per crash or partition fault, in fault order.
pub fn failovers(evidence: &Evidence) -> Vec<Failover> {
    outages(evidence)
        .into_iter()
        .map(|(_, failover)| failover)
        .collect()
}

/// Each crash or partition fault with its failover, in fault order: for whoever needs the fault's
/// window beside the failover (the failover chart draws both).
pub fn outages<'a>(evidence: &Evidence<'a>) -> Vec<(&'a FaultRecord, Failover)> {
    let attempts = Attempts::new(evidence);
    outage_faults(evidence)
        .into_iter()
        .map(|fault| (fault, failover_of(evidence, &attempts, fault)))
        .collect()
}

/// Checks that every crash or partition was routed around, and every promotion followed, within
/// `max`.
pub fn check(evidence: &Evidence, max: Duration) -> InvariantResult {
    let faults = outage_faults(evidence);
    let promotions = promotion::promote_faults(evidence);
    if faults.is_empty() && promotions.is_empty() {
        return InvariantResult::new(KIND, true, "no crash or partition".to_string());
    }
    let max_us = duration_us(max);
    let attempts = Attempts::new(evidence);
    let failed_reads = FailedReads::new(evidence);
    let mut worst_ms: u64 = 0;
    let mut broken: Vec<String> = Vec::new();
    for fault in &faults {
        worst_ms = worst_ms.max(failover_of(evidence, &attempts, fault).failover_ms);
        if let Some(reasons) = violations(evidence, &attempts, &failed_reads, fault, max_us) {
            broken.push(format!("{}: {reasons}", describe(evidence, fault)));
        }
    }
    for fault in &promotions {
        if let Some(reasons) = promotion::violations(evidence, fault, max_us) {
            broken.push(format!("{}: {reasons}", describe(evidence, fault)));
        }
    }
    let resumed: Vec<String> = promotion::promotions(evidence)
        .iter()
        .map(|p| match p.resumed_ms {
            Some(ms) => format!("writes resumed on {} {ms} ms after its promotion", p.node),
            None => format!("no write on {} after its promotion", p.node),
        })
        .collect();
    let max_text = format_ms(max_us);
    let mut detail = match broken.first() {
        None => format!("worst {worst_ms} ms <= {max_text} ms"),
        Some(first) => format!(
            "{first}; {} of {} faults broke it, worst {worst_ms} ms (max {max_text} ms)",
            broken.len(),
            faults.len() + promotions.len()
        ),
    };
    for text in resumed {
        detail.push_str("; ");
        detail.push_str(&text);
    }
    InvariantResult::new(KIND, broken.is_empty(), detail)
}

/// Why one fault broke the invariant, or `None` if it held.
fn violations(
    evidence: &Evidence,
    attempts: &Attempts,
    failed_reads: &FailedReads,
    fault: &FaultRecord,
    max_us: Micros,
) -> Option<String> {
    let window_start_us = fault.at_us.saturating_add(max_us);
    let window_end_us = end_us(evidence, fault);
    if window_start_us >= window_end_us {
        return None;
    }
    let mut reasons: Vec<String> = Vec::new();
    let late = attempts.between(fault.target, window_start_us, window_end_us);
    if let Some(first) = late.first() {
        reasons.push(format!(
            "{} workload attempts from {} ms, first at {} ms ({} ms after the fault)",
            late.len(),
            format_ms(window_start_us),
            format_ms(*first),
            format_ms(first - fault.at_us)
        ));
    }
    let shard = evidence.scenario.nodes.get(fault.target).map(|n| n.shard);
    let failed: Vec<&(Micros, usize)> = match shard {
        // A read in flight while every node of its shard was out (crashed, partitioned, or too
        // far away for any statement to answer within the query timeout) needed a node when
        // there was none, and the router gets `max` to find a node that came back, as it gets
        // `max` to leave one that went: such a read says nothing of this fault's failover.
        Some(shard) => {
            let whole_shard_out = whole_shard_outages(evidence, shard);
            failed_reads
                .between(shard, window_start_us, window_end_us)
                .iter()
                .filter(|(start_us, op)| {
                    let end_us = evidence.events.ops.get(*op).map_or(*start_us, |o| o.end_us);
                    !whole_shard_out
                        .iter()
                        .any(|&(from, to)| from <= end_us && start_us.saturating_sub(max_us) < to)
                })
                .collect()
        }
        None => Vec::new(),
    };
    if let Some((start_us, op)) = failed.first() {
        let error = evidence
            .events
            .ops
            .get(*op)
            .and_then(|o| o.error.as_deref())
            .unwrap_or("no error message");
        reasons.push(format!(
            "{} replica reads started from {} ms failed, first at {} ms: {error}",
            failed.len(),
            format_ms(window_start_us),
            format_ms(*start_us)
        ));
    }
    if reasons.is_empty() {
        None
    } else {
        Some(reasons.join("; "))
    }
}

fn failover_of(evidence: &Evidence, attempts: &Attempts, fault: &FaultRecord) -> Failover {
    let during = attempts.between(fault.target, fault.at_us, end_us(evidence, fault));
    let last_attempt_us = during.last().copied().unwrap_or(fault.at_us);
    let fault_at_ms = fault.at_us / 1000;
    let last_attempt_ms = last_attempt_us / 1000;
    Failover {
        node: node_name(evidence.scenario, fault.target),
        fault_at_ms,
        last_attempt_ms,
        failover_ms: last_attempt_ms.saturating_sub(fault_at_ms),
    }
}

/// Crash and partition faults, in fault order.
fn outage_faults<'a>(evidence: &Evidence<'a>) -> Vec<&'a FaultRecord> {
    let mut faults: Vec<&FaultRecord> = evidence
        .faults
        .iter()
        .filter(|f| f.kind == "crash" || f.kind == "partition")
        .collect();
    faults.sort_by_key(|f| (f.index, f.at_us, f.target));
    faults
}

/// The faults during which a node can answer no read: crashes, partitions, and added latency that
/// leaves no statement's round trip (both directions of the link) inside the router's
/// `query_timeout`.
fn unanswering_faults<'a>(evidence: &Evidence<'a>) -> Vec<&'a FaultRecord> {
    let query_timeout = evidence.scenario.router.query_timeout;
    let answers_too_late = |fault: &FaultRecord| {
        let Some(FaultKind::Latency { latency }) =
            evidence.scenario.faults.get(fault.index).map(|f| &f.kind)
        else {
            return false;
        };
        let link = evidence
            .scenario
            .nodes
            .get(fault.target)
            .map_or(Duration::ZERO, |node| node.link_latency);
        link.saturating_add(*latency).saturating_mul(2) >= query_timeout
    };
    evidence
        .faults
        .iter()
        .filter(|f| f.kind == "crash" || f.kind == "partition" || answers_too_late(f))
        .collect()
}

/// The spans `[from, to)` during which every node of `shard` was out (see [`unanswering_faults`]).
fn whole_shard_outages(evidence: &Evidence, shard: usize) -> Vec<(Micros, Micros)> {
    let outages = unanswering_faults(evidence);
    let nodes: Vec<NodeIdx> = (0..evidence.scenario.nodes.len())
        .filter(|&index| evidence.scenario.nodes[index].shard == shard)
        .collect();
    let out_at = |at_us: Micros| {
        nodes.iter().all(|&node| {
            outages
                .iter()
                .any(|f| f.target == node && f.at_us <= at_us && at_us < end_us(evidence, f))
        })
    };
    // Whether the whole shard is out changes only at a fault's start or end.
    let mut bounds: Vec<Micros> = outages
        .iter()
        .filter(|f| nodes.contains(&f.target))
        .flat_map(|f| [f.at_us, end_us(evidence, f)])
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    bounds
        .windows(2)
        .filter(|span| out_at(span[0]))
        .map(|span| (span[0], span[1]))
        .collect()
}

fn end_us(evidence: &Evidence, fault: &FaultRecord) -> Micros {
    fault.until_us.unwrap_or(evidence.run_end_us)
}

fn describe(evidence: &Evidence, fault: &FaultRecord) -> String {
    format!(
        "{} of {} at {} ms",
        fault.kind,
        node_name(evidence.scenario, fault.target),
        format_ms(fault.at_us)
    )
}

/// Start times of workload attempts (connects and statement messages), sorted, per node.
struct Attempts {
    by_node: BTreeMap<NodeIdx, Vec<Micros>>,
}

impl Attempts {
    fn new(evidence: &Evidence) -> Attempts {
        let mut by_node: BTreeMap<NodeIdx, Vec<Micros>> = BTreeMap::new();
        for event in &evidence.events.net {
            // A statement written into a dead connection is an attempt too: the router still chose the node.
            let attempt = matches!(
                event.kind,
                NetKind::Connect | NetKind::Statement | NetKind::StatementFailed
            );
            if attempt && event.purpose == Purpose::Workload {
                by_node.entry(event.node).or_default().push(event.at_us);
            }
        }
        for times in by_node.values_mut() {
            times.sort_unstable();
        }
        Attempts { by_node }
    }

    /// Attempts on `node` that started in `[from_us, to_us)`.
    fn between(&self, node: NodeIdx, from_us: Micros, to_us: Micros) -> &[Micros] {
        match self.by_node.get(&node) {
            Some(times) => slice_between(times, from_us, to_us, |t| *t),
            None => &[],
        }
    }
}

/// Failed client reads that may use a replica, as (start, index in `Events::ops`), sorted, per shard
/// of their org.
struct FailedReads {
    by_shard: BTreeMap<usize, Vec<(Micros, usize)>>,
}

impl FailedReads {
    fn new(evidence: &Evidence) -> FailedReads {
        let mut by_shard: BTreeMap<usize, Vec<(Micros, usize)>> = BTreeMap::new();
        for (index, op) in evidence.events.ops.iter().enumerate() {
            if op.kind != OpKind::Read || !op.prefer_replica || op.ok {
                continue;
            }
            if let Some(shard) = evidence.scenario.shard_of_org(op.org) {
                by_shard
                    .entry(shard)
                    .or_default()
                    .push((op.start_us, index));
            }
        }
        for reads in by_shard.values_mut() {
            reads.sort_unstable();
        }
        FailedReads { by_shard }
    }

    /// Failed reads of `shard` that started in `[from_us, to_us)`.
    fn between(&self, shard: usize, from_us: Micros, to_us: Micros) -> &[(Micros, usize)] {
        match self.by_shard.get(&shard) {
            Some(reads) => slice_between(reads, from_us, to_us, |r| r.0),
            None => &[],
        }
    }
}

/// The part of `sorted` whose time lies in `[from_us, to_us)`.
fn slice_between<T>(
    sorted: &[T],
    from_us: Micros,
    to_us: Micros,
    time: impl Fn(&T) -> Micros,
) -> &[T] {
    let start = sorted.partition_point(|item| time(item) < from_us);
    let end = sorted.partition_point(|item| time(item) < to_us);
    sorted.get(start..end.max(start)).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{PRIMARY_1, REPLICA_1, REPLICA_2, TestRun, ms};

    const MAX: Duration = Duration::from_secs(2);

    #[test]
    fn no_outage_fault_passes() {
        let mut run = TestRun::new();
        run.fault("slow", REPLICA_1, ms(1_000), None);
        let result = check(&run.evidence(), MAX);
        assert!(result.passed);
        assert_eq!(result.detail, "no crash or partition");
        assert!(failovers(&run.evidence()).is_empty());
    }

    #[test]
    fn attempts_that_stop_in_time_pass_with_the_worst_failover() {
        let mut run = TestRun::new();
        run.fault("crash", REPLICA_1, ms(10_000), Some(ms(20_000)));
        run.fault("partition", REPLICA_2, ms(30_000), None);
        run.net(REPLICA_1, NetKind::Statement, ms(9_000));
        run.net(REPLICA_1, NetKind::Connect, ms(10_500));
        run.net(REPLICA_1, NetKind::Statement, ms(11_180) + 700);
        // Failed connects are not attempts; probes are not workload; after the restart is fine.
        run.net(REPLICA_1, NetKind::ConnectFailed, ms(15_000));
        run.net(REPLICA_1, NetKind::Connect, ms(16_000)).purpose = Purpose::Check;
        run.net(REPLICA_1, NetKind::Connect, ms(20_000));
        run.op(1, OpKind::Read, ms(14_000), ms(14_002));
        let result = check(&run.evidence(), MAX);
        assert!(result.passed, "{}", result.detail);
        assert_eq!(result.detail, "worst 1180 ms <= 2000 ms");
        let expected = vec![
            Failover {
                node: "replica-1".to_string(),
                fault_at_ms: 10_000,
                last_attempt_ms: 11_180,
                failover_ms: 1_180,
            },
            Failover {
                node: "replica-2".to_string(),
                fault_at_ms: 30_000,
                last_attempt_ms: 30_000,
                failover_ms: 0,
            },
        ];
        assert_eq!(failovers(&run.evidence()), expected);
    }

    #[test]
    fn an_attempt_three_seconds_after_a_crash_fails_with_max_two() {
        let mut run = TestRun::new();
        run.fault("crash", REPLICA_1, ms(10_000), Some(ms(20_000)));
        run.net(REPLICA_1, NetKind::Statement, ms(13_000));
        let result = check(&run.evidence(), MAX);
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "crash of replica-1 at 10000 ms: 1 workload attempts from 12000 ms, first at 13000 ms \
             (3000 ms after the fault); 1 of 1 faults broke it, worst 3000 ms (max 2000 ms)"
        );
        assert_eq!(failovers(&run.evidence())[0].failover_ms, 3_000);
    }

    #[test]
    fn a_statement_written_on_a_dead_connection_after_a_crash_counts_as_an_attempt() {
        let mut run = TestRun::new();
        run.fault("crash", REPLICA_1, ms(10_000), Some(ms(20_000)));
        run.net(REPLICA_1, NetKind::Statement, ms(10_100));
        run.net(REPLICA_1, NetKind::StatementFailed, ms(12_500));
        assert_eq!(failovers(&run.evidence())[0].last_attempt_ms, 12_500);
        let result = check(&run.evidence(), MAX);
        assert!(!result.passed, "{}", result.detail);
        assert!(
            result.detail.contains("first at 12500 ms"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn a_partition_without_end_lasts_to_the_end_of_the_run() {
        let mut run = TestRun::new();
        run.run_end_us = ms(50_000);
        run.fault("partition", REPLICA_1, ms(10_000), None);
        run.net(REPLICA_1, NetKind::Connect, ms(49_999));
        assert!(!check(&run.evidence(), MAX).passed);
        run.run_end_us = ms(49_999);
        assert!(check(&run.evidence(), MAX).passed);
    }

    #[test]
    fn a_read_with_every_node_of_its_shard_out_says_nothing_of_the_failover() {
        let mut run = TestRun::new();
        run.fault("partition", PRIMARY_1, ms(10_000), Some(ms(30_000)));
        run.fault("crash", REPLICA_1, ms(12_000), Some(ms(16_000)));
        run.fault("crash", REPLICA_2, ms(13_000), Some(ms(17_000)));
        // Every node of s1 out from 13 s to 16 s; the router then has MAX (2 s) to find replica-1
        // back.
        run.op(1, OpKind::Read, ms(14_000), ms(14_500)).ok = false;
        run.op(2, OpKind::Read, ms(17_500), ms(17_600)).ok = false;
        let result = check(&run.evidence(), MAX);
        assert!(result.passed, "{}", result.detail);
        // replica-1 has been back for 2.5 s.
        run.op(3, OpKind::Read, ms(18_500), ms(18_600)).ok = false;
        let result = check(&run.evidence(), MAX);
        assert!(!result.passed);
        assert!(
            result.detail.starts_with(
                "partition of primary-1 at 10000 ms: 1 replica reads started from 12000 ms \
                 failed, first at 18500 ms"
            ),
            "{}",
            result.detail
        );
    }

    /// A latency fault on `target` from `at` to `until`, in the scenario and as applied.
    fn latency(run: &mut TestRun, target: NodeIdx, latency_ms: u64, at: Micros, until: Micros) {
        let index = run.scenario.faults.len();
        run.scenario.faults.push(crate::scenario::Fault {
            at: Duration::from_micros(at),
            kind: FaultKind::Latency {
                latency: Duration::from_millis(latency_ms),
            },
            target,
            duration: Some(Duration::from_micros(until - at)),
        });
        run.fault("latency", target, at, Some(until)).index = index;
    }

    #[test]
    fn a_node_too_far_to_answer_within_the_query_timeout_is_out() {
        // The primary and replica-2 down, replica-1 slowed by `extra_ms` each way, and a read that
        // failed meanwhile; the query timeout is 200 ms.
        let shard_left_with_replica_1_slowed_by = |extra_ms| {
            let mut run = TestRun::new();
            run.scenario.router.query_timeout = Duration::from_millis(200);
            run.fault("crash", PRIMARY_1, ms(10_000), Some(ms(30_000)));
            run.fault("crash", REPLICA_2, ms(12_000), Some(ms(30_000)));
            latency(&mut run, REPLICA_1, extra_ms, ms(14_000), ms(20_000));
            run.op(1, OpKind::Read, ms(15_000), ms(15_400)).ok = false;
            run
        };
        // 99 ms: a round trip of 2 x (1 ms link + 99 ms) = 200 ms, no answer within 200 ms.
        let result = check(&shard_left_with_replica_1_slowed_by(99).evidence(), MAX);
        assert!(result.passed, "{}", result.detail);
        // 98 ms: 198 ms round trips fit, so replica-1 could answer and the read had somewhere to go.
        let result = check(&shard_left_with_replica_1_slowed_by(98).evidence(), MAX);
        assert!(!result.passed);
        assert!(
            result.detail.contains("first at 15000 ms"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn a_read_in_flight_when_the_last_node_goes_out_says_nothing_of_the_failover() {
        let mut run = TestRun::new();
        run.fault("crash", PRIMARY_1, ms(10_000), Some(ms(30_000)));
        run.fault("crash", REPLICA_2, ms(11_000), Some(ms(30_000)));
        run.fault("crash", REPLICA_1, ms(14_000), Some(ms(20_000)));
        // Started 1 ms before replica-1 went too, failed after: it needed a node when none was up.
        run.op(1, OpKind::Read, ms(13_999), ms(14_300)).ok = false;
        assert!(check(&run.evidence(), MAX).passed);
        // Failed before replica-1 went: it had replica-1.
        run.op(2, OpKind::Read, ms(13_500), ms(13_900)).ok = false;
        let result = check(&run.evidence(), MAX);
        assert!(!result.passed);
        assert!(
            result.detail.contains("first at 13500 ms"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn a_failed_replica_read_in_the_window_fails() {
        let mut run = TestRun::new();
        run.fault("crash", PRIMARY_1, ms(10_000), Some(ms(20_000)));
        // Before the window, other shards, writes and primary-only reads do not count.
        run.op(1, OpKind::Read, ms(11_000), ms(11_001)).ok = false;
        let other_shard = run.op(2, OpKind::Read, ms(13_000), ms(13_001));
        other_shard.org = 1_500_000;
        other_shard.ok = false;
        run.op(3, OpKind::Write, ms(13_000), ms(13_001)).ok = false;
        let primary_read = run.op(4, OpKind::Read, ms(13_000), ms(13_001));
        primary_read.ok = false;
        primary_read.prefer_replica = false;
        assert!(check(&run.evidence(), MAX).passed);

        let read = run.op(5, OpKind::Read, ms(14_000), ms(14_500));
        read.ok = false;
        read.error = Some("no usable node".to_string());
        let result = check(&run.evidence(), MAX);
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "crash of primary-1 at 10000 ms: 1 replica reads started from 12000 ms failed, first at \
             14000 ms: no usable node; 1 of 1 faults broke it, worst 0 ms (max 2000 ms)"
        );
    }

    #[test]
    fn a_promotion_must_bring_writes_back_within_max() {
        let mut run = TestRun::new();
        run.fault("crash", PRIMARY_1, ms(10_000), None);
        run.fault("promote", REPLICA_1, ms(10_500), None);
        let write = run.op(1, OpKind::Write, ms(11_000), ms(11_002));
        write.node = Some(REPLICA_1);
        let result = check(&run.evidence(), MAX);
        assert!(result.passed, "{}", result.detail);
        assert_eq!(
            result.detail,
            "worst 0 ms <= 2000 ms; no write on replica-1 after its promotion"
        );
        // A router that never follows the promotion: writes keep failing.
        let write = run.op(2, OpKind::Write, ms(13_000), ms(13_001));
        write.ok = false;
        write.error = Some("no healthy node can serve this write in shard s1".to_string());
        let result = check(&run.evidence(), MAX);
        assert!(!result.passed);
        assert_eq!(
            result.detail,
            "promote of replica-1 at 10500 ms: 1 writes started from 12500 ms did not succeed on \
             the new primary, first at 13000 ms: no healthy node can serve this write in shard s1; \
             1 of 2 faults broke it, worst 0 ms (max 2000 ms); no write on replica-1 after its \
             promotion"
        );
    }

    #[test]
    fn a_fault_shorter_than_max_cannot_break_it() {
        let mut run = TestRun::new();
        run.fault("crash", REPLICA_1, ms(10_000), Some(ms(11_000)));
        run.net(REPLICA_1, NetKind::Statement, ms(10_900));
        let result = check(&run.evidence(), MAX);
        assert!(result.passed);
        assert_eq!(result.detail, "worst 900 ms <= 2000 ms");
    }
}
