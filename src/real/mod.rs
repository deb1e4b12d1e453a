//! Real mode: a local PostgreSQL 15 streaming-replication cluster that the crate starts and stops
//! itself, and a TCP fault proxy per node for the faults of the link.
//!
//! - `cluster`: [`Cluster`] and [`ClusterSpec`]: start, inspect, tear down.
//! - `faults`: crash, restart, apply delay, replay pause, promotion (methods of [`Cluster`]).
//! - `node`: [`RealNode`], one server: paths, port, role, `pg_ctl`.
//! - `teardown`: stopping everything and removing the data, async or from `Drop`.
//! - `command`: the server binaries run as `postgres` under time limits; processes via `/proc`.
//! - `ports`: free ports below the ephemeral range.
//! - `settings`: [`ServerSettings`], extra `postgresql.conf` settings for every node.
//! - `sql`: the cluster's own SQL sessions, each step under a time limit.
//! - `error`: [`ClusterError`].
//! - `prerequisites`: whether the real-cluster tests can run here; skip locally, fail under CI.
//! - `proxy`: [`FaultProxy`]: latency, partition, connection resets, records.
//! - `relay`: one connection through the proxy.
//! - `frames`: the frontend message parser the proxy records with.
//! - `backend`: the server's answers, paired with the statements they answer.
//! - `pgpool`: [`pgpool::Pgpool`], pgpool-II started in front of the nodes, as another router to judge;
//!   `pgpool_clients`: the workload's clients over plain connections to it (`--router pgpool`).
//!
//! `replisim real`, one scenario against such a cluster:
//! - `scenario_run`: [`scenario_run::run`], the whole run; `urls`: servers given with `--url`.
//! - `refusal`: faults real mode cannot apply, refused before anything starts.
//! - `clock`: the run's time line; `driver`: the workload in real time.
//! - `inject`: the faults on schedule, each followed by an observation of its effect.
//! - `evidence`: proxy records and client operations as the checkers' records.
//! - `read_stall`: the longest interval without a successful read, for comparing routers.
//! - `server_counts`: `pg_stat_statements` and server-log counts, with snapshots before stops.
//! - `cross_check`: those counts against the evidence, per node; a disagreement fails the run.
//! - `real_report`: the `-real.json` and `.md` reports.
//!
//! `replisim overhead`: `overhead`, the router against direct connections and against pgpool-II
//! (`pgpool`, which starts pgpool-II over a cluster).

pub mod backend;
pub mod clock;
pub mod cluster;
mod command;
pub mod cross_check;
pub mod driver;
pub mod error;
pub mod evidence;
mod faults;
pub mod frames;
pub mod inject;
pub mod node;
pub mod overhead;
pub mod pgpool;
pub mod pgpool_clients;
mod ports;
pub mod prerequisites;
pub mod proxy;
pub mod read_stall;
pub mod real_report;
pub mod refusal;
mod relay;
pub mod scenario_run;
pub mod server_counts;
pub mod settings;
mod sql;
mod teardown;
pub mod urls;

pub use backend::StatementAnswer;
pub use cluster::{Cluster, ClusterSpec, ShardSpec};
pub use command::PG_BIN_DIR;
pub use error::ClusterError;
pub use frames::StatementMessage;
pub use node::{DATABASE, RealNode, RealRole};
pub use proxy::{FaultProxy, ProxyRecord, ProxyRecordKind};
pub use settings::ServerSettings;
