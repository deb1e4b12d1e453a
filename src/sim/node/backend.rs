//! The pgwire handlers of one client connection: trust startup, the simple protocol (text
//! results) and the extended protocol (pgwire parses, binds and describes; the node executes).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    StartupHandler, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo, Response,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, METADATA_APPLICATION_NAME, PgWireConnectionState, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion};

use super::HEALTH_APPLICATION_NAME;
use super::answer::Answer;
use super::cancel::CancelSlot;
use super::execute::{self, Identity, Params};
use super::sql;
use super::state::SimNode;
use super::statement::Statement;
use crate::record::events::{NodeRole, Purpose};

/// The handlers of one connection (what PostgreSQL calls its backend); its identity is fixed
/// once startup completes.
#[derive(Debug)]
pub(crate) struct Backend {
    node: Arc<SimNode>,
    parser: Arc<SqlParser>,
    identity: OnceLock<Identity>,
    /// The connection's process id and its entry in the node's cancel registry, from startup on.
    cancel: OnceLock<(i32, Arc<CancelSlot>)>,
}

impl Backend {
    pub(crate) fn new(node: Arc<SimNode>) -> Backend {
        Backend {
            node,
            parser: Arc::new(SqlParser),
            identity: OnceLock::new(),
            cancel: OnceLock::new(),
        }
    }

    /// The connection's number and purpose, once startup has completed.
    pub(crate) fn identity(&self) -> Option<Identity> {
        self.identity.get().copied()
    }

    fn cancel_slot(&self) -> Option<&Arc<CancelSlot>> {
        self.cancel.get().map(|(_, slot)| slot)
    }

    fn identity_or_default(&self) -> Identity {
        self.identity().unwrap_or(Identity {
            conn: 0,
            purpose: Purpose::Workload,
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((pid, _)) = self.cancel.get() {
            self.node.cancels().unregister(*pid);
        }
        // A connection that dies inside a transaction rolls it back and releases its locks.
        if let Some(identity) = self.identity() {
            self.node.end_connection(identity.conn);
        }
    }
}

#[async_trait]
impl CancelHandler for Backend {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let cancelled = self.node.cancels().cancel(request.pid, &request.secret_key);
        tracing::debug!(
            node = self.node.index(),
            pid = request.pid,
            cancelled,
            "cancel request"
        );
    }
}

/// The parameters a server reports at startup, in a fixed order so that the bytes on the wire do
/// not depend on hashing.
pub(crate) fn server_parameters<C: ClientInfo>(
    client: &C,
    node: &SimNode,
) -> BTreeMap<&'static str, String> {
    let on_off = |on: bool| if on { "on" } else { "off" }.to_owned();
    let metadata = client.metadata();
    let mut parameters = BTreeMap::new();
    parameters.insert(
        "application_name",
        metadata
            .get(METADATA_APPLICATION_NAME)
            .cloned()
            .unwrap_or_default(),
    );
    parameters.insert("client_encoding", "UTF8".to_owned());
    parameters.insert("DateStyle", "ISO, MDY".to_owned());
    parameters.insert("default_transaction_read_only", on_off(node.is_read_only()));
    parameters.insert("in_hot_standby", in_hot_standby(node));
    parameters.insert("integer_datetimes", "on".to_owned());
    parameters.insert("IntervalStyle", "postgres".to_owned());
    parameters.insert("is_superuser", "on".to_owned());
    parameters.insert("server_encoding", "UTF8".to_owned());
    parameters.insert(
        "server_version",
        "15.18 (replisim simulated node)".to_owned(),
    );
    parameters.insert("standard_conforming_strings", "on".to_owned());
    parameters.insert("TimeZone", "Etc/UTC".to_owned());
    parameters
}

/// `in_hot_standby`: `on` while the node is in recovery.
pub(crate) fn in_hot_standby(node: &SimNode) -> String {
    if node.role() == NodeRole::Replica {
        "on"
    } else {
        "off"
    }
    .to_owned()
}

