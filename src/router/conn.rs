//! One PostgreSQL connection over a connector stream: its client, its prepared statements, and the
//! background task that drives it.

use std::task::Poll;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{CancelToken, Client, Row, RowStream, Statement};

use crate::router::connector::{ConnectPurpose, Connector, NodeAddress};
use crate::router::error::{ConnectFailure, RouterError};
use crate::router::statement_cache::StatementCache;
use crate::router::tls::{NodeTls, Socket};

/// Prepared statements kept per connection; past this the least recently used is closed. Bounds
/// server memory when an application sends many distinct statement texts.
const STATEMENTS_MAX: usize = 256;

/// How long a discarded connection may take to say goodbye (finish its last response, send Terminate)
/// before its socket is dropped; a wedged socket must not keep a task alive.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The key of a connection's server process, for a CancelRequest.
pub(crate) struct Canceller(CancelToken);

impl Canceller {
    /// Sends PostgreSQL a CancelRequest for the statement running on the connection, over a
    /// connection of its own opened by `connector` (with the connection's TLS: a server that
    /// demands TLS refuses a plain CancelRequest), all within `timeout`. PostgreSQL says nothing
    /// back: `Ok` means the request was delivered, not that a statement was stopped.
    pub(crate) async fn send(
        &self,
        connector: &dyn Connector,
        node: &NodeAddress,
        tls: &NodeTls,
        timeout: Duration,
    ) -> Result<(), RouterError> {
        let send = async {
            let stream = connector
                .connect(node, ConnectPurpose::Cancel)
                .await
                .map_err(ConnectFailure::Stream)?;
            self.0
                .cancel_query_raw(Socket(stream), tls.clone())
                .await
                .map_err(|error| tls.failure(error))
        };
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(RouterError::Connect {
                node: node.name.clone(),
                source,
            }),
            Err(_) => Err(RouterError::ConnectTimeout {
                node: node.name.clone(),
                timeout,
            }),
        }
    }
}

/// The statement that tells when a connection whose statement was cancelled is idle again: any
/// statement is answered after the ones before it; this one costs nothing and every server has it.
pub(crate) const SETTLE_SQL: &str = "SELECT pg_is_in_recovery()";

/// Rows of [`Conn::query_between`]: of the statement before (if any), the statement, and the one after.
pub(crate) type Between = (Option<Vec<Row>>, Vec<Row>, Vec<Row>);

/// How to start a connection to one node: the startup parameters (user, database, password,
/// `application_name`, the client's sslmode) and the TLS handshake.
#[derive(Clone)]
pub(crate) struct Login {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: NodeTls,
}

/// An open connection.
pub(crate) struct Conn {
    /// Dropped with the connection: tells the background task to finish within [`CLOSE_GRACE`].
    /// Declared first, so dropped before `client`: dropping the client wakes the task (its request
    /// channel closes), which then finds this closed (see [`Conn::open`]).
    _closing: oneshot::Sender<()>,
    client: Client,
    statements: StatementCache<Statement>,
    opened_at: Instant,
    /// What a CancelRequest for this connection's running statement must name.
    cancel: CancelToken,
}

