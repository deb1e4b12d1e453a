//! The scenario's workload in real time: the same operation mix and seeded client streams as the
//! simulation (`sim::workload`), driven by `tokio::time` against the router, each operation
//! recorded with times on the run's clock.
//!
//! Closed loop: every client runs one operation after another, pausing `think_time`. Open loop:
//! Poisson arrivals at `rate`; each waits for a free client and its latency counts from its
//! intended arrival time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_distr::{Distribution, Exp};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::real::clock::RunClock;
use crate::router::{ReadRequest, Router, WriteRequest};
use crate::scenario::Workload;
use crate::sim::events::{ClientOp, Micros, NodeIdx, OpKind};
use crate::sim::workload::{OpMix, OpPlan, READ_SQL, WRITE_SQL, client_rng};

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

/// The clients of one run, sharing the router.
pub struct Driver {
    router: Router,
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
    /// Clients for `spec` that start operations until `end_us` on `clock`.
    pub fn new(
        router: Router,
        node_index: BTreeMap<String, NodeIdx>,
        spec: Workload,
        seed: u64,
        end_us: Micros,
        clock: RunClock,
    ) -> Driver {
        Driver {
            router,
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
        match self.spec.rate {
            Some(rate) => self.open_loop(rate).await,
            None => self.closed_loop().await,
        }
    }

    /// Takes what the clients recorded.
    pub fn take_records(&self) -> DriverRecords {
        std::mem::take(&mut *lock(&self.records))
    }

    async fn closed_loop(self: Arc<Self>) {
        let mut tasks = JoinSet::new();
        for client in 0..self.spec.clients {
            let driver = Arc::clone(&self);
            tasks.spawn(async move {
                let mix = OpMix::new(&driver.spec);
                let mut rng = client_rng(driver.seed, u64::from(client) + 1);
                while driver.clock.now_us() < driver.end_us {
                    let plan = mix.next(&mut rng);
                    let start_us = driver.clock.now_us();
                    driver.execute(client, plan, start_us).await;
                    if !driver.spec.think_time.is_zero() {
                        tokio::time::sleep(driver.spec.think_time).await;
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            surface_panic(done);
        }
    }

    async fn open_loop(self: Arc<Self>, rate: f64) {
        let mix = OpMix::new(&self.spec);
        let mut rng = client_rng(self.seed, 0);
        let Ok(gap) = Exp::new(rate) else {
            return;
        };
        let free = Arc::new(Semaphore::new(self.spec.clients as usize));
        let idle: Arc<Mutex<VecDeque<u32>>> =
            Arc::new(Mutex::new((0..self.spec.clients).collect()));
        let mut tasks = JoinSet::new();
        let mut arrival_us = self.clock.now_us() as f64;
        loop {
            arrival_us += gap.sample(&mut rng) * 1e6;
            let intended_us = arrival_us as Micros;
            if intended_us >= self.end_us {
                break;
            }
            let plan = mix.next(&mut rng);
            tokio::time::sleep_until(self.clock.instant_at(intended_us)).await;
            // FIFO: an arrival that finds every client busy waits, and its wait counts.
            let Ok(permit) = Arc::clone(&free).acquire_owned().await else {
                break;
            };
            let Some(client) = lock(&idle).pop_front() else {
                break;
            };
            let driver = Arc::clone(&self);
            let idle = Arc::clone(&idle);
            tasks.spawn(async move {
                driver.execute(client, plan, intended_us).await;
                lock(&idle).push_back(client);
                drop(permit);
            });
            while let Some(done) = tasks.try_join_next() {
                surface_panic(done);
            }
        }
        while let Some(done) = tasks.join_next().await {
            surface_panic(done);
        }
    }

    /// Runs one operation through the router and records what the client saw.
    async fn execute(&self, client: u32, plan: OpPlan, start_us: Micros) {
        let user = (u64::from(client) % self.spec.users) as i64;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&plan.org, &plan.key, &user];
        let result = match plan.kind {
            OpKind::Read => {
                let request = ReadRequest {
                    org: plan.org,
                    user,
                    prefer_replica: plan.prefer_replica,
                };
                self.router.read(request, READ_SQL, &params).await
            }
            OpKind::Write => {
                let request = WriteRequest {
                    org: plan.org,
                    user,
                };
                self.router.write(request, WRITE_SQL, &params).await
            }
        };
        let end_us = self.clock.now_us();
        let mut failure = None;
        let (ok, node, version, error) = match result {
            Ok(routed) => {
                let version = routed
                    .value
                    .first()
                    .and_then(|row| row.try_get::<_, i64>(0).ok())
                    .unwrap_or(0);
                (
                    true,
                    self.node_index.get(&routed.node).copied(),
                    version,
                    None,
                )
            }
            Err(e) => {
                failure = Some(FailedOp {
                    client,
                    start_us,
                    node: e.node().and_then(|n| self.node_index.get(n).copied()),
                    sqlstate: e.code().map(|code| code.code().to_string()),
                });
                (false, None, 0, Some(e.to_string()))
            }
        };
        let mut records = lock(&self.records);
        records.ops.push(ClientOp {
            client,
            user,
            org: plan.org,
            key: plan.key,
            kind: plan.kind,
            prefer_replica: plan.prefer_replica,
            start_us,
            end_us,
            ok,
            node,
            version,
            error,
        });
        records.failures.extend(failure);
    }
}

/// An operation task only ends by returning; a panic in one is a bug worth surfacing as such.
fn surface_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// How long to let in-flight operations finish after the workload's end, at most.
pub fn drain_limit(config: &crate::router::RouterConfig) -> Duration {
    let per_attempt = config.connect_timeout + config.query_timeout;
    per_attempt * (config.read_retries + 2) + config.connect_timeout * 2
}
