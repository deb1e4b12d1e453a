//! The production read/write replica router.
//!
//! An application asks [`Router`] to run a read or a write for an org (and user). The router finds the
//! org's shard, enforces the user and org caps, picks the node (writes: the primary; reads: the next
//! healthy replica, or the primary), runs the statement over a pooled connection within its timeouts,
//! retries a failed read on another node, and keeps statistics. Health checks run in the background;
//! a replica on which a request fails (or hangs) is ejected from reads at once, without waiting for
//! them (passive ejection).
//!
//! Map of the modules:
//! - [`config`], [`env`](mod@env): [`RouterConfig`], its builder and defaults, reading it from the
//!   environment.
//! - [`topology`]: shards, org ranges, node addresses; validated into a [`route::RouteTable`].
//! - [`connector`]: the one seam between real and simulated networking; [`tls`]: TLS to the nodes
//!   (`sslmode`, `sslrootcert`).
//! - `route`: the routing decision (pure, benchmarked); `balance`: the balancing policies.
//! - `health`: the health state machine and the probe; `node`: a node's runtime state and check loop.
//! - `promotion`: which node takes writes, followed through `pg_is_in_recovery()` on every check.
//! - `eject`: the passive ejection policy; `outlier`: when a slow replica is an outlier among
//!   its peers, and the cap on passive ejections; `hedge`: giving up a read whose node was ejected.
//! - `lag`: replica lag probes and lag-aware routing (`max_replica_lag`); [`lsn`]: WAL positions;
//!   [`causal`]: causal tokens and read-your-writes [`Session`]s; [`causal_scope`]: the scopes
//!   a session keeps tokens for.
//! - `pool`, `conn`: per-node connection pools; `caps`: per-user and per-org caps.
//! - [`transaction`]: [`Transaction`]s on the writer or a replica; [`stream`]: streaming reads;
//!   `stats`: counters and their snapshots ([`RouterStats`]); [`error`]: [`RouterError`].
//! - [`metrics`]: [`MetricsSnapshot`] and its Prometheus exposition; [`route_reason`]: why a request
//!   went where it went; `latency`: per-node statement latency.

pub(crate) mod balance;
mod caps;
pub mod causal;
pub mod causal_scope;
pub mod config;
mod conn;
pub mod connector;
pub(crate) mod eject;
pub mod env;
pub mod error;
pub(crate) mod health;
mod hedge;
pub(crate) mod lag;
pub(crate) mod latency;
pub mod lsn;
pub mod metrics;
mod node;
pub(crate) mod outlier;
mod pool;
pub(crate) mod promotion;
pub(crate) mod route;
pub mod route_reason;
pub mod secret;
mod statement_cache;
pub(crate) mod stats;
pub mod stream;
pub mod tls;
pub mod topology;
pub mod transaction;

/// The routing decision and the balancing policies, which are internal, for the benchmarks under
/// `benches/`. Not part of the API: it may change in any release.
#[doc(hidden)]
pub mod internals {
    pub use super::balance::draw::Draws;
    pub use super::balance::ewma::LatencyEwma;
    pub use super::balance::{Candidates, least_outstanding, p2c, random, weighted};
    pub use super::lag::{NodeLag, ReplicaLag};
    pub use super::latency::StatementLatency;
    pub use super::outlier::ShardProgress;
    pub use super::promotion::{ShardRoles, WriterChange, WriterState};
    pub use super::route::Choice;
    pub use super::route::{RouteTable, ShardRoute, Tried, choose_read_node, choose_read_node_by};
    pub use super::stats::{AttemptEnd, NodeStats};
}

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

pub use causal::{CausalToken, Session};
pub use causal_scope::{SCOPE_CAPACITY_DEFAULT, Scope};
pub use config::{Balance, RouterConfig, RouterConfigBuilder};
pub use connector::{
    BoxedStream, ConnectPurpose, Connector, NodeAddress, NodeStream, TcpConnector,
};
pub use error::{CapScope, ConnectFailure, RouterError};
pub use lag::LagSnapshot;
pub use latency::{LatencyBucket, LatencySnapshot};
pub use metrics::{MetricsSnapshot, render_prometheus};
pub use route::ServedRole;
pub use secret::Password;
pub use stats::{NodeStatsSnapshot, RouterStats};
pub use stream::ReadStream;
pub use tls::{RootCerts, SslMode};
pub use topology::{ShardConfig, Topology};
pub use transaction::Transaction;

