//! A node as the router sees it: where it is, its pool, its health, its counters, and the loop that
//! keeps checking it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use crate::router::eject::{Ejection, EjectionChange, EjectionPolicy};
use crate::router::error::RouterError;
use crate::router::health::{HealthState, HealthThresholds, Probe, Transition};
use crate::router::lag::LagProbe;
use crate::router::pool::Pool;
use crate::router::promotion::{self, WriterChange};
use crate::router::route::{RouteTable, ServedRole, ShardRoute};
use crate::router::stats::{NodeStats, NodeStatsSnapshot};
use crate::router::topology::PlacedNode;

/// What the health checks and passive ejection know about a node.
#[derive(Debug, Default)]
struct Health {
    state: HealthState,
    last_error: Option<String>,
    ejection: Ejection,
    /// Why the node was last ejected.
    ejection_reason: Option<String>,
}

impl Health {
    /// Whether routing may send work to the node.
    fn usable(&self) -> bool {
        self.state.healthy && !self.ejection.is_ejected()
    }
}

/// How failed and slow requests take a node out of reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PassiveEjection {
    /// `None`: failed requests never eject the node (ejection is off, or it is a primary).
    pub(crate) policy: Option<EjectionPolicy>,
    /// Most replicas of the shard out for a judgment at once (see `outlier`).
    pub(crate) cap: u32,
    /// Whether a slow request ejects the node only when it is an outlier (`outlier_ejection`).
    pub(crate) outliers_only: bool,
}

/// One node of the topology with its runtime state.
pub(crate) struct Node {
    pub(crate) placed: PlacedNode,
    pub(crate) pool: Arc<Pool>,
    pub(crate) stats: Arc<NodeStats>,
    /// The routing table, whose usable bit for this node mirrors [`Health::usable`] so that a routing
    /// decision reads one word per shard instead of one flag per node.
    routes: Arc<RouteTable>,
    shard: usize,
    position: u32,
    health: Mutex<Health>,
    /// Whether the ejection doubling is under way (`ejections > 0`), so that a successful read only
    /// takes the lock when it has something to reset.
    ejections_pending: AtomicBool,
    /// `None`: failed requests never eject this node (ejection is off, or the node is a primary, which
    /// must keep taking writes until its health checks say otherwise).
    ejection_policy: Option<EjectionPolicy>,
    /// Most replicas of the shard out for passive reasons at once (see `outlier`).
    ejection_cap: u32,
    /// Whether a slow request ejects the node only when it is an outlier (`outlier_ejection`).
    outliers_only: bool,
    /// Wakes the attempts waiting on the node when it leaves rotation, so that they can go elsewhere.
    ejected: Notify,
    /// Wakes the check loop when a ban starts: the time of its next probe moved.
    ban_started: Notify,
    /// An outlier the cap kept in rotation: its next check decides whether it is dead (the check
    /// fails: it is ejected past the cap) or only slow.
    suspect: AtomicBool,
    /// Wakes the check loop for an immediate check of a suspect.
    probe_requested: Notify,
}

impl Node {
    /// A node that starts healthy, with an empty pool, at `position` of `routes.shards()[shard]`;
    /// failed requests eject it under `ejection_policy`, if any; its attempts feed the latency
    /// EWMA if `feeds_ewma` (the balancing policy reads it).
    pub(crate) fn new(
        placed: PlacedNode,
        pool: Pool,
        routes: Arc<RouteTable>,
        shard: usize,
        position: u32,
        passive: PassiveEjection,
        feeds_ewma: bool,
    ) -> Node {
        let PassiveEjection {
            policy: ejection_policy,
            cap: ejection_cap,
            outliers_only,
        } = passive;
        Node {
            placed,
            pool: Arc::new(pool),
            stats: Arc::new(NodeStats::new(feeds_ewma)),
            routes,
            shard,
            position,
            health: Mutex::new(Health::default()),
            ejections_pending: AtomicBool::new(false),
            ejection_policy,
            ejection_cap,
            outliers_only,
            ejected: Notify::new(),
            ban_started: Notify::new(),
            suspect: AtomicBool::new(false),
            probe_requested: Notify::new(),
        }
    }

