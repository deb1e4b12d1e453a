//! The upstream side of the WAL stream: serves one downstream node every record after the
//! position it asks for, old records first, then new ones as they commit; keepalives when idle.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::time::{Instant, Sleep, sleep_until, timeout};
use tokio_util::codec::Framed;
use turmoil::net::TcpStream;

use super::error::NodeError;
use super::state::{SimNode, WalRecord};
use super::wal_frame::{WalCodec, WalMessage};

/// Longest silence either side of a WAL stream tolerates before dropping it (PostgreSQL's
/// `wal_receiver_timeout` / `wal_sender_timeout`, scaled down to simulation size).
pub(crate) const WAL_STREAM_TIMEOUT: Duration = Duration::from_secs(1);

/// An idle upstream sends a keepalive, and a downstream its feedback, this often.
pub(crate) const WAL_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(100);

/// Most records sent before looking at the downstream's messages again.
const BATCH_MAX: usize = 256;

type WalSocket = Framed<TcpStream, WalCodec>;

/// Sends `messages` and flushes, giving up after [`WAL_STREAM_TIMEOUT`] (a partitioned peer never
/// frees the simulated socket's buffer).
pub(crate) async fn send_all(
    socket: &mut WalSocket,
    messages: impl Iterator<Item = WalMessage>,
) -> Result<(), NodeError> {
    let sending = async {
        for message in messages {
            socket.feed(message).await?;
        }
        socket.flush().await
    };
    timeout(WAL_STREAM_TIMEOUT, sending)
        .await
        .map_err(|_| NodeError::WalTimeout(WAL_STREAM_TIMEOUT))?
}

/// Serves one downstream until it goes away or falls silent.
pub(crate) async fn serve(node: Arc<SimNode>, stream: TcpStream) -> Result<(), NodeError> {
    let mut socket = Framed::new(stream, WalCodec);
    let first = timeout(WAL_STREAM_TIMEOUT, socket.next())
        .await
        .map_err(|_| NodeError::WalTimeout(WAL_STREAM_TIMEOUT))?;
    let (mut sent_lsn, timeline) = match first {
        Some(Ok(WalMessage::Start {
            after_lsn,
            timeline,
        })) => (after_lsn, timeline),
        Some(Ok(_)) => return Err(NodeError::WalProtocol("a WAL stream must begin with Start")),
        Some(Err(error)) => return Err(error),
        None => return Ok(()),
    };
    if let Err(reason) = node.check_stream_start(sent_lsn, timeline) {
        return send_all(&mut socket, std::iter::once(WalMessage::Refused(reason))).await;
    }
    let mut batch: Vec<WalRecord> = Vec::with_capacity(BATCH_MAX);
    let mut heard_at = Instant::now();
    let mut sent_at = Instant::now();
    // Kept for the stream's life (see `rearm`).
    let silence = sleep_until(heard_at + WAL_STREAM_TIMEOUT);
    let keepalive = sleep_until(sent_at + WAL_KEEPALIVE_INTERVAL);
    tokio::pin!(silence, keepalive);
    loop {
        let grown = node.wal_grown().notified();
        tokio::pin!(grown);
        // Registered before looking at the WAL, so a commit in between still wakes us.
        grown.as_mut().enable();
        batch.clear();
        node.records_after(sent_lsn, BATCH_MAX, &mut batch);
        let more = batch.len() == BATCH_MAX;
        if let Some(last) = batch.last() {
            sent_lsn = last.lsn;
            send_all(&mut socket, batch.iter().map(|r| WalMessage::Record(*r))).await?;
            sent_at = Instant::now();
        }
        rearm(silence.as_mut(), heard_at + WAL_STREAM_TIMEOUT);
        rearm(keepalive.as_mut(), sent_at + WAL_KEEPALIVE_INTERVAL);
        tokio::select! {
            biased;
            message = socket.next() => {
                if !feedback(message)? {
                    return Ok(());
                }
                heard_at = Instant::now();
            }
            () = &mut silence => {
                return Err(NodeError::WalTimeout(WAL_STREAM_TIMEOUT));
            }
            () = std::future::ready(()), if more => {}
            () = &mut grown => {}
            () = &mut keepalive => {
                let end_lsn = node.wal_end();
                send_all(&mut socket, std::iter::once(WalMessage::Keepalive { end_lsn })).await?;
                sent_at = Instant::now();
            }
        }
    }
}

/// Moves `timer` to `deadline` unless it is there already. Both ends of a stream keep their
/// timers for the stream's life and move them only when their moment does: a timer made anew for
/// every wait would join and leave tokio's timer wheel for every record.
pub(crate) fn rearm(timer: Pin<&mut Sleep>, deadline: Instant) {
    if timer.deadline() != deadline {
        timer.reset(deadline);
    }
}

/// Handles one message from downstream: `Ok(true)` for feedback, `Ok(false)` once it hung up.
fn feedback(message: Option<Result<WalMessage, NodeError>>) -> Result<bool, NodeError> {
    match message {
        Some(Ok(WalMessage::Feedback { .. })) => Ok(true),
        Some(Ok(_)) => Err(NodeError::WalProtocol(
            "a downstream may only send feedback",
        )),
        Some(Err(error)) => Err(error),
        None => Ok(false),
    }
}
