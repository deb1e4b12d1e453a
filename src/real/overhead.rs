//! `replisim overhead`: what the router costs over talking to PostgreSQL directly, and what pgpool-II
//! costs, measured side by side on one real cluster (one primary, two replicas).
//!
//! Every path runs the same prepared statements of SPEC 2a (the primary-key read, and a 90/10 mix of
//! that read and the upsert) from the same number of clients, each client a task that runs one
//! statement after another as fast as the path answers:
//! - `direct`: tokio-postgres straight to one replica (writes straight to the primary);
//! - `router`: the in-process router over the same servers, default configuration;
//! - `pgpool`: each client one tokio-postgres connection to pgpool-II, configured for streaming
//!   replication with load balancing over the same servers.
//!
//! The machine is shared and noisy, so the paths take turns: each round measures every path once, for
//! the same time, and a path's figures are the sum of its rounds. Ratios therefore compare paths
//! measured in the same minutes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, NoTls, Statement};

use crate::real::cluster::{Cluster, ClusterSpec, ShardSpec};
use crate::real::error::ClusterError;
use crate::real::node::DATABASE;
use crate::real::pgpool::{Pgpool, PgpoolBackend, PgpoolError};
use crate::real::sql::SUPERUSER;
use crate::record::workload::{READ_SQL, WRITE_SQL};
use crate::router::{
    NodeAddress, ReadRequest, Router, RouterConfig, RouterError, ShardConfig, TcpConnector,
    Topology, WriteRequest,
};

/// The org every statement is for; its shard is the whole org range.
const ORG: i64 = 1;
/// Rows the reads pick from, written before the first round.
const KEYS: i64 = 10_000;
/// Limit on one connect or statement of the benchmark's own clients.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What to measure.
#[derive(Clone, Debug)]
pub struct OverheadOptions {
    /// How long each path runs per round and per (workload, clients) cell.
    pub slice: Duration,
    /// Rounds; each measures every path once.
    pub rounds: u32,
    /// Client counts, e.g. 1 and 16.
    pub clients: Vec<u32>,
    /// Measure the router.
    pub router: bool,
    /// Measure pgpool-II too (it must be installed).
    pub pgpool: bool,
    /// Measure this path alone (no ratios): for a profiler, which must see one path's work only.
    pub only: Option<Path>,
    /// Pin every thread of this process to this core once the servers are up (they keep every
    /// core): with the clients and the router on one core, no cache line of theirs travels between
    /// cores, which shows how much of the router's cost is that traffic.
    pub pin_to_core: Option<u32>,
}

/// The statements a client runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mix {
    /// Only the primary-key read.
    Read,
    /// 90% reads, 10% upserts.
    ReadWrite,
}

impl Mix {
    /// Both, in table order.
    pub const ALL: [Mix; 2] = [Mix::Read, Mix::ReadWrite];

    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            Mix::Read => "primary-key read",
            Mix::ReadWrite => "90/10 read/write",
        }
    }

    fn write_share(self) -> f64 {
        match self {
            Mix::Read => 0.0,
            Mix::ReadWrite => 0.1,
        }
    }
}

/// How the clients reach PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Path {
    /// tokio-postgres to one replica (and the primary for writes).
    Direct,
    /// The router, in process, over the primary and both replicas.
    Router,
    /// The router over the primary and replica-1 only: the same servers as `direct`, so the
    /// difference is the router's own cost, not the spreading of reads over two replicas that share
    /// this machine's cores.
    RouterOneReplica,
    /// pgpool-II.
    Pgpool,
}

impl Path {
    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Router => "router",
            Path::RouterOneReplica => "router, replica-1 only",
            Path::Pgpool => "pgpool-II",
        }
    }
}