    fn route(&self) -> Option<&ShardRoute> {
        self.routes.shards().get(self.shard)
    }

    /// The shard's name, for log events.
    fn shard_name(&self) -> &str {
        self.route().map_or("", |shard| shard.name.as_str())
    }

    /// Whether a node that reported `role` takes part in lag probes: a replica always; a node out of
    /// recovery only while it is its shard's writer, so a fenced former primary (which still answers
    /// "not in recovery") never sets the position replicas are measured against.
    fn measures_lag_as(&self, role: ServedRole) -> bool {
        role == ServedRole::Replica
            || self
                .route()
                .is_some_and(|shard| shard.writer_position() == Some(self.position))
    }

    /// The node answered (a result or a statement error) an attempt whose node part started at
    /// `started`: evidence for the outlier rule (see `outlier`).
    pub(crate) fn answered(&self, started: Instant) {
        if let Some(shard) = self.route() {
            shard.progress.answered(self.position, started);
        }
    }

    /// Records the outcome of an attempt whose node part started at `started` as evidence of
    /// progress when the node answered it (see [`RouterError::is_answer`]).
    pub(crate) fn note_answer<T>(&self, started: Instant, result: &Result<T, RouterError>) {
        if result
            .as_ref()
            .map_or_else(RouterError::is_answer, |_| true)
        {
            self.answered(started);
        }
    }

    /// An attempt that started at `started` has been outstanding for a long time (`reason` says how
    /// long and which limit): ejects the node only if it is an outlier among its shard's replicas (it
    /// answered nothing younger while another replica did). True if it was ejected.
    pub(crate) fn report_slow(&self, started: Instant, reason: &dyn fmt::Display) -> bool {
        let Some(shard) = self.route() else {
            return false;
        };
        // Peers: the other replicas, and the writer, which answers the shard's writes.
        let peers = shard.replica_positions()
            | shard
                .writer_position()
                .map_or(0, |writer| 1u64.checked_shl(writer).unwrap_or(0));
        if self.ejection_policy.is_none()
            || (self.outliers_only && !shard.progress.is_outlier(self.position, started, peers))
        {
            return false;
        }
        self.report_failure(started, reason);
        if self.is_healthy() && !self.suspect.swap(true, Ordering::AcqRel) {
            // Kept in by the cap: a check now tells a dead node (it fails) from a slow one.
            tracing::info!(
                node = self.name(),
                shard = self.shard_name(),
                "outlier kept in rotation by max_ejection_percent: checking it now"
            );
            self.probe_requested.notify_one();
        }
        !self.is_healthy()
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

    /// Whether failed requests eject this node: never while it is its shard's writer, which must keep
    /// taking writes until its health checks say otherwise.
    pub(crate) fn ejects(&self) -> bool {
        self.ejection_policy.is_some() && !self.is_writer()
    }

    /// Whether the node is the one its shard's writes go to.
    fn is_writer(&self) -> bool {
        self.route()
            .is_some_and(|shard| shard.writer_position() == Some(self.position))
    }

    /// Completes when the node next leaves rotation (ejected, or unhealthy). Enable it (or poll it)
    /// before checking [`Node::is_healthy`], so that a change in between is not missed.
    pub(crate) fn ejection_signal(&self) -> Notified<'_> {
        self.ejected.notified()
    }

    fn lock_health(&self) -> MutexGuard<'_, Health> {
        // Never held across an await; each critical section replaces the state whole.
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Mirrors the node's usability into the routing table.
    fn publish(&self, health: &Health) {
        if let Some(shard) = self.route() {
            shard.set_usable(self.position, health.usable());
        }
    }

    /// A workload attempt that started at `started` failed because of the node (`reason`), in a way
    /// that is a judgment (it timed out, or was slow): ejects it from reads, unless ejection is off
    /// for it, it is out already, or its shard has as many replicas out as `max_ejection_percent`
    /// allows.
    pub(crate) fn report_failure(&self, started: Instant, reason: &dyn fmt::Display) {
        self.eject(started, reason, true);
    }

