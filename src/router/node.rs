//! A node as the router sees it: where it is, its pool, its health, its counters, and the loop that
//! keeps checking it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::router::error::RouterError;
use crate::router::health::{HealthState, HealthThresholds, Probe, Transition};
use crate::router::pool::Pool;
use crate::router::route::{RouteTable, ServedRole, ShardRoute};
use crate::router::stats::{NodeStats, NodeStatsSnapshot};
use crate::router::topology::PlacedNode;

/// What the health checks know about a node.
#[derive(Debug, Default)]
struct Health {
    state: HealthState,
    last_error: Option<String>,
}

/// One node of the topology with its runtime state.
pub(crate) struct Node {
    pub(crate) placed: PlacedNode,
    pub(crate) pool: Arc<Pool>,
    pub(crate) stats: Arc<NodeStats>,
    /// The routing table, whose usable bit for this node mirrors `health.state.healthy` so that a
    /// routing decision reads one word per shard instead of one flag per node.
    routes: Arc<RouteTable>,
    shard: usize,
    position: u32,
    health: Mutex<Health>,
}

impl Node {
    /// A node that starts healthy, with an empty pool, at `position` of `routes.shards()[shard]`.
    pub(crate) fn new(
        placed: PlacedNode,
        pool: Pool,
        routes: Arc<RouteTable>,
        shard: usize,
        position: u32,
    ) -> Node {
        Node {
            placed,
            pool: Arc::new(pool),
            stats: Arc::new(NodeStats::default()),
            routes,
            shard,
            position,
            health: Mutex::new(Health::default()),
        }
    }

    fn route(&self) -> Option<&ShardRoute> {
        self.routes.shards().get(self.shard)
    }

    /// The node's name.
    pub(crate) fn name(&self) -> &str {
        &self.placed.address.name
    }

    /// Whether routing may send work to the node.
    pub(crate) fn is_healthy(&self) -> bool {
        self.route()
            .is_some_and(|shard| shard.is_usable(self.position))
    }

    fn lock_health(&self) -> MutexGuard<'_, Health> {
        // Never held across an await; each critical section replaces the state whole.
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Feeds one check result to the state machine and acts on a change of health.
    pub(crate) fn record_check(
        &self,
        result: &Result<ServedRole, RouterError>,
        now: Instant,
        thresholds: HealthThresholds,
    ) {
        self.stats.record_check(result.as_ref().ok().copied());
        let transition = {
            let mut health = self.lock_health();
            let (state, transition) = health.state.observe(result.is_ok(), now, thresholds);
            health.state = state;
            if let Err(error) = result {
                health.last_error = Some(error.to_string());
            }
            if let (true, Some(shard)) = (transition != Transition::Unchanged, self.route()) {
                shard.set_usable(self.position, state.healthy);
            }
            transition
        };
        match (transition, result) {
            (Transition::BecameUnhealthy, Err(error)) => {
                tracing::warn!(node = self.name(), %error, "node is unhealthy: no new work goes to it");
                // Its idle connections most likely died with it; a recovered node gets fresh ones.
                self.pool.clear_idle();
            }
            (Transition::BecameHealthy, _) => {
                tracing::info!(node = self.name(), "node is healthy again");
            }
            _ => {}
        }
    }

    /// Why the node is not usable, for error messages.
    pub(crate) fn describe_health(&self) -> String {
        let health = self.lock_health();
        if health.state.healthy {
            return "healthy".to_string();
        }
        let failures = health.state.consecutive_failures;
        let last = health.last_error.as_deref().unwrap_or("no detail");
        let plural = if failures == 1 { "" } else { "s" };
        format!("unhealthy after {failures} failed check{plural} (last: {last})")
    }

    /// The node's counters and state now.
    pub(crate) fn snapshot(&self) -> NodeStatsSnapshot {
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let open_connections = self.pool.open_connections();
        let max_connections = self.pool.limits().max_connections;
        NodeStatsSnapshot {
            name: self.placed.address.name.clone(),
            shard: self.placed.shard.clone(),
            role: self.placed.role,
            reported_role: self.stats.reported_role(),
            healthy: self.is_healthy(),
            attempts: load(&self.stats.attempts),
            successes: load(&self.stats.successes),
            errors: load(&self.stats.errors),
            cancelled: load(&self.stats.cancelled),
            in_flight: load(&self.stats.in_flight),
            open_connections,
            idle_connections: self.pool.idle_connections(),
            max_connections,
            pool_utilisation: f64::from(open_connections) / f64::from(max_connections.max(1)),
            checks_ok: load(&self.stats.checks_ok),
            checks_failed: load(&self.stats.checks_failed),
        }
    }
}

/// Checks `node` every `interval` (the first check one interval from now) and closes its stale idle
/// connections, until the task is aborted.
pub(crate) async fn watch(
    node: Arc<Node>,
    mut probe: Probe,
    interval: Duration,
    thresholds: HealthThresholds,
) {
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    // A slow check pushes the next one back instead of firing a burst to catch up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = probe.check().await;
        let now = Instant::now();
        node.record_check(&result, now, thresholds);
        node.pool.reap(now);
    }
}
