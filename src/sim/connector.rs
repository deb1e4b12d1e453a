//! The router's stream trait implemented over `turmoil::net`, wrapped so that the harness records every
//! connect and every statement-bearing frontend message (the evidence where a server cannot see), and so
//! that faults the servers cannot express (a blackholed connect, a dropped connection) can be injected.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::record::events::{EventLog, NetEvent, NetKind, NodeIdx, Purpose};
use crate::router::connector::{BoxedStream, ConnectPurpose, Connector, NodeAddress};
use crate::sim::now_us;

/// Fault switches on the application host's links, one per node. Shared between the connector (inside
/// the simulation) and the harness (which flips them between steps).
#[derive(Debug, Default)]
pub struct LinkControl {
    links: Vec<LinkState>,
}

#[derive(Debug, Default)]
struct LinkState {
    blackholed: AtomicBool,
    streams: Mutex<Vec<Weak<StreamKill>>>,
}

/// Lets the harness reset one open stream as a proxy restart would.
#[derive(Debug, Default)]
struct StreamKill {
    killed: AtomicBool,
    waker: AtomicWaker,
}

impl LinkControl {
    /// Switches for `nodes` links, all healthy.
    pub fn new(nodes: usize) -> LinkControl {
        LinkControl {
            links: (0..nodes).map(|_| LinkState::default()).collect(),
        }
    }

    /// Starts or ends a blackhole: while set, a new connect to the node never completes.
    pub fn set_blackholed(&self, node: NodeIdx, blackholed: bool) {
        if let Some(link) = self.links.get(node) {
            link.blackholed.store(blackholed, Ordering::SeqCst);
        }
    }

    fn is_blackholed(&self, node: NodeIdx) -> bool {
        self.links
            .get(node)
            .is_some_and(|l| l.blackholed.load(Ordering::SeqCst))
    }

    /// Resets every open stream to the node; returns how many were open.
    pub fn drop_connections(&self, node: NodeIdx) -> usize {
        let Some(link) = self.links.get(node) else {
            return 0;
        };
        let mut streams = link.streams.lock().unwrap_or_else(|e| e.into_inner());
        let mut killed = 0;
        for kill in streams.drain(..).filter_map(|w| w.upgrade()) {
            kill.killed.store(true, Ordering::SeqCst);
            kill.waker.wake();
            killed += 1;
        }
        killed
    }

    fn register(&self, node: NodeIdx) -> Arc<StreamKill> {
        let kill = Arc::new(StreamKill::default());
        if let Some(link) = self.links.get(node) {
            let mut streams = link.streams.lock().unwrap_or_else(|e| e.into_inner());
            // Forget streams that are gone so the list stays as long as the open connections.
            streams.retain(|w| w.strong_count() > 0);
            streams.push(Arc::downgrade(&kill));
        }
        kill
    }
}

/// Opens turmoil TCP streams to simulated nodes and records what goes through them.
pub struct SimConnector {
    node_index: BTreeMap<String, NodeIdx>,
    links: Arc<LinkControl>,
    log: Arc<EventLog>,
}

impl SimConnector {
    /// A connector for the nodes named in `node_names` (index = position).
    pub fn new(node_names: &[String], links: Arc<LinkControl>, log: Arc<EventLog>) -> SimConnector {
        let node_index = node_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        SimConnector {
            node_index,
            links,
            log,
        }
    }
}

fn purpose_of(purpose: ConnectPurpose) -> Purpose {
    match purpose {
        ConnectPurpose::Workload => Purpose::Workload,
        ConnectPurpose::HealthCheck => Purpose::Check,
        // The router's own traffic, not a client operation's attempt.
        ConnectPurpose::Cancel => Purpose::Check,
    }
}

/// Records a failed connect if the attempt ends (error, or dropped by the router's timeout) before it
/// is disarmed.
struct ConnectAttempt<'a> {
    log: &'a EventLog,
    node: NodeIdx,
    purpose: Purpose,
    done: bool,
}

impl Drop for ConnectAttempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.log.net(NetEvent {
                at_us: now_us(),
                node: self.node,
                purpose: self.purpose,
                kind: NetKind::ConnectFailed,
                stream: 0,
            });
        }
    }
}

#[async_trait::async_trait]
impl Connector for SimConnector {
    async fn connect(
        &self,
        node: &NodeAddress,
        purpose: ConnectPurpose,
    ) -> io::Result<BoxedStream> {
        let Some(&idx) = self.node_index.get(&node.name) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no simulated node called {:?}", node.name),
            ));
        };
        let purpose = purpose_of(purpose);
        self.log.net(NetEvent {
            at_us: now_us(),
            node: idx,
            purpose,
            kind: NetKind::Connect,
            stream: 0,
        });
        let mut attempt = ConnectAttempt {
            log: &self.log,
            node: idx,
            purpose,
            done: false,
        };
        if self.links.is_blackholed(idx) {
            // A blackhole neither accepts nor refuses: the SYN is lost. Only the caller's timeout ends this.
            std::future::pending::<()>().await;
        }
        let stream = turmoil::net::TcpStream::connect((node.host.as_str(), node.port)).await?;
        attempt.done = true;
        let port = stream.local_addr().map_or(0, |addr| u64::from(addr.port()));
        Ok(Box::new(SimStream {
            inner: stream,
            port,
            node: idx,
            purpose,
            kill: self.links.register(idx),
            log: Arc::clone(&self.log),
            scanner: FrameScanner::default(),
        }))
    }
}

