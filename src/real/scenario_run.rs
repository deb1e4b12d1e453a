//! One scenario against real PostgreSQL in real time: a cluster shaped like the scenario's topology
//! (or the servers given with `--url`), a fault proxy per node carrying the node's `link_latency`,
//! the router through those proxies, the scenario's workload and faults on schedule, and the
//! evidence for the same checkers and report as a simulated run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::real::clock::RunClock;
use crate::real::cluster::{Cluster, ClusterSpec};
use crate::real::cross_check::{self, CrossCheck, RunFigures};
use crate::real::driver::{Driver, drain_limit};
use crate::real::error::ClusterError;
use crate::real::evidence::{self, NodeRecords};
use crate::real::inject::{self, Targets, model_apply_delay};
use crate::real::node::DATABASE;
use crate::real::pgpool::{self, Pgpool, PgpoolBackend, PgpoolError};
use crate::real::pgpool_clients::PgpoolClients;
use crate::real::proxy::FaultProxy;
use crate::real::read_stall::{ReadStall, read_stall};
use crate::real::server_counts::{self, ServerCounts, Snapshot};
use crate::real::settings::ServerSettings;
use crate::real::sql::{Admin, SUPERUSER};
use crate::real::urls::ExternalNodes;
use crate::record::RunOutcome;
use crate::record::events::{FaultRecord, NodeRole};
use crate::record::workload::Target;
use crate::router::metrics::CapTimeouts;
use crate::router::{MetricsSnapshot, Router, RouterError, TcpConnector, connector::Connector};
use crate::scenario::{Login, Scenario};

/// The `CREATE TABLE` of SPEC 2a, for servers replisim did not create.
const CREATE_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS replisim_kv (org_id bigint, key bigint, \
     version bigint NOT NULL, updated_by bigint NOT NULL, PRIMARY KEY (org_id, key))";
/// Limit of one setup step against an external server.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections a server allows beyond the router's per-node cap (probes, replication, admin).
const CONNECTIONS_SPARE: u32 = 50;

/// Why a real run could not be carried out (never a verdict on the router).
#[derive(Debug, thiserror::Error)]
pub enum RealRunError {
    /// The cluster could not be started, changed or stopped.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A fault proxy could not listen.
    #[error("starting the fault proxy of node {node}: {source}")]
    Proxy {
        /// The node.
        node: String,
        /// What failed.
        source: std::io::Error,
    },
    /// An external server could not be reached or prepared.
    #[error("preparing node {node}: {detail}")]
    External {
        /// The node.
        node: String,
        /// What failed.
        detail: String,
    },
    /// The router refused its configuration or could not start.
    #[error("starting the router: {0}")]
    Router(#[from] RouterError),
    /// pgpool-II could not start (`--router pgpool`).
    #[error("starting pgpool-II: {0}")]
    Pgpool(#[from] PgpoolError),
    /// The workload did not finish within the router's own timeouts.
    #[error("the workload did not finish {0:?} after the scenario's duration")]
    Stuck(Duration),
    /// Ctrl-C: everything was stopped and removed.
    #[error("interrupted; every server and proxy replisim started was stopped and removed")]
    Interrupted,
}

/// The router the workload goes through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouterUnderTest {
    /// This crate's router, in process.
    #[default]
    Replisim,
    /// pgpool-II 4.3, started by replisim in front of the same fault proxies.
    Pgpool,
}

impl RouterUnderTest {
    /// Its name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RouterUnderTest::Replisim => "replisim",
            RouterUnderTest::Pgpool => "pgpool",
        }
    }
}

/// What a real run adds to the report (under `real`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RealDetails {
    /// The router the workload went through: `replisim` or `pgpool`.
    pub router: &'static str,
    /// The scenario's router settings the router under test could not honour (pgpool only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub router_unhonoured: Vec<String>,
    /// The longest interval without a successful read completion.
    pub read_stall: ReadStall,
    /// `cluster` (started by replisim) or `external` (`--url`).
    pub servers: &'static str,
    /// Per node, the servers' own counts (cluster only).
    pub server_counts: Vec<ServerCounts>,
    /// Per node, writes the clients saw refused with SQLSTATE 25006 by that node.
    pub client_read_only_errors: BTreeMap<String, u64>,
    /// Workload statements that matched no client operation.
    pub unmatched_statements: u64,
    /// Workload statements held by a partition (not counted as executed).
    pub held_statements: u64,
    /// Records a proxy could not keep (over its cap).
    pub proxy_records_dropped: u64,
    /// `pg_stat_statements` counts taken before each crash or restart replisim applied.
    pub snapshots: Vec<Snapshot>,
    /// Per node, the evidence against the servers' own counts; a disagreement fails the run.
    pub cross_check: CrossCheck,
    /// Per fault (scenario order), why its effect was not seen, if it was not.
    pub fault_notes: Vec<Option<String>>,
    /// Model values a real run does not reproduce.
    pub not_emulated: Vec<String>,
}