    /// A workload attempt that started at `started` found the node down (`reason`: it refused the
    /// connection, or closed it): ejects it like [`Node::report_failure`], but past the cap, as a
    /// health check would take it out; such a node counts against the cap for the others.
    pub(crate) fn report_down(&self, started: Instant, reason: &dyn fmt::Display) {
        self.eject(started, reason, false);
    }

    fn eject(&self, started: Instant, reason: &dyn fmt::Display, capped: bool) {
        let Some(policy) = self.ejection_policy.filter(|_| !self.is_writer()) else {
            return;
        };
        let change = {
            let mut health = self.lock_health();
            let (next, change) = health.ejection.on_failure(started, Instant::now(), &policy);
            if change != EjectionChange::Unchanged && !self.claim_ejection(capped) {
                drop(health);
                tracing::info!(
                    node = self.name(),
                shard = self.shard_name(),
                    %reason,
                    cap = self.ejection_cap,
                    "request failed, but the shard has as many replicas ejected as allowed \
                     (max_ejection_percent): node stays in rotation"
                );
                return;
            }
            health.ejection = next;
            if change != EjectionChange::Unchanged {
                health.ejection_reason = Some(reason.to_string());
                self.ejections_pending.store(true, Ordering::Relaxed);
                self.publish(&health);
            }
            change
        };
        if let EjectionChange::Ejected(ban) = change {
            tracing::warn!(node = self.name(),
                shard = self.shard_name(), %reason, ?ban, "request failed: node ejected from reads");
            self.ejected.notify_waiters();
            self.ban_started.notify_one();
        }
    }

    /// Counts the node against its shard's passive-ejection cap; false if `capped` and the cap is
    /// reached.
    fn claim_ejection(&self, capped: bool) -> bool {
        let cap = if capped { self.ejection_cap } else { u32::MAX };
        self.route()
            .is_some_and(|shard| shard.progress.claim_ejection(self.position, cap))
    }

    /// The node is back from a passive ejection: it no longer counts against the cap.
    fn release_ejection(&self) {
        if let Some(shard) = self.route() {
            shard.progress.release_ejection(self.position);
        }
    }

    /// A checkout found `closed` idle connections closed by the node's end: as good as a failed
    /// statement (the node crashed, restarted, or a proxy in between dropped everything), found
    /// before a statement or a connect had to fail or hang.
    pub(crate) fn report_closed(&self, closed: u32) {
        if self.ejection_policy.is_none() {
            return;
        }
        let plural = if closed == 1 { "" } else { "s" };
        let reason = format!("{closed} idle connection{plural} found closed by the server");
        self.report_down(Instant::now(), &reason);
    }

    /// A workload attempt that started at `started` succeeded.
    pub(crate) fn report_success(&self, started: Instant) {
        if !self.ejections_pending.load(Ordering::Relaxed) {
            return;
        }
        let mut health = self.lock_health();
        health.ejection = health.ejection.on_success(started);
        if health.ejection.ejections == 0 {
            self.ejections_pending.store(false, Ordering::Relaxed);
        }
    }

    /// When the node's ban runs out (its probe is then due); `None` if it is not ejected.
    fn ban_end(&self) -> Option<Instant> {
        self.lock_health().ejection.until
    }

