//! The report's `router` field: what the router counted about itself, per node, at the end of the run.
//! Reported beside the servers' ground truth, never used to judge an invariant.

use serde::Serialize;

use crate::report::Percentiles;
use crate::router::MetricsSnapshot;
use crate::router::latency::LatencySnapshot;
use crate::router::route_reason::{RouteCounts, RouteReason};

/// One node as the router counted it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RouterNode {
    /// Node name.
    pub name: String,
    /// Workload attempts started on it, retries included.
    pub attempts: u64,
    /// Attempts that succeeded.
    pub ok: u64,
    /// Attempts that failed.
    pub errors: u64,
    /// Attempts the caller abandoned.
    pub cancelled: u64,
    /// Statements the router abandoned while the node might still run them.
    pub abandoned: u64,
    /// CancelRequests the router delivered to the node for them.
    pub cancels_sent: u64,
    /// Why attempts came to it.
    pub routes: RouteReasons,
    /// Time of its attempts as the router measured it, in ms.
    pub latency_ms: Percentiles,
}

/// Counts by routing reason, in the exposition's order (see `router::route_reason`).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RouteReasons {
    /// A replica picked by the balancing policy.
    pub round_robin: u64,
    /// A replica read sent to the primary because no replica was usable.
    pub fallback_primary: u64,
    /// A read that asked for the primary.
    pub primary_requested: u64,
    /// A retried read attempt.
    pub retry: u64,
    /// A write.
    pub write: u64,
    /// Waits for a user or org cap or a pool slot.
    pub cap_wait: u64,
    /// Replicas kept out for lag.
    pub lag_exclusion: u64,
    /// Nodes chosen to show a session its writes.
    pub read_your_writes: u64,
}

impl From<&RouteCounts> for RouteReasons {
    fn from(counts: &RouteCounts) -> Self {
        RouteReasons {
            round_robin: counts.get(RouteReason::RoundRobin),
            fallback_primary: counts.get(RouteReason::FallbackPrimary),
            primary_requested: counts.get(RouteReason::PrimaryRequested),
            retry: counts.get(RouteReason::Retry),
            write: counts.get(RouteReason::Write),
            cap_wait: counts.get(RouteReason::CapWait),
            lag_exclusion: counts.get(RouteReason::LagExclusion),
            read_your_writes: counts.get(RouteReason::ReadYourWrites),
        }
    }
}

fn latency_ms(latency: &LatencySnapshot) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        p50: ms(latency.p50_us),
        p95: ms(latency.p95_us),
        p99: ms(latency.p99_us),
        max: ms(latency.max_us),
    }
}

/// The `router` field of a run whose router ended with `metrics`, in topology order.
pub fn summarise(metrics: &MetricsSnapshot) -> Vec<RouterNode> {
    metrics
        .nodes
        .iter()
        .map(|node| RouterNode {
            name: node.stats.name.clone(),
            attempts: node.stats.attempts,
            ok: node.stats.successes,
            errors: node.stats.errors,
            cancelled: node.stats.cancelled,
            abandoned: node.stats.abandoned,
            cancels_sent: node.stats.cancels_sent,
            routes: RouteReasons::from(&node.routes),
            latency_ms: latency_ms(&node.latency),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_lands_in_its_own_field() {
        let mut counts = RouteCounts::default();
        for (n, reason) in RouteReason::ALL.iter().enumerate() {
            counts.add(*reason, n as u64 + 1);
        }
        let reasons = RouteReasons::from(&counts);
        let json = serde_json::to_value(&reasons).unwrap_or_default();
        for (n, reason) in RouteReason::ALL.iter().enumerate() {
            assert_eq!(
                json.get(reason.label()).and_then(|v| v.as_u64()),
                Some(n as u64 + 1),
                "{}",
                reason.label()
            );
        }
    }
}
