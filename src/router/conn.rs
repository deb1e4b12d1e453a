//! One PostgreSQL session over a connector stream: its client, its prepared statements, and the
//! background task that drives it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, RowStream, Statement};

use crate::router::connector::{ConnectPurpose, Connector, NodeAddress};
use crate::router::error::{ConnectFailure, RouterError};

/// Prepared statements kept per connection; past this the oldest-named is closed. Bounds server memory
/// when an application sends many distinct statement texts.
const STATEMENTS_MAX: usize = 256;

/// How long a discarded session may take to say goodbye (finish its last response, send Terminate)
/// before its socket is dropped; a wedged socket must not keep a task alive.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// An open session.
pub(crate) struct Conn {
    client: Client,
    statements: BTreeMap<String, Statement>,
    opened_at: Instant,
    /// Dropped with the session: tells the background task to finish within [`CLOSE_GRACE`].
    _closing: oneshot::Sender<()>,
}

impl Conn {
    /// Opens a stream with `connector` and starts a session on it, all within `timeout`.
    pub(crate) async fn open(
        connector: &dyn Connector,
        node: &NodeAddress,
        purpose: ConnectPurpose,
        session: &tokio_postgres::Config,
        timeout: Duration,
    ) -> Result<Conn, RouterError> {
        let connect = async {
            let stream = connector
                .connect(node, purpose)
                .await
                .map_err(ConnectFailure::Stream)?;
            session
                .connect_raw(stream, NoTls)
                .await
                .map_err(ConnectFailure::Startup)
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
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                biased;
                ended = &mut connection => {
                    if let Err(error) = ended {
                        tracing::debug!(node = %name, %error, "connection ended with an error");
                    }
                }
                _ = closed => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
                }
            }
        });
        Ok(Conn {
            client,
            statements: BTreeMap::new(),
            opened_at: Instant::now(),
            _closing: closing,
        })
    }

    /// When the session was opened.
    pub(crate) fn opened_at(&self) -> Instant {
        self.opened_at
    }

    /// True once the session is known dead (server gone, socket closed).
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Runs `sql` and collects its rows; the statement is prepared once per session.
    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.client.query(&statement, params).await
    }

    /// Starts `sql` and returns its rows as they arrive.
    pub(crate) async fn query_stream(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.client
            .query_raw(&statement, params.iter().copied())
            .await
    }

    async fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.statements.len() >= STATEMENTS_MAX {
            self.statements.pop_first();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}
