//! Per-node counters (lock-free atomics updated on the hot path) and the ordered snapshot
//! [`crate::router::Router::stats`] returns.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::time::Instant;

use crate::router::balance::ewma::LatencyEwma;
use crate::router::error::RouterError;
use crate::router::lag::NodeLag;
use crate::router::latency::StatementLatency;
use crate::router::route::ServedRole;
use crate::router::route_reason::RouteCounters;

/// Counters of one node. Relaxed atomics: each counter is exact, but a snapshot is not one instant.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Workload attempts started (each try of a read or write, retries included).
    pub attempts: AtomicU64,
    /// Attempts that succeeded.
    pub successes: AtomicU64,
    /// Attempts that failed (connect, pool wait, statement or timeout).
    pub errors: AtomicU64,
    /// Attempts abandoned by the caller before they ended (a dropped future or stream).
    pub cancelled: AtomicU64,
    /// Attempts started and not yet ended.
    pub in_flight: AtomicU64,
    /// Health checks that succeeded.
    pub checks_ok: AtomicU64,
    /// Health checks that failed or timed out.
    pub checks_failed: AtomicU64,
    /// Why attempts came to this node.
    pub routes: RouteCounters,
    /// Time of the attempts that ended (succeeded or failed), pool wait and connect included.
    pub latency: StatementLatency,
    /// Latency signal of the `p2c_ewma` balancing policy, fed by the same attempts.
    pub ewma: LatencyEwma,
    /// Replication lag measured by the probes (replicas, while lag is probed).
    pub lag: NodeLag,
    reported_role: AtomicU8,
    /// Whether attempts leave `ewma` alone: only `p2c_ewma` reads it, and an update costs an `exp`
    /// per attempt. Put negatively so that `NodeStats::default()` feeds it.
    ewma_unread: bool,
}

// `reported_role` codes; 0 (the default) means no check has succeeded yet.
const ROLE_PRIMARY: u8 = 1;
const ROLE_REPLICA: u8 = 2;

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptEnd {
    /// It succeeded.
    Success,
    /// It failed.
    Error,
    /// The caller gave up on it.
    Cancelled,
}

impl AttemptEnd {
    /// How an attempt that produced `result` ended: one given up by the router (its node was
    /// ejected while it waited) failed no node, like a caller dropping the future.
    pub(crate) fn of<T>(result: &Result<T, RouterError>) -> AttemptEnd {
        match result {
            Ok(_) => AttemptEnd::Success,
            Err(RouterError::Abandoned { .. }) => AttemptEnd::Cancelled,
            Err(_) => AttemptEnd::Error,
        }
    }
}

impl NodeStats {
    /// Counters whose attempts feed `ewma` only if `feeds_ewma` (the balancing policy reads it).
    pub(crate) fn new(feeds_ewma: bool) -> NodeStats {
        NodeStats {
            ewma_unread: !feeds_ewma,
            ..NodeStats::default()
        }
    }