use caps::{Caps, RequestCaps, SharedCapSlots};
use conn::Login;
use eject::EjectionPolicy;
use health::{HealthThresholds, PROBE_APPLICATION_NAME, Probe};
use hedge::{Alarm, Elsewhere, Watch};
use lag::{LagBoard, LagProbe};
use node::{Node, PassiveEjection};
use pool::{Pool, PoolLimits};
use route::{Choice, NodeIdx, RouteTable, ShardRoute, Tried};
use route_reason::RouteReason;
use stats::{AttemptEnd, AttemptGuard};

/// `application_name` of workload connections.
pub const WORKLOAD_APPLICATION_NAME: &str = "replisim";

/// A read for an org on behalf of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// The org whose shard serves the read.
    pub org: i64,
    /// The user the read counts against (`max_connections_per_user`).
    pub user: i64,
    /// true: a replica may serve it; false: only the primary (e.g. read-after-write).
    pub prefer_replica: bool,
}

/// A write for an org on behalf of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRequest {
    /// The org whose shard's primary takes the write.
    pub org: i64,
    /// The user the write counts against (`max_connections_per_user`).
    pub user: i64,
}

/// A result with where it came from.
#[derive(Debug)]
pub struct Routed<T> {
    /// The result.
    pub value: T,
    /// The node that produced it.
    pub node: String,
    /// That node's role.
    pub role: ServedRole,
    /// Attempts it took (1 without retries).
    pub attempts: u32,
}

/// The router. Cheap to clone: clones share one state. Dropping the last clone shuts it down.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use replisim::router::{
///     NodeAddress, ReadRequest, Router, RouterConfig, ShardConfig, TcpConnector, Topology,
///     WriteRequest,
/// };
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let config = RouterConfig::builder()
///     .health_interval(Duration::from_secs(5))
///     .query_timeout(Duration::from_secs(2))
///     .build()?;
/// let topology = Topology {
///     shards: vec![ShardConfig {
///         name: "s1".into(),
///         orgs: 0..1_000_000,
///         primary: NodeAddress::new("primary-1", "10.0.0.1", 5432),
///         replicas: vec![NodeAddress::new("replica-1", "10.0.0.2", 5432)],
///     }],
///     user: "app".into(),
///     dbname: "app".into(),
///     password: Some("secret".into()),
/// };
/// let router = Router::start(config, topology, Arc::new(TcpConnector)).await?;
///
/// // A read on a replica of org 42's shard, on behalf of user 7.
/// let read = ReadRequest { org: 42, user: 7, prefer_replica: true };
/// let rows = router.read(read, "SELECT total FROM invoices WHERE org_id = $1", &[&42i64]).await?;
/// println!("{} rows from {} ({:?})", rows.value.len(), rows.node, rows.role);
///
/// // A lock-then-update in one transaction on the shard's primary.
/// let mut transaction = router.begin(WriteRequest { org: 42, user: 7 }).await?;
/// let locked = transaction
///     .query("SELECT status FROM invoices WHERE org_id = $1 AND id = $2 FOR UPDATE", &[&42i64, &1i64])
///     .await?;
/// if locked.first().map(|row| row.get::<_, String>(0)).as_deref() == Some("open") {
///     transaction
///         .execute("UPDATE invoices SET status = 'paid' WHERE org_id = $1 AND id = $2", &[&42i64, &1i64])
///         .await?;
/// }
/// transaction.commit().await?;
/// router.shutdown();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    config: RouterConfig,
    table: Arc<RouteTable>,
    nodes: Vec<Arc<Node>>,
    caps: Caps,
    health_tasks: Mutex<Vec<JoinHandle<()>>>,
    shut_down: AtomicBool,
}

