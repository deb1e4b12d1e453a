//! Small hand-built runs for the checkers' unit tests.
//!
//! [`TestRun::new`] gives a two-shard scenario:
//!
//! | index | node | shard | role | orgs |
//! |---|---|---|---|---|
//! | 0 | primary-1 | s1 | primary | [0, 1000000) |
//! | 1 | replica-1 | s1 | replica | |
//! | 2 | replica-2 | s1 | replica | |
//! | 3 | primary-2 | s2 | primary | [1000000, 2000000) |
//! | 4 | replica-3 | s2 | replica | |
//!
//! Each record method appends a record with plain defaults and returns it for the test to adjust.

use std::time::Duration;

use crate::check::Evidence;
use crate::record::events::{
    ClientOp, Events, FaultRecord, Micros, NetEvent, NetKind, NodeIdx, NodeRole, OpKind, Purpose,
    ServerConnEvent, StatementEvent, StatementKind,
};
use crate::router::RouterConfig;
use crate::scenario::{Node, Scenario, Shard, Workload};

/// Index of `primary-1` (shard s1).
pub const PRIMARY_1: NodeIdx = 0;
/// Index of `replica-1` (shard s1).
pub const REPLICA_1: NodeIdx = 1;
/// Index of `replica-2` (shard s1).
pub const REPLICA_2: NodeIdx = 2;
/// Index of `primary-2` (shard s2).
pub const PRIMARY_2: NodeIdx = 3;
/// Index of `replica-3` (shard s2).
pub const REPLICA_3: NodeIdx = 4;

/// Milliseconds as simulated microseconds.
pub const fn ms(value: u64) -> Micros {
    value * 1000
}

/// A scenario, its records and its faults, owned, for one test.
pub struct TestRun {
    /// The two-shard scenario; tests adjust `router` or `invariants` directly.
    pub scenario: Scenario,
    /// The records.
    pub events: Events,
    /// The applied faults.
    pub faults: Vec<FaultRecord>,
    /// End of the run (default 60 s).
    pub run_end_us: Micros,
}

impl TestRun {
    /// An empty run of the two-shard scenario.
    pub fn new() -> TestRun {
        let shards = vec![
            Shard {
                name: "s1".to_string(),
                orgs_start: 0,
                orgs_end: 1_000_000,
                primary: PRIMARY_1,
                replicas: vec![REPLICA_1, REPLICA_2],
            },
            Shard {
                name: "s2".to_string(),
                orgs_start: 1_000_000,
                orgs_end: 2_000_000,
                primary: PRIMARY_2,
                replicas: vec![REPLICA_3],
            },
        ];
        let node = |name: &str, shard: usize, initial_role: NodeRole| Node {
            name: name.to_string(),
            shard,
            initial_role,
            query_time: Duration::from_millis(1),
            replication_delay: Duration::from_millis(5),
            link_latency: Duration::from_millis(1),
            weight: 1,
        };
        let nodes = vec![
            node("primary-1", 0, NodeRole::Primary),
            node("replica-1", 0, NodeRole::Replica),
            node("replica-2", 0, NodeRole::Replica),
            node("primary-2", 1, NodeRole::Primary),
            node("replica-3", 1, NodeRole::Replica),
        ];
        TestRun {
            scenario: Scenario {
                name: "test".to_string(),
                description: String::new(),
                seed: 1,
                duration: Duration::from_secs(60),
                shards,
                nodes,
                router: RouterConfig::default(),
                workload: Workload::default(),
                faults: Vec::new(),
                invariants: Vec::new(),
                explore: None,
            },
            events: Events::default(),
            faults: Vec::new(),
            run_end_us: ms(60_000),
        }
    }

    /// The evidence the checkers read.
    pub fn evidence(&self) -> Evidence<'_> {
        Evidence {
            scenario: &self.scenario,
            events: &self.events,
            faults: &self.faults,
            run_end_us: self.run_end_us,
        }
    }

    /// A successful workload statement on `node`, lasting 1 ms, by user 0 on key 0 of the first org
    /// of the node's shard, with the node's initial role.
    pub fn statement(
        &mut self,
        node: NodeIdx,
        kind: StatementKind,
        start_us: Micros,
    ) -> &mut StatementEvent {
        let role = self.scenario.nodes[node].initial_role;
        let org = self.scenario.shards[self.scenario.nodes[node].shard].orgs_start;
        self.events.statements.push(StatementEvent {
            node,
            conn: 1,
            purpose: Purpose::Workload,
            kind,
            role,
            org,
            key: 0,
            user: 0,
            start_us,
            end_us: start_us + ms(1),
            version: 0,
            sqlstate: None,
            lsn: 0,
        });
        last(&mut self.events.statements)
    }

    /// A successful client operation of `client` (user = client number) on org 0 key 0 that may use
    /// a replica.
    pub fn op(
        &mut self,
        client: u32,
        kind: OpKind,
        start_us: Micros,
        end_us: Micros,
    ) -> &mut ClientOp {
        self.events.ops.push(ClientOp {
            client,
            user: i64::from(client),
            org: 0,
            key: 0,
            kind,
            prefer_replica: true,
            transaction: false,
            start_us,
            end_us,
            ok: true,
            node: None,
            version: 0,
            error: None,
        });
        last(&mut self.events.ops)
    }

    /// A workload network record towards `node`.
    pub fn net(&mut self, node: NodeIdx, kind: NetKind, at_us: Micros) -> &mut NetEvent {
        self.events.net.push(NetEvent {
            at_us,
            node,
            purpose: Purpose::Workload,
            kind,
            stream: 0,
        });
        last(&mut self.events.net)
    }

    /// A workload connection `conn` of `node` opening (`open`) or closing.
    pub fn conn(
        &mut self,
        node: NodeIdx,
        conn: u64,
        at_us: Micros,
        open: bool,
    ) -> &mut ServerConnEvent {
        self.events.server_conns.push(ServerConnEvent {
            node,
            conn,
            purpose: Purpose::Workload,
            at_us,
            open,
            stream: 0,
        });
        last(&mut self.events.server_conns)
    }

    /// An applied fault that took effect, numbered in the order faults are added.
    pub fn fault(
        &mut self,
        kind: &'static str,
        target: NodeIdx,
        at_us: Micros,
        until_us: Option<Micros>,
    ) -> &mut FaultRecord {
        let index = self.faults.len();
        self.faults.push(FaultRecord {
            index,
            kind,
            target,
            at_us,
            until_us,
            took_effect: true,
            evidence: String::new(),
        });
        last(&mut self.faults)
    }
}

/// The record just pushed.
fn last<T>(list: &mut [T]) -> &mut T {
    let index = list.len() - 1;
    &mut list[index]
}
