//! The round trip of nearly every statement a client sends: `Bind` to the unnamed portal, then
//! `Execute` it in full. It is answered here, with the messages and bytes pgwire's handlers would
//! send, but without their machinery for it (a shared portal store behind a lock, a lock per portal,
//! a result stream moved into the portal and a row buffer sized for 256 rows), which took about a
//! twentieth of a simulation's time. Every other message, and these with a name or a row limit,
//! goes to pgwire, the unnamed portal first handed to pgwire's store so that pgwire finds it where it
//! keeps it.
//!
//! One difference from pgwire remains: an unnamed portal executed here is gone afterwards, so a
//! second `Execute` of it (which tokio-postgres never sends) finds no portal, where pgwire would
//! answer it with no rows.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::Portal;
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::extendedquery::{Bind, BindComplete};
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::backend::Backend;
use super::statement::Statement;

/// The connection's unnamed portal while this module holds it (bound, not yet executed).
#[derive(Default)]
pub(crate) struct UnnamedPortal {
    portal: Option<Arc<Portal<Statement>>>,
}

/// What [`UnnamedPortal::answer`] did with a message.
pub(crate) enum Answered {
    /// Answered here.
    Done(PgWireResult<()>),
    /// Not this module's: pgwire must answer it (the portal, if any, is in pgwire's store now).
    ToPgwire(PgWireFrontendMessage),
}

impl UnnamedPortal {
    /// Answers `message` if it is a `Bind` to, or a full `Execute` of, the unnamed portal on a
    /// connection ready for it; otherwise hands it back for pgwire, after moving the portal held
    /// here into pgwire's store (a `Sync` ends it instead, as pgwire's own `Sync` would).
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
                if let Some(portal) = self.portal.take() {
                    return Answered::Done(execute_in_full(&portal, client, backend).await);
                }
                PgWireFrontendMessage::Execute(execute)
            }
            PgWireFrontendMessage::Sync(sync) => {
                self.portal = None;
                PgWireFrontendMessage::Sync(sync)
            }
            other => other,
        };
        if let Some(portal) = self.portal.take() {
            client.portal_store().put_portal(portal);
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
            self.portal = None;
            return Ok(Answered::ToPgwire(PgWireFrontendMessage::Bind(bind)));
        };
        self.portal = Some(Arc::new(Portal::try_new(&bind, statement)?));
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(Answered::Done(Ok(())))
    }
}

fn is_unnamed(name: &Option<String>) -> bool {
    name.as_deref().unwrap_or(DEFAULT_NAME) == DEFAULT_NAME
}

/// Executes `portal` to its last row and answers as pgwire's `on_execute` does.
async fn execute_in_full<C>(
    portal: &Portal<Statement>,
    client: &mut C,
    backend: &Backend,
) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut transaction_status = client.transaction_status();
    client.set_state(PgWireConnectionState::QueryInProgress);
    match backend.execute_portal(portal).await? {
        Response::Query(mut results) => {
            let command_tag = results.command_tag().to_owned();
            let mut rows = 0;
            while let Some(row) = results.data_rows().next().await {
                client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                rows += 1;
            }
            let tag = Tag::new(&command_tag).with_rows(rows);
            client
                .send(PgWireBackendMessage::CommandComplete(tag.into()))
                .await?;
        }
        Response::EmptyQuery => {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        }
        Response::Execution(tag) => {
            client
                .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                .await?;
        }
        Response::TransactionStart(tag) => {
            client
                .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                .await?;
            transaction_status = transaction_status.to_in_transaction_state();
        }
        Response::TransactionEnd(tag) => {
            client
                .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                .await?;
            transaction_status = transaction_status.to_idle_state();
        }
        Response::Error(error) => {
            client
                .send(PgWireBackendMessage::ErrorResponse((*error).into()))
                .await?;
            transaction_status = transaction_status.to_error_state();
        }
        Response::CopyIn(_) | Response::CopyOut(_) | Response::CopyBoth(_) => {
            // The simulated node runs no COPY (SPEC 2a).
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "0A000".to_owned(),
                "COPY is not supported by the simulated server".to_owned(),
            ))));
        }
    }
    client.set_state(PgWireConnectionState::ReadyForQuery);
    client.set_transaction_status(transaction_status);
    Ok(())
}
