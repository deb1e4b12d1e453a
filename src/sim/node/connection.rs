//! The message loop of one client connection: pgwire's `process_message` / `process_error` over a
//! turmoil stream (pgwire's own `process_socket` only takes a real tokio socket, and its unbiased
//! `select!` would make runs differ). It logs the connection's open and close.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, DefaultClient, NoopHandler, PgWireConnectionState};
use pgwire::error::PgWireError;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use std::pin::Pin;

use tokio::time::{Instant, Sleep, sleep, timeout, timeout_at};
use tokio_util::codec::Framed;
use turmoil::net::TcpStream;

use super::backend::{Backend, in_hot_standby};
use super::clock::try_now_us;
use super::execute::Identity;
use super::state::SimNode;
use super::statement::Statement;
use crate::sim::events::ServerConnEvent;

/// A client must complete startup within this (PostgreSQL's `authentication_timeout`).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a response may wait to be written, beyond the statement's service time: a client that
/// stopped reading (gone, or partitioned away) is dropped after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// An idle connection gets an unsolicited `ParameterStatus` this often, the way TCP keepalives
/// probe a peer: once a partition heals, a client that is gone answers with a reset and the
/// connection ends instead of lingering forever.
const IDLE_PROBE_INTERVAL: Duration = Duration::from_secs(5);

type Socket = Framed<TcpStream, PgWireMessageServerCodec<Statement>>;

/// Logs the close of an open connection when dropped: at the end of the loop, or when a crash
/// drops the task.
struct OpenConnection {
    node: Arc<SimNode>,
    identity: Identity,
}

impl OpenConnection {
    fn open(node: Arc<SimNode>, identity: Identity) -> OpenConnection {
        log_conn(&node, identity, true);
        OpenConnection { node, identity }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        log_conn(&self.node, self.identity, false);
    }
}

fn log_conn(node: &SimNode, identity: Identity, open: bool) {
    // Outside a running host (the simulation itself being dropped) there is no time to log.
    if let Some(at_us) = try_now_us() {
        node.log().server_conn(ServerConnEvent {
            node: node.index(),
            conn: identity.conn,
            purpose: identity.purpose,
            at_us,
            open,
        });
    }
}

/// Serves one client connection until it ends.
pub(crate) async fn serve(node: Arc<SimNode>, stream: TcpStream) {
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    let mut socket: Socket = Framed::new(
        stream,
        PgWireMessageServerCodec::new(DefaultClient::new(peer, false)),
    );
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    let backend = Arc::new(Backend::new(node.clone()));
    let noop = Arc::new(NoopHandler);
    let startup_deadline = Instant::now() + STARTUP_TIMEOUT;
    let generation = node.conn_generation();
    let mut open: Option<OpenConnection> = None;
    // One registration for the connection's whole life: the loop ends as soon as it fires.
    let dropped = node.conns_dropped().notified();
    tokio::pin!(dropped);
    // Registered before the generation check, so a drop in between is not missed.
    dropped.as_mut().enable();
    // One idle-probe timer for the whole connection, re-armed only when it fires: creating a timer
    // per message would cost more than the message itself.
    let idle_probe = sleep(IDLE_PROBE_INTERVAL);
    tokio::pin!(idle_probe);
    let mut last_active = Instant::now();
    loop {
        if node.conn_generation() != generation {
            break;
        }
        let message = tokio::select! {
            biased;
            () = &mut dropped => break,
            message = next_message(&mut socket, &node, open.is_some(), startup_deadline, idle_probe.as_mut(), &mut last_active) => message,
        };
        let Some(Ok(message)) = message else {
            break;
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended = message.is_extended_query();
        let is_cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let limit = node.service_time() + WRITE_TIMEOUT;
        let processing = timeout(
            limit,
            process_message(
                message,
                &mut socket,
                backend.clone(),
                backend.clone(),
                backend.clone(),
                noop.clone(),
                backend.clone(),
            ),
        );
        let processed = tokio::select! {
            biased;
            () = &mut dropped => break,
            processed = processing => processed,
        };
        match processed {
            Err(_) => break,
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let fatal = error.is_fatal();
                let reported = timeout(
                    WRITE_TIMEOUT,
                    process_error(&mut socket, error, is_extended),
                )
                .await;
                if fatal || !matches!(reported, Ok(Ok(()))) {
                    break;
                }
            }
        }
        if is_cancel {
            break;
        }
        if open.is_none()
            && let Some(identity) = backend.identity()
        {
            open = Some(OpenConnection::open(node.clone(), identity));
        }
    }
    drop(open);
}

/// The next client message: before startup completes, within the startup deadline; after,
/// without limit, probing an idle client now and then.
async fn next_message(
    socket: &mut Socket,
    node: &SimNode,
    started: bool,
    startup_deadline: Instant,
    idle_probe: Pin<&mut Sleep>,
    last_active: &mut Instant,
) -> Option<Result<PgWireFrontendMessage, PgWireError>> {
    if started {
        next_or_probe(socket, node, idle_probe, last_active).await
    } else {
        timeout_at(startup_deadline, socket.next())
            .await
            .ok()
            .flatten()
    }
}

/// The next client message; a connection idle for a whole probe interval gets a probe.
async fn next_or_probe(
    socket: &mut Socket,
    node: &SimNode,
    mut idle_probe: Pin<&mut Sleep>,
    last_active: &mut Instant,
) -> Option<Result<PgWireFrontendMessage, PgWireError>> {
    loop {
        tokio::select! {
            biased;
            message = socket.next() => {
                *last_active = Instant::now();
                return message;
            }
            () = idle_probe.as_mut() => {
                let due = *last_active + IDLE_PROBE_INTERVAL;
                if due > Instant::now() {
                    // Traffic since the timer was armed: wait out the rest of the idle interval.
                    idle_probe.as_mut().reset(due);
                    continue;
                }
                idle_probe.as_mut().reset(Instant::now() + IDLE_PROBE_INTERVAL);
                let probe = PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    "in_hot_standby".to_owned(),
                    in_hot_standby(node),
                ));
                if !matches!(timeout(WRITE_TIMEOUT, socket.send(probe)).await, Ok(Ok(()))) {
                    return None;
                }
            }
        }
    }
}
