//! Router configuration: every knob with its documented default, validated before use.

use std::time::Duration;

/// How reads are spread over a shard's usable replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each read goes to the next usable replica in turn (the default).
    #[default]
    RoundRobin,
    /// Uniformly random usable replica.
    Random,
    /// The usable replica with the fewest requests in flight.
    LeastOutstanding,
    /// Random, proportional to each replica's weight.
    Weighted,
    /// Power of two choices over an EWMA of latency and in-flight count.
    P2cEwma,
}

/// Everything the router can be told. Defaults follow the design document the router grew from.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterConfig {
    /// Read balancing policy. Default: round robin.
    pub balance: Balance,
    /// Time between two health checks of a node (`REPLICA_HEALTH_CHECK_INTERVAL`). Default 30 s.
    pub health_interval: Duration,
    /// Limit on one health check, connect included. Default 1 s.
    pub health_timeout: Duration,
    /// Consecutive failed checks before a node is unhealthy. Default 3.
    pub failure_threshold: u32,
    /// Consecutive good checks before an unhealthy node is healthy again. Default 1.
    pub recovery_threshold: u32,
    /// false sends every read to the primary (`USE_READ_REPLICAS`). Default true.
    pub use_read_replicas: bool,
    /// Replicas lagging more than this are kept out of reads. Default: none (no lag-aware routing).
    pub max_replica_lag: Option<Duration>,
    /// Reads of a session only see data at least as new as its writes. Default false.
    pub read_your_writes: bool,
    /// Most connections open to one node (`DB_MAX_CONNECTIONS`). Default 100.
    pub max_connections_per_node: u32,
    /// Connections kept open to each node even when idle (`DB_MIN_CONNECTIONS`). Default 10.
    pub min_connections_per_node: u32,
    /// Most connections one user may hold at once; 0 = no cap. Default 0.
    pub max_connections_per_user: u32,
    /// Most connections one org may hold at once; 0 = no cap. Default 0.
    pub max_connections_per_org: u32,
    /// An idle connection is closed after this long (`DB_MAX_IDLE_TIME`). Default 10 min.
    pub max_idle_time: Duration,
    /// A connection is closed after this long in any case (`DB_MAX_LIFETIME`). Default 1 h.
    pub max_lifetime: Duration,
    /// Limit on opening one connection (`DB_CONNECTION_TIMEOUT`). Default 5 s.
    pub connect_timeout: Duration,
    /// Limit on one statement (`DB_QUERY_TIMEOUT`). Default 30 s.
    pub query_timeout: Duration,
    /// Retries of a failed read on another node; writes are never retried. Default 1.
    pub read_retries: u32,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            balance: Balance::RoundRobin,
            health_interval: Duration::from_secs(30),
            health_timeout: Duration::from_secs(1),
            failure_threshold: 3,
            recovery_threshold: 1,
            use_read_replicas: true,
            max_replica_lag: None,
            read_your_writes: false,
            max_connections_per_node: 100,
            min_connections_per_node: 10,
            max_connections_per_user: 0,
            max_connections_per_org: 0,
            max_idle_time: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(30),
            read_retries: 1,
        }
    }
}
