//! One connection through the fault proxy: client bytes are parsed (for the records) and queued
//! with their delivery time, server bytes likewise (their answers are set on the statements'
//! records), and each queue is written out no earlier than that time and only while the link is
//! not partitioned.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::real::backend::{BackendParser, Pending, StatementAnswer};
use crate::real::frames::{Frame, FrontendParser, StatementTexts};
use crate::real::proxy::{ProxyRecordKind, Shared};

/// Bytes read at once.
const CHUNK_BYTES_MAX: usize = 16 * 1024;
/// Chunks queued per direction; a full queue stops reading (TCP backpressure does the rest).
const CHUNKS_MAX: usize = 16;
/// Limit of the proxy's connect to the node.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes read from one side, due on the other side at `deliver_at`.
struct Chunk {
    deliver_at: Instant,
    bytes: Bytes,
}

/// Removes the connection from the proxy's table however the task ends.
struct Registration {
    shared: Arc<Shared>,
    conn: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.unregister(self.conn);
        self.shared
            .record(self.conn, None, false, ProxyRecordKind::Closed);
    }
}

/// Relays one accepted connection until either side closes, an I/O error, or `token` (drop or
/// shutdown), which resets both sides.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    conn: u64,
    client: TcpStream,
    token: CancellationToken,
    connect_record: Option<usize>,
    _permit: OwnedSemaphorePermit,
) {
    let _registration = Registration {
        shared: shared.clone(),
        conn,
    };
    let _ = client.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (to_upstream, from_client) = mpsc::channel(CHUNKS_MAX);
    let pending = Mutex::new(Pending::default());
    // Boxed so that it can be dropped (ending its borrow of the read half) before a reset.
    let mut reading = Box::pin(read_client(
        &shared,
        conn,
        connect_record,
        &pending,
        &mut client_read,
        to_upstream,
    ));

    // The client's startup is read (and recorded) while the link may still be partitioned.
    let upstream = tokio::select! {
        biased;
        _ = token.cancelled() => None,
        _ = &mut reading => None,
        upstream = connect_upstream(&shared) => Some(upstream),
    };
    let upstream = match upstream {
        Some(Ok(upstream)) => upstream,
        failed => {
            if matches!(failed, Some(Err(_))) {
                shared.record(conn, None, false, ProxyRecordKind::ConnectFailed);
            }
            drop(reading);
            reset(client_read, client_write);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let (to_client, from_upstream) = mpsc::channel(CHUNKS_MAX);
    let clean = {
        let relaying = async {
            tokio::try_join!(
                reading.as_mut(),
                write_out(&shared, from_client, &mut upstream_write),
                read_upstream(&shared, &pending, &mut upstream_read, to_client),
                write_out(&shared, from_upstream, &mut client_write),
            )
        };
        tokio::select! {
            biased;
            _ = token.cancelled() => false,
            relayed = relaying => relayed.is_ok(),
        }
    };
    drop(reading);
    if !clean {
        reset(client_read, client_write);
        reset(upstream_read, upstream_write);
    }
}

/// Closes a connection with a reset (RST) and no FIN before it: dropping a write half would shut
/// it down first, which a peer reads as an orderly end of stream.
fn reset(read: OwnedReadHalf, write: OwnedWriteHalf) {
    if let Ok(stream) = read.reunite(write) {
        let _ = stream.set_zero_linger();
    }
}

/// Connects to the node once the link is not partitioned.
async fn connect_upstream(shared: &Shared) -> std::io::Result<TcpStream> {
    shared.healed().await;
    match tokio::time::timeout(
        UPSTREAM_CONNECT_TIMEOUT,
        TcpStream::connect(shared.upstream),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect to the node timed out",
        )),
    }
}

/// Reads the client, records its connect's name and its statements, and queues its bytes.
async fn read_client(
    shared: &Shared,
    conn: u64,
    connect_record: Option<usize>,
    pending: &Mutex<Pending>,
    client: &mut OwnedReadHalf,
    to_upstream: mpsc::Sender<Chunk>,
) -> std::io::Result<()> {
    let mut parser = FrontendParser::new();
    let mut texts = StatementTexts::default();
    let mut frames = Vec::new();
    let mut application_name: Option<Arc<str>> = None;
    let mut buf = vec![0u8; CHUNK_BYTES_MAX];
    loop {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            // Dropping the queue makes its writer pass the end of stream on.
            return Ok(());
        }
        let partitioned = shared.is_partitioned();
        parser.feed(&buf[..n], &mut frames);
        for frame in frames.drain(..) {
            if let Frame::Startup {
                application_name: name,
            } = &frame
            {
                application_name = name.as_deref().map(Arc::from);
                shared.name_record(connect_record, application_name.clone());
            }
            if let Some(sent) = texts.on_frame(&frame) {
                let record = shared.record(
                    conn,
                    application_name.clone(),
                    partitioned,
                    ProxyRecordKind::Statement {
                        message: sent.message,
                        text: sent.text,
                        params: sent.params,
                        answer: StatementAnswer::Unanswered,
                    },
                );
                // Registered before the bytes are queued: the answer cannot come first.
                lock(pending).sent(record);
            }
            // A simple query and a function call end with an implicit Sync.
            if matches!(
                frame,
                Frame::Query { .. } | Frame::Other { tag: b'S' | b'F' }
            ) {
                lock(pending).synced();
            }
        }
        if !queue(shared, &to_upstream, &buf[..n]).await {
            return Ok(());
        }
    }
}

/// Reads the node, sets its answers on the statements' records, and queues its bytes. An answer
/// counts when the server sent it, even if a partition then holds it back from the client.
async fn read_upstream(
    shared: &Shared,
    pending: &Mutex<Pending>,
    upstream: &mut OwnedReadHalf,
    to_client: mpsc::Sender<Chunk>,
) -> std::io::Result<()> {
    let mut parser = BackendParser::new();
    let mut messages = Vec::new();
    let mut buf = vec![0u8; CHUNK_BYTES_MAX];
    loop {
        let n = upstream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        parser.feed(&buf[..n], &mut messages);
        for message in messages.drain(..) {
            let answered = lock(pending).on_message(message);
            if let Some((record, answer)) = answered {
                shared.answer(record, answer);
            }
        }
        if !queue(shared, &to_client, &buf[..n]).await {
            return Ok(());
        }
    }
}

/// A poisoned lock only means a relay task panicked; the queue is still consistent.
fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// Queues bytes for delivery after the current latency; false if the writer is gone.
async fn queue(shared: &Shared, to: &mpsc::Sender<Chunk>, bytes: &[u8]) -> bool {
    let chunk = Chunk {
        deliver_at: Instant::now() + shared.latency(),
        bytes: Bytes::copy_from_slice(bytes),
    };
    to.send(chunk).await.is_ok()
}

/// Writes queued chunks when they are due and the link is up; at the end of the queue, passes
/// the end of stream on.
async fn write_out(
    shared: &Shared,
    mut from: mpsc::Receiver<Chunk>,
    to: &mut OwnedWriteHalf,
) -> std::io::Result<()> {
    while let Some(chunk) = from.recv().await {
        // Without latency there is nothing to wait for: a timer would round up to its next tick.
        if chunk.deliver_at > Instant::now() {
            tokio::time::sleep_until(chunk.deliver_at).await;
        }
        // Checked after the latency wait: a partition may have started meanwhile.
        shared.healed().await;
        to.write_all(&chunk.bytes).await?;
    }
    to.shutdown().await
}
