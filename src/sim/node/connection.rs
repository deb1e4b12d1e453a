//! The message loop of one client connection: pgwire's `process_message` / `process_error` over a
//! turmoil stream (pgwire's own `process_socket` only takes a real tokio socket, and its unbiased
//! `select!` would make runs differ). It logs the connection's open and close. Answers to
//! extended-protocol messages leave at the next `Sync`, as PostgreSQL sends them (see `reply_buffer`).

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
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
use super::unnamed_portal::{Answered, UnnamedPortal};
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
    /// The client's port, which names the connection at the client's end too.
    peer_port: u64,
}

impl OpenConnection {
    fn open(node: Arc<SimNode>, identity: Identity, peer_port: u64) -> OpenConnection {
        log_conn(&node, identity, peer_port, true);
        OpenConnection {
            node,
            identity,
            peer_port,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        log_conn(&self.node, self.identity, self.peer_port, false);
    }
}

fn log_conn(node: &SimNode, identity: Identity, peer_port: u64, open: bool) {
    // Outside a running host (the simulation itself being dropped) there is no time to log.
    if let Some(at_us) = try_now_us() {
        node.log().server_conn(ServerConnEvent {
            node: node.index(),
            conn: identity.conn,
            purpose: identity.purpose,
            at_us,
            open,
            stream: peer_port,
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
    let mut open: Option<OpenConnection> = None;
    let mut unnamed = UnnamedPortal::default();
    // One registration for the connection's whole life: the loop ends as soon as it fires.
    let notified = node.conns_dropped().notified();
    tokio::pin!(notified);
    // Registered before the generation is read, so a drop in between is not missed.
    notified.as_mut().enable();
    let mut dropped = Dropped {
        node: &node,
        generation: node.conn_generation(),
        notified,
        waker_set: false,
    };
    loop {
        if dropped.fired() {
            break;
        }
        let message = unless_dropped(
            &mut dropped,
            next_message(&mut socket, open.is_some(), startup_deadline),
        )
        .await;
        let Some(Some(Ok(message))) = message else {
            break;
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended = message.is_extended_query();
        let is_cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let held = answer_waits_for_sync(&message);
        socket.get_mut().hold(held);
        let limit = node.service_time() + WRITE_TIMEOUT;
        let lock_waiting = || {
            backend
                .identity()
                .is_some_and(|identity| node.is_lock_waiting(identity.conn))
        };
        // Pinned where it is made: the handling of a message (pgwire's included) is kilobytes,
        // which `finish` would otherwise copy into its own state for every message.
        let processed = {
            let processing = pin!(async {
                match unnamed.answer(message, &mut socket, &backend).await {
                    Answered::Done(answered) => answered,
                    Answered::ToPgwire(message) => {
                        process_message(
                            message,
                            &mut socket,
                            backend.clone(),
                            backend.clone(),
                            backend.clone(),
                            noop.clone(),
                            backend.clone(),
                        )
                        .await
                    }
                }
            });
            finish(processing, &mut dropped, held, limit, lock_waiting).await
        };
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
            open = Some(OpenConnection::open(
                node.clone(),
                identity,
                u64::from(peer.port()),
            ));
        }
    }
    drop(open);
}

/// The node's order to close every client connection, as one connection watches it.
struct Dropped<'a, 'n> {
    node: &'n SimNode,
    /// The node's connection generation when this connection started.
    generation: u64,
    notified: Pin<&'a mut Notified<'n>>,
    /// Whether `notified` holds this connection's waker. The connection's task never changes, so
    /// once it does, the order wakes the task, which then reads the generation: no need to poll
    /// the notification again, which would take the node's waiter lock on every message.
    waker_set: bool,
}

impl Dropped<'_, '_> {
    /// Whether the order came, without registering for it: the generation, bumped before every
    /// notification, says so for much less than a poll of the notification, and every message
    /// asks.
    fn fired(&self) -> bool {
        self.node.conn_generation() != self.generation
    }

    /// Whether the order came; if not, `cx` (this connection's task) is woken when it does.
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.fired() {
            return true;
        }
        if self.waker_set {
            return false;
        }
        self.waker_set = true;
        self.notified.as_mut().poll(cx).is_ready()
    }
}

/// Runs `work` to its end, or `None` if the node drops its connections first. The same as a
/// biased `select!` with the order first, but the notification is polled only while `work` waits.
async fn unless_dropped<T>(
    dropped: &mut Dropped<'_, '_>,
    work: impl Future<Output = T>,
) -> Option<T> {
    let mut work = pin!(work);
    poll_fn(|cx| {
        if dropped.fired() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if dropped.poll_fired(cx) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Runs `processing`, the handling of one message, to its end; `None` if the node dropped its
/// connections meanwhile, or if a message answered at once (`held` false) stayed unfinished past
/// `limit` while not waiting for a row lock: its client stopped reading.
async fn finish(
    processing: impl Future<Output = PgWireResult<()>>,
    dropped: &mut Dropped<'_, '_>,
    held: bool,
    limit: Duration,
    lock_waiting: impl Fn() -> bool,
) -> Option<PgWireResult<()>> {
    let mut processing = pin!(processing);
    if held {
        // A held answer goes to the buffer, never to the socket, so it cannot block: the message
        // waits only for its service time (shorter than `limit`) or for a row lock, which the write
        // timer would let run anyway. No timer, then.
        return unless_dropped(dropped, processing).await;
    }
    // Most messages are answered in their first poll: the write timer is armed only for one
    // that waits (a blocked write), which saves a timer per message. Simulated time does not move
    // within a poll, so the timer's deadline is the one it would have had.
    let first = poll_fn(|cx| {
        if dropped.fired() {
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
    let write_timer = sleep(limit);
    tokio::pin!(write_timer);
    loop {
        // `Some(end)` when the message is done with (`end` as `finish` returns it), `None` when the
        // write timer fired first.
        let ended = poll_fn(|cx| {
            if dropped.poll_fired(cx) {
                return Poll::Ready(Some(None));
            }
            if let Poll::Ready(processed) = processing.as_mut().poll(cx) {
                return Poll::Ready(Some(Some(processed)));
            }
            write_timer.as_mut().poll(cx).map(|()| None)
        })
        .await;
        match ended {
            Some(end) => return end,
            None if !lock_waiting() => return None,
            // Waiting for a row lock: as long as it takes, with a new timer for the write after.
            None => write_timer.as_mut().reset(Instant::now() + limit),
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
