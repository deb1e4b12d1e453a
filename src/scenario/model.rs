//! A validated scenario: every default filled in, every name resolved to an index.

use std::time::Duration;

use crate::record::events::{NodeIdx, NodeRole, OpKind};
use crate::router::RouterConfig;

pub use super::explore_section::{DurationRange, ExploreKind, ExploreSpec};

/// A scenario ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// `[a-z0-9-]+`, used in report file names.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Default seed (`--seed` overrides).
    pub seed: u64,
    /// Simulated time during which operations are started.
    pub duration: Duration,
    /// Shards in file order.
    pub shards: Vec<Shard>,
    /// Every node: for each shard in order, its primary then its replicas.
    pub nodes: Vec<Node>,
    /// The router's configuration.
    pub router: RouterConfig,
    /// The application's load.
    pub workload: Workload,
    /// Faults in file order.
    pub faults: Vec<Fault>,
    /// Invariants in file order.
    pub invariants: Vec<Invariant>,
    /// The ranges `replisim explore` draws from (`[explore]`); `run` ignores them.
    pub explore: Option<ExploreSpec>,
}

/// One shard: an org-id range served by one primary and its replicas.
#[derive(Clone, Debug, PartialEq)]
pub struct Shard {
    /// Shard name.
    pub name: String,
    /// Half-open org-id range `[start, end)`.
    pub orgs_start: i64,
    /// End of the range (exclusive).
    pub orgs_end: i64,
    /// The primary's index in `Scenario::nodes`.
    pub primary: NodeIdx,
    /// The replicas' indexes in `Scenario::nodes`.
    pub replicas: Vec<NodeIdx>,
}

/// One simulated node with its model resolved (`[node.default]` overridden by `[node.<name>]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Node name (also its host name in the simulation).
    pub name: String,
    /// Index of its shard in `Scenario::shards`.
    pub shard: usize,
    /// Its role when the run starts.
    pub initial_role: NodeRole,
    /// Server-side service time of one statement.
    pub query_time: Duration,
    /// Replicas: time from a commit on the primary to its apply here.
    pub replication_delay: Duration,
    /// One-way latency between the application host and this node.
    pub link_latency: Duration,
    /// Replicas: share of reads under `balance = "weighted"`, relative to the shard's other replicas
    /// (at least 1).
    pub weight: u32,
}

/// The application's load.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Concurrent application sessions.
    pub clients: u32,
    /// Open loop: total arrivals per second. `None` = closed loop.
    pub rate: Option<f64>,
    /// Closed loop: pause between one client's operations.
    pub think_time: Duration,
    /// User ids `[0, users)`; client i is user `i mod users`.
    pub users: u64,
    /// Org ids drawn from `[0, orgs)`.
    pub orgs: u64,
    /// 0 = uniform; > 0 = Zipf exponent.
    pub org_skew: f64,
    /// Keys per org.
    pub keys_per_org: u64,
    /// Share of operations that are reads.
    pub read_ratio: f64,
    /// Share of reads that ask for the primary.
    pub primary_read_ratio: f64,
    /// Share of writes that run as a transaction (SPEC 6.3: `BEGIN`, the `FOR UPDATE` read, the
    /// write, `COMMIT`).
    pub transaction_ratio: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: 100,
            rate: None,
            think_time: Duration::ZERO,
            users: 100,
            orgs: 1000,
            org_skew: 0.0,
            keys_per_org: 100,
            read_ratio: 0.8,
            primary_read_ratio: 0.0,
            transaction_ratio: 0.0,
        }
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// When it starts.
    pub at: Duration,
    /// What it does.
    pub kind: FaultKind,
    /// The node it acts on.
    pub target: NodeIdx,
    /// Undone after this long (only kinds with an undo).
    pub duration: Option<Duration>,
}

impl Fault {
    /// When this fault, one of `schedule`, is undone: `at + duration`, else the time of the first
    /// fault of its undo kind on the same node after it (`restart` after `crash`); `None` if it
    /// lasts to the end of the run or has no undo at all (it acts once, at `at`).
    pub fn until(&self, schedule: &[Fault]) -> Option<Duration> {
        if let Some(duration) = self.duration {
            return Some(self.at.saturating_add(duration));
        }
        let undo = self.kind.ended_by()?;
        schedule
            .iter()
            .filter(|f| f.kind.name() == undo && f.target == self.target && f.at > self.at)
            .map(|f| f.at)
            .min()
    }
}

/// The fault kinds of SPEC section 4.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// The node's process stops.
    Crash,
    /// A crashed node starts again with its data.
    Restart,
    /// The link application host <-> node drops everything.
    Partition,
    /// Ends a partition.
    Heal,
    /// Every open connection between the application host and the node is closed.
    DropConnections,
    /// Added to each direction of the application host <-> node link.
    Latency {
        /// The added one-way latency.
        latency: Duration,
    },
    /// The replica's apply delay becomes `delay`.
    Lag {
        /// The new apply delay.
        delay: Duration,
    },
    /// The replica stops applying WAL.
    PauseReplay,
    /// Ends a pause.
    ResumeReplay,
    /// The node's query time is multiplied by `factor`.
    Slow {
        /// Multiplier, > 1.
        factor: f64,
    },
    /// The target replica becomes its shard's primary.
    Promote,
}

