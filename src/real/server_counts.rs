//! The servers' own word, as a cross-check of the proxy evidence: `pg_stat_statements` counts of
//! the workload statements per node, and the writes each server's log says it refused as
//! read-only (SQLSTATE 25006).
//!
//! The servers run with `pg_stat_statements.save = off`, so a server's counts start again at every
//! start: before each crash or restart replisim applies, the stopping server's counts are taken
//! as a [`Snapshot`], and a node's total is its snapshots plus its counts at the end.

use serde::Serialize;

use crate::real::cluster::Cluster;
use crate::real::node::{DATABASE, RealNode};
use crate::real::sql::{Admin, literal};
use crate::record::workload::{READ_SQL, WRITE_SQL};

/// What a server's log says when a write reaches it while it is read-only.
pub const READ_ONLY_LOG_LINE: &str = "cannot execute INSERT in a read-only transaction";
/// Bytes of a server log read at most.
const LOG_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// One node's own counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServerCounts {
    /// Node name.
    pub name: String,
    /// Workload reads `pg_stat_statements` counted since the server last started (`null` if the
    /// server was down at the end or the module is missing).
    pub stat_reads: Option<i64>,
    /// Workload writes `pg_stat_statements` counted since the server last started.
    pub stat_writes: Option<i64>,
    /// Writes the server's log says it refused as read-only (over every start of the server).
    pub log_read_only_errors: u64,
    /// Whether the server was running when counted.
    pub running_at_end: bool,
    /// Whether the servers count statements (`pg_stat_statements` was loaded).
    pub statements_counted: bool,
}

/// The start of a statement text as `pg_stat_statements` stores it (constants become `$n`).
fn prefix(sql: &str, cut: &str) -> String {
    sql.split(cut).next().unwrap_or(sql).to_string()
}

/// Counts every node of `cluster` (before its teardown: the logs live in its directory).
pub async fn collect(cluster: &Cluster, with_statements: bool) -> Vec<ServerCounts> {
    let mut all = Vec::new();
    for node in cluster.nodes() {
        let (stat_reads, stat_writes) = if with_statements && node.is_running() {
            statement_counts(node).await.unwrap_or((None, None))
        } else {
            (None, None)
        };
        all.push(ServerCounts {
            name: node.name.clone(),
            stat_reads,
            stat_writes,
            log_read_only_errors: read_only_errors(node),
            running_at_end: node.is_running(),
            statements_counted: with_statements,
        });
    }
    all
}

/// One server's counts taken just before replisim stopped it (a crash or a restart).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The node (index in the scenario).
    pub node: usize,
    /// When the counts were asked for (run clock).
    pub taken_us: u64,
    /// When the server was stopped (run clock): statements it ran after `taken_us` are lost.
    pub stopped_us: u64,
    /// Workload reads counted since the server's previous start (`None`: not known).
    pub reads: Option<i64>,
    /// Workload writes counted since the server's previous start.
    pub writes: Option<i64>,
}

/// The workload reads and writes `node`'s `pg_stat_statements` counted since the server started.
pub async fn statement_counts(
    node: &RealNode,
) -> Result<(Option<i64>, Option<i64>), crate::real::ClusterError> {
    let admin = Admin::connect(&node.name, node.port, DATABASE).await?;
    let sum = |text: String| {
        format!(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE \
             starts_with(query, {}) AND dbid = (SELECT oid FROM pg_database WHERE datname = \
             current_database())",
            literal(&text)
        )
    };
    let reads = admin.value(&sum(prefix(READ_SQL, " WHERE"))).await?;
    let writes = admin.value(&sum(prefix(WRITE_SQL, " ("))).await?;
    let parse = |v: Option<String>| v.and_then(|v| v.parse().ok());
    Ok((parse(reads), parse(writes)))
}

fn read_only_errors(node: &RealNode) -> u64 {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(&node.log_file) else {
        return 0;
    };
    let mut text = String::new();
    if file.take(LOG_BYTES_MAX).read_to_string(&mut text).is_err() {
        return 0;
    }
    count_read_only(&text)
}

/// Lines of a server log that report a write refused as read-only.
pub fn count_read_only(log: &str) -> u64 {
    log.lines()
        .filter(|line| line.contains("ERROR:") && line.contains(READ_ONLY_LOG_LINE))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_error_lines_about_read_only_writes_count() {
        let log = "2026-01-01 ERROR:  cannot execute INSERT in a read-only transaction\n\
                   2026-01-01 STATEMENT:  INSERT INTO replisim_kv ...\n\
                   2026-01-01 ERROR:  cannot execute INSERT in a read-only transaction\n\
                   2026-01-01 LOG:  database system is ready\n";
        assert_eq!(count_read_only(log), 2);
        assert_eq!(prefix(WRITE_SQL, " ("), "INSERT INTO replisim_kv");
    }
}
