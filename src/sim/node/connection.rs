//! The message loop of one client connection: pgwire's `process_message` / `process_error` over a
//! turmoil stream (pgwire's own `process_socket` only takes a real tokio socket, and its unbiased
//! `select!` would make runs differ). It logs the connection's open and close. Answers to
//! extended-protocol messages leave at the next `Sync`, as PostgreSQL sends them (see `reply_buffer`).

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use pgwire::api::{ClientInfo, DefaultClient, NoopHandler, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};

use tokio::sync::futures::Notified;
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_util::codec::Framed;
use turmoil::net::TcpStream;

use super::backend::Backend;
use super::clock::try_now_us;
use super::execute::Identity;
use super::reply_buffer::ReplyBuffer;
use super::state::SimNode;
use super::statement::Statement;
use crate::record::events::ServerConnEvent;

/// A client must complete startup within this (PostgreSQL's `authentication_timeout`).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a response may wait to be written, beyond the statement's service time: a client that
/// stopped reading (gone, or partitioned away) is dropped after this. A statement waiting for a
/// row lock is not cut by it: it waits as long as the lock is held, as in PostgreSQL without
/// `lock_timeout`.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Socket = Framed<ReplyBuffer<TcpStream>, PgWireMessageServerCodec<Statement>>;

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
        ReplyBuffer::new(stream),
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
    loop {
        if node.conn_generation() != generation {
            break;
        }
        let message = tokio::select! {
            biased;
            () = &mut dropped => break,
            message = next_message(&mut socket, open.is_some(), startup_deadline) => message,
        };
        let Some(Ok(message)) = message else {
            break;
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended = message.is_extended_query();
        let is_cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        socket.get_mut().hold(answer_waits_for_sync(&message));
        let held = answer_waits_for_sync(&message);
        socket.get_mut().hold(held);
        let limit = node.service_time() + WRITE_TIMEOUT;
        let processing = process_message(
            message,
            &mut socket,
            backend.clone(),
            backend.clone(),
            backend.clone(),
            noop.clone(),
            backend.clone(),
        );
        let lock_waiting = || {
            backend
                .identity()
                .is_some_and(|identity| node.is_lock_waiting(identity.conn))
        };
        let processed = finish(processing, dropped.as_mut(), held, limit, lock_waiting).await;
        match processed {
            None => break,
            Some(Ok(())) => {}
            Some(Err(error)) => {
                let fatal = error.is_fatal();
                if fatal {
                    // The connection ends after this answer: it must not stay in the buffer.
                    socket.get_mut().hold(false);
                }
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

/// Runs `processing`, the handling of one message, to its end; `None` if the node dropped its
/// connections meanwhile, or if a message answered at once (`held` false) stayed unfinished past
/// `limit` while not waiting for a row lock: its client stopped reading.
async fn finish(
    processing: impl Future<Output = PgWireResult<()>>,
    mut dropped: Pin<&mut Notified<'_>>,
    held: bool,
    limit: Duration,
    lock_waiting: impl Fn() -> bool,
) -> Option<PgWireResult<()>> {
    let mut processing = pin!(processing);
    if held {
        // A held answer goes to the buffer, never to the socket, so it cannot block: the message
        // waits only for its service time (shorter than `limit`) or for a row lock, which the write
        // timer would let run anyway. No timer, then.
        return tokio::select! {
            biased;
            () = &mut dropped => None,
            processed = &mut processing => Some(processed),
        };
    }
    // Most messages are answered in their first poll: the write timer is armed only for one
    // that waits (a blocked write), which saves a timer per message. Simulated time does not move
    // within a poll, so the timer's deadline is the one it would have had.
    let first = poll_fn(|cx| {
        if dropped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(None));
        }
        match processing.as_mut().poll(cx) {
            Poll::Ready(processed) => Poll::Ready(Some(Some(processed))),
            Poll::Pending => Poll::Ready(None),
        }
    })
    .await;
    if let Some(first) = first {
        return first;
    }
    loop {
        tokio::select! {
            biased;
            () = &mut dropped => return None,
            processed = &mut processing => return Some(processed),
            () = sleep(limit) => {
                if !lock_waiting() {
                    return None;
                }
            }
        }
    }
}

/// Whether the answer to `message` waits in the output buffer for the next `Sync` or `Flush`, as
/// in PostgreSQL, where only those (and the simple protocol's `Query`) flush.
fn answer_waits_for_sync(message: &PgWireFrontendMessage) -> bool {
    matches!(
        message,
        PgWireFrontendMessage::Parse(_)
            | PgWireFrontendMessage::Bind(_)
            | PgWireFrontendMessage::Describe(_)
            | PgWireFrontendMessage::Execute(_)
            | PgWireFrontendMessage::Close(_)
    )
}

/// The next client message: before startup completes, within the startup deadline; after, without
/// limit. Like PostgreSQL, the server sends nothing unsolicited to an idle client: an idle connection
/// whose client vanished without a word (a partition) stays open until the client's end closes it,
/// as it would over real TCP without keepalives.
async fn next_message(
    socket: &mut Socket,
    started: bool,
    startup_deadline: Instant,
) -> Option<Result<PgWireFrontendMessage, PgWireError>> {
    if started {
        socket.next().await
    } else {
        timeout_at(startup_deadline, socket.next())
            .await
            .ok()
            .flatten()
    }
}
