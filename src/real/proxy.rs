//! A TCP fault proxy in front of one node: the router connects to it instead of the node, and it
//! adds latency, partitions the link or resets its connections on request, and records what
//! crossed it (connects, and every statement-bearing frontend message with the connection's
//! `application_name`, so that health checks can be told from workload, and the server's answer
//! to it).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::real::backend::StatementAnswer;
use crate::real::frames::StatementMessage;
use crate::real::relay;

/// Records kept; later ones are counted in [`FaultProxy::records_dropped`].
pub const RECORDS_MAX: usize = 1_000_000;
/// Connections relayed at once; further connects wait in the listen backlog.
pub const CONNECTIONS_MAX: usize = 1024;
/// How long [`FaultProxy::shutdown`] waits for its connections to close.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Something that crossed the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyRecord {
    /// When, since the proxy started.
    pub at: Duration,
    /// The proxy's connection number (from 1).
    pub conn: u64,
    /// The connection's `application_name` (`replisim` for workload, `replisim-health` for
    /// checks), once its startup message arrived.
    pub application_name: Option<Arc<str>>,
    /// Whether the link was partitioned at that moment (nothing reached the node then).
    pub partitioned: bool,
    /// What it was.
    pub kind: ProxyRecordKind,
}

/// What a [`ProxyRecord`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyRecordKind {
    /// A client connected (with `partitioned`: attempted; held until the link heals).
    Connect,
    /// The node refused or did not answer the proxy's connect; the client was reset.
    ConnectFailed,
    /// A `Query` or `Execute` message from the client.
    Statement {
        /// Which of the two.
        message: StatementMessage,
        /// The query text, or the prepared statement's text for an Execute (bounded prefix;
        /// empty if the statement was not seen).
        text: Arc<str>,
        /// An Execute's Bind parameters read as `bigint` (empty for a simple query).
        params: Arc<[Option<i64>]>,
        /// What the server answered, read off its reply as it crossed the proxy.
        answer: StatementAnswer,
    },
    /// The connection ended (either side closed, a reset, or the proxy dropped it).
    Closed,
}

#[derive(Debug, Default)]
struct Records {
    list: Vec<ProxyRecord>,
    dropped: u64,
}

/// State shared by the proxy handle, its accept loop and its connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) upstream: SocketAddr,
    started: Instant,
    latency_us: AtomicU64,
    partitioned: watch::Sender<bool>,
    pub(crate) shutdown: CancellationToken,
    conns: Mutex<BTreeMap<u64, CancellationToken>>,
    records: Mutex<Records>,
}

/// A poisoned lock only means a connection task panicked; the data is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The one-way latency to add now.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::Relaxed))
    }

    /// Whether the link is partitioned now.
    pub(crate) fn is_partitioned(&self) -> bool {
        *self.partitioned.borrow()
    }

    /// Returns once the link is not partitioned.
    pub(crate) async fn healed(&self) {
        let mut partitioned = self.partitioned.subscribe();
        // The sender lives as long as `self`: the wait cannot fail.
        let _ = partitioned.wait_for(|on| !*on).await;
    }

    /// Appends a record; returns its index, or `None` if the cap was reached.
    pub(crate) fn record(
        &self,
        conn: u64,
        application_name: Option<Arc<str>>,
        partitioned: bool,
        kind: ProxyRecordKind,
    ) -> Option<usize> {
        let at = self.started.elapsed();
        let mut records = lock(&self.records);
        if records.list.len() >= RECORDS_MAX {
            records.dropped += 1;
            return None;
        }
        records.list.push(ProxyRecord {
            at,
            conn,
            application_name,
            partitioned,
            kind,
        });
        Some(records.list.len() - 1)
    }

    /// Names the connection of the record at `index` (its connect), once the startup arrived.
    pub(crate) fn name_record(&self, index: Option<usize>, application_name: Option<Arc<str>>) {
        let Some(index) = index else {
            return;
        };
        if let Some(record) = lock(&self.records).list.get_mut(index) {
            record.application_name = application_name;
        }
    }

    /// Sets the server's answer on the statement record at `index`.
    pub(crate) fn answer(&self, index: usize, answer: StatementAnswer) {
        if let Some(ProxyRecord {
            kind: ProxyRecordKind::Statement { answer: slot, .. },
            ..
        }) = lock(&self.records).list.get_mut(index)
        {
            *slot = answer;
        }
    }

    /// Forgets a finished connection.
    pub(crate) fn unregister(&self, conn: u64) {
        lock(&self.conns).remove(&conn);
    }
}

