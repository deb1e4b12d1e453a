//! The workload's clients over pgpool-II: one plain tokio-postgres connection per client, opened on
//! first use and again after any failure, every connect and operation under the router
//! configuration's own limits. pgpool routes each statement by its kind (a read to a replica it
//! picks, a write to the primary); which node ran it is left to the fault proxies' evidence.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;

use crate::record::events::OpKind;
use crate::record::workload::{Connections, LOCK_SQL, OpFailure, OpPlan, READ_SQL, WRITE_SQL};
use crate::router::WORKLOAD_APPLICATION_NAME;

/// One client's connection and the task that drives it.
struct Open {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connections to one pgpool, one slot per client.
pub struct PgpoolClients {
    config: tokio_postgres::Config,
    connect_timeout: Duration,
    operation_timeout: Duration,
    slots: Vec<Mutex<Option<Open>>>,
}

impl PgpoolClients {
    /// `clients` slots for pgpool on 127.0.0.1:`port`. A connect is limited to `connect_timeout`
    /// and an operation (all its statements) to `operation_timeout`.
    pub fn new(
        port: u16,
        user: &str,
        dbname: &str,
        clients: u32,
        connect_timeout: Duration,
        operation_timeout: Duration,
    ) -> PgpoolClients {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user(user)
            .dbname(dbname)
            // pgpool passes it on to the nodes: the proxies' evidence counts these as workload.
            .application_name(WORKLOAD_APPLICATION_NAME)
            .connect_timeout(connect_timeout);
        PgpoolClients {
            config,
            connect_timeout,
            operation_timeout,
            slots: (0..clients).map(|_| Mutex::new(None)).collect(),
        }
    }

    async fn connect(&self) -> Result<Open, OpFailure> {
        let connected = tokio::time::timeout(
            self.connect_timeout,
            self.config.connect(tokio_postgres::NoTls),
        );
        match connected.await {
            Ok(Ok((client, connection))) => Ok(Open {
                client,
                driver: tokio::spawn(async move {
                    let _ = connection.await;
                }),
            }),
            Ok(Err(e)) => Err(failure("connecting to pgpool", &e)),
            Err(_) => Err(OpFailure {
                message: format!(
                    "connecting to pgpool: no connection within {:?}",
                    self.connect_timeout
                ),
                ..OpFailure::default()
            }),
        }
    }
}

/// An operation's failure from a client error, with its SQLSTATE; a server's error is quoted
/// (tokio-postgres's own message for it is only "db error").
fn failure(context: &str, error: &tokio_postgres::Error) -> OpFailure {
    let message = match error.as_db_error() {
        Some(db) => format!(
            "{context}: {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        ),
        None => format!("{context}: {error}"),
    };
    OpFailure {
        message,
        node: None,
        sqlstate: error.code().map(|code| code.code().to_string()),
    }
}

/// The first column of the last row, as the workload's statements return a version there.
fn version_of(rows: &[tokio_postgres::Row]) -> i64 {
    rows.last()
        .and_then(|row| row.try_get::<_, i64>(0).ok())
        .unwrap_or(0)
}

async fn run_plan(
    client: &tokio_postgres::Client,
    plan: OpPlan,
    params: &[&(dyn ToSql + Sync)],
) -> Result<i64, OpFailure> {
    let run = |sql: &'static str| async move {
        client
            .query(sql, params)
            .await
            .map_err(|e| failure("running the statement", &e))
    };
    match plan.kind {
        OpKind::Read => Ok(version_of(&run(READ_SQL).await?)),
        OpKind::Write if plan.transaction => {
            let simple = |sql: &'static str| async move {
                client
                    .batch_execute(sql)
                    .await
                    .map_err(|e| failure(sql, &e))
            };
            simple("BEGIN").await?;
            run(LOCK_SQL).await?;
            let rows = run(WRITE_SQL).await?;
            simple("COMMIT").await?;
            Ok(version_of(&rows))
        }
        OpKind::Write => Ok(version_of(&run(WRITE_SQL).await?)),
    }
}

#[async_trait::async_trait]
impl Connections for PgpoolClients {
    async fn execute(&self, client: u32, user: i64, plan: OpPlan) -> Result<i64, OpFailure> {
        let Some(slot) = self.slots.get(client as usize) else {
            return Err(OpFailure {
                message: format!("no connection slot for client {client}"),
                ..OpFailure::default()
            });
        };
        let mut slot = slot.lock().await;
        let open = match slot.take() {
            Some(open) if !open.client.is_closed() => open,
            _ => self.connect().await?,
        };
        let params: [&(dyn ToSql + Sync); 3] = [&plan.org, &plan.key, &user];
        let ran = tokio::time::timeout(
            self.operation_timeout,
            run_plan(&open.client, plan, &params),
        )
        .await;
        match ran {
            Ok(Ok(version)) => {
                *slot = Some(open);
                Ok(version)
            }
            // A failed statement may leave a transaction open or the connection broken: the next
            // operation starts on a fresh connection (dropping this one closes it).
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(OpFailure {
                message: format!(
                    "the operation did not finish within {:?}",
                    self.operation_timeout
                ),
                ..OpFailure::default()
            }),
        }
    }
}