impl Router {
    /// Validates config and topology, runs one round of health checks on every node (concurrently,
    /// each within `health_timeout`), then starts the periodic checks. Connections open on demand.
    pub async fn start(
        config: RouterConfig,
        topology: Topology,
        connector: Arc<dyn Connector>,
    ) -> Result<Router, RouterError> {
        config.validate()?;
        let table = Arc::new(topology.validate()?);
        // Root certificates are read once, here: a bad file stops the start, not every connect.
        let tls = tls::Tls::from_config(&config)?;
        // Unseeded randomness on purpose, and only here: production routers should not share a
        // sequence of picks. Every simulated router has its seed set.
        let balance_seed = config.balance_seed.unwrap_or_else(rand::random);
        balance::select::seed_shards(&table, balance_seed);
        for shard in table.shards() {
            shard.roles.set_follow(config.follow_promotion);
        }
        let mut login = tokio_postgres::Config::new();
        login
            .user(topology.user.as_str())
            .dbname(topology.dbname.as_str())
            .ssl_mode(tls.client_mode());
        if let Some(password) = &topology.password {
            login.password(password.expose());
        }
        let mut workload_login = login.clone();
        workload_login.application_name(WORKLOAD_APPLICATION_NAME);
        let mut probe_login = login;
        probe_login.application_name(PROBE_APPLICATION_NAME);
        let limits = PoolLimits {
            max_connections: config.max_connections_per_node,
            min_connections: config.min_connections_per_node,
            connect_timeout: config.connect_timeout,
            query_timeout: config.query_timeout,
            max_idle_time: config.max_idle_time,
            max_lifetime: config.max_lifetime,
            cancel_abandoned: config.cancel_abandoned,
            // A quarter of the time a settling statement holds its request's cap slots: each
            // statement of an abandoned pipeline is cancelled before the slots move on.
            recancel_after: caps::held_at_most(config.health_timeout, config.connect_timeout) / 4,
        };
        let mut nodes = Vec::new();
        let mut probes = Vec::new();
        let mut lag_probes = Vec::new();
        let board = Arc::new(LagBoard::new(table.shards().len()));
        let probe_lag = config.max_replica_lag.is_some() || config.read_your_writes;
        for (index, placed) in topology.nodes().into_iter().enumerate() {
            let Some((shard, position)) = table.locate(index) else {
                return Err(RouterError::InvalidConfig(format!(
                    "topology: node {} has no place in the routing table",
                    placed.address.name
                )));
            };
            let address = placed.address.clone();
            // Primaries are never ejected: a failed write must not make the router refuse the next
            // ones before the health checks say the primary is down.
            let ejection_policy = (!config.ejection_time.is_zero()
                && placed.role == ServedRole::Replica)
                .then_some(EjectionPolicy {
                    ejection_time: config.ejection_time,
                    ejection_time_max: config.ejection_time_max,
                    recovery_threshold: config.recovery_threshold,
                });
            let pool = Pool::new(
                address.clone(),
                Arc::clone(&connector),
                Login {
                    config: workload_login.clone(),
                    tls: tls.for_node(&address),
                },
                limits,
            );
            let replicas = table.shards().get(shard).map_or(0, |s| s.replicas.len());
            let node = Arc::new(Node::new(
                placed,
                pool,
                Arc::clone(&table),
                shard,
                position,
                PassiveEjection {
                    policy: ejection_policy,
                    cap: outlier::ejection_cap(replicas, config.max_ejection_percent),
                    outliers_only: config.outlier_ejection,
                },
                config.balance == Balance::P2cEwma,
            ));
            lag_probes.push(probe_lag.then(|| LagProbe {
                routes: Arc::clone(&table),
                board: Arc::clone(&board),
                stats: Arc::clone(&node.stats),
                shard,
                position,
                max_replica_lag: config.max_replica_lag,
                timeout: config.health_timeout,
            }));
            nodes.push(node);
            let login = Login {
                config: probe_login.clone(),
                tls: tls.for_node(&address),
            };
            probes.push(Probe::new(
                address,
                Arc::clone(&connector),
                login,
                config.health_timeout,
            ));
        }
        let thresholds = HealthThresholds {
            failure_threshold: config.failure_threshold,
            recovery_threshold: config.recovery_threshold,
        };
        let started = Instant::now();
        let first_round = futures::future::join_all(probes.iter_mut().map(Probe::check)).await;
        let now = Instant::now();
        for (node, result) in nodes.iter().zip(&first_round) {
            node.record_check(result, started, now, thresholds);
        }
        // Primaries first, so that the replicas' first byte lag has a primary position to go by.
        for primaries in [true, false] {
            let measures = probes
                .iter_mut()
                .zip(&lag_probes)
                .zip(&first_round)
                .filter_map(|((probe, lag), result)| {
                    let role = *result.as_ref().ok()?;
                    ((role == ServedRole::Primary) == primaries).then_some(())?;
                    Some((probe, lag.as_ref()?, role))
                })
                .filter_map(|(probe, lag, role)| Some(lag.measure(probe.connection()?, role)));
            futures::future::join_all(measures).await;
        }
        let health_tasks = nodes
            .iter()
            .zip(probes)
            .zip(lag_probes)
            .map(|((node, probe), lag)| {
                tokio::spawn(node::watch(
                    Arc::clone(node),
                    probe,
                    config.health_interval,
                    thresholds,
                    lag,
                ))
            })
            .collect();
        // A statement given up on keeps its request's slots while its node answers the cancel, at
        // most a health check's time: a node that takes longer is treated as unreachable.
        let caps = Caps::new(
            config.max_connections_per_user,
            config.max_connections_per_org,
            config.connect_timeout,
        )
        .settle_hold(config.health_timeout);
        Ok(Router {
            inner: Arc::new(Inner {
                config,
                table,
                nodes,
                caps,
                health_tasks: Mutex::new(health_tasks),
                shut_down: AtomicBool::new(false),
            }),
        })
    }

