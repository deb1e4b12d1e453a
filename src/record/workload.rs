//! The application's sessions: what each client asks the router, and when.
//!
//! Closed loop: every client runs one operation after another, pausing `think_time`. Open loop: arrivals
//! form a Poisson process at `rate` per second; each waits for a free client (at most `clients` in
//! flight) and its latency counts from its intended arrival time, so queueing is never hidden.
//!
//! The same loops drive real mode: a [`ClientRecorder`] gives them their clock and keeps what they saw.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Zipf};
use tokio::sync::Semaphore;

use crate::record::events::{ClientOp, Micros, NodeIdx, OpKind};
use crate::router::{ReadRequest, Routed, Router, RouterError, Scope, Session, WriteRequest};
use crate::scenario::Workload;

/// The read of SPEC 2a: org `$1`, key `$2`, user `$3`.
pub const READ_SQL: &str =
    "SELECT version, $3::bigint AS reader FROM replisim_kv WHERE org_id = $1 AND key = $2";

/// The write of SPEC 2a: org `$1`, key `$2`, user `$3`.
pub const WRITE_SQL: &str = "INSERT INTO replisim_kv (org_id, key, version, updated_by) \
     VALUES ($1, $2, 1, $3) ON CONFLICT (org_id, key) DO UPDATE \
     SET version = replisim_kv.version + 1, updated_by = $3 RETURNING version";

/// The locking read of SPEC 6.3 that a transactional write runs first: org `$1`, key `$2`, user `$3`.
pub const LOCK_SQL: &str = "SELECT version, $3::bigint AS reader FROM replisim_kv \
     WHERE org_id = $1 AND key = $2 FOR UPDATE";

/// One operation a client is about to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpPlan {
    /// Read or write.
    pub kind: OpKind,
    /// Org id.
    pub org: i64,
    /// Key within the org.
    pub key: i64,
    /// false = a critical read on the primary.
    pub prefer_replica: bool,
    /// A write run as a transaction.
    pub transaction: bool,
}

/// Draws operations from the workload's mix; all randomness comes from the seeded RNG it is given.
pub struct OpMix {
    spec: Workload,
    zipf: Option<Zipf<f64>>,
}

impl OpMix {
    /// A mix for `spec` (already validated: orgs >= 1, keys_per_org >= 1, ratios in [0, 1]).
    pub fn new(spec: &Workload) -> OpMix {
        let zipf = (spec.org_skew > 0.0)
            .then(|| Zipf::new(spec.orgs as f64, spec.org_skew).ok())
            .flatten();
        OpMix {
            spec: spec.clone(),
            zipf,
        }
    }

    /// The next operation.
    pub fn next(&self, rng: &mut ChaCha8Rng) -> OpPlan {
        let org = match &self.zipf {
            // Zipf ranks start at 1: rank 1 (the hottest) is org 0.
            Some(zipf) => (zipf.sample(rng) as u64)
                .saturating_sub(1)
                .min(self.spec.orgs - 1),
            None => rng.random_range(0..self.spec.orgs),
        };
        let key = rng.random_range(0..self.spec.keys_per_org);
        let is_read = rng.random_bool(self.spec.read_ratio);
        let prefer_replica = !(is_read && rng.random_bool(self.spec.primary_read_ratio));
        // Drawn only when transactions are asked for, so that scenarios without them draw the same
        // operations as before there were any.
        let transaction = !is_read
            && self.spec.transaction_ratio > 0.0
            && rng.random_bool(self.spec.transaction_ratio);
        OpPlan {
            kind: if is_read { OpKind::Read } else { OpKind::Write },
            org: org as i64,
            key: key as i64,
            prefer_replica,
            transaction,
        }
    }
}

/// The read-your-writes scope a client's session names for its operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientScope {
    /// The row `(org, key)`: every SPEC statement touches exactly that one row.
    #[default]
    Row,
    /// The whole shard: a read waits for every earlier operation of the client in the shard.
    Shard,
}

impl ClientScope {
    /// The session scope of an operation on `plan`'s row.
    pub fn of(self, plan: &OpPlan) -> Scope {
        match self {
            ClientScope::Row => Scope::row(plan.org, plan.key),
            ClientScope::Shard => Scope::Shard,
        }
    }
}

/// Where clients read the time and record what they saw: the simulation's clock and event log, or
/// real mode's run clock and records. Both modes run the same client loops.
pub trait ClientRecorder: Send + Sync {
    /// Now, in microseconds on the run's clock.
    fn now_us(&self) -> Micros;
    /// Records a finished operation; `failure` says what the client was told when it failed.
    fn record(&self, op: ClientOp, failure: Option<&OpFailure>);
}