/// A cancel key that depends only on the node and the connection, never on a process RNG.
fn secret_key(version: ProtocolVersion, node: &SimNode, conn: u64) -> SecretKey {
    let seed = (node.index() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ conn.rotate_left(17);
    match version {
        ProtocolVersion::PROTOCOL3_0 => SecretKey::I32(seed as i32),
        _ => SecretKey::Bytes(bytes::Bytes::from(seed.to_be_bytes().repeat(4))),
    }
}

#[async_trait]
impl StartupHandler for Backend {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(startup) = message else {
            return Ok(());
        };
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        let purpose = match client.metadata().get(METADATA_APPLICATION_NAME) {
            Some(name) if name == HEALTH_APPLICATION_NAME => Purpose::Check,
            _ => Purpose::Workload,
        };
        let conn = self.node.next_conn();
        let pid = i32::try_from(conn).unwrap_or(i32::MAX);
        let key = secret_key(client.protocol_version(), &self.node, conn);
        client.set_pid_and_secret_key(pid, key.clone());
        let slot = self.node.cancels().register(pid, key.clone());
        let _ = self.cancel.set((pid, slot));
        client
            .feed(PgWireBackendMessage::Authentication(Authentication::Ok))
            .await?;
        for (name, value) in server_parameters(client, &self.node) {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.to_owned(),
                    value,
                )))
                .await?;
        }
        client
            .feed(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
                pid, key,
            )))
            .await?;
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                TransactionStatus::Idle,
            )))
            .await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        // Set once: startup happens once per connection.
        let _ = self.identity.set(Identity { conn, purpose });
        Ok(())
    }
}

/// Turns SQL text into [`Statement`]; unknown text parses (and fails with 0A000 when executed).
#[derive(Debug, Default)]
pub(crate) struct SqlParser;

#[async_trait]
impl QueryParser for SqlParser {
    type Statement = Statement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(sql::parse(sql)))
    }

    fn get_parameter_types(&self, statement: &Statement) -> PgWireResult<Vec<Type>> {
        Ok(statement.param_types())
    }

    fn get_result_schema(
        &self,
        statement: &Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let columns = statement.columns();
        let formats = match column_format {
            Some(format) => execute::result_formats(format, columns.len())?,
            None => vec![FieldFormat::Text; columns.len()],
        };
        Ok(execute::fields(&columns, &formats))
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = sql::parse(query);
        let formats = vec![FieldFormat::Text; statement.column_count()];
        let answer = execute::run(
            &self.node,
            self.identity_or_default(),
            &statement,
            Params::None,
            &formats,
            self.cancel_slot(),
        )
        .await?;
        Ok(vec![answer.into_response(&statement, &formats)])
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Statement;
    type QueryParser = SqlParser;

    fn query_parser(&self) -> Arc<SqlParser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &target.statement;
        // Types the client declared in Parse win, as in PostgreSQL.
        let parameters = statement
            .param_types()
            .into_iter()
            .enumerate()
            .map(|(i, inferred)| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or(inferred)
            })
            .collect();
        let fields = self.parser.get_result_schema(statement, None)?;
        Ok(DescribeStatementResponse::new(parameters, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self.parser.get_result_schema(
            &portal.statement.statement,
            Some(&portal.result_column_format),
        )?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.execute_portal(portal).await
    }
}

impl Backend {
    /// Runs the statement bound in `portal` to completion (pgwire's `Execute` of a named portal, or
    /// of one executed in parts), answered as pgwire takes it.
    pub(crate) async fn execute_portal(
        &self,
        portal: &Portal<Statement>,
    ) -> PgWireResult<Response> {
        let statement = &portal.statement.statement;
        let formats =
            execute::result_formats(&portal.result_column_format, statement.column_count())?;
        let answer = self
            .execute(
                statement,
                &portal.parameters,
                &portal.parameter_format,
                &formats,
            )
            .await?;
        Ok(answer.into_response(statement, &formats))
    }

    /// Runs `statement` with the bound parameter `values` (in `format`) to completion, its row in
    /// the result `formats` (the node's own answer to the unnamed portal, see `unnamed_portal`).
    pub(crate) async fn execute(
        &self,
        statement: &Statement,
        values: &[Option<Bytes>],
        format: &Format,
        formats: &[FieldFormat],
    ) -> PgWireResult<Answer> {
        execute::run(
            &self.node,
            self.identity_or_default(),
            statement,
            Params::Bound { values, format },
            formats,
            self.cancel_slot(),
        )
        .await
    }
}