    /// Runs a read and collects its rows. A replica serves it if `prefer_replica` and
    /// `use_read_replicas` allow and one is healthy and not ejected, else the primary. If the node
    /// fails (not the statement), or is ejected while the read waits on it, the read is retried up to
    /// `read_retries` times on another node of the shard.
    pub async fn read(
        &self,
        request: ReadRequest,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Routed<Vec<Row>>, RouterError> {
        let inner = self.running()?;
        let shard = inner.shard(request.org)?;
        let caps = inner.caps.acquire_for(request.user, request.org).await?;
        inner
            .read_with_retries(
                shard,
                request.prefer_replica,
                Tried::default(),
                &caps,
                |node, watch| inner.collect(node, watch, caps.slots(), sql, params),
            )
            .await
    }

    /// Runs a read whose rows reach the caller as they arrive (see [`ReadStream`]). Retried like
    /// [`Router::read`], but only before the first row is in.
    pub async fn read_stream(
        &self,
        request: ReadRequest,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Routed<ReadStream>, RouterError> {
        let inner = self.running()?;
        let shard = inner.shard(request.org)?;
        let caps = inner.caps.acquire_for(request.user, request.org).await?;
        let mut routed = inner
            .read_with_retries(
                shard,
                request.prefer_replica,
                Tried::default(),
                &caps,
                |node, watch| inner.stream(node, watch, caps.slots(), sql, params),
            )
            .await?;
        routed.value.hold(caps.into_slots());
        Ok(routed)
    }

    /// Runs a write on the org's primary. Never retried: a write whose outcome is unknown must not run
    /// twice. A failed write never ejects the primary; only its health checks take it out.
    pub async fn write(
        &self,
        request: WriteRequest,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Routed<Vec<Row>>, RouterError> {
        let inner = self.running()?;
        inner
            .write_with(request, |node, caps| {
                inner.collect(node, Watch::OFF, caps, sql, params)
            })
            .await
    }

    /// A snapshot of every node's counters, in topology order.
    pub fn stats(&self) -> RouterStats {
        RouterStats {
            nodes: self
                .inner
                .nodes
                .iter()
                .map(|node| node.snapshot())
                .collect(),
        }
    }

    /// A snapshot of every node's counters, pool use, routing reasons, statement latency and
    /// replication lag, in topology order; [`render_prometheus`] turns it into the Prometheus text
    /// format.
    pub fn metrics(&self) -> MetricsSnapshot {
        metrics::snapshot(&self.inner.nodes, self.inner.caps.timeouts())
    }

    /// The configuration the router runs with.
    pub fn config(&self) -> &RouterConfig {
        &self.inner.config
    }

    /// Stops the health checks and closes the pools; later requests fail with `ShutDown`. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    fn running(&self) -> Result<&Inner, RouterError> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(RouterError::ShutDown);
        }
        Ok(&self.inner)
    }
}

impl Inner {
    fn shard(&self, org: i64) -> Result<&ShardRoute, RouterError> {
        self.table
            .shard_for(org)
            .ok_or(RouterError::NoShardForOrg { org })
    }

