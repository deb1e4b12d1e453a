//! What can go wrong while running a real PostgreSQL cluster, with messages that say what to do.

use std::path::PathBuf;
use std::time::Duration;

/// An error from starting, changing or stopping a real cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The PostgreSQL 15 server binaries are not installed.
    #[error("PostgreSQL 15 binaries not found in {dir}: install the postgresql-15 package")]
    MissingBinaries {
        /// Where they were looked for.
        dir: PathBuf,
    },
    /// Running as root, but there is no `postgres` OS user to run the servers as.
    #[error("running as root needs an OS user `postgres` to run the servers as: {reason}")]
    NoPostgresUser {
        /// Why the user could not be resolved.
        reason: String,
    },
    /// The cluster description is inconsistent.
    #[error("invalid cluster spec: {0}")]
    InvalidSpec(String),
    /// No node has this name.
    #[error("no node named `{0}` in this cluster")]
    UnknownNode(String),
    /// The operation needs a replica (a node in recovery).
    #[error("node `{name}` is a {role}, but the operation needs a replica")]
    NotReplica {
        /// The node.
        name: String,
        /// Its current role.
        role: &'static str,
    },
    /// The operation needs a running server.
    #[error("node `{0}` is not running (crashed or stopped); restart it first")]
    NotRunning(String),
    /// `restart` of a server that is running.
    #[error("node `{0}` is already running; crash it first")]
    AlreadyRunning(String),
    /// The cluster was torn down already.
    #[error("the cluster was torn down")]
    TornDown,
    /// No free TCP port could be found for a server.
    #[error(
        "no free TCP port on 127.0.0.1 in {first}..={last}; free some ports or stop other servers"
    )]
    NoFreePort {
        /// First port scanned.
        first: u16,
        /// Last port scanned.
        last: u16,
    },
    /// A file-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An external command exited with a failure status.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The tail of its stderr and stdout.
        output: String,
    },
    /// An external command did not finish in time (it was killed).
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    CommandTimeout {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// A server did not start; the tail of its log usually says why.
    #[error("node `{node}` failed to start: {reason}\n--- last lines of {} ---\n{log_tail}", log.display())]
    StartFailed {
        /// The node.
        node: String,
        /// What failed (the pg_ctl error).
        reason: String,
        /// The server log file.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },
    /// A SQL statement sent to a node failed.
    #[error("SQL on node `{node}` failed ({what}): {source}")]
    Sql {
        /// The node.
        node: String,
        /// The statement or step.
        what: String,
        /// The driver's error (with the SQLSTATE, if the server answered).
        source: tokio_postgres::Error,
    },
    /// A SQL connect or statement sent to a node did not complete in time.
    #[error("SQL on node `{node}` did not complete within {timeout:?} ({what})")]
    SqlTimeout {
        /// The node.
        node: String,
        /// The statement or step.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// A condition did not become true in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    WaitTimeout {
        /// The condition.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// Ctrl-C arrived; the cluster was torn down before returning.
    #[error("interrupted by Ctrl-C; the cluster was torn down")]
    Interrupted,
    /// Teardown could not stop every server process or remove the data.
    #[error("teardown incomplete: {0}")]
    TeardownIncomplete(String),
}

impl ClusterError {
    /// The SQLSTATE code, if this is a SQL error the server answered.
    pub fn sql_code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            ClusterError::Sql { source, .. } => source.code(),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> ClusterError {
        ClusterError::Io {
            what: what.into(),
            source,
        }
    }
}
