//! An in-process stand-in for PostgreSQL nodes, for router tests that need no server: a [`FakeCluster`]
//! is a `Connector` whose streams lead to a tiny implementation of the wire protocol (startup, extended
//! query, close, terminate) with switches to make a node fail in the ways real ones do.
//!
//! Dialect: `SELECT pg_is_in_recovery()` answers the node's role. Any other statement takes `$n`
//! parameters of type bigint and answers rows `(node text, value bigint)`: one row with `$1`, or `$1`
//! rows numbered from 0 if the text contains `many`. A text containing `missing_table` fails with
//! SQLSTATE 42P01.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use replisim::router::{BoxedStream, ConnectPurpose, Connector, NodeAddress};

/// The code a CancelRequest carries where a startup message has its protocol version.
const CANCEL_REQUEST_CODE: i32 = 80_877_102;

const INT8: u32 = 20;
const TEXT: u32 = 25;
const BOOL: u32 = 16;

/// One fake node: switches the test flips, counters the test reads.
#[derive(Debug, Default)]
pub struct FakeNode {
    /// Answer `pg_is_in_recovery()` with true.
    pub in_recovery: AtomicBool,
    /// Crashed: connects are refused and open connections close at their next message.
    pub down: AtomicBool,
    /// Connects never complete (a blackhole).
    pub hang_connect: AtomicBool,
    /// Executes of workload statements are never answered.
    pub wedge: AtomicBool,
    /// The connection closes when a workload statement is executed.
    pub drop_on_execute: AtomicBool,
    /// Service time of a workload statement, in milliseconds.
    pub delay_ms: AtomicU64,
    /// Completed startups, by application_name.
    pub logins: Mutex<BTreeMap<String, u64>>,
    /// Workload connections open now.
    pub open_workload: AtomicI64,
    /// The most workload connections ever open at once.
    pub open_workload_max: AtomicI64,
    /// Parse messages received for workload statements.
    pub parses: AtomicU64,
    /// Workload statements executed (answered or not).
    pub executes: AtomicU64,
    /// Workload statements running now.
    pub running: AtomicI64,
    /// The most workload statements ever running at once.
    pub running_max: AtomicI64,
    /// Probe statements executed.
    pub probes: AtomicU64,
    /// CancelRequests received.
    pub cancel_requests: AtomicU64,
    /// Wakes open connections when the node crashes.
    crashed: tokio::sync::Notify,
}

impl FakeNode {
    /// Stops the node: open connections close at once, new connects are refused.
    pub fn crash(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.crashed.notify_waiters();
    }

    /// Starts a crashed node again.
    pub fn restart(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// Connections that completed startup with `application_name`.
    pub fn logins_named(&self, application_name: &str) -> u64 {
        let logins = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        logins.get(application_name).copied().unwrap_or(0)
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

/// Every fake node, by name; the connector of a router under test.
#[derive(Debug, Default)]
pub struct FakeCluster {
    nodes: BTreeMap<String, Arc<FakeNode>>,
}

impl FakeCluster {
    /// A cluster of nodes named `primaries` (not in recovery) and `replicas` (in recovery).
    pub fn new(primaries: &[&str], replicas: &[&str]) -> FakeCluster {
        let mut nodes = BTreeMap::new();
        for (names, in_recovery) in [(primaries, false), (replicas, true)] {
            for name in names {
                let node = FakeNode::default();
                node.in_recovery.store(in_recovery, Ordering::SeqCst);
                nodes.insert(name.to_string(), Arc::new(node));
            }
        }
        FakeCluster { nodes }
    }

    /// The node called `name`; panics in the test if there is none.
    pub fn node(&self, name: &str) -> Arc<FakeNode> {
        match self.nodes.get(name) {
            Some(node) => Arc::clone(node),
            None => panic!("no fake node {name}"),
        }
    }
}

#[async_trait::async_trait]
impl Connector for FakeCluster {
    async fn connect(
        &self,
        address: &NodeAddress,
        _purpose: ConnectPurpose,
    ) -> io::Result<BoxedStream> {
        let Some(node) = self.nodes.get(&address.name).cloned() else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such fake node"));
        };
        if node.hang_connect.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if node.down.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "connection refused",
            ));
        }
        let (client, server) = tokio::io::duplex(64 * 1024);
        let name = address.name.clone();
        tokio::spawn(async move {
            let _ = serve(server, node, name).await;
        });
        Ok(Box::new(client))
    }
}