/// The figures of one (workload, clients, path) cell, over all its rounds.
#[derive(Clone, Debug)]
pub struct Cell {
    /// The statements.
    pub mix: Mix,
    /// Concurrent clients.
    pub clients: u32,
    /// How they reached the servers.
    pub path: Path,
    /// Statement latency in nanoseconds, as each client saw it.
    pub latency_ns: Histogram<u64>,
    /// Statements answered.
    pub ops: u64,
    /// Statements that failed.
    pub errors: u64,
    /// Time the clients ran, summed over rounds.
    pub elapsed: Duration,
    /// Statements answered per second in each round, in round order: the spread of a ratio over
    /// rounds shows how much of it is the machine's noise.
    pub round_rates: Vec<f64>,
    /// CPU time this process spent meanwhile (clients, router, drivers; not the servers).
    pub cpu: Duration,
    /// CPU time the server processes (PostgreSQL's and pgpool-II's) spent meanwhile.
    pub servers: Duration,
    /// CPU time the whole machine spent meanwhile (this process, the servers, pgpool-II, the kernel
    /// and anything else running), and the CPU time it had: how busy it was, and what a statement
    /// cost all told.
    pub machine: MachineCpu,
}

impl Cell {
    /// Statements answered per second.
    pub fn ops_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.ops as f64 / seconds
        } else {
            0.0
        }
    }

    /// This cell's throughput over `base`'s, round by round (rounds measured both), sorted.
    pub fn round_ratios(&self, base: &Cell) -> Vec<f64> {
        let mut ratios: Vec<f64> = self
            .round_rates
            .iter()
            .zip(&base.round_rates)
            .filter(|(_, base)| **base > 0.0)
            .map(|(rate, base)| rate / base)
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios
    }

    /// This process's CPU time per answered statement, in microseconds.
    pub fn cpu_per_op_us(&self) -> f64 {
        self.per_op(self.cpu.as_secs_f64() * 1e6)
    }

    /// The server processes' CPU time per answered statement, in microseconds.
    pub fn servers_cpu_per_op_us(&self) -> f64 {
        self.per_op(self.servers.as_secs_f64() * 1e6)
    }

    /// The whole machine's CPU time per answered statement, in microseconds.
    pub fn machine_cpu_per_op_us(&self) -> f64 {
        self.per_op(self.machine.busy.as_secs_f64() * 1e6)
    }

    /// The machine's context switches per answered statement.
    pub fn switches_per_op(&self) -> f64 {
        self.per_op(self.machine.switches as f64)
    }

    /// `total` per answered statement (0 if none was answered).
    fn per_op(&self, total: f64) -> f64 {
        if self.ops > 0 {
            total / self.ops as f64
        } else {
            0.0
        }
    }

    /// The share of the machine's CPU time that was busy, in percent.
    pub fn machine_busy_percent(&self) -> f64 {
        let total = self.machine.total.as_secs_f64();
        if total > 0.0 {
            100.0 * self.machine.busy.as_secs_f64() / total
        } else {
            0.0
        }
    }

    /// A latency percentile in microseconds.
    pub fn percentile_us(&self, percentile: f64) -> f64 {
        self.latency_ns.value_at_quantile(percentile / 100.0) as f64 / 1000.0
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum OverheadError {
    /// The cluster did not start.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// pgpool-II did not start.
    #[error(transparent)]
    Pgpool(#[from] PgpoolError),
    /// The router did not start.
    #[error("the router did not start: {0}")]
    Router(#[from] RouterError),
    /// A client could not connect or prepare its statements.
    #[error("{path}: {what}: {detail}")]
    Client {
        /// The path.
        path: &'static str,
        /// What it was doing.
        what: String,
        /// The error.
        detail: String,
    },
}

/// Starts a cluster (and pgpool-II), measures every cell, tears everything down.
pub async fn measure(
    options: &OverheadOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<Cell>, OverheadError> {
    let spec = ClusterSpec {
        shards: vec![ShardSpec {
            name: "s1".to_string(),
            primary: "primary-1".to_string(),
            replicas: vec!["replica-1".to_string(), "replica-2".to_string()],
        }],
    };
    progress("starting a PostgreSQL 15 cluster: primary-1, replica-1, replica-2");
    let cluster = Cluster::start(&spec).await?;
    let result = measure_on(&cluster, options, progress).await;
    let teardown = cluster.teardown().await;
    let cells = result?;
    teardown?;
    Ok(cells)
}

async fn measure_on(
    cluster: &Cluster,
    options: &OverheadOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<Cell>, OverheadError> {
    let nodes = cluster.nodes();
    let port = |name: &str| {
        nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.port)
            .unwrap_or(0)
    };
    let (primary, replica_1, replica_2) = (port("primary-1"), port("replica-1"), port("replica-2"));
    seed_rows(primary).await?;
    wait_replicated(replica_1).await?;
    wait_replicated(replica_2).await?;

    let router = start_router(
        primary,
        &[("replica-1", replica_1), ("replica-2", replica_2)],
    )
    .await?;
    let router_one = start_router(primary, &[("replica-1", replica_1)]).await?;
    let pgpool = if options.pgpool {
        progress("starting pgpool-II over the same servers");
        let backend = |name: &str, port: u16, primary: bool| PgpoolBackend {
            name: name.to_string(),
            host: "127.0.0.1".to_string(),
            port,
            primary,
            weight: 1.0,
        };
        let backends = [
            backend("primary-1", primary, true),
            backend("replica-1", replica_1, false),
            backend("replica-2", replica_2, false),
        ];
        Some(Pgpool::start(&backends, router.config(), SUPERUSER, DATABASE).await?)
    } else {
        None
    };
    if let Some(core) = options.pin_to_core {
        progress(&format!("pinning this process's threads to core {core}"));
        pin_threads_to_core(core).await?;
    }
    let mut paths = vec![Path::Direct];
    if options.router {
        paths.extend([Path::Router, Path::RouterOneReplica]);
    }
    if pgpool.is_some() {
        paths.push(Path::Pgpool);
    }
    if let Some(only) = options.only {
        paths = vec![only];
    }
    let target = Target {
        primary,
        replica: replica_1,
        router: router.clone(),
        router_one: router_one.clone(),
        pgpool: pgpool.as_ref().map(Pgpool::port),
    };

    let mut cells = Vec::new();
    for mix in Mix::ALL {
        for &clients in &options.clients {
            let mut row: Vec<Cell> = paths
                .iter()
                .map(|&path| Cell {
                    mix,
                    clients,
                    path,
                    latency_ns: new_histogram(),
                    ops: 0,
                    errors: 0,
                    elapsed: Duration::ZERO,
                    round_rates: Vec::new(),
                    cpu: Duration::ZERO,
                    servers: Duration::ZERO,
                    machine: MachineCpu::default(),
                })
                .collect();
            // Connections are opened (and warmed) once per cell, outside the timed slices.
            let mut sets = Vec::new();
            for &path in &paths {
                sets.push(ClientSet::open(&target, path, clients).await?);
            }
            for set in &sets {
                set.run(mix, Duration::from_millis(300), None).await;
            }
            for round in 0..options.rounds {
                progress(&format!(
                    "{} at {clients} client(s): round {} of {}",
                    mix.label(),
                    round + 1,
                    options.rounds
                ));
                // Every other round runs the paths in reverse order, so that none is always the
                // first after a pause or the last before one.
                let mut turns: Vec<(&ClientSet, &mut Cell)> =
                    sets.iter().zip(row.iter_mut()).collect();
                if round % 2 == 1 {
                    turns.reverse();
                }
                for (set, cell) in turns {
                    set.run(mix, options.slice, Some(cell)).await;
                }
            }
            cells.extend(row);
        }
    }
    router.shutdown();
    router_one.shutdown();
    if let Some(pgpool) = pgpool {
        pgpool.stop().await;
    }
    Ok(cells)
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Where the clients of each path connect.
struct Target {
    primary: u16,
    replica: u16,
    router: Router,
    router_one: Router,
    pgpool: Option<u16>,
}

/// One path's clients of one cell.
struct ClientSet {
    path: Path,
    clients: Vec<Arc<BenchClient>>,
}

/// One client: how it runs a read and a write.
enum BenchClient {
    /// Its own connections (and prepared statements) to a replica and the primary; pgpool-II is
    /// reached the same way, with one connection for both.
    Connections {
        reads: Prepared,
        writes: Option<Box<Prepared>>,
    },
    /// The shared router; the client's user id keeps the requests apart in its statistics only.
    Router { router: Router, user: i64 },
}

/// A connection with the two statements prepared on it.
struct Prepared {
    client: Client,
    read: Statement,
    write: Statement,
}

impl ClientSet {
    async fn open(target: &Target, path: Path, clients: u32) -> Result<ClientSet, OverheadError> {
        let mut set = Vec::new();
        for user in 0..clients {
            let client = match path {
                Path::Direct => BenchClient::Connections {
                    reads: Prepared::connect(path, target.replica).await?,
                    writes: Some(Box::new(Prepared::connect(path, target.primary).await?)),
                },
                Path::Pgpool => {
                    let port = target.pgpool.unwrap_or(0);
                    BenchClient::Connections {
                        reads: Prepared::connect(path, port).await?,
                        writes: None,
                    }
                }
                Path::Router | Path::RouterOneReplica => BenchClient::Router {
                    router: if path == Path::Router {
                        target.router.clone()
                    } else {
                        target.router_one.clone()
                    },
                    user: i64::from(user),
                },
            };
            set.push(Arc::new(client));
        }
        Ok(ClientSet { path, clients: set })
    }

    /// Runs every client for `slice`; adds what they did to `cell`, if given.
    async fn run(&self, mix: Mix, slice: Duration, cell: Option<&mut Cell>) {
        // The servers are read first and last: scanning `/proc` for them is this process's work,
        // which should count neither as the clients' nor as the machine's during the slice.
        let servers_before = servers_cpu();
        let cpu_before = process_cpu();
        let machine_before = MachineCpu::now();
        let started = Instant::now();
        let deadline = started + slice;
        let tasks: Vec<_> = self
            .clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let client = Arc::clone(client);
                // Seeded per client and path: every path draws the same keys.
                let seed = (i as u64) << 8 | self.path as u64;
                tokio::spawn(async move { client.run_until(mix, deadline, seed).await })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            if let Ok(result) = task.await {
                results.push(result);
            }
        }
        let elapsed = started.elapsed();
        let cpu = process_cpu().saturating_sub(cpu_before);
        let machine = MachineCpu::now().since(machine_before);
        let servers = servers_cpu().saturating_sub(servers_before);
        if let Some(cell) = cell {
            cell.cpu += cpu;
            cell.servers += servers;
            cell.machine.add(machine);
            let mut answered = 0;
            for (histogram, errors) in results {
                answered += histogram.len();
                cell.errors += errors;
                // Same bounds on both sides, so the merge cannot fail.
                let _ = cell.latency_ns.add(&histogram);
            }
            cell.ops += answered;
            cell.elapsed += elapsed;
            let seconds = elapsed.as_secs_f64();
            cell.round_rates.push(if seconds > 0.0 {
                answered as f64 / seconds
            } else {
                0.0
            });
        }
    }
}

impl Prepared {
    async fn connect(path: Path, port: u16) -> Result<Prepared, OverheadError> {
        let fail = |what: &str, detail: String| OverheadError::Client {
            path: path.label(),
            what: format!("{what} (127.0.0.1:{port})"),
            detail,
        };
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user(SUPERUSER)
            .dbname(DATABASE)
            .application_name("replisim-overhead")
            .connect_timeout(STEP_TIMEOUT);
        let (client, connection) = tokio::time::timeout(STEP_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| fail("connect", "timed out".to_string()))?
            .map_err(|e| fail("connect", e.to_string()))?;
        tokio::spawn(connection);
        let read = tokio::time::timeout(STEP_TIMEOUT, client.prepare(READ_SQL))
            .await
            .map_err(|_| fail("prepare", "timed out".to_string()))?
            .map_err(|e| fail("prepare", e.to_string()))?;
        let write = tokio::time::timeout(STEP_TIMEOUT, client.prepare(WRITE_SQL))
            .await
            .map_err(|_| fail("prepare", "timed out".to_string()))?
            .map_err(|e| fail("prepare", e.to_string()))?;
        Ok(Prepared {
            client,
            read,
            write,
        })
    }
}

impl BenchClient {
    /// Runs statements back to back until `deadline`: their latencies, and how many failed.
    async fn run_until(&self, mix: Mix, deadline: Instant, seed: u64) -> (Histogram<u64>, u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut latency = new_histogram();
        let mut errors = 0;
        while Instant::now() < deadline {
            let key = rng.random_range(0..KEYS);
            let write = rng.random_bool(mix.write_share());
            let started = Instant::now();
            let ok = tokio::time::timeout(STEP_TIMEOUT, self.one(write, key))
                .await
                .is_ok_and(|done| done);
            if ok {
                let _ = latency.record(started.elapsed().as_nanos() as u64);
            } else {
                errors += 1;
            }
        }
        (latency, errors)
    }

    /// One statement; true if it was answered.
    async fn one(&self, write: bool, key: i64) -> bool {
        match self {
            BenchClient::Connections { reads, writes } => {
                let user = 1i64;
                let on = if write {
                    writes.as_deref().unwrap_or(reads)
                } else {
                    reads
                };
                let statement = if write { &on.write } else { &on.read };
                on.client
                    .query(statement, &[&ORG, &key, &user])
                    .await
                    .is_ok()
            }
            BenchClient::Router { router, user } => {
                if write {
                    let request = WriteRequest {
                        org: ORG,
                        user: *user,
                    };
                    router
                        .write(request, WRITE_SQL, &[&ORG, &key, user])
                        .await
                        .is_ok()
                } else {
                    let request = ReadRequest {
                        org: ORG,
                        user: *user,
                        prefer_replica: true,
                    };
                    router
                        .read(request, READ_SQL, &[&ORG, &key, user])
                        .await
                        .is_ok()
                }
            }
        }
    }
}

/// CPU time the server processes have spent so far: every process named `postgres` or `pgpool`
/// (each a single thread), from the scheduler's accounting (`/proc/PID/schedstat`, nanoseconds on
/// CPU). A process that exits between two readings takes its time with it; the servers' processes
/// live as long as the connections, which outlast every timed slice.
fn servers_cpu() -> Duration {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    let nanos: u64 = processes
        .flatten()
        .filter(|process| {
            std::fs::read_to_string(process.path().join("stat"))
                .is_ok_and(|stat| is_server_process(&stat))
        })
        .filter_map(|process| std::fs::read_to_string(process.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Whether a `/proc/PID/stat` line is a server's: its command name (between the first `(` and the
/// last `)`, which may hold spaces and parentheses) is `postgres` or `pgpool`.
fn is_server_process(stat: &str) -> bool {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    matches!(stat.get(open + 1..close), Some("postgres" | "pgpool"))
}

/// CPU time of this process's threads so far, from the scheduler's own accounting
/// (`/proc/self/task/*/schedstat`, nanoseconds on CPU); zero where that is unreadable.
fn process_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// CPU time of the whole machine, from `/proc/stat`'s first line: busy (everything but idle and
/// I/O wait) and in all; and its context switches, from the `ctxt` line. Zero where unreadable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineCpu {
    /// CPU time spent on anything.
    pub busy: Duration,
    /// CPU time there was (cores times wall time, as the kernel counted it).
    pub total: Duration,
    /// Context switches on any core: each wake-up of a sleeping server, client thread or pgpool-II
    /// process costs one or two, and on a virtual machine a wake-up across cores is dear.
    pub switches: u64,
}

impl MachineCpu {
    fn now() -> MachineCpu {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| MachineCpu::parse_stat(&stat))
            .unwrap_or_default()
    }

    /// The whole of `/proc/stat`: the `cpu` line, and the `ctxt` line if there is one.
    fn parse_stat(stat: &str) -> Option<MachineCpu> {
        let mut cpu = MachineCpu::parse(stat.lines().next()?)?;
        cpu.switches = stat
            .lines()
            .find_map(|line| line.strip_prefix("ctxt "))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0);
        Some(cpu)
    }

    /// `cpu  user nice system idle iowait irq softirq steal ...`, in clock ticks.
    fn parse(line: &str) -> Option<MachineCpu> {
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let ticks: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if ticks.len() < 8 {
            return None;
        }
        let total: u64 = ticks.iter().sum();
        let waiting = ticks.get(3)? + ticks.get(4)?;
        // The kernel counts /proc/stat in USER_HZ, 100 per second on Linux.
        let ticks = |n: u64| Duration::from_millis(n.saturating_mul(10));
        Some(MachineCpu {
            busy: ticks(total.saturating_sub(waiting)),
            total: ticks(total),
            switches: 0,
        })
    }

    fn since(self, before: MachineCpu) -> MachineCpu {
        MachineCpu {
            busy: self.busy.saturating_sub(before.busy),
            total: self.total.saturating_sub(before.total),
            switches: self.switches.saturating_sub(before.switches),
        }
    }

    fn add(&mut self, other: MachineCpu) {
        self.busy += other.busy;
        self.total += other.total;
        self.switches += other.switches;
    }
}

/// Writes version 1 of every key the reads pick from.
async fn seed_rows(primary: u16) -> Result<(), OverheadError> {
    let prepared = Prepared::connect(Path::Direct, primary).await?;
    let sql = format!(
        "INSERT INTO replisim_kv (org_id, key, version, updated_by) \
         SELECT {ORG}, k, 1, 0 FROM generate_series(0, {}) AS k ON CONFLICT DO NOTHING",
        KEYS - 1
    );
    tokio::time::timeout(STEP_TIMEOUT, prepared.client.batch_execute(&sql))
        .await
        .map_err(|_| client_error("seed the rows", "timed out".to_string()))?
        .map_err(|e| client_error("seed the rows", e.to_string()))
}

/// Waits until a replica has every seeded row.
async fn wait_replicated(replica: u16) -> Result<(), OverheadError> {
    let prepared = Prepared::connect(Path::Direct, replica).await?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let row = tokio::time::timeout(
            STEP_TIMEOUT,
            prepared
                .client
                .query_one("SELECT count(*) FROM replisim_kv", &[]),
        )
        .await
        .map_err(|_| client_error("count the replicated rows", "timed out".to_string()))?
        .map_err(|e| client_error("count the replicated rows", e.to_string()))?;
        if row.get::<_, i64>(0) >= KEYS {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(client_error(
                "wait for the rows to replicate",
                format!("replica at port {replica} still lacks them"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pins every thread of this process to `core` with `taskset -a -p` (util-linux): the servers,
/// started before as processes of their own, keep every core. A thread started later (tokio starts
/// its blocking threads on demand) inherits the mask of the pinned thread that starts it.
async fn pin_threads_to_core(core: u32) -> Result<(), OverheadError> {
    let mask = 1u64.checked_shl(core).unwrap_or(0);
    let output = tokio::process::Command::new("taskset")
        .args([
            "-a",
            "-p",
            &format!("{mask:x}"),
            &std::process::id().to_string(),
        ])
        .output()
        .await
        .map_err(|e| client_error("taskset -a -p (util-linux)", e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(client_error(
            &format!("pinning to core {core} with taskset"),
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

fn client_error(what: &str, detail: String) -> OverheadError {
    OverheadError::Client {
        path: "setup",
        what: what.to_string(),
        detail,
    }
}

async fn start_router(primary: u16, replicas: &[(&str, u16)]) -> Result<Router, OverheadError> {
    let address = |name: &str, port: u16| NodeAddress::new(name, "127.0.0.1", port);
    let topology = Topology {
        shards: vec![ShardConfig {
            name: "s1".to_string(),
            orgs: 0..i64::MAX,
            primary: address("primary-1", primary),
            replicas: replicas.iter().map(|&(n, p)| address(n, p)).collect(),
        }],
        user: SUPERUSER.to_string(),
        dbname: DATABASE.to_string(),
        password: None,
    };
    let router = Router::start(RouterConfig::default(), topology, Arc::new(TcpConnector)).await?;
    Ok(router)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_cpu_counts_everything_but_idle_and_io_wait_as_busy() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let line = "cpu  100 5 50 800 40 3 2 0 7 0";
        let cpu = MachineCpu::parse(line).expect("a /proc/stat cpu line");
        assert_eq!(cpu.total, Duration::from_millis(1000 * 10));
        assert_eq!(cpu.busy, Duration::from_millis(160 * 10));
        let later = MachineCpu::parse("cpu  200 5 60 900 40 3 2 0 7 0").expect("a cpu line");
        let spent = later.since(cpu);
        assert_eq!(spent.busy, Duration::from_millis(110 * 10));
        assert_eq!(spent.total, Duration::from_millis(210 * 10));
    }

    #[test]
    fn server_processes_are_told_by_their_command_name() {
        assert!(is_server_process(
            "4242 (postgres) S 4200 4242 4242 0 -1 4194560 310 0"
        ));
        assert!(is_server_process("77 (pgpool) S 1 77 77 0 -1 4194560 12 0"));
        assert!(!is_server_process("99 (replisim) S 1 99 99 0 -1 0 0 0"));
        assert!(
            !is_server_process("5 (postgres (x)) S 1 5 5 0"),
            "the name runs to the last parenthesis"
        );
        assert!(!is_server_process("6 (postgres-exporter) S 1 6 6 0"));
        assert!(!is_server_process("garbage"));
    }

    #[test]
    fn context_switches_come_from_the_ctxt_line_and_count_zero_without_it() {
        let stat = "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 3 0\nintr 99\nctxt 4242\nbtime 1\n";
        let cpu = MachineCpu::parse_stat(stat).expect("a /proc/stat");
        assert_eq!(cpu.switches, 4242);
        assert_eq!(cpu.busy, Duration::from_millis(160 * 10));
        let later = MachineCpu::parse_stat("cpu  100 5 50 800 40 3 2 0 7 0\nctxt 5000\n")
            .expect("a /proc/stat");
        assert_eq!(later.since(cpu).switches, 758);
        let without =
            MachineCpu::parse_stat("cpu  100 5 50 800 40 3 2 0 7 0\n").expect("a cpu line");
        assert_eq!(without.switches, 0);
        assert_eq!(MachineCpu::parse_stat("ctxt 5\n"), None);
    }

    #[test]
    fn round_ratios_pair_the_rounds_and_skip_a_round_the_base_did_not_measure() {
        let cell = |rates: &[f64]| Cell {
            mix: Mix::Read,
            clients: 16,
            path: Path::Direct,
            latency_ns: new_histogram(),
            ops: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            round_rates: rates.to_vec(),
            cpu: Duration::ZERO,
            servers: Duration::ZERO,
            machine: MachineCpu::default(),
        };
        let direct = cell(&[100.0, 0.0, 200.0]);
        let router = cell(&[90.0, 50.0, 190.0]);
        assert_eq!(router.round_ratios(&direct), vec![0.9, 0.95]);
    }

    #[test]
    fn a_line_that_is_not_the_machine_total_is_refused() {
        assert_eq!(MachineCpu::parse("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(MachineCpu::parse("cpu  1 2 three 4 5 6 7 8"), None);
        assert_eq!(MachineCpu::parse("cpu  1 2 3"), None);
    }
}
