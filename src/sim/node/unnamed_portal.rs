//! The round trip of nearly every statement a client sends: `Bind` to the unnamed portal, then
//! `Execute` it in full, then `Sync`. It is answered here, with the messages and bytes pgwire's
//! handlers would send, but without their machinery for it (a shared portal store behind a lock, a
//! portal copied out of the `Bind` with a lock of its own, a result stream moved into the portal, a
//! row buffer sized for 256 rows, the column descriptions and a formatted tag, and a boxed future
//! per message), which took about a tenth of a simulation's time. Every other message, and these
//! with a name or a row limit, goes to pgwire, the unnamed portal first handed to pgwire's store so
//! that pgwire finds it where it keeps it.
//!
//! One difference from pgwire remains: an unnamed portal executed here is gone afterwards, so a
//! second `Execute` of it (which tokio-postgres never sends) finds no portal, where pgwire would
//! answer it with no rows.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::extendedquery::{Bind, BindComplete};
use pgwire::messages::response::{CommandComplete, ReadyForQuery};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::answer::Answer;
use super::backend::Backend;
use super::execute;
use super::statement::Statement;

/// The connection's unnamed portal while this module holds it (bound, not yet executed).
#[derive(Default)]
pub(crate) struct UnnamedPortal {
    bound: Option<Bound>,
}

/// A `Bind` to the unnamed portal, kept as it came, and the statement it binds.
struct Bound {
    bind: Bind,
    statement: Arc<StoredStatement<Statement>>,
}

/// What [`UnnamedPortal::answer`] did with a message.
pub(crate) enum Answered {
    /// Answered here.
    Done(PgWireResult<()>),
    /// Not this module's: pgwire must answer it (the portal, if any, is in pgwire's store now).
    ToPgwire(PgWireFrontendMessage),
}

impl UnnamedPortal {
    /// Answers `message` if it is a `Bind` to, or a full `Execute` of, the unnamed portal, or a
    /// `Sync`, on a connection ready for it; otherwise hands it back for pgwire, after moving the
    /// portal held here into pgwire's store.
    pub(crate) async fn answer<C>(
        &mut self,
        message: PgWireFrontendMessage,
        client: &mut C,
        backend: &Backend,
    ) -> Answered
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let ready = matches!(client.state(), PgWireConnectionState::ReadyForQuery);
        let message = match message {
            PgWireFrontendMessage::Bind(bind) if ready && is_unnamed(&bind.portal_name) => {
                match self.bind(bind, client).await {
                    Ok(answered) => return answered,
                    Err(error) => return Answered::Done(Err(error)),
                }
            }
            PgWireFrontendMessage::Execute(execute)
                if ready && execute.max_rows == 0 && is_unnamed(&execute.name) =>
            {
                if let Some(bound) = self.bound.take() {
                    return Answered::Done(execute_in_full(&bound, client, backend).await);
                }
                PgWireFrontendMessage::Execute(execute)
            }
            PgWireFrontendMessage::Sync(_) if ready => {
                self.bound = None;
                return Answered::Done(sync(client).await);
            }
            PgWireFrontendMessage::Sync(sync) => {
                // pgwire's own Sync ends the unnamed portal too.
                self.bound = None;
                PgWireFrontendMessage::Sync(sync)
            }
            other => other,
        };
        if let Some(bound) = self.bound.take() {
            // `try_new` only copies out of the Bind (it cannot fail in pgwire 0.42); were it to, the
            // portal would be missing and pgwire would refuse its Execute.
            if let Ok(portal) = Portal::try_new(&bound.bind, bound.statement) {
                client.portal_store().put_portal(Arc::new(portal));
            }
        }
        Answered::ToPgwire(message)
    }

    /// Binds the unnamed portal to a stored statement, as pgwire's `on_bind` does; a statement
    /// pgwire stores as empty, or does not know, is left to pgwire (`ToPgwire`).
    async fn bind<C>(&mut self, bind: Bind, client: &mut C) -> PgWireResult<Answered>
    where
        C: ClientPortalStore + Sink<PgWireBackendMessage> + Unpin,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = bind.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let Some(Entry::Value(statement)) = client.portal_store().get_statement(statement_name)
        else {
            // The portal pgwire may hold is replaced by this Bind in any case.
            self.bound = None;
            return Ok(Answered::ToPgwire(PgWireFrontendMessage::Bind(bind)));
        };
        self.bound = Some(Bound { bind, statement });
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(Answered::Done(Ok(())))
    }
}

/// Ends the extended-protocol round trip as pgwire's `on_sync` does on a ready connection: the
/// unnamed portal is gone, and `ReadyForQuery` goes out with everything held before it.
async fn sync<C>(client: &mut C) -> PgWireResult<()>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin,
    C::PortalStore: PortalStore<Statement = Statement>,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client.portal_store().rm_portal(DEFAULT_NAME);
    let status = client.transaction_status();
    client
        .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            status,
        )))
        .await?;
    client.flush().await?;
    Ok(())
}

fn is_unnamed(name: &Option<String>) -> bool {
    name.as_deref().unwrap_or(DEFAULT_NAME) == DEFAULT_NAME
}

/// Executes the bound statement to its last row and answers as pgwire's `on_execute` does.
async fn execute_in_full<C>(bound: &Bound, client: &mut C, backend: &Backend) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let statement = &bound.statement.statement;
    let formats = execute::result_formats(
        &format_of(&bound.bind.result_column_format_codes),
        statement.column_count(),
    )?;
    let parameter_format = format_of(&bound.bind.parameter_format_codes);
    let mut transaction_status = client.transaction_status();
    client.set_state(PgWireConnectionState::QueryInProgress);
    let answer = backend
        .execute(
            statement,
            &bound.bind.parameters,
            &parameter_format,
            &formats,
        )
        .await?;
    let opens_block = matches!(answer, Answer::Start(_));
    match answer {
        Answer::Rows { row, tag } => {
            let rows = usize::from(row.is_some());
            if let Some(row) = row {
                client.feed(PgWireBackendMessage::DataRow(row)).await?;
            }
            client
                .send(PgWireBackendMessage::CommandComplete(
                    Answer::rows_complete(tag, rows),
                ))
                .await?;
        }
        Answer::Start(tag) | Answer::End(tag) => {
            client
                .feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                    tag.to_owned(),
                )))
                .await?;
            transaction_status = if opens_block {
                transaction_status.to_in_transaction_state()
            } else {
                transaction_status.to_idle_state()
            };
        }
    }
    client.set_state(PgWireConnectionState::ReadyForQuery);
    client.set_transaction_status(transaction_status);
    Ok(())
}

/// The format of a Bind's parameters or result columns from its format codes, as pgwire's portal
/// reads them: none means text for all, one applies to all, more give one each.
fn format_of(codes: &[i16]) -> Format {
    match codes {
        [] => Format::UnifiedText,
        [code] => Format::from(*code),
        codes => Format::Individual(codes.to_vec()),
    }
}