    /// The one write path (plain and session writes): waits for the user's and org's caps, runs
    /// `attempt` once on the shard's writer with the caps' slots (for its connection to take over
    /// if the write times out), never anywhere else, and never again. A write that
    /// failed with its node, or was refused as read-only (25006), asks the shard to look for a new
    /// primary now: the writer may have died or been fenced by a promotion.
    async fn write_with<'a, T, F, Fut>(
        &'a self,
        request: WriteRequest,
        attempt: F,
    ) -> Result<Routed<T>, RouterError>
    where
        F: FnOnce(NodeIdx, SharedCapSlots) -> Fut,
        Fut: Future<Output = Result<T, RouterError>> + 'a,
    {
        let shard = self.shard(request.org)?;
        let caps = self.caps.acquire_for(request.user, request.org).await?;
        let Some(choice) = route::choose_write_node(shard) else {
            return Err(self.no_writer(shard));
        };
        self.count_route(choice.node, RouteReason::Write);
        if caps.take_wait() {
            self.count_route(choice.node, RouteReason::CapWait);
        }
        let result = attempt(choice.node, caps.slots()).await;
        drop(caps);
        if let Err(error) = &result
            && (error.is_node_failure() || error.is_read_only())
        {
            shard.roles.request_recheck();
        }
        Ok(self.routed(result?, choice, 1))
    }

