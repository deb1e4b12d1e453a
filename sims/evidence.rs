//! The evidence the harness records drops nothing: a statement written into a connection that is
//! already dead (its server crashed, or the harness reset it) is recorded as an attempt that failed,
//! so `failover_within` sees it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use replisim::check::failover_within;
use replisim::record::events::{EventLog, NetKind};
use replisim::router::connector::{ConnectPurpose, Connector, NodeAddress};
use replisim::sim::connector::{LinkControl, SimConnector};

const NODE: &str = "node-1";
const PORT: u16 = 5432;

/// A startup message (protocol 3.0, no parameters) and then one simple `Query`.
fn startup() -> Vec<u8> {
    let mut m = 9u32.to_be_bytes().to_vec();
    m.extend_from_slice(&[0, 3, 0, 0, 0]);
    m
}

fn query() -> Vec<u8> {
    let body = b"SELECT 1\0";
    let mut m = vec![b'Q'];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Writes queries into `stream` every 10 ms until a write fails (at most 50); returns how many
/// were handed to it, the failed one included.
async fn write_until_failure(stream: &mut replisim::router::connector::BoxedStream) -> usize {
    let mut sent = 0;
    for _ in 0..50 {
        sent += 1;
        let written = stream.write_all(&query()).await;
        if written.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sent
}

/// Runs one client against a node that accepts and never reads; `kill` is applied to the
/// simulation at 1 s (after the client's first query). Returns the log and the number of queries
/// the client handed to the stream.
fn run_and_kill(kill: impl Fn(&mut turmoil::Sim<'_>, &LinkControl)) -> (Arc<EventLog>, usize) {
    let log = Arc::new(EventLog::default());
    let links = Arc::new(LinkControl::new(1));
    let sent = Arc::new(Mutex::new(0));
    let mut sim = turmoil::Builder::new()
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(20))
        .build();
    sim.host(NODE, || async {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            // Busy with the first statement: nothing is read, so a crash finds unread data and
            // resets the connection (RFC 9293 3.10.4) instead of closing it gracefully.
            tokio::spawn(async move {
                let _held = stream;
                std::future::pending::<()>().await;
            });
        }
    });
    {
        let connector =
            SimConnector::new(&[NODE.to_string()], Arc::clone(&links), Arc::clone(&log));
        let sent = Arc::clone(&sent);
        sim.client("app", async move {
            let address = NodeAddress::new(NODE, NODE, PORT);
            let mut stream = connector
                .connect(&address, ConnectPurpose::Workload)
                .await?;
            stream.write_all(&startup()).await?;
            stream.write_all(&query()).await?;
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let after = write_until_failure(&mut stream).await;
            *sent.lock().unwrap_or_else(|e| e.into_inner()) = 1 + after;
            Ok(())
        });
    }
    let mut killed = false;
    loop {
        if !killed && sim.elapsed() >= Duration::from_secs(1) {
            kill(&mut sim, &links);
            killed = true;
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => panic!("simulation failed: {e}"),
        }
    }
    let sent = *sent.lock().unwrap_or_else(|e| e.into_inner());
    (log, sent)
}

fn assert_every_query_recorded(log: &EventLog, sent: usize) {
    let events = log.take();
    let statements = |kind: NetKind| events.net.iter().filter(|n| n.kind == kind).count();
    let failed = statements(NetKind::StatementFailed);
    assert!(failed >= 1, "no failed write recorded: {:?}", events.net);
    assert_eq!(
        statements(NetKind::Statement) + failed,
        sent,
        "every query handed to the stream is recorded: {:?}",
        events.net
    );
    let last = events.net.iter().map(|n| n.at_us).max().unwrap_or(0);
    assert!(
        last >= 1_500_000,
        "the failed write after the fault is the last record: {:?}",
        events.net
    );
}

#[test]
fn a_statement_written_on_a_connection_whose_server_crashed_is_recorded() {
    let (log, sent) = run_and_kill(|sim, _| sim.crash(NODE));
    assert!(sent >= 2, "at least one query after the crash");
    assert_every_query_recorded(&log, sent);
}

#[test]
fn a_statement_written_on_a_connection_the_harness_reset_is_recorded() {
    let (log, sent) = run_and_kill(|_, links| {
        links.drop_connections(0);
    });
    // The reset stream refuses the very first write after it.
    assert_eq!(sent, 2);
    assert_every_query_recorded(&log, sent);
}

#[test]
fn a_failed_write_after_a_crash_moves_the_failover_time() {
    // The recorded failed write is a workload attempt on the crashed node: it is what a
    // `failover_within` window must see, as the unit tests of the checker pin with hand-built
    // records; here the simulation itself produces it.
    let (log, sent) = run_and_kill(|sim, _| sim.crash(NODE));
    let events = log.take();
    let last_failed = events
        .net
        .iter()
        .filter(|n| n.kind == NetKind::StatementFailed)
        .map(|n| n.at_us)
        .max();
    assert!(sent >= 2);
    let Some(last_failed) = last_failed else {
        panic!("no failed write recorded: {:?}", events.net);
    };
    let scenario = one_node_crash_scenario();
    let faults = vec![replisim::record::events::FaultRecord {
        index: 0,
        kind: "crash",
        target: 0,
        at_us: 1_000_000,
        until_us: None,
        took_effect: true,
        evidence: String::new(),
    }];
    let evidence = replisim::check::Evidence {
        scenario: &scenario,
        events: &events,
        faults: &faults,
        run_end_us: 20_000_000,
    };
    let failovers = failover_within::failovers(&evidence);
    assert_eq!(failovers.len(), 1);
    assert_eq!(failovers[0].last_attempt_ms, last_failed / 1000);
    assert!(failovers[0].failover_ms >= 500, "{failovers:?}");
}

/// A one-shard scenario whose only node is the crashed one (for the checker's node names).
fn one_node_crash_scenario() -> replisim::scenario::Scenario {
    let text = format!(
        "name = \"one\"\nduration = \"20s\"\n[[shard]]\norgs = [0, 1000]\nprimary = \"{NODE}\"\n"
    );
    match replisim::scenario::parse(&text, "one.toml") {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}
