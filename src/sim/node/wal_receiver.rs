//! The downstream side of the WAL stream: a replica connects to its upstream, asks for every
//! record after its last received LSN, and stores what arrives. A silent stream is dropped and
//! reopened after a short backoff, so a partition or an upstream restart never wedges replication.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::futures::Notified;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::codec::Framed;
use turmoil::net::TcpStream;

use super::WAL_PORT;
use super::error::NodeError;
use super::state::{SimNode, StartRefusal};
use super::wal_frame::{WalCodec, WalMessage};
use super::wal_sender::{WAL_KEEPALIVE_INTERVAL, WAL_STREAM_TIMEOUT, rearm, send_all};

/// Limit on opening the stream (connecting to a crashed host never completes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause between a failed or dropped stream and the next attempt.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// Runs until the host stops: streams while the node is a replica with an upstream.
pub(crate) async fn run(node: Arc<SimNode>) {
    loop {
        // `notify_one` leaves a permit, so a change between this check and the wait is not lost.
        let changed = node.upstream_changed().notified();
        tokio::pin!(changed);
        let Some(upstream) = node.upstream() else {
            changed.await;
            continue;
        };
        // Failures are the normal life of a stream (crashes, partitions): retry after a pause.
        let _ = stream_from(&node, &upstream, changed.as_mut()).await;
        sleep(RECONNECT_BACKOFF).await;
    }
}

/// One stream from `upstream`, until it fails, falls silent, or the upstream or role changes.
async fn stream_from(
    node: &SimNode,
    upstream: &str,
    mut changed: Pin<&mut Notified<'_>>,
) -> Result<(), NodeError> {
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect((upstream, WAL_PORT)))
        .await
        .map_err(|_| NodeError::WalTimeout(CONNECT_TIMEOUT))??;
    let mut socket = Framed::new(stream, WalCodec);
    let (after_lsn, timeline) = node.stream_position();
    send_all(
        &mut socket,
        std::iter::once(WalMessage::Start {
            after_lsn,
            timeline,
        }),
    )
    .await?;
    let mut heard_at = Instant::now();
    let mut feedback_at = Instant::now() + WAL_KEEPALIVE_INTERVAL;
    // Kept for the stream's life (see `rearm`).
    let silence = sleep_until(heard_at + WAL_STREAM_TIMEOUT);
    let feedback_due = sleep_until(feedback_at);
    tokio::pin!(silence, feedback_due);
    loop {
        rearm(silence.as_mut(), heard_at + WAL_STREAM_TIMEOUT);
        rearm(feedback_due.as_mut(), feedback_at);
        tokio::select! {
            biased;
            () = changed.as_mut() => return Ok(()),
            message = socket.next() => {
                if !store(node, message)? {
                    return Ok(());
                }
                heard_at = Instant::now();
            }
            () = &mut silence => {
                return Err(NodeError::WalTimeout(WAL_STREAM_TIMEOUT));
            }
            () = &mut feedback_due => {
                let feedback = WalMessage::Feedback {
                    receive_lsn: node.receive_lsn(),
                    replay_lsn: node.replay_lsn(),
                };
                send_all(&mut socket, std::iter::once(feedback)).await?;
                feedback_at = Instant::now() + WAL_KEEPALIVE_INTERVAL;
            }
        }
    }
}

/// Handles one message from upstream: `Ok(true)` to go on, `Ok(false)` once it hung up.
fn store(
    node: &SimNode,
    message: Option<Result<WalMessage, NodeError>>,
) -> Result<bool, NodeError> {
    match message {
        Some(Ok(WalMessage::Record(record))) => {
            node.receive(record);
            Ok(true)
        }
        Some(Ok(WalMessage::Keepalive { .. })) => Ok(true),
        Some(Ok(WalMessage::Refused(reason))) => Err(NodeError::StreamRefused(match reason {
            StartRefusal::Ahead => "this replica is ahead of the upstream's WAL",
            StartRefusal::Diverged => "this replica's WAL diverged from the upstream's history",
        })),
        Some(Ok(_)) => Err(NodeError::WalProtocol(
            "an upstream may only send records and keepalives",
        )),
        Some(Err(error)) => Err(error),
        None => Ok(false),
    }
}
