//! One whole simulated run: builds the turmoil world (one host per node, one application host running
//! the router and every client), steps it while applying the fault schedule, and collects the evidence.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use crate::record::RunOutcome;
use crate::record::events::{ClientOp, EventLog, Micros, NodeRole};
use crate::record::schedule;
use crate::record::workload::ClientRecorder;
use crate::record::workload::{self, ClientScope, Clients};
use crate::router::connector::Connector;
use crate::router::topology::Topology;
use crate::router::{MetricsSnapshot, Router, RouterConfig};
use crate::scenario::{Login, Scenario};
use crate::sim::connector::{LinkControl, SimConnector};
use crate::sim::fault_evidence;
use crate::sim::faults::{self, FaultTargets, Sighting};
use crate::sim::node::{NodeModel, PG_PORT, SimNode};
use crate::sim::{APP_HOST, now_us};

/// A fixed epoch (2026-01-01T00:00:00Z) so that server timestamps do not depend on the wall clock.
const EPOCH_SECS: u64 = 1_767_225_600;

/// Something the harness got wrong or could not do: a bug, never a verdict on the router.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The simulation stopped with an error (a host returned one, or it ran past its time limit).
    #[error("simulation failed: {0}")]
    Simulation(String),
    /// The application host ended without recording its end.
    #[error("the application host did not finish its workload")]
    Unfinished,
}

/// Changes to the router's view of the cluster, for runs that prove a checker catches a broken router.
pub type TopologyEdit = Arc<dyn Fn(&mut Topology) + Send + Sync>;

/// Changes to the router's configuration that the checkers do not see (they judge the scenario's).
pub type ConfigEdit = Arc<dyn Fn(&mut RouterConfig) + Send + Sync>;

/// How to run, beyond the scenario and seed.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Applied to the topology the router is given (not to the simulated cluster).
    pub topology_edit: Option<TopologyEdit>,
    /// Applied to the configuration the router is given (not to the scenario the checkers read).
    pub config_edit: Option<ConfigEdit>,
    /// The read-your-writes scope the clients' sessions name (default: the row each statement
    /// touches).
    pub client_scope: ClientScope,
    /// A deliberately broken router that runs a transaction's lock and write each on a connection
    /// of its own, outside the transaction (see [`Clients::split_transactions`]), for runs that
    /// prove `transactions_atomic` catches it.
    pub broken_router_splits_transactions: bool,
    /// Makes every simulated node apply a write inside a transaction to its rows and WAL at once,
    /// before `COMMIT` (see `SimNode::set_broken_writes_before_commit`): for runs proving a checker
    /// catches a broken node.
    pub broken_node_writes_before_commit: bool,
}

/// What the application host hands back when its workload is done.
struct Finished {
    end_us: Micros,
    metrics: MetricsSnapshot,
}

/// Runs `scenario` with `seed`.
pub fn run(scenario: &Scenario, seed: u64) -> Result<RunOutcome, HarnessError> {
    run_with(scenario, seed, &RunOptions::default())
}

/// The topology the router is given for a scenario: shard ranges and node addresses as declared.
pub fn topology_of(scenario: &Scenario) -> Topology {
    // Each simulated node is a turmoil host named like the node.
    scenario.router_topology(
        |_, node| (node.name.clone(), PG_PORT),
        Login {
            user: "replisim".to_string(),
            dbname: "replisim".to_string(),
            password: None,
        },
    )
}

/// About how many operations the workload will start (an upper estimate, capped), for reserving memory.
fn expected_ops(scenario: &Scenario) -> usize {
    const CAP: f64 = 4_000_000.0;
    let secs = scenario.duration.as_secs_f64();
    let w = &scenario.workload;
    let ops = match w.rate {
        Some(rate) => rate * secs * 1.1,
        // A closed-loop client does at most one operation per think time plus a 2 ms round trip.
        None => f64::from(w.clients) * secs / (w.think_time.as_secs_f64() + 0.002),
    };
    ops.clamp(0.0, CAP) as usize
}