/// A fault proxy listening on 127.0.0.1; dropping it closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    permits: Arc<Semaphore>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            started: Instant::now(),
            latency_us: AtomicU64::new(0),
            partitioned: watch::Sender::new(false),
            shutdown: CancellationToken::new(),
            conns: Mutex::new(BTreeMap::new()),
            records: Mutex::new(Records::default()),
        });
        let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), permits.clone()));
        Ok(FaultProxy {
            shared,
            local_addr,
            permits,
            accept,
        })
    }

    /// The address to connect to instead of the node.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The instant the proxy started: a record at `at` happened at `started() + at`.
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    /// The node's address.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Adds `one_way` to each direction, for bytes read from now on (ordering is kept).
    pub fn set_latency(&self, one_way: Duration) {
        let us = u64::try_from(one_way.as_micros()).unwrap_or(u64::MAX);
        self.shared.latency_us.store(us, Ordering::Relaxed);
    }

    /// Partitions the link (`true`) or heals it (`false`).
    ///
    /// While partitioned nothing reaches the node or comes back from it: bytes on open
    /// connections are held both ways (the connections stay open) and delivered on heal, as TCP
    /// retransmission would. A new connect completes at the TCP level, as it would from a listen
    /// backlog, but its startup never reaches the node until the heal, so the client waits exactly
    /// as behind a blackhole; unlike a backlog, the proxy reads and records what the client sends
    /// meanwhile (records marked `partitioned`).
    pub fn set_partitioned(&self, on: bool) {
        self.shared.partitioned.send_replace(on);
    }

    /// Whether the link is partitioned.
    pub fn is_partitioned(&self) -> bool {
        self.shared.is_partitioned()
    }

    /// Resets every open connection on both sides (RST, as after a proxy restart) and returns
    /// how many there were. New connects work at once.
    pub fn drop_connections(&self) -> usize {
        let conns = std::mem::take(&mut *lock(&self.shared.conns));
        for token in conns.values() {
            token.cancel();
        }
        conns.len()
    }

    /// Connections open now (held ones included).
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// Everything recorded so far, in order.
    pub fn records(&self) -> Vec<ProxyRecord> {
        lock(&self.shared.records).list.clone()
    }

    /// Records not kept because [`RECORDS_MAX`] was reached.
    pub fn records_dropped(&self) -> u64 {
        lock(&self.shared.records).dropped
    }

    /// Stops listening, resets every connection and waits (bounded) for them to close.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, &mut self.accept).await;
        let all = u32::try_from(CONNECTIONS_MAX).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, self.permits.acquire_many(all)).await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, permits: Arc<Semaphore>) {
    let mut next_conn = 0u64;
    loop {
        let permit = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => return,
            permit = permits.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else {
            return;
        };
        let accepted = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let client = match accepted {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of descriptors or a connection aborted in the backlog: pause, do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        next_conn += 1;
        let token = shared.shutdown.child_token();
        lock(&shared.conns).insert(next_conn, token.clone());
        let index = shared.record(
            next_conn,
            None,
            shared.is_partitioned(),
            ProxyRecordKind::Connect,
        );
        tokio::spawn(relay::serve(
            shared.clone(),
            next_conn,
            client,
            token,
            index,
            permit,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A server that echoes every byte back.
    async fn echo_server() -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        Ok(addr)
    }

    async fn round_trip(client: &mut TcpStream, bytes: &[u8; 4]) -> TestResult {
        client.write_all(bytes).await?;
        let mut back = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), client.read_exact(&mut back)).await??;
        assert_eq!(&back, bytes);
        Ok(())
    }

    #[tokio::test]
    async fn latency_is_added_each_way() -> TestResult {
        let proxy = FaultProxy::start(echo_server().await?).await?;
        let mut client = TcpStream::connect(proxy.local_addr()).await?;
        round_trip(&mut client, b"warm").await?;
        proxy.set_latency(Duration::from_millis(30));
        let start = Instant::now();
        round_trip(&mut client, b"slow").await?;
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(60),
            "round trip took {took:?}"
        );
        assert!(
            took < Duration::from_millis(200),
            "round trip took {took:?}"
        );
        proxy.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn partition_holds_bytes_until_heal() -> TestResult {
        let proxy = FaultProxy::start(echo_server().await?).await?;
        let mut client = TcpStream::connect(proxy.local_addr()).await?;
        round_trip(&mut client, b"ping").await?;
        proxy.set_partitioned(true);
        client.write_all(b"held").await?;
        let mut back = [0u8; 4];
        let early = tokio::time::timeout(Duration::from_millis(200), client.read_exact(&mut back));
        assert!(early.await.is_err(), "bytes crossed a partition");
        assert_eq!(proxy.open_connections(), 1);
        proxy.set_partitioned(false);
        tokio::time::timeout(Duration::from_secs(2), client.read_exact(&mut back)).await??;
        assert_eq!(&back, b"held");
        Ok(())
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    /// A server that answers its client's startup, then each of `answers` in turn, every one
    /// after some client bytes arrived.
    async fn scripted_server(answers: Vec<Vec<u8>>) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 1024];
            let mut startup = message(b'R', &0u32.to_be_bytes());
            startup.extend(message(b'Z', b"I"));
            for answer in std::iter::once(startup).chain(answers) {
                if !matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    return;
                }
                if stream.write_all(&answer).await.is_err() {
                    return;
                }
            }
            let _ = stream.read(&mut buf).await;
        });
        Ok(addr)
    }

    /// Reads until a `ReadyForQuery` (`Z` and its 5-byte body) ends what was read.
    async fn until_ready(client: &mut TcpStream) -> TestResult {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while seen.len() < 6 || seen[seen.len() - 6] != b'Z' {
            let n = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buf)).await??;
            if n == 0 {
                return Err("the server closed".into());
            }
            seen.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    #[tokio::test]
    async fn the_servers_answer_is_recorded_on_its_statement() -> TestResult {
        let mut refused = b"SERROR\0VERROR\0C25006\0".to_vec();
        refused.extend_from_slice(b"Mcannot execute INSERT in a read-only transaction\0\0");
        let mut completed = message(b'C', b"INSERT 0 1\0");
        completed.extend(message(b'Z', b"I"));
        let mut failed = message(b'E', &refused);
        failed.extend(message(b'Z', b"I"));
        let proxy = FaultProxy::start(scripted_server(vec![completed, failed]).await?).await?;
        let mut client = TcpStream::connect(proxy.local_addr()).await?;
        let mut startup = Vec::new();
        startup.extend_from_slice(&(3u32 << 16).to_be_bytes());
        startup.extend_from_slice(b"application_name\0replisim\0\0");
        let mut bytes = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
        bytes.extend(startup);
        client.write_all(&bytes).await?;
        until_ready(&mut client).await?;
        for sql in ["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"] {
            let mut batch = message(b'P', format!("\0{sql}\0\0\0").as_bytes());
            batch.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
            batch.extend(message(b'E', b"\0\0\0\0\0"));
            batch.extend(message(b'S', b""));
            client.write_all(&batch).await?;
            until_ready(&mut client).await?;
        }
        let answers: Vec<(String, StatementAnswer)> = proxy
            .records()
            .into_iter()
            .filter_map(|r| match r.kind {
                ProxyRecordKind::Statement { text, answer, .. } => Some((text.to_string(), answer)),
                _ => None,
            })
            .collect();
        assert_eq!(
            answers,
            vec![
                (
                    "INSERT INTO t VALUES (1)".to_string(),
                    StatementAnswer::Completed
                ),
                (
                    "INSERT INTO t VALUES (2)".to_string(),
                    StatementAnswer::Failed(Arc::from("25006"))
                ),
            ]
        );
        proxy.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn refused_upstream_resets_the_client_and_is_recorded() -> TestResult {
        // A port that was just free: nothing listens there.
        let closed = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?;
        let proxy = FaultProxy::start(closed).await?;
        let mut client = TcpStream::connect(proxy.local_addr()).await?;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buf)).await?;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // The connection's `Closed` record may or may not have been written yet.
        let kinds: Vec<ProxyRecordKind> = proxy
            .records()
            .into_iter()
            .map(|r| r.kind)
            .filter(|kind| *kind != ProxyRecordKind::Closed)
            .collect();
        assert_eq!(
            kinds,
            vec![ProxyRecordKind::Connect, ProxyRecordKind::ConnectFailed]
        );
        Ok(())
    }

    #[tokio::test]
    async fn dropped_connections_are_reset_and_new_ones_work() -> TestResult {
        let proxy = FaultProxy::start(echo_server().await?).await?;
        let mut first = TcpStream::connect(proxy.local_addr()).await?;
        let mut second = TcpStream::connect(proxy.local_addr()).await?;
        round_trip(&mut first, b"one1").await?;
        round_trip(&mut second, b"two2").await?;
        assert_eq!(proxy.drop_connections(), 2);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), first.read(&mut buf)).await?;
        assert!(read.is_err(), "expected a reset, got {read:?}");
        let mut third = TcpStream::connect(proxy.local_addr()).await?;
        round_trip(&mut third, b"new3").await?;
        assert_eq!(proxy.drop_connections(), 1);
        Ok(())
    }
}