    /// Feeds one check, started at `started` and ended at `now`, to the health state machine and to
    /// passive ejection, and acts on a change.
    pub(crate) fn record_check(
        &self,
        result: &Result<ServedRole, RouterError>,
        started: Instant,
        now: Instant,
        thresholds: HealthThresholds,
    ) {
        self.stats.record_check(result.as_ref().ok().copied());
        if self.suspect.swap(false, Ordering::AcqRel)
            && let Err(error) = result
        {
            // A suspect (an outlier, or a node whose server dropped a connection) whose own check
            // fails is dead, not slow: out past the cap.
            let reason = format!("a suspect node failed its health check: {error}");
            self.report_down(started, &reason);
        }
        let (transition, ejection) = {
            let mut health = self.lock_health();
            let (state, transition) = health.state.observe(result.is_ok(), now, thresholds);
            health.state = state;
            if let Err(error) = result {
                health.last_error = Some(error.to_string());
            }
            let ejection = match self.ejection_policy {
                Some(policy) => {
                    let (next, change) =
                        health
                            .ejection
                            .on_check(result.is_ok(), started, now, &policy);
                    health.ejection = next;
                    change
                }
                None => EjectionChange::Unchanged,
            };
            if transition != Transition::Unchanged || ejection != EjectionChange::Unchanged {
                self.publish(&health);
            }
            (transition, ejection)
        };
        if let Ok(role) = result {
            self.follow_role(*role);
        }
        match (transition, result) {
            (Transition::BecameUnhealthy, Err(error)) => {
                tracing::warn!(node = self.name(),
                shard = self.shard_name(), reason = %error, "node is unhealthy: no new work goes to it");
                if self.is_writer()
                    && let Some(shard) = self.route()
                {
                    // A promotion may follow the primary's death: look for it at once.
                    shard.roles.request_recheck();
                }
                // Reads still waiting on it may go elsewhere (see `hedge`).
                self.ejected.notify_waiters();
                // Its idle connections most likely died with it; a recovered node gets fresh ones.
                self.pool.clear_idle();
            }
            (Transition::BecameHealthy, _) => {
                tracing::info!(
                    node = self.name(),
                    shard = self.shard_name(),
                    "node is healthy again"
                );
            }
            _ => {}
        }
        match (ejection, result) {
            (EjectionChange::Ejected(ban), Err(error)) => {
                tracing::info!(node = self.name(),
                shard = self.shard_name(), reason = %error, ?ban, "probe failed: node stays ejected");
            }
            (EjectionChange::Readmitted, _) => {
                self.release_ejection();
                tracing::info!(
                    node = self.name(),
                    shard = self.shard_name(),
                    "probe passed: ejected node takes reads again"
                );
            }
            _ => {}
        }
    }

    /// Feeds the role a good check reported to the shard's promotion following, and acts on a change.
    fn follow_role(&self, role: ServedRole) {
        let Some(shard) = self.route() else {
            return;
        };
        match promotion::observe(shard, self.position, role) {
            WriterChange::Promoted { from, to } if to == self.position => {
                let former = from.and_then(|p| shard.node_at(p));
                tracing::warn!(
                    node = self.name(),
                    shard = self.shard_name(),
                    ?former,
                    "node left recovery: it is the shard's primary now"
                );
                // An ejection from reads must not keep the new primary from taking writes.
                let mut health = self.lock_health();
                health.ejection = Default::default();
                health.ejection_reason = None;
                self.publish(&health);
                drop(health);
                self.release_ejection();
            }
            WriterChange::Lost { .. } => {
                tracing::warn!(
                    node = self.name(),
                    shard = self.shard_name(),
                    "the shard's primary is in recovery: no primary is known"
                );
            }
            WriterChange::Retired(_) => {
                tracing::warn!(
                    node = self.name(),
                    shard = self.shard_name(),
                    "node claims to be a primary while another one takes the writes: it takes no work"
                );
            }
            WriterChange::Rejoined(_) => {
                tracing::info!(
                    node = self.name(),
                    shard = self.shard_name(),
                    "former primary is in recovery: it serves reads again"
                );
            }
            _ => {}
        }
    }

    /// Why the node is not usable, for error messages.
    pub(crate) fn describe_health(&self) -> String {
        let health = self.lock_health();
        if !health.state.healthy {
            let failures = health.state.consecutive_failures;
            let last = health.last_error.as_deref().unwrap_or("no detail");
            let plural = if failures == 1 { "" } else { "s" };
            return format!("unhealthy after {failures} failed check{plural} (last: {last})");
        }
        if health.ejection.is_ejected() {
            let ejections = health.ejection.ejections;
            let last = health.ejection_reason.as_deref().unwrap_or("no detail");
            let plural = if ejections == 1 { "" } else { "s" };
            return format!("ejected ({ejections} ejection{plural} in a row; last: {last})");
        }
        "healthy".to_string()
    }

