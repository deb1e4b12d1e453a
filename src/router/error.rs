//! What can go wrong when routing a statement, with messages that name the node and the limit involved.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::time::Duration;

use tokio_postgres::error::SqlState;

/// Everything a router operation can fail with.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum RouterError {
    /// The org id falls inside no shard's range: fix the topology or the caller's org id.
    #[error("org {org} belongs to no shard: no shard's org range contains it")]
    NoShardForOrg {
        /// The org that was asked for.
        org: i64,
    },
    /// Opening a connection (stream and startup) took longer than `connect_timeout`.
    #[error("connecting to node {node} timed out after {timeout:?} (connect_timeout)")]
    ConnectTimeout {
        /// The node connected to.
        node: String,
        /// The limit that was hit.
        timeout: Duration,
    },
    /// The stream could not be opened, or the server refused the connection.
    #[error("could not connect to node {node}: {source}")]
    Connect {
        /// The node connected to.
        node: String,
        /// Why.
        #[source]
        source: ConnectFailure,
    },
    /// A statement took longer than `query_timeout`; its connection was discarded.
    #[error("statement on node {node} timed out after {timeout:?} (query_timeout)")]
    QueryTimeout {
        /// The node that ran the statement.
        node: String,
        /// The limit that was hit.
        timeout: Duration,
    },
    /// The server or the connection reported an error for a statement.
    #[error("statement on node {node} failed: {}", describe_pg(.source))]
    Query {
        /// The node that ran the statement.
        node: String,
        /// The client library's error; its SQLSTATE is available through [`RouterError::code`].
        #[source]
        source: tokio_postgres::Error,
    },
    /// A read attempt was given up because its node was ejected while it waited (a failed or slow
    /// request there); the read is retried on another node if it has a retry left.
    #[error(
        "read on node {node} given up after {waited:?}: the node was ejected while the read waited \
         (read_retries, slow_request_ejection)"
    )]
    Abandoned {
        /// The ejected node.
        node: String,
        /// How long the attempt had waited on the node.
        waited: Duration,
    },
    /// Every connection to the node stayed busy for `connect_timeout`.
    #[error(
        "no connection to node {node} became free within {timeout:?}: all {max} \
         (max_connections_per_node) are in use"
    )]
    PoolTimeout {
        /// The saturated node.
        node: String,
        /// `max_connections_per_node`.
        max: u32,
        /// How long the request waited (`connect_timeout`).
        timeout: Duration,
    },
    /// A user or org held its whole connection cap for `connect_timeout`.
    #[error(
        "{scope} {id} already holds {max} connections ({key} = {max}); waited {timeout:?} for one to free",
        key = scope.config_key()
    )]
    CapExceeded {
        /// Whether the user cap or the org cap was hit.
        scope: CapScope,
        /// The user or org id.
        id: i64,
        /// The cap.
        max: u32,
        /// How long the request waited (`connect_timeout`).
        timeout: Duration,
    },
    /// No node the request may use is healthy (health checks failed, or every candidate was tried).
    #[error("no healthy node can serve this {operation} in shard {shard}: {detail}")]
    NoHealthyNode {
        /// "read", "primary read" or "write".
        operation: &'static str,
        /// The shard's name.
        shard: String,
        /// Which nodes were considered and why none was usable.
        detail: String,
    },
    /// No node of the shard is known to be its primary (the one followed answered "in recovery"), so
    /// writes fail at once instead of going to a node that would refuse them.
    #[error(
        "no primary is known for shard {shard}: writes fail until a health check finds a node out of \
         recovery (promote a replica)"
    )]
    NoPrimary {
        /// The shard's name.
        shard: String,
    },
    /// A health check (connect and probe statement) took longer than `health_timeout`.
    #[error("health check of node {node} timed out after {timeout:?} (health_timeout)")]
    HealthCheckTimeout {
        /// The node checked.
        node: String,
        /// The limit that was hit.
        timeout: Duration,
    },
    /// A node answered something a PostgreSQL server would not (e.g. no row to a probe).
    #[error("node {node} answered unexpectedly: {detail}")]
    Protocol {
        /// The node.
        node: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// A transaction's node or connection failed, or its shard's writer changed, while it was open:
    /// the connection was discarded, so the server rolls the transaction back. Never retried, since
    /// the application decides what a lost transaction means. When it happened during `COMMIT`,
    /// `outcome_unknown` is true: the transaction may have committed.
    #[error(
        "transaction on node {node} lost ({reason}); {}",
        if *.outcome_unknown {
            "COMMIT was sent, so it may or may not have committed"
        } else {
            "it did not commit and was not retried"
        }
    )]
    TransactionLost {
        /// The node the transaction ran on.
        node: String,
        /// What ended it.
        reason: String,
        /// true if the failure came while `COMMIT` was on its way.
        outcome_unknown: bool,
    },
    /// The configuration or the topology is invalid or asks for an unsupported feature.
    #[error("invalid router configuration: {0}")]
    InvalidConfig(String),
    /// The router was shut down.
    #[error("the router is shut down")]
    ShutDown,
}

/// Which connection cap a request hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CapScope {
    /// `max_connections_per_user`.
    User,
    /// `max_connections_per_org`.
    Org,
}

impl CapScope {
    /// The configuration key of this cap.
    pub fn config_key(self) -> &'static str {
        match self {
            CapScope::User => "max_connections_per_user",
            CapScope::Org => "max_connections_per_org",
        }
    }
}

impl fmt::Display for CapScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CapScope::User => "user",
            CapScope::Org => "org",
        })
    }
}

