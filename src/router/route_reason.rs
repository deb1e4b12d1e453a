//! Why a request went to the node it went to: one counter per reason and node, bumped with a single
//! relaxed atomic add next to the routing decision.
//!
//! Every workload attempt counts exactly one *decision* (`round_robin`, `fallback_primary`,
//! `primary_requested`, `retry` or `write`), so per node the decisions add up to the attempts. The
//! *conditions* (`cap_wait`, `lag_exclusion`, `read_your_writes`) count alongside a decision when the
//! request met them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::router::route::{ServedRole, Tried};

/// Why a request was routed to a node, or what it met on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum RouteReason {
    /// Decision: a replica picked by the balancing policy, whichever `balance` names (the label keeps
    /// the name of the default policy, so dashboards need not change with the policy).
    RoundRobin,
    /// Decision: a read that wanted a replica went to the primary because no replica was usable.
    FallbackPrimary,
    /// Decision: a read that asked for the primary (`prefer_replica = false` or
    /// `use_read_replicas = false`).
    PrimaryRequested,
    /// Decision: a read retried after a failed attempt on another node of the shard.
    Retry,
    /// Decision: a write, which always goes to the primary.
    Write,
    /// Condition: the request waited for its user or org cap (counted on the node of its first
    /// attempt) or for a free connection slot of this node.
    CapWait,
    /// Condition: a replica was kept out of the decision for lagging past `max_replica_lag`. Counted by
    /// lag-aware routing; zero while it is not enabled.
    LagExclusion,
    /// Condition: the node was chosen to show a session its own writes. Counted by read-your-writes
    /// routing; zero while it is not enabled.
    ReadYourWrites,
}

/// Number of reasons.
pub const ROUTE_REASONS: usize = 8;

impl RouteReason {
    /// Every reason, in the fixed order of reports and the Prometheus exposition.
    pub const ALL: [RouteReason; ROUTE_REASONS] = [
        RouteReason::RoundRobin,
        RouteReason::FallbackPrimary,
        RouteReason::PrimaryRequested,
        RouteReason::Retry,
        RouteReason::Write,
        RouteReason::CapWait,
        RouteReason::LagExclusion,
        RouteReason::ReadYourWrites,
    ];

    /// The label value (`reason="..."`) and report key.
    pub fn label(self) -> &'static str {
        match self {
            RouteReason::RoundRobin => "round_robin",
            RouteReason::FallbackPrimary => "fallback_primary",
            RouteReason::PrimaryRequested => "primary_requested",
            RouteReason::Retry => "retry",
            RouteReason::Write => "write",
            RouteReason::CapWait => "cap_wait",
            RouteReason::LagExclusion => "lag_exclusion",
            RouteReason::ReadYourWrites => "read_your_writes",
        }
    }

    /// Whether every attempt counts exactly one reason of this kind (see the module doc).
    pub fn is_decision(self) -> bool {
        matches!(
            self,
            RouteReason::RoundRobin
                | RouteReason::FallbackPrimary
                | RouteReason::PrimaryRequested
                | RouteReason::Retry
                | RouteReason::Write
        )
    }

    /// The decision behind one read attempt: `prefer_replica` as the router resolved it (after
    /// `use_read_replicas`), the role of the chosen node, and the nodes earlier attempts tried.
    #[inline]
    pub fn for_read(prefer_replica: bool, role: ServedRole, tried: Tried) -> RouteReason {
        if tried.count() > 0 {
            RouteReason::Retry
        } else if !prefer_replica {
            RouteReason::PrimaryRequested
        } else if role == ServedRole::Replica {
            RouteReason::RoundRobin
        } else {
            RouteReason::FallbackPrimary
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The reason counters of one node. Relaxed atomics: each counter is exact, a snapshot is not one
/// instant.
#[derive(Debug, Default)]
pub struct RouteCounters([AtomicU64; ROUTE_REASONS]);

impl RouteCounters {
    /// Counts one occurrence of `reason`.
    #[inline]
    pub fn count(&self, reason: RouteReason) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> RouteCounts {
        RouteCounts(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
}

/// Counts by reason at the time of a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteCounts([u64; ROUTE_REASONS]);

impl RouteCounts {
    /// The count of `reason`.
    pub fn get(&self, reason: RouteReason) -> u64 {
        self.0[reason.index()]
    }

    /// Adds `n` to the count of `reason`.
    pub fn add(&mut self, reason: RouteReason, n: u64) {
        let count = &mut self.0[reason.index()];
        *count = count.saturating_add(n);
    }

    /// Every reason with its count, in [`RouteReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (RouteReason, u64)> + '_ {
        RouteReason::ALL
            .iter()
            .map(|&reason| (reason, self.get(reason)))
    }

    /// The sum of the decisions, which equals the attempts counted on the node.
    pub fn decisions(&self) -> u64 {
        self.iter()
            .filter(|(reason, _)| reason.is_decision())
            .map(|(_, count)| count)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::route::{Choice, PRIMARY_POSITION};

    #[test]
    fn all_lists_every_reason_once_in_index_order() {
        for (i, reason) in RouteReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
        }
        let mut labels: Vec<_> = RouteReason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ROUTE_REASONS);
    }

    #[test]
    fn read_decisions_follow_the_request_and_the_choice() {
        let none = Tried::default();
        let replica = ServedRole::Replica;
        let primary = ServedRole::Primary;
        assert_eq!(
            RouteReason::for_read(true, replica, none),
            RouteReason::RoundRobin
        );
        assert_eq!(
            RouteReason::for_read(true, primary, none),
            RouteReason::FallbackPrimary
        );
        assert_eq!(
            RouteReason::for_read(false, primary, none),
            RouteReason::PrimaryRequested
        );
        let mut after_one = Tried::default();
        after_one.add(Choice {
            node: 0,
            role: primary,
            position: PRIMARY_POSITION,
        });
        for (prefer, role) in [(true, replica), (true, primary), (false, primary)] {
            assert_eq!(
                RouteReason::for_read(prefer, role, after_one),
                RouteReason::Retry
            );
        }
    }

    #[test]
    fn counters_snapshot_and_sum_decisions_only() {
        let counters = RouteCounters::default();
        counters.count(RouteReason::RoundRobin);
        counters.count(RouteReason::RoundRobin);
        counters.count(RouteReason::Retry);
        counters.count(RouteReason::CapWait);
        let mut counts = counters.snapshot();
        assert_eq!(counts.get(RouteReason::RoundRobin), 2);
        assert_eq!(counts.get(RouteReason::Write), 0);
        assert_eq!(counts.decisions(), 3, "cap_wait is not a decision");
        counts.add(RouteReason::Write, 4);
        assert_eq!(counts.decisions(), 7);
        let order: Vec<_> = counts.iter().map(|(reason, _)| reason).collect();
        assert_eq!(order, RouteReason::ALL.to_vec());
    }
}
