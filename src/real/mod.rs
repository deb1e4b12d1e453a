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
//! - `proxy`: [`FaultProxy`]: latency, partition, connection resets, records.
//! - `relay`: one connection through the proxy.
//! - `frames`: the frontend message parser the proxy records with.

pub mod cluster;
mod command;
pub mod error;
mod faults;
pub mod frames;
pub mod node;
mod ports;
pub mod proxy;
mod relay;
pub mod settings;
mod sql;
mod teardown;

pub use cluster::{Cluster, ClusterSpec, ShardSpec};
pub use command::PG_BIN_DIR;
pub use error::ClusterError;
pub use frames::StatementMessage;
pub use node::{DATABASE, RealNode, RealRole};
pub use proxy::{FaultProxy, ProxyRecord, ProxyRecordKind};
pub use settings::ServerSettings;
