//! The scenario's workload in real time: the simulation's own client loops (`record::workload`: the
//! same operation mix, seeded client streams and read-your-writes sessions), driven by `tokio::time`
//! against the router (or, with `--router pgpool`, over one plain connection per client to
//! pgpool-II), each operation recorded with times on the run's clock and, when it failed,
//! what the router said about it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::real::clock::RunClock;
use crate::record::events::{ClientOp, Micros, NodeIdx};
use crate::record::workload::{self, ClientRecorder, ClientScope, Clients, OpFailure, Target};
use crate::scenario::Workload;

/// What the router said about a failed operation, beyond its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedOp {
    /// The client that ran it.
    pub client: u32,
    /// Its start (run clock).
    pub start_us: Micros,
    /// The node the error came from, if the router named one.
    pub node: Option<NodeIdx>,
    /// The server's SQLSTATE, if the error carried one (e.g. `25006`).
    pub sqlstate: Option<String>,
}

/// What the clients recorded.
#[derive(Debug, Default)]
pub struct DriverRecords {
    /// Every operation, in completion order.
    pub ops: Vec<ClientOp>,
    /// Details of the failed ones.
    pub failures: Vec<FailedOp>,
}

/// The clients of one run, sharing the router under test.
pub struct Driver {
    target: Target,
    node_index: BTreeMap<String, NodeIdx>,
    spec: Workload,
    seed: u64,
    end_us: Micros,
    clock: RunClock,
    records: Mutex<DriverRecords>,
}

/// A poisoned lock only means a client task panicked; the records are still valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Driver {
    /// Clients for `spec` that start operations through `target` until `end_us` on `clock`.
    pub fn new(
        target: Target,
        node_index: BTreeMap<String, NodeIdx>,
        spec: Workload,
        seed: u64,
        end_us: Micros,
        clock: RunClock,
    ) -> Driver {
        Driver {
            target,
            node_index,
            spec,
            seed,
            end_us,
            clock,
            records: Mutex::new(DriverRecords::default()),
        }
    }

    /// Runs the whole workload; returns once every started operation has finished.
    pub async fn run(self: Arc<Self>) {
        let clients = Clients {
            target: self.target.clone(),
            recorder: Arc::clone(&self) as Arc<dyn ClientRecorder>,
            node_index: self.node_index.clone(),
            spec: self.spec.clone(),
            seed: self.seed,
            end_us: self.end_us,
            // Each SPEC statement touches one row: sessions keep a token per row, as in `run`.
            scope: ClientScope::Row,
            split_transactions: false,
        };
        workload::run(Arc::new(clients)).await;
    }

    /// Takes what the clients recorded.
    pub fn take_records(&self) -> DriverRecords {
        std::mem::take(&mut *lock(&self.records))
    }
}

impl ClientRecorder for Driver {
    fn now_us(&self) -> Micros {
        self.clock.now_us()
    }

    fn record(&self, op: ClientOp, failure: Option<&OpFailure>) {
        let failure = failure.map(|f| FailedOp {
            client: op.client,
            start_us: op.start_us,
            node: f
                .node
                .as_deref()
                .and_then(|n| self.node_index.get(n).copied()),
            sqlstate: f.sqlstate.clone(),
        });
        let mut records = lock(&self.records);
        records.ops.push(op);
        records.failures.extend(failure);
    }
}

/// How long to let in-flight operations finish after the workload's end, at most.
pub fn drain_limit(config: &crate::router::RouterConfig) -> Duration {
    let per_attempt = config.connect_timeout + config.query_timeout;
    per_attempt * (config.read_retries + 2) + config.connect_timeout * 2
}