struct ServerConn {
    node: Arc<FakeNode>,
    name: String,
    workload: bool,
    statements: BTreeMap<String, String>,
    /// Portal -> (statement text, parameters).
    portals: BTreeMap<String, (String, Vec<Option<i64>>)>,
}

async fn serve(mut stream: DuplexStream, node: Arc<FakeNode>, name: String) -> io::Result<()> {
    let len = stream.read_i32().await?;
    let mut startup = vec![0; usize::try_from(len - 4).map_err(io::Error::other)?];
    stream.read_exact(&mut startup).await?;
    if startup.get(..4) == Some(&CANCEL_REQUEST_CODE.to_be_bytes()[..]) {
        // PostgreSQL answers a CancelRequest with nothing; the fake only counts it.
        node.cancel_requests.fetch_add(1, Ordering::SeqCst);
        return Ok(());
    }
    let params = startup_params(&startup[4..]);
    let application_name = params.get("application_name").cloned().unwrap_or_default();
    let workload = application_name != "replisim-health";
    {
        let mut logins = node.logins.lock().unwrap_or_else(|e| e.into_inner());
        *logins.entry(application_name).or_default() += 1;
    }
    let mut out = BytesMut::new();
    message(&mut out, b'R', |b| b.put_i32(0));
    message(&mut out, b'K', |b| {
        b.put_i32(1);
        b.put_i32(2);
    });
    ready(&mut out);
    stream.write_all(&out).await?;
    if workload {
        let now = node.open_workload.fetch_add(1, Ordering::SeqCst) + 1;
        node.open_workload_max.fetch_max(now, Ordering::SeqCst);
    }
    let mut conn = ServerConn {
        node: Arc::clone(&node),
        name,
        workload,
        statements: BTreeMap::new(),
        portals: BTreeMap::new(),
    };
    let result = conn.run(&mut stream).await;
    if workload {
        node.open_workload.fetch_sub(1, Ordering::SeqCst);
    }
    result
}

impl ServerConn {
    async fn run(&mut self, stream: &mut DuplexStream) -> io::Result<()> {
        loop {
            let tag = tokio::select! {
                biased;
                _ = self.node.crashed.notified() => return Ok(()),
                tag = stream.read_u8() => tag?,
            };
            let len = stream.read_i32().await?;
            let mut body = vec![0; usize::try_from(len - 4).map_err(io::Error::other)?];
            stream.read_exact(&mut body).await?;
            if self.node.down.load(Ordering::SeqCst) {
                return Ok(());
            }
            let mut out = BytesMut::new();
            let mut body = &body[..];
            match tag {
                b'P' => {
                    let statement = cstr(&mut body);
                    let sql = cstr(&mut body);
                    if self.workload {
                        self.node.parses.fetch_add(1, Ordering::SeqCst);
                    }
                    self.statements.insert(statement, sql);
                    message(&mut out, b'1', |_| {});
                }
                b'D' => {
                    let _kind = body.get_u8();
                    let sql = self
                        .statements
                        .get(&cstr(&mut body))
                        .cloned()
                        .unwrap_or_default();
                    let (params, columns) = shape(&sql);
                    message(&mut out, b't', |b| {
                        b.put_i16(params as i16);
                        for _ in 0..params {
                            b.put_u32(INT8);
                        }
                    });
                    message(&mut out, b'T', |b| {
                        b.put_i16(columns.len() as i16);
                        for (column, oid) in &columns {
                            b.put_slice(column.as_bytes());
                            b.put_u8(0);
                            b.put_i32(0);
                            b.put_i16(0);
                            b.put_u32(*oid);
                            b.put_i16(-1);
                            b.put_i32(-1);
                            b.put_i16(0);
                        }
                    });
                }
                b'B' => {
                    let portal = cstr(&mut body);
                    let sql = self
                        .statements
                        .get(&cstr(&mut body))
                        .cloned()
                        .unwrap_or_default();
                    let formats = body.get_i16();
                    body.advance(2 * formats.max(0) as usize);
                    let count = body.get_i16();
                    let mut values = Vec::new();
                    for _ in 0..count {
                        let len = body.get_i32();
                        if len < 0 {
                            values.push(None);
                        } else {
                            values.push(Some(body.get_i64()));
                        }
                    }
                    self.portals.insert(portal, (sql, values));
                    message(&mut out, b'2', |_| {});
                }
                b'E' => {
                    let portal = cstr(&mut body);
                    let (sql, values) = self.portals.remove(&portal).unwrap_or_default();
                    if !self.execute(&sql, &values, &mut out).await {
                        return Ok(());
                    }
                }
                b'C' => message(&mut out, b'3', |_| {}),
                b'S' => ready(&mut out),
                b'H' => {}
                b'X' => return Ok(()),
                _ => error(&mut out, "0A000", "unsupported message"),
            }
            stream.write_all(&out).await?;
        }
    }