impl FaultKind {
    /// The name used in scenario files and reports.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Restart => "restart",
            FaultKind::Partition => "partition",
            FaultKind::Heal => "heal",
            FaultKind::DropConnections => "drop_connections",
            FaultKind::Latency { .. } => "latency",
            FaultKind::Lag { .. } => "lag",
            FaultKind::PauseReplay => "pause_replay",
            FaultKind::ResumeReplay => "resume_replay",
            FaultKind::Slow { .. } => "slow",
            FaultKind::Promote => "promote",
        }
    }

    /// The kind-specific key a scenario file gives this kind (`latency`, `delay`, `factor`), if any.
    pub fn extra_key(&self) -> Option<&'static str> {
        match self {
            FaultKind::Latency { .. } => Some("latency"),
            FaultKind::Lag { .. } => Some("delay"),
            FaultKind::Slow { .. } => Some("factor"),
            _ => None,
        }
    }

    /// Whether the fault can be undone, and so may carry a `duration`.
    pub fn has_undo(&self) -> bool {
        matches!(
            self,
            FaultKind::Crash
                | FaultKind::Partition
                | FaultKind::Latency { .. }
                | FaultKind::Lag { .. }
                | FaultKind::PauseReplay
                | FaultKind::Slow { .. }
        )
    }

    /// The kind whose fault ends one of this kind that has no `duration` (`crash` -> `restart`).
    pub fn ended_by(&self) -> Option<&'static str> {
        match self {
            FaultKind::Crash => Some("restart"),
            FaultKind::Partition => Some("heal"),
            FaultKind::PauseReplay => Some("resume_replay"),
            _ => None,
        }
    }

    /// Whether the kind acts on a replica's replication, so its target must be a replica.
    pub fn replicas_only(&self) -> bool {
        matches!(
            self,
            FaultKind::Lag { .. }
                | FaultKind::PauseReplay
                | FaultKind::ResumeReplay
                | FaultKind::Promote
        )
    }
}

/// Which operations a latency invariant looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyOp {
    /// Reads only.
    Read,
    /// Writes only.
    Write,
    /// Every operation.
    All,
}

impl LatencyOp {
    /// Whether an operation of this kind counts.
    pub fn includes(self, kind: OpKind) -> bool {
        match self {
            LatencyOp::Read => kind == OpKind::Read,
            LatencyOp::Write => kind == OpKind::Write,
            LatencyOp::All => true,
        }
    }
}

/// The invariant kinds of SPEC section 4.
#[derive(Clone, Debug, PartialEq)]
pub enum Invariant {
    /// No write reached a node that was not its shard's primary.
    WritesOnlyPrimary,
    /// Crashed or partitioned nodes stop getting workload within `max`.
    FailoverWithin {
        /// Bound on the failover time.
        max: Duration,
    },
    /// Reads executed by replicas / all reads executed >= min.
    ReplicaReadShare {
        /// Lower bound, in [0, 1].
        min: f64,
    },
    /// Client-observed latency at a percentile <= max.
    Latency {
        /// Which operations.
        op: LatencyOp,
        /// In (0, 100].
        percentile: f64,
        /// Bound.
        max: Duration,
    },
    /// Failed operations / all operations <= max_error_rate.
    NoFailedQueries {
        /// Bound, in [0, 1].
        max_error_rate: f64,
    },
    /// Every read returned a version current at most `max` before it started.
    MaxStaleness {
        /// Bound.
        max: Duration,
    },
    /// No client reads a version older than one it wrote or read before.
    ReadYourWrites,
    /// Connection and concurrency caps held, as the servers saw them.
    CapsRespected,
    /// Every workload statement for org X reached only nodes of X's shard.
    OrgRouting,
    /// Transactions ran on one connection of the writer, uncommitted versions were never read, and
    /// no update was lost (SPEC 6.3).
    TransactionsAtomic,
}

impl Invariant {
    /// The name used in scenario files and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Invariant::WritesOnlyPrimary => "writes_only_primary",
            Invariant::FailoverWithin { .. } => "failover_within",
            Invariant::ReplicaReadShare { .. } => "replica_read_share",
            Invariant::Latency { .. } => "latency",
            Invariant::NoFailedQueries { .. } => "no_failed_queries",
            Invariant::MaxStaleness { .. } => "max_staleness",
            Invariant::ReadYourWrites => "read_your_writes",
            Invariant::CapsRespected => "caps_respected",
            Invariant::OrgRouting => "org_routing",
            Invariant::TransactionsAtomic => "transactions_atomic",
        }
    }
}

impl Scenario {
    /// The index of the node called `name`.
    pub fn node_index(&self, name: &str) -> Option<NodeIdx> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The shard whose org range holds `org`.
    pub fn shard_of_org(&self, org: i64) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| s.orgs_start <= org && org < s.orgs_end)
    }
}