/// A turmoil stream that logs statement-bearing frontend messages and can be reset by the harness.
struct SimStream {
    inner: turmoil::net::TcpStream,
    /// The local port: how the node's end names this connection too (its peer's port).
    port: u64,
    node: NodeIdx,
    purpose: Purpose,
    kill: Arc<StreamKill>,
    log: Arc<EventLog>,
    scanner: FrameScanner,
}

fn reset_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection reset (drop_connections fault)",
    )
}

impl SimStream {
    fn is_killed(&self, cx: &mut Context<'_>) -> bool {
        self.kill.waker.register(cx.waker());
        self.kill.killed.load(Ordering::SeqCst)
    }

    /// Records one `kind` event per statement-bearing message that starts in `bytes`.
    fn record_statements(&mut self, bytes: &[u8], kind: NetKind) {
        let statements = self.scanner.count_statements(bytes);
        for _ in 0..statements {
            self.log.net(NetEvent {
                at_us: now_us(),
                node: self.node,
                purpose: self.purpose,
                kind,
                stream: self.port,
            });
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_killed(cx) {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_killed(cx) {
            self.record_statements(buf, NetKind::StatementFailed);
            return Poll::Ready(Err(reset_error()));
        }
        let written = match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(error)) => {
                // A dead connection is still an attempt on the node: record what was sent into it.
                self.record_statements(buf, NetKind::StatementFailed);
                return Poll::Ready(Err(error));
            }
            Poll::Pending => return Poll::Pending,
        };
        self.record_statements(&buf[..written], NetKind::Statement);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_killed(cx) {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Follows the frontend message framing of one connection across arbitrary write boundaries: the first
/// message (startup) is a 4-byte length and body; every later one a tag byte, a 4-byte length and body.
#[derive(Debug, Default)]
pub struct FrameScanner {
    startup_seen: bool,
    body_left: usize,
    header: [u8; 5],
    header_len: usize,
}

impl FrameScanner {
    /// Consumes `bytes` and returns how many `Query` ('Q') or `Execute` ('E') messages started in them.
    pub fn count_statements(&mut self, bytes: &[u8]) -> usize {
        let mut count = 0;
        let mut i = 0;
        while i < bytes.len() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len() - i);
                self.body_left -= n;
                i += n;
                continue;
            }
            let header_size = if self.startup_seen { 5 } else { 4 };
            let n = (header_size - self.header_len).min(bytes.len() - i);
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[i..i + n]);
            self.header_len += n;
            i += n;
            if self.header_len < header_size {
                continue;
            }
            let len_at = header_size - 4;
            let len = u32::from_be_bytes([
                self.header[len_at],
                self.header[len_at + 1],
                self.header[len_at + 2],
                self.header[len_at + 3],
            ]) as usize;
            if self.startup_seen && matches!(self.header[0], b'Q' | b'E') {
                count += 1;
            }
            // The length counts itself; a malformed length below 4 just ends the message.
            self.body_left = len.saturating_sub(4);
            self.header_len = 0;
            self.startup_seen = true;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::FrameScanner;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn counts_query_and_execute_across_split_writes() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&9u32.to_be_bytes());
        stream.extend_from_slice(&[0, 3, 0, 0, 0]); // startup body
        stream.extend(message(b'P', b"SELECT 1\0\0\0"));
        stream.extend(message(b'B', &[0; 10]));
        stream.extend(message(b'E', &[0, 0, 0, 0, 0]));
        stream.extend(message(b'S', &[]));
        stream.extend(message(b'Q', b"SELECT pg_is_in_recovery()\0"));
        for chunk in [1, 2, 3, 7, stream.len()] {
            let mut scanner = FrameScanner::default();
            let total: usize = stream
                .chunks(chunk)
                .map(|c| scanner.count_statements(c))
                .sum();
            assert_eq!(total, 2, "chunk size {chunk}");
        }
    }

    #[test]
    fn a_tag_byte_inside_a_body_is_not_a_statement() {
        let mut scanner = FrameScanner::default();
        let mut stream = 8u32.to_be_bytes().to_vec();
        stream.extend_from_slice(b"QEQE");
        stream.extend(message(b'P', b"QQQQEEEE"));
        assert_eq!(scanner.count_statements(&stream), 0);
    }
}