/// Why a connection could not be opened.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The connector could not open a stream (refused, unreachable, ...).
    #[error("{0}")]
    Stream(#[source] io::Error),
    /// The stream opened but the PostgreSQL startup failed (refused connection, closed, ...).
    #[error("{}", describe_pg(.0))]
    Startup(#[source] tokio_postgres::Error),
    /// TLS could not be set up as `sslmode` asks: the server offers no TLS, or its certificate
    /// failed the check (see `router::tls`). The reason is one line, fit for a log.
    #[error("TLS: {0}")]
    Tls(String),
}

impl RouterError {
    /// The SQLSTATE the server answered with, if the error came from the server.
    pub fn code(&self) -> Option<SqlState> {
        match self {
            RouterError::Query { source, .. }
            | RouterError::Connect {
                source: ConnectFailure::Startup(source),
                ..
            } => source.code().cloned(),
            _ => None,
        }
    }

    /// The node the error happened on, if it happened on one.
    pub fn node(&self) -> Option<&str> {
        match self {
            RouterError::ConnectTimeout { node, .. }
            | RouterError::Connect { node, .. }
            | RouterError::QueryTimeout { node, .. }
            | RouterError::Query { node, .. }
            | RouterError::Abandoned { node, .. }
            | RouterError::PoolTimeout { node, .. }
            | RouterError::HealthCheckTimeout { node, .. }
            | RouterError::TransactionLost { node, .. }
            | RouterError::Protocol { node, .. } => Some(node),
            _ => None,
        }
    }

    /// True if a limit ran out (connect, statement, pool or cap wait).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            RouterError::ConnectTimeout { .. }
                | RouterError::QueryTimeout { .. }
                | RouterError::PoolTimeout { .. }
                | RouterError::HealthCheckTimeout { .. }
                | RouterError::CapExceeded { .. }
        )
    }

    /// True if TLS could not be set up with the node as `sslmode` asks (no TLS offered, or a
    /// certificate that failed the check).
    pub fn is_tls(&self) -> bool {
        matches!(
            self,
            RouterError::Connect {
                source: ConnectFailure::Tls(_),
                ..
            }
        )
    }

    /// True if the server refused a write as read-only (SQLSTATE 25006): it is a replica, or a
    /// primary fenced by a promotion elsewhere.
    pub fn is_read_only(&self) -> bool {
        self.code() == Some(SqlState::READ_ONLY_SQL_TRANSACTION)
    }

    /// True if the node answered the statement, with an error: the server is alive and talking.
    pub fn is_answer(&self) -> bool {
        matches!(self, RouterError::Query { source, .. } if source.as_db_error().is_some())
    }

    /// True if the node itself said it is down: it refused the connection, or the connection broke
    /// (closed, reset). Unlike a timeout, this is no judgment about slowness.
    pub fn is_node_down(&self) -> bool {
        match self {
            RouterError::Connect { source, .. } => match source {
                ConnectFailure::Stream(_) => true,
                ConnectFailure::Startup(error) => error.code().is_none(),
                // The server answered; it is the settings on either side that disagree.
                ConnectFailure::Tls(_) => false,
            },
            RouterError::Query { source, .. } => {
                source.code().is_none()
                    && (source.is_closed()
                        || source.source().is_some_and(|cause| cause.is::<io::Error>()))
            }
            _ => false,
        }
    }

    /// True if the request waited in the router (for a pool slot, or for its user's or org's cap)
    /// and gave up: backpressure, not a fault of any node. Such an error never ejects a node and never
    /// sends the request to the primary instead.
    pub fn is_backpressure(&self) -> bool {
        matches!(
            self,
            RouterError::PoolTimeout { .. } | RouterError::CapExceeded { .. }
        )
    }

    /// True if the node (not the statement) failed, so the same read may succeed on another node.
    /// Waiting in the router ([`RouterError::is_backpressure`]) is not a node failure.
    pub fn is_node_failure(&self) -> bool {
        match self {
            RouterError::ConnectTimeout { .. }
            | RouterError::Connect { .. }
            | RouterError::QueryTimeout { .. }
            | RouterError::Abandoned { .. }
            | RouterError::HealthCheckTimeout { .. }
            | RouterError::Protocol { .. } => true,
            RouterError::Query { source, .. } => is_node_failure(source),
            _ => false,
        }
    }
}

/// True if a client-library error says the server or the connection failed rather than the statement:
/// a lost connection, an I/O error, or a SQLSTATE about the server's state rather than the query.
pub fn is_node_failure(error: &tokio_postgres::Error) -> bool {
    if let Some(code) = error.code() {
        let code = code.code();
        // 08 connection exception, 53 insufficient resources, 57P01-57P03 shutdown / starting up,
        // 58 system error, XX internal error, 40001 includes replicas cancelling reads that conflict
        // with recovery.
        return code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P")
            || code.starts_with("58")
            || code.starts_with("XX")
            || code == "40001";
    }
    error.is_closed() || error.source().is_some_and(|cause| cause.is::<io::Error>())
}

/// True if the connection that produced `error` can no longer be trusted with another statement.
pub(crate) fn breaks_connection(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        // A statement error leaves the connection usable, except when the server is ending it.
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("XX")
        }
        None => error.is_closed() || error.source().is_some_and(|cause| cause.is::<io::Error>()),
    }
}

/// The client library prints only "db error" for server errors; this adds the server's message
/// and SQLSTATE so a reader can act on it.
fn describe_pg(error: &tokio_postgres::Error) -> String {
    match (error.as_db_error(), error.source()) {
        (Some(db), _) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        (None, Some(cause)) => format!("{error}: {cause}"),
        (None, None) => error.to_string(),
    }
}