    /// The node's counters and state now.
    pub(crate) fn snapshot(&self) -> NodeStatsSnapshot {
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let open_connections = self.pool.open_connections();
        let (abandoned, cancels_sent) = self.pool.cancels();
        let max_connections = self.pool.limits().max_connections;
        NodeStatsSnapshot {
            name: self.placed.address.name.clone(),
            shard: self.placed.shard.clone(),
            role: if self.is_writer() {
                ServedRole::Primary
            } else {
                ServedRole::Replica
            },
            reported_role: self.stats.reported_role(),
            healthy: self.is_healthy(),
            attempts: load(&self.stats.attempts),
            successes: load(&self.stats.successes),
            errors: load(&self.stats.errors),
            cancelled: load(&self.stats.cancelled),
            in_flight: load(&self.stats.in_flight),
            abandoned,
            cancels_sent,
            open_connections,
            idle_connections: self.pool.idle_connections(),
            max_connections,
            pool_utilisation: f64::from(open_connections) / f64::from(max_connections.max(1)),
            checks_ok: load(&self.stats.checks_ok),
            checks_failed: load(&self.stats.checks_failed),
        }
    }
}

/// Least time between two checks of a node asked for by [`promotion`] rechecks, so that a burst of
/// failed writes costs each node one extra check, not one per write.
const RECHECK_GAP_MIN: Duration = Duration::from_millis(100);

/// Checks `node` every `interval` (the first check one interval from now), and also whenever its ban
/// runs out while it is ejected (that probe decides whether it comes back) or its shard asks for a
/// recheck (see [`promotion`]), and closes its stale idle connections, until the task is aborted. With
/// `lag`, each good check is followed by a lag probe.
pub(crate) async fn watch(
    node: Arc<Node>,
    mut probe: Probe,
    interval: Duration,
    thresholds: HealthThresholds,
    lag: Option<LagProbe>,
) {
    let mut next_check = Instant::now() + interval;
    let mut last_check: Option<Instant> = None;
    loop {
        let wake_at = node.ban_end().map_or(next_check, |end| end.min(next_check));
        let recheck = async {
            match node.route() {
                Some(shard) => shard.roles.recheck_requested().await,
                None => std::future::pending().await,
            }
        };
        let asked = tokio::select! {
            biased;
            // A new ban: its end may come before `wake_at`.
            () = node.ban_started.notified() => continue,
            () = recheck => true,
            () = node.probe_requested.notified() => true,
            () = node.pool.connection_ended_by_server().notified() => {
                // A connection the server dropped: check the node now, and if that check fails
                // it is down (as a refused connect would say), not merely slow.
                if node.is_healthy() {
                    node.suspect.store(true, Ordering::Release);
                }
                true
            }
            () = tokio::time::sleep_until(wake_at) => false,
        };
        let started = Instant::now();
        let check_due = started >= next_check;
        let probe_due = node.lock_health().ejection.probe_due(started);
        let recheck_due =
            asked && last_check.is_none_or(|at| started.duration_since(at) >= RECHECK_GAP_MIN);
        if !(check_due || probe_due || recheck_due) {
            continue;
        }
        last_check = Some(started);
        let result = probe.check().await;
        let now = Instant::now();
        node.record_check(&result, started, now, thresholds);
        if let Some(lag) = &lag
            && result.is_err()
            && !node.is_healthy()
        {
            lag.forget();
        }
        if let (Some(lag), Ok(role), Some(conn)) = (&lag, &result, probe.connection())
            && node.measures_lag_as(*role)
        {
            lag.measure(conn, *role).await;
        }
        node.pool.reap(now);
        if check_due {
            next_check += interval;
            // A slow check pushes the next one back instead of firing a burst to catch up.
            if next_check <= now {
                next_check = now + interval;
            }
        }
    }
}
