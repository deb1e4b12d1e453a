//! The router's metrics: a snapshot ([`crate::router::Router::metrics`]) of every node's counters,
//! pool use, routing reasons and statement latency, and its Prometheus text exposition (format 0.0.4).
//!
//! The exposition is deterministic: metric families in a fixed order, nodes in topology order, reasons
//! in [`RouteReason::ALL`] order, numbers printed exactly (durations from integer microseconds), so
//! the same simulated run gives the same text.

use std::fmt::Write;
use std::sync::Arc;

use crate::router::lag::LagSnapshot;
use crate::router::latency::{LATENCY_BUCKET_BOUNDS_US, LatencySnapshot};
use crate::router::node::Node;
use crate::router::route::ServedRole;
use crate::router::route_reason::{RouteCounts, RouteReason};
use crate::router::stats::NodeStatsSnapshot;

/// Every node's metrics at one moment, in topology order (per shard, primary then replicas).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsSnapshot {
    /// One entry per node.
    pub nodes: Vec<NodeMetrics>,
    /// Requests refused at a user or org cap; they never reached a node.
    pub cap_timeouts: CapTimeouts,
}

impl MetricsSnapshot {
    /// The entry of the node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeMetrics> {
        self.nodes.iter().find(|node| node.stats.name == name)
    }
}

/// One node's metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeMetrics {
    /// Attempts, outcomes, in flight, pool use and health, as [`crate::router::Router::stats`] has them.
    pub stats: NodeStatsSnapshot,
    /// Why attempts came to the node (see [`RouteReason`]); `cap_wait` includes waits for this
    /// node's pool slots.
    pub routes: RouteCounts,
    /// Time of the attempts that ended, from the start of the attempt (pool wait and connect
    /// included) to its last row or error.
    pub latency: LatencySnapshot,
    /// Replication lag as the probes measured it (see the `max_replica_lag` setting).
    pub lag: LagSnapshot,
}

/// Requests refused because a cap stayed full for `connect_timeout`, by cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapTimeouts {
    /// Refused at `max_connections_per_user`.
    pub user: u64,
    /// Refused at `max_connections_per_org`.
    pub org: u64,
}

/// The metrics of every node in `nodes` now.
pub(crate) fn snapshot(nodes: &[Arc<Node>], cap_timeouts: CapTimeouts) -> MetricsSnapshot {
    MetricsSnapshot {
        nodes: nodes
            .iter()
            .map(|node| {
                let mut routes = node.stats.routes.snapshot();
                routes.add(RouteReason::CapWait, node.pool.slot_waits());
                NodeMetrics {
                    stats: node.snapshot(),
                    routes,
                    latency: node.stats.latency.snapshot(),
                    lag: node.stats.lag.snapshot(),
                }
            })
            .collect(),
        cap_timeouts,
    }
}

/// Prefix of every metric name.
const PREFIX: &str = "replisim_router_";

/// A per-node gauge or counter: name (after the prefix), type, help, and how to read it.
type NodeFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&NodeMetrics) -> String,
);

/// The per-node families, in exposition order.
const NODE_FAMILIES: [NodeFamily; 16] = [
    (
        "attempts_total",
        "counter",
        "Workload attempts started on the node (each try of a read or write, retries included).",
        |n| n.stats.attempts.to_string(),
    ),
    (
        "attempts_ok_total",
        "counter",
        "Workload attempts that succeeded.",
        |n| n.stats.successes.to_string(),
    ),
    (
        "attempts_errors_total",
        "counter",
        "Workload attempts that failed (connect, pool wait, statement or timeout).",
        |n| n.stats.errors.to_string(),
    ),
    (
        "attempts_cancelled_total",
        "counter",
        "Workload attempts the caller abandoned before they ended.",
        |n| n.stats.cancelled.to_string(),
    ),
    (
        "abandoned_statements_total",
        "counter",
        "Statements the router gave up while the node may still run them (query_timeout, a move \
         to another node, or the caller gone); each gets a CancelRequest.",
        |n| n.stats.abandoned.to_string(),
    ),
    (
        "cancel_requests_total",
        "counter",
        "CancelRequests delivered to the node for abandoned statements.",
        |n| n.stats.cancels_sent.to_string(),
    ),
    ("in_flight", "gauge", "Workload attempts under way.", |n| {
        n.stats.in_flight.to_string()
    }),
    (
        "pool_open_connections",
        "gauge",
        "Workload connections open to the node, idle or in use.",
        |n| n.stats.open_connections.to_string(),
    ),
    (
        "pool_idle_connections",
        "gauge",
        "Workload connections open to the node and idle.",
        |n| n.stats.idle_connections.to_string(),
    ),
    (
        "pool_max_connections",
        "gauge",
        "Most workload connections the pool opens to the node (max_connections_per_node).",
        |n| n.stats.max_connections.to_string(),
    ),
    (
        "pool_utilisation_ratio",
        "gauge",
        "Open workload connections over max_connections_per_node, from 0 to 1.",
        |n| n.stats.pool_utilisation.to_string(),
    ),
    (
        "node_healthy",
        "gauge",
        "1 while the router sends work to the node, 0 while health checks keep it out.",
        |n| u8::from(n.stats.healthy).to_string(),
    ),
    (
        "health_checks_ok_total",
        "counter",
        "Health checks of the node that succeeded.",
        |n| n.stats.checks_ok.to_string(),
    ),
    (
        "health_checks_failed_total",
        "counter",
        "Health checks of the node that failed or timed out.",
        |n| n.stats.checks_failed.to_string(),
    ),
    (
        "replica_lag_bytes",
        "gauge",
        "WAL bytes the replica had not applied at its last lag probe (0 for primaries and while lag \
         is not probed).",
        |n| n.lag.bytes.to_string(),
    ),
    (
        "replica_lag_seconds",
        "gauge",
        "Age of the newest change the replica had applied at its last lag probe; 0 while it is \
         caught up.",
        |n| seconds(n.lag.time_us),
    ),
];