impl Conn {
    /// Opens a stream with `connector` and starts a connection on it as `login` says (the TLS
    /// handshake included), all within `timeout`. `socket`, if given, is held until the socket is
    /// closed (after the connection is dropped, within [`CLOSE_GRACE`]), so that a pool counts
    /// sockets still closing. `ended_by_server`, if given, is notified when the connection ends
    /// with an error before this side closed it: the server or the network dropped it, a hint that
    /// the node may be gone.
    pub(crate) async fn open(
        connector: &dyn Connector,
        node: &NodeAddress,
        purpose: ConnectPurpose,
        login: &Login,
        timeout: Duration,
        socket: Option<OwnedSemaphorePermit>,
        ended_by_server: Option<Arc<Notify>>,
    ) -> Result<Conn, RouterError> {
        let connect = async {
            let stream = connector
                .connect(node, purpose)
                .await
                .map_err(ConnectFailure::Stream)?;
            login
                .config
                .connect_raw(Socket(stream), login.tls.clone())
                .await
                .map_err(|error| login.tls.failure(error))
        };
        let (client, connection) = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(source)) => {
                return Err(RouterError::Connect {
                    node: node.name.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(RouterError::ConnectTimeout {
                    node: node.name.clone(),
                    timeout,
                });
            }
        };
        let (closing, closed) = oneshot::channel::<()>();
        let name = node.name.clone();
        let cancel = client.cancel_token();
        tokio::spawn(async move {
            let _socket = socket;
            let mut connection = std::pin::pin!(connection);
            let mut closed = closed;
            // `closed` is looked at, not waited on: registering a waiter on every poll of the
            // connection costs more than the rest of this task does per statement. No wake-up is
            // missed, as the sender goes before the client (see `Conn`), and the client's going
            // closes the connection's request channel, which wakes this task.
            let ended = std::future::poll_fn(|cx| {
                if let Poll::Ready(ended) = connection.as_mut().poll(cx) {
                    return Poll::Ready(Some(ended));
                }
                match closed.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => Poll::Pending,
                    Ok(()) | Err(oneshot::error::TryRecvError::Closed) => Poll::Ready(None),
                }
            })
            .await;
            match ended {
                Some(Err(error)) => {
                    tracing::debug!(node = %name, %error, "connection ended with an error");
                    if let Some(signal) = ended_by_server {
                        signal.notify_one();
                    }
                }
                Some(Ok(())) => {}
                None => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
                }
            }
        });
        Ok(Conn {
            _closing: closing,
            client,
            statements: StatementCache::new(STATEMENTS_MAX),
            opened_at: Instant::now(),
            cancel,
        })
    }

    /// What cancelling this connection's statement takes, which outlives the connection: a
    /// statement can be cancelled after its connection is closed.
    pub(crate) fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }

    /// Waits, within `timeout`, until every statement sent before has answered: a statement sent
    /// now is answered after them (one connection answers in order). True if the connection is
    /// idle and sound again.
    pub(crate) async fn settle(&mut self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.query(SETTLE_SQL, &[])).await,
            Ok(Ok(_))
        )
    }

    /// When the connection was opened.
    pub(crate) fn opened_at(&self) -> Instant {
        self.opened_at
    }

    /// True once the connection is known dead (server gone, socket closed).
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Runs `sql` and collects its rows; the statement is prepared once per connection.
    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        let result = self.client.query(&statement, params).await;
        self.forget_if_stale(sql, &result);
        result
    }

    /// Runs `sql` with its rows counted, not collected; prepared once per connection.
    pub(crate) async fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        let result = self.client.execute(&statement, params).await;
        self.forget_if_stale(sql, &result);
        result
    }

    /// Runs an already prepared statement and collects its rows.
    pub(crate) async fn query_prepared(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.client.query(statement, params).await
    }

    /// Prepares `sql` (or finds it prepared on this connection).
    pub(crate) async fn prepare(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        self.statement(sql).await
    }

    /// Runs parameterless statements over the simple query protocol (`BEGIN`, `COMMIT`,
    /// `SAVEPOINT`...): one round trip, nothing prepared or cached.
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(sql).await
    }

    /// Runs `before` (if any), `sql` and `after` back to back in one round trip (pipelined on the
    /// connection, so the server runs them in this order) and collects each one's rows. `before` and
    /// `after` take no parameters.
    pub(crate) async fn query_between(
        &mut self,
        before: Option<&str>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        after: &str,
    ) -> Result<Between, tokio_postgres::Error> {
        let first = match before {
            Some(text) => Some(self.statement(text).await?),
            None => None,
        };
        let main = self.statement(sql).await?;
        let last = self.statement(after).await?;
        let client = &self.client;
        let first_rows = async {
            match &first {
                Some(statement) => client.query(statement, &[]).await.map(Some),
                None => Ok(None),
            }
        };
        // `try_join!` polls in argument order, and each query is sent on its first poll.
        let result = futures::try_join!(
            first_rows,
            client.query(&main, params),
            client.query(&last, &[])
        );
        self.forget_if_stale(sql, &result);
        result
    }

    /// Starts `sql` and returns its rows as they arrive.
    pub(crate) async fn query_stream(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        let result = self
            .client
            .query_raw(&statement, params.iter().copied())
            .await;
        self.forget_if_stale(sql, &result);
        result
    }

    /// Drops the cached statement for `sql` if the server says it no longer matches: "cached plan must
    /// not change result type" after a schema change (0A000), or the statement is gone (26000). The
    /// next execution prepares it afresh.
    fn forget_if_stale<T>(&mut self, sql: &str, result: &Result<T, tokio_postgres::Error>) {
        let stale = result
            .as_ref()
            .err()
            .and_then(|error| error.code())
            .is_some_and(|code| {
                *code == SqlState::FEATURE_NOT_SUPPORTED
                    || *code == SqlState::INVALID_SQL_STATEMENT_NAME
            });
        if stale {
            self.statements.remove(sql);
        }
    }

    async fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement);
        }
        // Boxed for the same reason as a connect (see `pool`): preparing happens once per connection
        // and statement, but its future would enlarge every statement's.
        let statement = Box::pin(self.client.prepare(sql)).await?;
        // The evicted statement is closed on the server when its last clone drops.
        let _ = self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}
