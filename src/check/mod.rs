//! Invariant checkers: one per file, each reading the recorded events.
//!
//! Every checker judges a run from what the simulated servers executed, what crossed the simulated
//! network and what the clients observed ([`Events`]); none trusts the router's counters. Each one is
//! a pure function of [`Evidence`] that returns an [`InvariantResult`] whose `detail` carries the
//! figure the verdict rests on, formatted with fixed precision so reports are byte-identical.
//!
//! - [`writes_only_primary`]: no write reached a node that was not a primary.
//! - [`failover_within`]: crashed or partitioned nodes stop getting workload in time; also the
//!   report's `failovers[]`.
//! - [`replica_read_share`]: share of executed reads served by replicas.
//! - [`latency`]: client-observed latency percentiles; also the report's histograms.
//! - [`no_failed_queries`]: failed client operations / all.
//! - [`max_staleness`]: how long a returned version had been superseded.
//! - [`read_your_writes`]: no client reads a version older than one it saw.
//! - [`caps_respected`]: connection and concurrency caps as the servers saw them.
//! - [`org_routing`]: every statement ran on its org's shard.
//! - [`transactions_atomic`]: transactions on one connection of the writer, no uncommitted version
//!   read, no lost update.
//! - [`promotion`]: promotions (part of `failover_within`, the fence `writes_only_primary` knows of,
//!   and their figures).

pub mod caps_respected;
pub(crate) mod commits;
pub mod failover_within;
pub mod latency;
pub mod max_staleness;
pub mod no_failed_queries;
pub mod org_routing;
pub mod promotion;
pub mod read_your_writes;
pub mod replica_read_share;
pub mod transactions_atomic;
pub mod writes_only_primary;

#[cfg(test)]
pub(crate) mod test_support;

use std::time::Duration;

use crate::record::events::{Events, FaultRecord, Micros, NodeIdx};
use crate::scenario::{Invariant, Scenario};

/// The verdict of one invariant over one run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct InvariantResult {
    /// The invariant's name as in scenario files (`failover_within`, ...).
    pub kind: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// The figure the verdict rests on, e.g. `worst 1180 ms <= 5000 ms`.
    pub detail: String,
}

impl InvariantResult {
    /// A verdict of `passed` with its figure.
    pub fn new(kind: &'static str, passed: bool, detail: String) -> InvariantResult {
        InvariantResult {
            kind,
            passed,
            detail,
        }
    }
}

/// Everything a checker may read.
pub struct Evidence<'a> {
    /// The scenario that was run.
    pub scenario: &'a Scenario,
    /// The records of the run.
    pub events: &'a Events,
    /// The faults as they were applied.
    pub faults: &'a [FaultRecord],
    /// When the run ended (the last operation finished); faults without an end last until then.
    pub run_end_us: Micros,
}

/// Checks every invariant of the scenario, in scenario order.
pub fn check_all(evidence: &Evidence) -> Vec<InvariantResult> {
    evidence
        .scenario
        .invariants
        .iter()
        .map(|invariant| check_one(invariant, evidence))
        .collect()
}

/// Checks one invariant against the evidence.
pub fn check_one(invariant: &Invariant, evidence: &Evidence) -> InvariantResult {
    match invariant {
        Invariant::WritesOnlyPrimary => writes_only_primary::check(evidence),
        Invariant::FailoverWithin { max } => failover_within::check(evidence, *max),
        Invariant::ReplicaReadShare { min } => replica_read_share::check(evidence, *min),
        Invariant::Latency {
            op,
            percentile,
            max,
        } => latency::check(evidence, *op, *percentile, *max),
        Invariant::NoFailedQueries { max_error_rate } => {
            no_failed_queries::check(evidence, *max_error_rate)
        }
        Invariant::MaxStaleness { max } => max_staleness::check(evidence, *max),
        Invariant::ReadYourWrites => read_your_writes::check(evidence),
        Invariant::CapsRespected => caps_respected::check(evidence),
        Invariant::OrgRouting => org_routing::check(evidence),
        Invariant::TransactionsAtomic => transactions_atomic::check(evidence),
    }
}

/// A duration in simulated microseconds, saturating at `u64::MAX`.
pub(crate) fn duration_us(duration: Duration) -> Micros {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Microseconds as milliseconds with at most three decimals and no trailing zeros: 12300 -> `12.3`.
pub(crate) fn format_ms(us: Micros) -> String {
    let whole = us / 1000;
    let fraction = us % 1000;
    if fraction == 0 {
        return whole.to_string();
    }
    let text = format!("{whole}.{fraction:03}");
    text.trim_end_matches('0').to_string()
}

/// A node's name, or `node#i` for an index the scenario does not have (a corrupt record).
pub(crate) fn node_name(scenario: &Scenario, node: NodeIdx) -> String {
    match scenario.nodes.get(node) {
        Some(n) => n.name.clone(),
        None => format!("node#{node}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::TestRun;

    #[test]
    fn format_ms_trims_trailing_zeros_only_after_the_point() {
        assert_eq!(format_ms(0), "0");
        assert_eq!(format_ms(20_000), "20");
        assert_eq!(format_ms(12_300), "12.3");
        assert_eq!(format_ms(1_001), "1.001");
        assert_eq!(format_ms(100_050), "100.05");
    }

    #[test]
    fn check_all_follows_scenario_order() {
        let mut run = TestRun::new();
        run.scenario.invariants = vec![Invariant::OrgRouting, Invariant::WritesOnlyPrimary];
        let results = check_all(&run.evidence());
        let kinds: Vec<&str> = results.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["org_routing", "writes_only_primary"]);
    }
}