/// Runs `scenario` with `seed` and `options`.
pub fn run_with(
    scenario: &Scenario,
    seed: u64,
    options: &RunOptions,
) -> Result<RunOutcome, HarnessError> {
    let log = Arc::new(EventLog::with_capacity(expected_ops(scenario)));
    let links = Arc::new(LinkControl::new(scenario.nodes.len()));
    let node_names: Vec<String> = scenario.nodes.iter().map(|n| n.name.clone()).collect();

    let cfg = &scenario.router;
    // In-flight operations may finish after `duration`, bounded by the router's timeouts.
    let per_attempt = cfg.connect_timeout + cfg.query_timeout;
    // A closed-loop client's last pause (`think_time`) may also end after `duration`.
    let drain = per_attempt * (cfg.read_retries + 2)
        + cfg.connect_timeout * 2
        + scenario.workload.think_time
        + Duration::from_secs(60);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .simulation_duration(scenario.duration + drain)
        .tick_duration(Duration::from_millis(1))
        .tcp_capacity(1 << 16)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::ZERO)
        .build();

    let nodes: Vec<Arc<SimNode>> = scenario
        .nodes
        .iter()
        .enumerate()
        .map(|(idx, n)| {
            let upstream = match n.initial_role {
                NodeRole::Primary => None,
                NodeRole::Replica => scenario
                    .shards
                    .get(n.shard)
                    .and_then(|s| scenario.nodes.get(s.primary))
                    .map(|p| p.name.clone()),
            };
            let model = NodeModel {
                query_time: n.query_time,
                replication_delay: n.replication_delay,
            };
            SimNode::new(
                idx,
                &n.name,
                n.initial_role,
                upstream,
                model,
                Arc::clone(&log),
            )
        })
        .collect();
    for node in &nodes {
        node.set_broken_writes_before_commit(options.broken_node_writes_before_commit);
        let node = Arc::clone(node);
        sim.host(node.name().to_string(), move || Arc::clone(&node).serve());
    }

    let finished: Arc<Mutex<Option<Finished>>> = Arc::new(Mutex::new(None));
    {
        let mut topology = topology_of(scenario);
        if let Some(edit) = &options.topology_edit {
            edit(&mut topology);
        }
        let connector: Arc<dyn Connector> = Arc::new(SimConnector::new(
            &node_names,
            Arc::clone(&links),
            Arc::clone(&log),
        ));
        let mut config = scenario.router.clone();
        // The run's seed varies the balancing draws with every seed; a file's `balance_seed` (default
        // 0) is mixed in, so the default keeps the draws of the seed alone.
        config.balance_seed = Some(seed ^ scenario.router.balance_seed.unwrap_or(0));
        if let Some(edit) = &options.config_edit {
            edit(&mut config);
        }
        let node_index: BTreeMap<String, usize> = node_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let spec = scenario.workload.clone();
        let end_us = u64::try_from(scenario.duration.as_micros()).unwrap_or(u64::MAX);
        let log = Arc::clone(&log);
        let finished = Arc::clone(&finished);
        let scope = options.client_scope;
        let split_transactions = options.broken_router_splits_transactions;
        sim.client(APP_HOST, async move {
            let router = Router::start(config, topology, connector).await?;
            let clients = Arc::new(Clients {
                target: workload::Target::Router(router.clone()),
                recorder: log,
                node_index,
                spec,
                seed,
                end_us,
                scope,
                split_transactions,
            });
            workload::run(clients).await;
            let metrics = router.metrics();
            router.shutdown();
            *finished.lock().unwrap_or_else(|e| e.into_inner()) = Some(Finished {
                end_us: now_us(),
                metrics,
            });
            Ok(())
        });
    }
    for model in &scenario.nodes {
        sim.set_link_latency(APP_HOST, model.name.as_str(), model.link_latency);
    }

    let actions = schedule::schedule(scenario);
    let mut sightings = vec![Sighting::default(); scenario.faults.len()];
    let targets = FaultTargets {
        scenario,
        nodes: &nodes,
        links: &links,
    };
    let mut next = 0;
    loop {
        let now = sim.elapsed();
        while let Some(action) = actions.get(next).filter(|a| a.at <= now) {
            let sighting = faults::apply(&mut sim, &targets, *action);
            if !action.undo
                && let Some(slot) = sightings.get_mut(action.fault)
            {
                *slot = sighting;
            }
            next += 1;
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(HarnessError::Simulation(e.to_string())),
        }
    }

    let Finished {
        end_us: run_end_us,
        metrics: router_metrics,
    } = finished
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or(HarnessError::Unfinished)?;
    let events = log.take();
    let mut records = schedule::records(scenario);
    fault_evidence::judge(scenario, &mut records, &sightings, &events, run_end_us);
    Ok(RunOutcome {
        seed,
        events,
        faults: records,
        run_end_us,
        router_metrics,
    })
}

/// The simulation's clients read simulated time and record into the event log.
impl ClientRecorder for EventLog {
    fn now_us(&self) -> Micros {
        now_us()
    }

    fn record(&self, op: ClientOp, _: Option<&workload::OpFailure>) {
        self.op(op);
    }
}