    /// Counts an attempt as started.
    pub fn start_attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an attempt started with [`NodeStats::start_attempt`] as ended.
    pub fn end_attempt(&self, end: AttemptEnd) {
        let counter = match end {
            AttemptEnd::Success => &self.successes,
            AttemptEnd::Error => &self.errors,
            AttemptEnd::Cancelled => &self.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts one health check, recording the role the node reported when it answered.
    pub fn record_check(&self, reported: Option<ServedRole>) {
        match reported {
            Some(role) => {
                self.checks_ok.fetch_add(1, Ordering::Relaxed);
                let code = match role {
                    ServedRole::Primary => ROLE_PRIMARY,
                    ServedRole::Replica => ROLE_REPLICA,
                };
                self.reported_role.store(code, Ordering::Relaxed);
            }
            None => {
                self.checks_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The role the node reported at its last good health check (`pg_is_in_recovery()`).
    pub fn reported_role(&self) -> Option<ServedRole> {
        match self.reported_role.load(Ordering::Relaxed) {
            ROLE_PRIMARY => Some(ServedRole::Primary),
            ROLE_REPLICA => Some(ServedRole::Replica),
            _ => None,
        }
    }
}

/// Counts an attempt as ended when dropped, as cancelled unless told otherwise, so an abandoned future
/// never leaves `in_flight` raised. An attempt that ends records its time in the node's latency.
/// It owns its counters (`S` = `Arc<NodeStats>`) so that it can travel with a streaming read, or
/// borrows them (`S` = `&NodeStats`, see [`AttemptGuard::borrowing`]) where the attempt ends
/// before the node could go away, which spares two atomic updates of a shared reference count
/// per statement.
#[derive(Debug)]
pub struct AttemptGuard<S: Deref<Target = NodeStats> = Arc<NodeStats>> {
    stats: S,
    started: Instant,
    ended: bool,
}

impl AttemptGuard {
    /// Starts an attempt on `stats`.
    pub fn start(stats: &Arc<NodeStats>) -> AttemptGuard {
        AttemptGuard::begin(Arc::clone(stats))
    }
}

impl<'a> AttemptGuard<&'a NodeStats> {
    /// Starts an attempt on `stats`, borrowed for as long as the attempt runs.
    pub fn borrowing(stats: &'a NodeStats) -> AttemptGuard<&'a NodeStats> {
        AttemptGuard::begin(stats)
    }
}

impl<S: Deref<Target = NodeStats>> AttemptGuard<S> {
    fn begin(stats: S) -> AttemptGuard<S> {
        stats.start_attempt();
        AttemptGuard {
            stats,
            started: Instant::now(),
            ended: false,
        }
    }

    /// Ends the attempt.
    pub fn end(mut self, end: AttemptEnd) {
        self.ended = true;
        self.stats.end_attempt(end);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.started);
        // A cancelled attempt's time says how long the caller waited, not how long the node took: the
        // node took at least that long.
        if !self.stats.ewma_unread {
            match end {
                AttemptEnd::Success => self.stats.ewma.observe(elapsed, now),
                AttemptEnd::Error => self.stats.ewma.observe_error(elapsed, now),
                AttemptEnd::Cancelled => self.stats.ewma.observe_at_least(elapsed, now),
            }
        }
        if end != AttemptEnd::Cancelled {
            self.stats.latency.record(elapsed);
        }
    }
}

impl<S: Deref<Target = NodeStats>> Drop for AttemptGuard<S> {
    fn drop(&mut self) {
        if !self.ended {
            self.stats.end_attempt(AttemptEnd::Cancelled);
            if !self.stats.ewma_unread {
                let now = Instant::now();
                let waited = now.saturating_duration_since(self.started);
                self.stats.ewma.observe_at_least(waited, now);
            }
        }
    }
}

/// A snapshot of every node's counters, in topology order (per shard, primary then replicas).
#[derive(Clone, Debug, PartialEq)]
pub struct RouterStats {
    /// One entry per node.
    pub nodes: Vec<NodeStatsSnapshot>,
}

impl RouterStats {
    /// The entry of the node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeStatsSnapshot> {
        self.nodes.iter().find(|node| node.name == name)
    }
}

/// One node's counters and state at the time of the snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStatsSnapshot {
    /// Node name.
    pub name: String,
    /// Its shard's name.
    pub shard: String,
    /// Its role in the topology.
    pub role: ServedRole,
    /// The role it reported at its last good health check; `None` before one succeeded.
    pub reported_role: Option<ServedRole>,
    /// Whether the router currently sends work to it.
    pub healthy: bool,
    /// Workload attempts started.
    pub attempts: u64,
    /// Attempts that succeeded.
    pub successes: u64,
    /// Attempts that failed.
    pub errors: u64,
    /// Attempts the caller abandoned.
    pub cancelled: u64,
    /// Attempts under way.
    pub in_flight: u64,
    /// Statements abandoned on the node (timed out, moved elsewhere, or the caller gone).
    pub abandoned: u64,
    /// CancelRequests delivered to the node for them.
    pub cancels_sent: u64,
    /// Workload connections open (idle or in use).
    pub open_connections: u32,
    /// Workload connections open and idle.
    pub idle_connections: u32,
    /// `max_connections_per_node`.
    pub max_connections: u32,
    /// `open_connections / max_connections`, from 0 to 1.
    pub pool_utilisation: f64,
    /// Health checks that succeeded.
    pub checks_ok: u64,
    /// Health checks that failed.
    pub checks_failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_every_ending() {
        let stats = Arc::new(NodeStats::default());
        AttemptGuard::start(&stats).end(AttemptEnd::Success);
        AttemptGuard::start(&stats).end(AttemptEnd::Error);
        drop(AttemptGuard::start(&stats));
        let running = AttemptGuard::start(&stats);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(load(&stats.attempts), 4);
        assert_eq!(load(&stats.successes), 1);
        assert_eq!(load(&stats.errors), 1);
        assert_eq!(load(&stats.cancelled), 1);
        assert_eq!(load(&stats.in_flight), 1);
        running.end(AttemptEnd::Success);
        assert_eq!(load(&stats.in_flight), 0);
        assert_eq!(
            stats.latency.snapshot().count,
            3,
            "ended attempts are timed, the cancelled one is not"
        );
    }

    #[test]
    fn checks_record_the_reported_role() {
        let stats = NodeStats::default();
        assert_eq!(stats.reported_role(), None);
        stats.record_check(Some(ServedRole::Replica));
        stats.record_check(None);
        assert_eq!(
            stats.reported_role(),
            Some(ServedRole::Replica),
            "a failed check keeps the last role"
        );
        stats.record_check(Some(ServedRole::Primary));
        assert_eq!(stats.reported_role(), Some(ServedRole::Primary));
        assert_eq!(stats.checks_ok.load(Ordering::Relaxed), 2);
        assert_eq!(stats.checks_failed.load(Ordering::Relaxed), 1);
    }
}