/// What a client was told about a failed operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpFailure {
    /// The error's message.
    pub message: String,
    /// The node the error came from, when the router under test named one.
    pub node: Option<String>,
    /// The server's SQLSTATE, when the error carried one (e.g. `25006`).
    pub sqlstate: Option<String>,
}

impl OpFailure {
    /// What the router said.
    pub fn of_router(error: &RouterError) -> OpFailure {
        OpFailure {
            message: error.to_string(),
            node: error.node().map(str::to_string),
            sqlstate: error.code().map(|code| code.code().to_string()),
        }
    }
}

/// Clients that reach the servers through something other than the in-process router (real
/// mode's `--router pgpool`): one connection per client, statements by kind only.
#[async_trait::async_trait]
pub trait Connections: Send + Sync {
    /// Runs `plan` for `client` as `user`: the SPEC statement of its kind (a transaction for a
    /// transactional write). Returns the row version its last statement returned, 0 with no row.
    async fn execute(&self, client: u32, user: i64, plan: OpPlan) -> Result<i64, OpFailure>;
}

/// What the clients' operations go through.
#[derive(Clone)]
pub enum Target {
    /// The router under test, in process.
    Router(Router),
    /// Plain connections to another router; which node served an operation is not known to the
    /// client (the run's evidence tells).
    Connections(Arc<dyn Connections>),
}

/// Everything the clients share.
pub struct Clients {
    /// What the operations go through.
    pub target: Target,
    /// The clients' clock, and where their operations are recorded.
    pub recorder: Arc<dyn ClientRecorder>,
    /// Node name -> index, to record which node served an operation.
    pub node_index: BTreeMap<String, NodeIdx>,
    /// The load.
    pub spec: Workload,
    /// The run's seed.
    pub seed: u64,
    /// Simulated time after which no operation is started.
    pub end_us: Micros,
    /// The scope sessions name (when the router runs with `read_your_writes`).
    pub scope: ClientScope,
    /// Deliberately broken: a transaction's lock and write go out through [`Router::write`], each
    /// on a connection of its own, instead of inside the transaction, as a router that spread a
    /// transaction over several connections would do. Only for runs that prove `transactions_atomic` catches that.
    pub split_transactions: bool,
}

/// Each client's read-your-writes session, when the router runs with `read_your_writes`, scoped by
/// [`Clients::scope`]. A client
/// runs one operation at a time: it takes its session out for the operation and puts it back.
type Sessions = Arc<Vec<Mutex<Option<Session>>>>;

/// Runs the whole workload and returns when every started operation has finished.
pub async fn run(clients: Arc<Clients>) {
    let sessions: Sessions = Arc::new(match &clients.target {
        Target::Router(router) if router.config().read_your_writes => (0..clients.spec.clients)
            .map(|_| Mutex::new(Some(Session::new(router.clone()))))
            .collect(),
        _ => Vec::new(),
    });
    match clients.spec.rate {
        Some(rate) => open_loop(clients, sessions, rate).await,
        None => closed_loop(clients, sessions).await,
    }
}

fn client_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Separate, reproducible streams per client whatever order the clients are scheduled in.
    rng.set_stream(stream);
    rng
}

async fn closed_loop(clients: Arc<Clients>, sessions: Sessions) {
    let mut tasks = Vec::with_capacity(clients.spec.clients as usize);
    for client in 0..clients.spec.clients {
        let clients = Arc::clone(&clients);
        let sessions = Arc::clone(&sessions);
        tasks.push(tokio::spawn(async move {
            let mix = OpMix::new(&clients.spec);
            let mut rng = client_rng(clients.seed, u64::from(client) + 1);
            while clients.recorder.now_us() < clients.end_us {
                let plan = mix.next(&mut rng);
                let start_us = clients.recorder.now_us();
                execute(&clients, &sessions, client, plan, start_us).await;
                if !clients.spec.think_time.is_zero() {
                    tokio::time::sleep(clients.spec.think_time).await;
                }
            }
        }));
    }
    for task in tasks {
        surface_panic(task.await);
    }
}