    /// Runs a statement into `out`; false if the connection must close instead.
    async fn execute(&mut self, sql: &str, values: &[Option<i64>], out: &mut BytesMut) -> bool {
        let node = &self.node;
        if sql.contains("pg_is_in_recovery") {
            node.probes.fetch_add(1, Ordering::SeqCst);
            let in_recovery = node.in_recovery.load(Ordering::SeqCst);
            message(out, b'D', |b| {
                b.put_i16(1);
                b.put_i32(1);
                b.put_u8(u8::from(in_recovery));
            });
            complete(out, 1);
            return true;
        }
        node.executes.fetch_add(1, Ordering::SeqCst);
        if node.drop_on_execute.load(Ordering::SeqCst) {
            return false;
        }
        if node.wedge.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let running = node.running.fetch_add(1, Ordering::SeqCst) + 1;
        node.running_max.fetch_max(running, Ordering::SeqCst);
        let delay = node.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        node.running.fetch_sub(1, Ordering::SeqCst);
        if sql.contains("missing_table") {
            error(out, "42P01", "relation \"missing_table\" does not exist");
            return true;
        }
        let first = values.first().copied().flatten().unwrap_or(0);
        let rows: Vec<i64> = if sql.contains("many") {
            (0..first).collect()
        } else {
            vec![first]
        };
        for value in &rows {
            message(out, b'D', |b| {
                b.put_i16(2);
                b.put_i32(self.name.len() as i32);
                b.put_slice(self.name.as_bytes());
                b.put_i32(8);
                b.put_i64(*value);
            });
        }
        complete(out, rows.len());
        true
    }
}

/// Parameters and result columns of a statement in the fake dialect.
fn shape(sql: &str) -> (usize, Vec<(&'static str, u32)>) {
    if sql.contains("pg_is_in_recovery") {
        return (0, vec![("pg_is_in_recovery", BOOL)]);
    }
    let params = (1..=9)
        .take_while(|n| sql.contains(&format!("${n}")))
        .count();
    (params, vec![("node", TEXT), ("value", INT8)])
}

fn startup_params(mut body: &[u8]) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    while body.first().is_some_and(|&b| b != 0) {
        let key = cstr(&mut body);
        let value = cstr(&mut body);
        params.insert(key, value);
    }
    params
}

fn cstr(body: &mut &[u8]) -> String {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    let text = String::from_utf8_lossy(&body[..end]).into_owned();
    *body = &body[(end + 1).min(body.len())..];
    text
}

fn message(out: &mut BytesMut, tag: u8, fill: impl FnOnce(&mut BytesMut)) {
    let mut body = BytesMut::new();
    fill(&mut body);
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(&body);
}

fn ready(out: &mut BytesMut) {
    message(out, b'Z', |b| b.put_u8(b'I'));
}

fn complete(out: &mut BytesMut, rows: usize) {
    message(out, b'C', |b| {
        b.put_slice(format!("SELECT {rows}").as_bytes());
        b.put_u8(0);
    });
}

fn error(out: &mut BytesMut, code: &str, text: &str) {
    message(out, b'E', |b| {
        for (field, value) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', text)] {
            b.put_u8(field);
            b.put_slice(value.as_bytes());
            b.put_u8(0);
        }
        b.put_u8(0);
    });
}