/// The outcome of a real run, in the simulation's terms, and what only a real run knows.
#[derive(Debug)]
pub struct RealOutcome {
    /// Evidence, faults and metrics, as a simulated run gives them.
    pub outcome: RunOutcome,
    /// The real-mode additions to the report.
    pub details: RealDetails,
}

/// Where the servers are: a cluster replisim runs, or external addresses.
enum Servers {
    Cluster(Box<Cluster>),
    External(ExternalNodes),
}

/// Runs `scenario` with `seed` in real time. `external`: servers given with `--url` (faults that
/// need server control must have been refused already).
///
/// Ctrl-C at any point, cluster start-up included, stops the run: dropping it tears the cluster
/// down (`Cluster`'s `Drop`), and the result is [`RealRunError::Interrupted`].
pub async fn run(
    scenario: &Scenario,
    seed: u64,
    external: Option<ExternalNodes>,
) -> Result<RealOutcome, RealRunError> {
    run_through(scenario, seed, external, RouterUnderTest::Replisim).await
}

/// [`run`], with the workload through `router`.
pub async fn run_through(
    scenario: &Scenario,
    seed: u64,
    external: Option<ExternalNodes>,
    router: RouterUnderTest,
) -> Result<RealOutcome, RealRunError> {
    let interrupted = async {
        // Without a signal handler there is nothing to wait for, not a reason to stop.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        () = interrupted => Err(RealRunError::Interrupted),
        outcome = run_uninterrupted(scenario, seed, external, router) => outcome,
    }
}

async fn run_uninterrupted(
    scenario: &Scenario,
    seed: u64,
    external: Option<ExternalNodes>,
    router: RouterUnderTest,
) -> Result<RealOutcome, RealRunError> {
    let mut not_emulated = vec!["query_time: a real server's service time is its own".to_string()];
    let servers = match external {
        Some(nodes) => {
            prepare_external(scenario, &nodes).await?;
            not_emulated.push(
                "replication_delay: external servers replicate at their own speed".to_string(),
            );
            Servers::External(nodes)
        }
        None => Servers::Cluster(Box::new(start_cluster(scenario).await?)),
    };
    let outcome = run_on(scenario, seed, &servers, not_emulated, router).await;
    if let Servers::Cluster(cluster) = servers {
        // The run's own error is the one worth reporting; a teardown error comes second.
        let torn_down = cluster.teardown().await;
        let outcome = outcome?;
        torn_down?;
        return Ok(outcome);
    }
    outcome
}

/// Starts a cluster of the scenario's shape, with statement counting if the module is installed,
/// and each replica's modelled apply delay.
async fn start_cluster(scenario: &Scenario) -> Result<Cluster, RealRunError> {
    let mut settings = ServerSettings::new();
    let max_connections = scenario
        .router
        .max_connections_per_node
        .saturating_add(CONNECTIONS_SPARE)
        .max(300);
    settings.set("max_connections", max_connections.to_string());
    if statements_module_installed() {
        settings
            .set("shared_preload_libraries", "pg_stat_statements")
            .set("pg_stat_statements.save", "off");
    }
    let cluster = Cluster::start_with(&ClusterSpec::from_scenario(scenario), &settings).await?;
    if statements_module_installed() {
        for shard in &scenario.shards {
            let Some(primary) = scenario
                .nodes
                .get(shard.primary)
                .and_then(|n| cluster.node(&n.name))
            else {
                continue;
            };
            let admin = Admin::connect(&primary.name, primary.port, DATABASE).await?;
            admin
                .run("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .await?;
        }
    }
    for model in scenario
        .nodes
        .iter()
        .filter(|n| n.initial_role == NodeRole::Replica)
    {
        let delay = model_apply_delay(model.replication_delay);
        if !delay.is_zero() {
            cluster.set_apply_delay(&model.name, delay).await?;
        }
    }
    Ok(cluster)
}

fn statements_module_installed() -> bool {
    std::path::Path::new(crate::real::PG_BIN_DIR)
        .join("../lib/pg_stat_statements.so")
        .is_file()
}

/// Creates the workload table on every external primary.
async fn prepare_external(scenario: &Scenario, nodes: &ExternalNodes) -> Result<(), RealRunError> {
    for shard in &scenario.shards {
        let name = scenario
            .nodes
            .get(shard.primary)
            .map_or_else(String::new, |n| n.name.clone());
        let fail = |detail: String| RealRunError::External {
            node: name.clone(),
            detail,
        };
        let Some((host, port)) = nodes.addresses.get(shard.primary) else {
            return Err(fail("no address".to_string()));
        };
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(*port)
            .user(&nodes.user)
            .dbname(&nodes.dbname)
            .connect_timeout(SETUP_TIMEOUT);
        if let Some(password) = &nodes.password {
            config.password(password.expose());
        }
        let connected = tokio::time::timeout(SETUP_TIMEOUT, config.connect(tokio_postgres::NoTls));
        let (client, connection) = match connected.await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => return Err(fail(format!("connect timed out after {SETUP_TIMEOUT:?}"))),
        };
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let created = tokio::time::timeout(SETUP_TIMEOUT, client.batch_execute(CREATE_TABLE_SQL));
        let created = match created.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Err(_) => Err(fail(format!(
                "CREATE TABLE timed out after {SETUP_TIMEOUT:?}"
            ))),
        };
        drop(client);
        connection.abort();
        created?;
    }
    Ok(())
}