/// The Prometheus text exposition (format 0.0.4) of `snapshot`.
pub fn render_prometheus(snapshot: &MetricsSnapshot) -> String {
    let mut out = String::new();
    let labels: Vec<String> = snapshot.nodes.iter().map(node_labels).collect();
    for (name, kind, help, value) in NODE_FAMILIES {
        header(&mut out, name, kind, help);
        for (node, labels) in snapshot.nodes.iter().zip(&labels) {
            let _ = writeln!(out, "{PREFIX}{name}{{{labels}}} {}", value(node));
        }
    }
    header(
        &mut out,
        "routes_total",
        "counter",
        "Why attempts came to the node. Decisions (one per attempt): round_robin, fallback_primary, \
         primary_requested, retry, write. Conditions met on the way: cap_wait, lag_exclusion, \
         read_your_writes.",
    );
    for (node, labels) in snapshot.nodes.iter().zip(&labels) {
        for (reason, count) in node.routes.iter() {
            let _ = writeln!(
                out,
                "{PREFIX}routes_total{{{labels},reason=\"{}\"}} {count}",
                reason.label()
            );
        }
    }
    header(
        &mut out,
        "statement_duration_seconds",
        "histogram",
        "Time of workload attempts that ended, pool wait and connect included.",
    );
    for (node, labels) in snapshot.nodes.iter().zip(&labels) {
        latency_series(
            &mut out,
            "statement_duration_seconds",
            labels,
            &node.latency,
        );
    }
    header(
        &mut out,
        LAG_HISTORY,
        "histogram",
        "Replication lag of the replica at each lag probe (replay time).",
    );
    for (node, labels) in snapshot.nodes.iter().zip(&labels) {
        latency_series(&mut out, LAG_HISTORY, labels, &node.lag.history);
    }
    header(
        &mut out,
        "cap_timeouts_total",
        "counter",
        "Requests refused because their user or org cap stayed full for connect_timeout.",
    );
    let caps = snapshot.cap_timeouts;
    for (reason, count) in [("user_cap", caps.user), ("org_cap", caps.org)] {
        let _ = writeln!(
            out,
            "{PREFIX}cap_timeouts_total{{reason=\"{reason}\"}} {count}"
        );
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
}

/// The family of every lag probe's measure.
const LAG_HISTORY: &str = "replica_lag_history_seconds";

fn latency_series(out: &mut String, name: &str, labels: &str, latency: &LatencySnapshot) {
    let bounds = LATENCY_BUCKET_BOUNDS_US.iter().map(|&us| Some(us));
    // Every series lists every bound, so a series is never missing a bucket its family has.
    let mut last = 0;
    for le_us in bounds.chain([None]) {
        let count = latency
            .buckets
            .iter()
            .find(|bucket| bucket.le_us == le_us)
            .map_or(last, |bucket| bucket.count);
        last = count;
        let le = le_us.map_or_else(|| "+Inf".to_string(), seconds);
        let _ = writeln!(out, "{PREFIX}{name}_bucket{{{labels},le=\"{le}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{PREFIX}{name}_sum{{{labels}}} {}",
        seconds(latency.sum_us)
    );
    let _ = writeln!(out, "{PREFIX}{name}_count{{{labels}}} {}", latency.count);
}

fn node_labels(node: &NodeMetrics) -> String {
    let role = match node.stats.role {
        ServedRole::Primary => "primary",
        ServedRole::Replica => "replica",
    };
    format!(
        "node=\"{}\",shard=\"{}\",role=\"{role}\"",
        escape_label(&node.stats.name),
        escape_label(&node.stats.shard)
    )
}

/// `us` microseconds as a decimal number of seconds, exact and without trailing zeros.
fn seconds(us: u64) -> String {
    let (whole, fraction) = (us / 1_000_000, us % 1_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A label value as the format wants it: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A HELP text as the format wants it: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