async fn open_loop(clients: Arc<Clients>, sessions: Sessions, rate: f64) {
    let mix = OpMix::new(&clients.spec);
    let mut rng = client_rng(clients.seed, 0);
    let Ok(gap) = Exp::new(rate) else {
        return;
    };
    let free = Arc::new(Semaphore::new(clients.spec.clients as usize));
    let idle: Arc<Mutex<VecDeque<u32>>> = Arc::new(Mutex::new((0..clients.spec.clients).collect()));
    // The operations in flight run inside this task rather than one task each: spawning, joining
    // and reaping a task per operation cost more than the rest of the loop. They are driven
    // whenever the loop waits (for the next arrival, or for a free client), and finished ones are
    // dropped as they end, so memory stays bounded by `clients`.
    let mut running = FuturesUnordered::new();
    let mut arrival_us = clients.recorder.now_us() as f64;
    loop {
        arrival_us += gap.sample(&mut rng) * 1e6;
        let intended_us = arrival_us as Micros;
        if intended_us >= clients.end_us {
            break;
        }
        let plan = mix.next(&mut rng);
        let now = clients.recorder.now_us();
        if intended_us > now {
            let pause = tokio::time::sleep(Duration::from_micros(intended_us - now));
            while_running(&mut running, pause).await;
        }
        // FIFO: an arrival that finds every client busy waits, and its wait counts in its latency.
        let Ok(permit) = while_running(&mut running, Arc::clone(&free).acquire_owned()).await
        else {
            break;
        };
        let Some(client) = idle.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else {
            break;
        };
        let clients = Arc::clone(&clients);
        let sessions = Arc::clone(&sessions);
        let idle = Arc::clone(&idle);
        running.push(async move {
            execute(&clients, &sessions, client, plan, intended_us).await;
            idle.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(client);
            drop(permit);
        });
    }
    while running.next().await.is_some() {}
}

/// Waits for `wait` while driving the operations in `running` (those that end are dropped).
/// Operations are polled first, so a client one frees is free for `wait` in the same poll.
async fn while_running<T>(
    running: &mut FuturesUnordered<impl Future<Output = ()>>,
    wait: impl Future<Output = T>,
) -> T {
    let mut wait = pin!(wait);
    std::future::poll_fn(|cx| {
        while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {}
        wait.as_mut().poll(cx)
    })
    .await
}

/// An operation task only ends by returning; a panic in one is a bug worth surfacing as such.
fn surface_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs one operation through the router (through the client's session, if it has one) and records
/// what the client saw.
async fn execute(
    clients: &Clients,
    sessions: &Sessions,
    client: u32,
    plan: OpPlan,
    start_us: Micros,
) {
    let user = (u64::from(client) % clients.spec.users) as i64;
    let router = match &clients.target {
        Target::Router(router) => router,
        Target::Connections(connections) => {
            let result = connections.execute(client, user, plan).await;
            let end_us = clients.recorder.now_us();
            let (version, failure) = match result {
                Ok(version) => (version, None),
                Err(failure) => (0, Some(failure)),
            };
            let error = failure.as_ref().map(|f| f.message.clone());
            let op = client_op(
                client,
                user,
                &plan,
                (start_us, end_us),
                None,
                version,
                error,
            );
            clients.recorder.record(op, failure.as_ref());
            return;
        }
    };
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&plan.org, &plan.key, &user];
    let read = ReadRequest {
        org: plan.org,
        user,
        prefer_replica: plan.prefer_replica,
    };
    let write = WriteRequest {
        org: plan.org,
        user,
    };
    let slot = sessions.get(client as usize);
    let session = slot.and_then(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).take());
    // Each router call is boxed: its future is kilobytes (the router's nested attempts), and unboxed
    // it would make every operation's task that big, which the runtime moves in place when it
    // spawns and finishes the task. Boxed one by one, an operation copies only the call it makes.
    let result = match (session, plan.kind) {
        (Some(mut session), kind) => {
            let scope = clients.scope.of(&plan);
            let result = match kind {
                OpKind::Read => Box::pin(session.read_in(scope, read, READ_SQL, &params)).await,
                OpKind::Write if plan.transaction => {
                    let session = Some((&mut session, scope));
                    Box::pin(transact(
                        router,
                        clients.split_transactions,
                        session,
                        write,
                        &params,
                    ))
                    .await
                }
                OpKind::Write => Box::pin(session.write_in(scope, write, WRITE_SQL, &params)).await,
            };
            if let Some(slot) = slot {
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
            }
            result
        }
        (None, OpKind::Read) => Box::pin(router.read(read, READ_SQL, &params)).await,
        (None, OpKind::Write) if plan.transaction => {
            Box::pin(transact(
                router,
                clients.split_transactions,
                None,
                write,
                &params,
            ))
            .await
        }
        (None, OpKind::Write) => Box::pin(router.write(write, WRITE_SQL, &params)).await,
    };
    let end_us = clients.recorder.now_us();
    let (node, version, error) = match &result {
        Ok(routed) => {
            let version = routed
                .value
                .first()
                .and_then(|row| row.try_get::<_, i64>(0).ok())
                .unwrap_or(0);
            let node = clients.node_index.get(&routed.node).copied();
            (node, version, None)
        }
        Err(e) => (None, 0, Some(e.to_string())),
    };
    let op = client_op(
        client,
        user,
        &plan,
        (start_us, end_us),
        node,
        version,
        error,
    );
    let failure = result.err().as_ref().map(OpFailure::of_router);
    clients.recorder.record(op, failure.as_ref());
}