/// The upstream address of every node, in scenario order.
async fn upstreams(
    scenario: &Scenario,
    servers: &Servers,
) -> Result<Vec<SocketAddr>, RealRunError> {
    let mut list = Vec::with_capacity(scenario.nodes.len());
    for (idx, model) in scenario.nodes.iter().enumerate() {
        let address = match servers {
            Servers::Cluster(cluster) => cluster.node(&model.name).map(|n| n.addr()),
            Servers::External(nodes) => match nodes.addresses.get(idx) {
                Some((host, port)) => {
                    let lookup = tokio::time::timeout(
                        SETUP_TIMEOUT,
                        tokio::net::lookup_host((host.as_str(), *port)),
                    );
                    match lookup.await {
                        Ok(Ok(mut found)) => found.next(),
                        _ => None,
                    }
                }
                None => None,
            },
        };
        list.push(address.ok_or_else(|| RealRunError::External {
            node: model.name.clone(),
            detail: "its address does not resolve".to_string(),
        })?);
    }
    Ok(list)
}

async fn run_on(
    scenario: &Scenario,
    seed: u64,
    servers: &Servers,
    not_emulated: Vec<String>,
    under_test: RouterUnderTest,
) -> Result<RealOutcome, RealRunError> {
    let mut proxies = Vec::with_capacity(scenario.nodes.len());
    for (model, upstream) in scenario
        .nodes
        .iter()
        .zip(upstreams(scenario, servers).await?)
    {
        let proxy = FaultProxy::start(upstream)
            .await
            .map_err(|source| RealRunError::Proxy {
                node: model.name.clone(),
                source,
            })?;
        proxy.set_latency(model.link_latency);
        proxies.push(proxy);
    }
    let (user, dbname, password) = match servers {
        Servers::Cluster(_) => (SUPERUSER.to_string(), DATABASE.to_string(), None),
        Servers::External(nodes) => (
            nodes.user.clone(),
            nodes.dbname.clone(),
            nodes.password.clone(),
        ),
    };
    // The router under test reaches every node through its fault proxy.
    let (target, router, pgpool) = match under_test {
        RouterUnderTest::Replisim => {
            let topology = scenario.router_topology(
                |idx, _| {
                    let port = proxies.get(idx).map_or(0, |p| p.local_addr().port());
                    ("127.0.0.1".to_string(), port)
                },
                Login {
                    user,
                    dbname,
                    password,
                },
            );
            let connector: Arc<dyn Connector> = Arc::new(TcpConnector);
            let router = Router::start(scenario.router.clone(), topology, connector).await?;
            (Target::Router(router.clone()), Some(router), None)
        }
        RouterUnderTest::Pgpool => {
            let backends: Vec<PgpoolBackend> = scenario
                .nodes
                .iter()
                .zip(&proxies)
                .map(|(model, proxy)| {
                    let primary = model.initial_role == NodeRole::Primary;
                    PgpoolBackend {
                        name: model.name.clone(),
                        host: "127.0.0.1".to_string(),
                        port: proxy.local_addr().port(),
                        primary,
                        // The router reads on the primary only when no replica can serve.
                        weight: if primary {
                            0.0
                        } else {
                            f64::from(model.weight)
                        },
                    }
                })
                .collect();
            let pgpool = Pgpool::start(&backends, &scenario.router, &user, &dbname).await?;
            let clients = PgpoolClients::new(
                pgpool.port(),
                &user,
                &dbname,
                scenario.workload.clients,
                scenario.router.connect_timeout,
                scenario.router.query_timeout,
            );
            (Target::Connections(Arc::new(clients)), None, Some(pgpool))
        }
    };

    let clock = RunClock::start();
    let node_index = scenario
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    let end_us = crate::real::clock::micros(scenario.duration);
    let driver = Arc::new(Driver::new(
        target,
        node_index,
        scenario.workload.clone(),
        seed,
        end_us,
        clock,
    ));
    let targets = Targets {
        scenario,
        cluster: match servers {
            Servers::Cluster(cluster) => Some(cluster),
            Servers::External(_) => None,
        },
        proxies: &proxies,
        clock,
    };
    let limit = scenario.duration + drain_limit(&scenario.router);
    let workload = tokio::time::timeout(limit, Arc::clone(&driver).run());
    let (finished, injected) = tokio::join!(workload, inject::run(&targets));
    let metrics = match &router {
        Some(router) => {
            let metrics = router.metrics();
            router.shutdown();
            metrics
        }
        None => MetricsSnapshot {
            nodes: Vec::new(),
            cap_timeouts: CapTimeouts::default(),
        },
    };
    if let Some(pgpool) = pgpool {
        pgpool.stop().await;
    }
    if finished.is_err() {
        return Err(RealRunError::Stuck(drain_limit(&scenario.router)));
    }
    let records = driver.take_records();
    let run_end_us = records
        .ops
        .iter()
        .map(|op| op.end_us)
        .max()
        .unwrap_or(end_us);

    let mut details = RealDetails {
        router: under_test.name(),
        router_unhonoured: match under_test {
            RouterUnderTest::Replisim => Vec::new(),
            RouterUnderTest::Pgpool => {
                let mut list = pgpool::unhonoured(&scenario.router, scenario.shards.len());
                if scenario.workload.primary_read_ratio > 0.0 {
                    list.push(pgpool::CRITICAL_READS_UNHONOURED.to_string());
                }
                list
            }
        },
        read_stall: read_stall(&records.ops, end_us),
        servers: match servers {
            Servers::Cluster(_) => "cluster",
            Servers::External(_) => "external",
        },
        not_emulated,
        ..RealDetails::default()
    };
    for (idx, model) in scenario.nodes.iter().enumerate() {
        let refused = records
            .failures
            .iter()
            .filter(|f| {
                f.node == Some(idx) && f.sqlstate.as_deref() == Some(evidence::READ_ONLY_SQLSTATE)
            })
            .count() as u64;
        details
            .client_read_only_errors
            .insert(model.name.clone(), refused);
    }
    if let Servers::Cluster(cluster) = servers {
        details.server_counts =
            server_counts::collect(cluster, statements_module_installed()).await;
    }
    let node_records: Vec<NodeRecords> = proxies
        .iter()
        .enumerate()
        .map(|(node, proxy)| NodeRecords {
            node,
            started: proxy.started(),
            records: proxy.records(),
        })
        .collect();
    details.proxy_records_dropped = proxies.iter().map(FaultProxy::records_dropped).sum();
    for proxy in proxies {
        proxy.shutdown().await;
    }
    let built = evidence::build(
        scenario,
        clock,
        &node_records,
        records,
        &injected.promotions,
    );
    details.unmatched_statements = built.unmatched_statements;
    details.held_statements = built.held_statements;
    details.fault_notes = injected.sightings.iter().map(|s| s.note.clone()).collect();
    let figures = cross_check::node_figures(&RunFigures {
        scenario,
        statements: &built.events.statements,
        uncertain: &built.uncertain,
        server_counts: &details.server_counts,
        snapshots: &injected.snapshots,
        refused_by_clients: &details.client_read_only_errors,
    });
    details.cross_check = cross_check::compare(&figures);
    details.snapshots = injected.snapshots;

    let mut faults: Vec<FaultRecord> = crate::record::schedule::records(scenario);
    for (record, sighting) in faults.iter_mut().zip(&injected.sightings) {
        record.took_effect = sighting.took_effect;
        record.evidence.clone_from(&sighting.evidence);
    }
    Ok(RealOutcome {
        outcome: RunOutcome {
            seed,
            events: built.events,
            faults,
            run_end_us,
            router_metrics: metrics,
        },
        details,
    })
}