    /// Tries `attempt` on the nodes the read may use, one after another, while the failures are the
    /// node's and retries are left. Each failure of a replica ejects it, and each attempt on a replica
    /// is watched (see `hedge`). An attempt given up because its node was ejected does not use up a
    /// retry: nothing failed, and as no node is tried twice a read makes at most one attempt per node.
    /// `start` may restrict the nodes the read may use. An attempt after one whose connection took
    /// the request's cap slots over (see [`SharedCapSlots`]) first takes fresh ones; a wait for
    /// them (or for the request's first ones) counts on the node of the attempt that follows it.
    async fn read_with_retries<'a, T, F, Fut>(
        &'a self,
        shard: &'a ShardRoute,
        prefer_replica: bool,
        start: Tried,
        caps: &RequestCaps<'_>,
        mut attempt: F,
    ) -> Result<Routed<T>, RouterError>
    where
        F: FnMut(NodeIdx, Watch<'a>) -> Fut,
        Fut: Future<Output = Result<T, RouterError>> + 'a,
    {
        let prefer_replica = prefer_replica && self.config.use_read_replicas;
        let operation = if prefer_replica {
            "read"
        } else {
            "primary read"
        };
        let mut tried = start;
        let mut failures: u32 = 0;
        let mut timeouts: u32 = 0;
        // The error of the last failed attempt: if no other node is left, it says more than
        // "no healthy node".
        let mut failure: Option<RouterError> = None;
        loop {
            // Before the node is chosen: a wait for fresh cap slots may outlast what routing knew.
            caps.ensure().await?;
            let Some(choice) = balance::select::choose_read_node(
                self.config.balance,
                shard,
                &self.nodes,
                prefer_replica,
                tried,
            ) else {
                return Err(failure.unwrap_or_else(|| {
                    self.no_healthy_node(shard, operation, prefer_replica, tried)
                }));
            };
            let reason = RouteReason::for_read(prefer_replica, choice.role, tried);
            self.count_route(choice.node, reason);
            if prefer_replica && route::skips_lagging(shard, tried) {
                self.count_route(choice.node, RouteReason::LagExclusion);
            }
            if caps.take_wait() {
                self.count_route(choice.node, RouteReason::CapWait);
            }
            let node = &self.nodes[choice.node];
            let watch = self.watch(node, shard, prefer_replica, tried, choice);
            let started = Instant::now();
            match attempt(choice.node, watch).await {
                Ok(value) => {
                    node.report_success(started);
                    return Ok(self.routed(value, choice, tried.count() + 1));
                }
                Err(error) => {
                    tried.add(choice);
                    if error.is_backpressure() {
                        // Waiting in the router is no node's fault and says nothing about it. The
                        // read may go to another replica that has a free slot now, never to the
                        // primary, which is where overload must not spill.
                        let free = self.replicas_with_free_slots(shard);
                        if !prefer_replica || free & tried.open() == 0 {
                            return Err(error);
                        }
                        tried = tried.restricted_to(free);
                        tracing::debug!(node = node.name(), %error, "read waited too long for a slot; trying a replica with a free one");
                        failure = Some(error);
                        continue;
                    }
                    // A given-up attempt is no news about its node: whatever took the node out of
                    // rotation was reported already.
                    let abandoned = matches!(error, RouterError::Abandoned { .. });
                    let timed_out = matches!(error, RouterError::QueryTimeout { .. });
                    if timed_out {
                        // Slow is not failed: only an outlier among the replicas is ejected.
                        node.report_slow(started, &error);
                        timeouts = timeouts.saturating_add(1);
                    } else if error.is_node_down() {
                        node.report_down(started, &error);
                    } else if error.is_node_failure() && !abandoned {
                        node.report_failure(started, &error);
                    }
                    if !abandoned {
                        failures = failures.saturating_add(1);
                    }
                    // A statement that ran out its query_timeout is tried elsewhere once at most: if
                    // it is slow everywhere, more copies only add load.
                    let retries_left =
                        abandoned || (failures <= self.config.read_retries && timeouts <= 1);
                    if !(error.is_node_failure() && retries_left) {
                        return Err(error);
                    }
                    tracing::debug!(node = node.name(), %error, "read failed on a node; retrying on another");
                    failure = Some(error);
                }
            }
        }
    }

    /// Replica positions of `shard` (bit 1 + i) whose pools have a connection slot free now.
    fn replicas_with_free_slots(&self, shard: &ShardRoute) -> u64 {
        shard
            .replicas
            .iter()
            .zip(1u32..)
            .filter(|(node, _)| {
                self.nodes
                    .get(**node)
                    .is_some_and(|node| node.pool.has_free_slot())
            })
            .fold(0, |set, (_, position)| set | 1u64 << position)
            & shard.replica_positions()
    }

    /// Counts why `node` was chosen for one attempt.
    fn count_route(&self, node: NodeIdx, reason: RouteReason) {
        self.nodes[node].stats.routes.count(reason);
    }

    /// How an attempt on `node` (`choice` of a read of `shard` that already `tried` some nodes) is
    /// watched: only on replicas that eject.
    fn watch<'a>(
        &self,
        node: &Node,
        shard: &'a ShardRoute,
        prefer_replica: bool,
        mut tried: Tried,
        choice: Choice,
    ) -> Watch<'a> {
        if !node.ejects() {
            return Watch::OFF;
        }
        tried.add(choice);
        let slow = self.config.slow_request_ejection;
        Watch {
            slow_after: (!slow.is_zero()).then_some(slow),
            elsewhere: Some(Elsewhere {
                shard,
                prefer_replica,
                tried,
            }),
        }
    }

    /// One attempt of a statement on `node`, rows collected; `caps`: the request's cap slots.
    async fn collect(
        &self,
        node: NodeIdx,
        watch: Watch<'_>,
        caps: SharedCapSlots,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, RouterError> {
        let node = &self.nodes[node];
        let attempt = AttemptGuard::borrowing(&node.stats);
        let result = async {
            let slot = watch.queue(node, node.pool.acquire()).await?;
            let started = Instant::now();
            // The statement's timer also rings for the watch: one timer per read.
            let alarm = Alarm::new(started);
            // Pinned where it is made: the statement's future is large (tokio-postgres's query and
            // the checkout), and the watch would otherwise copy it as it moves into place. Pinned
            // in this future's state rather than boxed: no allocation per read, and the copy into
            // the box cost more than the larger state that `collect`'s callers create once.
            let work = std::pin::pin!(async {
                let mut checkout = slot
                    .open(started, |closed| node.report_closed(closed))
                    .await?;
                checkout.settles_with(caps);
                checkout.query_alarmed(sql, params, &alarm).await
            });
            let result = watch.run(node, started, Some(&alarm), work).await;
            node.note_answer(started, &result);
            result
        }
        .await;
        attempt.end(AttemptEnd::of(&result));
        result
    }

    /// One attempt of a streaming read on `node`, up to its first row; `caps`: the request's cap
    /// slots.
    async fn stream(
        &self,
        node: NodeIdx,
        watch: Watch<'_>,
        caps: SharedCapSlots,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<ReadStream, RouterError> {
        let node = &self.nodes[node];
        let attempt = AttemptGuard::start(&node.stats);
        let slot = match watch.queue(node, node.pool.acquire()).await {
            Ok(slot) => slot,
            Err(error) => {
                let given_up = matches!(error, RouterError::Abandoned { .. });
                attempt.end(if given_up {
                    AttemptEnd::Cancelled
                } else {
                    AttemptEnd::Error
                });
                return Err(error);
            }
        };
        // The attempt travels with the work: if the watch gives the work up, dropping it counts the
        // attempt as cancelled.
        let attempt_started = Instant::now();
        let work = async move {
            let started = async {
                let mut checkout = slot
                    .open(attempt_started, |closed| node.report_closed(closed))
                    .await?;
                checkout.settles_with(caps);
                let rows = checkout.query_stream(sql, params).await?;
                Ok((checkout, rows))
            }
            .await;
            match started {
                // `begin` ends the attempt itself when the stream fails or ends.
                Ok((checkout, rows)) => ReadStream::begin(checkout, rows, attempt).await,
                Err(error) => {
                    attempt.end(AttemptEnd::Error);
                    Err(error)
                }
            }
        };
        let result = watch.run(node, attempt_started, None, work).await;
        node.note_answer(attempt_started, &result);
        result
    }

    fn routed<T>(&self, value: T, choice: Choice, attempts: u32) -> Routed<T> {
        Routed {
            value,
            node: self.nodes[choice.node].name().to_string(),
            role: choice.role,
            attempts,
        }
    }

    /// The error for a write `shard` cannot take: no primary known, or the one followed is unusable.
    fn no_writer(&self, shard: &ShardRoute) -> RouterError {
        if shard.writer_position().is_none() {
            return RouterError::NoPrimary {
                shard: shard.name.clone(),
            };
        }
        self.no_healthy_node(shard, "write", false, Tried::default())
    }

    /// The error for a request no node of `shard` can serve, saying why each candidate was unusable.
    fn no_healthy_node(
        &self,
        shard: &ShardRoute,
        operation: &'static str,
        replicas_allowed: bool,
        tried: Tried,
    ) -> RouterError {
        let writer = shard.writer_position();
        let mut positions: Vec<(NodeIdx, u32)> = writer
            .and_then(|position| Some((shard.node_at(position)?, position)))
            .into_iter()
            .collect();
        if replicas_allowed {
            positions.extend(
                shard
                    .replicas
                    .iter()
                    .copied()
                    .zip(1..)
                    .filter(|&(_, position)| Some(position) != writer),
            );
        }
        let detail = positions
            .into_iter()
            .map(|(index, position)| {
                let node = &self.nodes[index];
                let state = if tried.contains(position) {
                    "failed this request".to_string()
                } else {
                    node.describe_health()
                };
                format!("{} {}", node.name(), state)
            })
            .collect::<Vec<_>>()
            .join("; ");
        RouterError::NoHealthyNode {
            operation,
            shard: shard.name.clone(),
            detail,
        }
    }

    fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let tasks = std::mem::take(
            &mut *self
                .health_tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
        }
        for node in &self.nodes {
            node.pool.close();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A current-thread runtime with time, for the router's unit tests.
#[cfg(test)]
pub(crate) fn test_runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("no runtime: {error}"),
    }
}