/// What a client saw of `plan`, run over `span` (start, end): it succeeded unless there is an
/// `error`; `node` is the node that served it, when the client knows.
fn client_op(
    client: u32,
    user: i64,
    plan: &OpPlan,
    span: (Micros, Micros),
    node: Option<NodeIdx>,
    version: i64,
    error: Option<String>,
) -> ClientOp {
    ClientOp {
        client,
        user,
        org: plan.org,
        key: plan.key,
        kind: plan.kind,
        prefer_replica: plan.prefer_replica,
        transaction: plan.transaction,
        start_us: span.0,
        end_us: span.1,
        ok: error.is_none(),
        node,
        version,
        error,
    }
}

/// A write as a transaction (SPEC 6.3): `BEGIN`, the locking read, the write, `COMMIT`, on one
/// connection of the shard's writer; committed through the session, if there is one, so that its
/// later reads see it. Its rows are the write's.
async fn transact(
    router: &Router,
    split_transactions: bool,
    session: Option<(&mut Session, Scope)>,
    request: WriteRequest,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Routed<Vec<tokio_postgres::Row>>, RouterError> {
    let mut transaction = router.begin(request).await?;
    let rows = if split_transactions {
        router.write(request, LOCK_SQL, params).await?;
        router.write(request, WRITE_SQL, params).await?.value
    } else {
        transaction.query(LOCK_SQL, params).await?;
        transaction.query(WRITE_SQL, params).await?
    };
    let node = transaction.node().to_string();
    let role = transaction.role();
    match session {
        Some((session, scope)) => session.commit_in(scope, request.org, transaction).await?,
        None => transaction.commit().await?,
    }
    Ok(Routed {
        value: rows,
        node,
        role,
        attempts: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_the_ratios_and_ranges() {
        let spec = Workload {
            orgs: 50,
            keys_per_org: 7,
            read_ratio: 0.75,
            primary_read_ratio: 0.2,
            ..Workload::default()
        };
        let mix = OpMix::new(&spec);
        let mut rng = client_rng(42, 1);
        let plans: Vec<OpPlan> = (0..20_000).map(|_| mix.next(&mut rng)).collect();
        let reads = plans.iter().filter(|p| p.kind == OpKind::Read).count() as f64;
        let critical = plans.iter().filter(|p| !p.prefer_replica).count() as f64;
        assert!(
            (reads / 20_000.0 - 0.75).abs() < 0.02,
            "read share {}",
            reads / 20_000.0
        );
        assert!(
            (critical / reads - 0.2).abs() < 0.02,
            "primary-read share {}",
            critical / reads
        );
        assert!(
            plans
                .iter()
                .all(|p| (0..50).contains(&p.org) && (0..7).contains(&p.key))
        );
        assert!(
            plans
                .iter()
                .all(|p| p.kind == OpKind::Read || p.prefer_replica)
        );
    }

    #[test]
    fn zipf_skew_makes_org_zero_the_hottest() {
        let spec = Workload {
            orgs: 100_000,
            org_skew: 1.1,
            ..Workload::default()
        };
        let mix = OpMix::new(&spec);
        let mut rng = client_rng(7, 1);
        let mut counts = BTreeMap::new();
        for _ in 0..10_000 {
            *counts.entry(mix.next(&mut rng).org).or_insert(0u32) += 1;
        }
        let zero = counts.get(&0).copied().unwrap_or(0);
        assert!(
            counts.values().all(|&c| c <= zero),
            "org 0 is not the most frequent"
        );
        assert!(zero > 500, "org 0 drawn only {zero} times of 10000");
    }

    #[test]
    fn the_same_seed_gives_the_same_operations() {
        let mix = OpMix::new(&Workload::default());
        let a: Vec<OpPlan> = {
            let mut rng = client_rng(9, 3);
            (0..100).map(|_| mix.next(&mut rng)).collect()
        };
        let b: Vec<OpPlan> = {
            let mut rng = client_rng(9, 3);
            (0..100).map(|_| mix.next(&mut rng)).collect()
        };
        let c: Vec<OpPlan> = {
            let mut rng = client_rng(9, 4);
            (0..100).map(|_| mix.next(&mut rng)).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
