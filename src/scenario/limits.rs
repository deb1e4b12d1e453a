//! Upper limits on scenario values: what one machine (2 cores, 24 GiB) can run. A value above its
//! limit is refused by `check` and `run` alike, with exit 2 and the value's `file:line:col`, so a
//! scenario inside the limits never makes `run` fail with an internal error. README.md lists them.

use std::time::Duration;

use crate::router::config::READ_RETRIES_MAX as ROUTER_READ_RETRIES_MAX;
use crate::router::route::REPLICAS_PER_SHARD_MAX as ROUTER_REPLICAS_PER_SHARD_MAX;

/// Largest scenario file, in bytes. The biggest shipped scenario is about 2 KiB; a megabyte holds
/// thousands of faults, and refusing more keeps a wrong path (a log, a binary) from being read whole.
pub const FILE_SIZE_MAX: u64 = 1024 * 1024;

/// Most concurrent clients. Each is a task with its own RNG stream and, under read-your-writes, a
/// router session: 100,000 of them take a few hundred MB, while `u32::MAX` asked for tens of GB
/// before the first operation.
pub const CLIENTS_MAX: u32 = 100_000;

/// Highest open-loop arrival rate, per second. The simulated clock counts whole microseconds, so
/// above one arrival per microsecond arrivals pile onto the same instant; far above it (`1e300`) the
/// gaps round to zero and the arrival clock stops.
pub const RATE_MAX: f64 = 1_000_000.0;

/// Longest run (`duration`), in simulated time. A day of simulated time is already hours of real
/// time at the shipped scenarios' load; longer runs would only hit turmoil's limits.
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);

/// Longest value of any other duration key (timeouts, intervals, fault `at`/`duration`, `latency`,
/// `delay`, `query_time`, `link_latency`, `think_time`, invariant bounds). The harness lets in-flight
/// operations drain for `(connect_timeout + query_timeout) * (read_retries + 2)`; with every
/// duration at most a day that sum stays far from `Duration`'s overflow.
pub const DURATION_KEY_MAX: Duration = Duration::from_secs(24 * 3600);

/// Most user ids. Client i is user `i mod users`, so at most `CLIENTS_MAX` of them are ever used;
/// the limit keeps user ids well inside the `int8` they travel as.
pub const USERS_MAX: u64 = 1_000_000_000;

/// Most org ids. Orgs are drawn from `[0, orgs)` and sent as `int8`; a billion orgs is far beyond
/// any shipped scenario (100,000) while staying exact in the `f64` the Zipf draw uses.
pub const ORGS_MAX: u64 = 1_000_000_000;

/// Most keys per org, for the same reasons as [`ORGS_MAX`]: keys are drawn, never allocated up front.
pub const KEYS_PER_ORG_MAX: u64 = 1_000_000_000;

/// Most replicas in one shard: the router keeps a shard's primary and replicas in a 64-bit set.
pub const REPLICAS_PER_SHARD_MAX: usize = ROUTER_REPLICAS_PER_SHARD_MAX;

/// Most nodes in a scenario. Each is a simulated host with its own PostgreSQL wire server, WAL
/// stream, health checks and lag probes; 256 of them is four full shards of 64.
pub const NODES_MAX: usize = 256;

/// Most retries of a failed read: the router's own limit (each retry needs another node).
pub const READ_RETRIES_MAX: u32 = ROUTER_READ_RETRIES_MAX;

/// Most faults `replisim explore` draws for one seed (`[explore] faults`): each is a run's worth of
/// schedule checks; far more than any shipped scenario holds (at most 4).
pub const EXPLORE_FAULTS_MAX: u32 = 64;

/// Largest `slow` fault factor. A node's `query_time` (at most [`DURATION_KEY_MAX`]) times this
/// stays a valid duration; 1000 times slower is already a node that answers nothing in time.
pub const SLOW_FACTOR_MAX: f64 = 1000.0;
