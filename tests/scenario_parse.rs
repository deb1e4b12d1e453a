//! Scenario files: what a valid file resolves to, and how each kind of bad input is refused.

use std::path::Path;
use std::time::Duration;

use replisim::record::events::NodeRole;
use replisim::router::{Balance, RouterConfig, SslMode};
use replisim::scenario::{
    Fault, FaultKind, Invariant, LatencyOp, Node, Scenario, Shard, Workload, load, parse,
};

#[path = "scenario_parse/limits.rs"]
mod limits;
#[path = "scenario_parse/refused.rs"]
mod refused;
#[path = "scenario_parse/refused_faults.rs"]
mod refused_faults;
#[path = "scenario_parse/write.rs"]
mod write;

/// Every key of the schema.
const FULL: &str = r#"
name = "full-1"
description = "every key"
seed = 42
duration = "1m"

[[shard]]
name = "east"
orgs = [0, 500]
primary = "p1"
replicas = ["r1", "r2"]

[[shard]]
name = "west"
orgs = [500, 1000]
primary = "p2"
replicas = []

[node.default]
query_time = "2ms"
replication_delay = "10ms"
link_latency = "0.5ms"

[node.r2]
replication_delay = "1s"

[node.p2]
query_time = "3ms"
link_latency = "2ms"

[router]
balance = "round_robin"
health_interval = "500ms"
health_timeout = "250ms"
failure_threshold = 2
recovery_threshold = 3
use_read_replicas = false
read_your_writes = false
max_connections_per_node = 50
max_connections_per_user = 5
max_connections_per_org = 7
connect_timeout = "1s"
query_timeout = "2s"
read_retries = 0
ejection_time = "2s"
ejection_time_max = "20s"
slow_request_ejection = "500ms"

[workload]
clients = 20
rate = 250.5
think_time = "5ms"
users = 10
orgs = 1000
org_skew = 1.2
keys_per_org = 30
read_ratio = 0.6
primary_read_ratio = 0.25
transaction_ratio = 0.5

[[fault]]
at = "5s"
kind = "crash"
target = "r1"
duration = "10s"

[[fault]]
at = "1s"
kind = "crash"
target = "p2"

[[fault]]
at = "2s"
kind = "restart"
target = "p2"

[[fault]]
at = "20s"
kind = "partition"
target = "r2"

[[fault]]
at = "21.5s"
kind = "heal"
target = "r2"

[[fault]]
at = "3s"
kind = "drop_connections"
target = "p1"

[[fault]]
at = "30s"
kind = "latency"
target = "r1"
latency = "40ms"
duration = "2s"

[[fault]]
at = "31s"
kind = "lag"
target = "r2"
delay = "3s"

[[fault]]
at = "40s"
kind = "pause_replay"
target = "r1"

[[fault]]
at = "41s"
kind = "resume_replay"
target = "r1"

[[fault]]
at = "42s"
kind = "slow"
target = "p1"
factor = 2.5
duration = "1s"

[[invariant]]
kind = "writes_only_primary"

[[invariant]]
kind = "failover_within"
max = "1.5s"

[[invariant]]
kind = "replica_read_share"
min = 0.75

[[invariant]]
kind = "latency"
op = "write"
percentile = 99.9
max = "20ms"

[[invariant]]
kind = "no_failed_queries"
max_error_rate = 0.01

[[invariant]]
kind = "max_staleness"
max = "1s"

[[invariant]]
kind = "read_your_writes"

[[invariant]]
kind = "caps_respected"

[[invariant]]
kind = "org_routing"
"#;

/// A small valid file; tests append sections, which start on line 8.
const BASE: &str = r#"name = "t"
duration = "10s"

[[shard]]
orgs = [0, 1000]
primary = "p"
replicas = ["r1", "r2"]
"#;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn node(name: &str, shard: usize, role: NodeRole, model: [u64; 3]) -> Node {
    // Models in microseconds: query_time, replication_delay, link_latency.
    Node {
        name: name.to_owned(),
        shard,
        initial_role: role,
        query_time: Duration::from_micros(model[0]),
        replication_delay: Duration::from_micros(model[1]),
        link_latency: Duration::from_micros(model[2]),
        weight: 1,
    }
}

fn fault(at: Duration, kind: FaultKind, target: usize, duration: Option<Duration>) -> Fault {
    Fault {
        at,
        kind,
        target,
        duration,
    }
}

/// `BASE` followed by `extra`.
fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn a_file_with_every_key_resolves_to_the_expected_model() {
    let scenario = parse(FULL, "full.toml").expect("valid");
    let expected = Scenario {
        name: "full-1".to_owned(),
        description: "every key".to_owned(),
        seed: 42,
        duration: secs(60),
        shards: vec![
            Shard {
                name: "east".to_owned(),
                orgs_start: 0,
                orgs_end: 500,
                primary: 0,
                replicas: vec![1, 2],
            },
            Shard {
                name: "west".to_owned(),
                orgs_start: 500,
                orgs_end: 1000,
                primary: 3,
                replicas: vec![],
            },
        ],
        nodes: vec![
            node("p1", 0, NodeRole::Primary, [2000, 10_000, 500]),
            node("r1", 0, NodeRole::Replica, [2000, 10_000, 500]),
            node("r2", 0, NodeRole::Replica, [2000, 1_000_000, 500]),
            node("p2", 1, NodeRole::Primary, [3000, 10_000, 2000]),
        ],
        router: RouterConfig {
            balance: Balance::RoundRobin,
            balance_seed: None,
            health_interval: ms(500),
            health_timeout: ms(250),
            failure_threshold: 2,
            recovery_threshold: 3,
            use_read_replicas: false,
            max_replica_lag: None,
            read_your_writes: false,
            max_connections_per_node: 50,
            min_connections_per_node: 10,
            max_connections_per_user: 5,
            max_connections_per_org: 7,
            max_idle_time: secs(600),
            max_lifetime: secs(3600),
            connect_timeout: secs(1),
            query_timeout: secs(2),
            read_retries: 0,
            ejection_time: secs(2),
            ejection_time_max: secs(20),
            slow_request_ejection: ms(500),
            max_ejection_percent: None,
            outlier_ejection: true,
            cancel_abandoned: true,
            replica_count: None,
            follow_promotion: true,
            sslmode: SslMode::Disable,
            sslrootcert: None,
        },
        workload: Workload {
            clients: 20,
            rate: Some(250.5),
            think_time: ms(5),
            users: 10,
            orgs: 1000,
            org_skew: 1.2,
            keys_per_org: 30,
            read_ratio: 0.6,
            primary_read_ratio: 0.25,
            transaction_ratio: 0.5,
        },
        faults: vec![
            fault(secs(5), FaultKind::Crash, 1, Some(secs(10))),
            fault(secs(1), FaultKind::Crash, 3, None),
            fault(secs(2), FaultKind::Restart, 3, None),
            fault(secs(20), FaultKind::Partition, 2, None),
            fault(ms(21_500), FaultKind::Heal, 2, None),
            fault(secs(3), FaultKind::DropConnections, 0, None),
            fault(
                secs(30),
                FaultKind::Latency { latency: ms(40) },
                1,
                Some(secs(2)),
            ),
            fault(secs(31), FaultKind::Lag { delay: secs(3) }, 2, None),
            fault(secs(40), FaultKind::PauseReplay, 1, None),
            fault(secs(41), FaultKind::ResumeReplay, 1, None),
            fault(secs(42), FaultKind::Slow { factor: 2.5 }, 0, Some(secs(1))),
        ],
        invariants: vec![
            Invariant::WritesOnlyPrimary,
            Invariant::FailoverWithin { max: ms(1500) },
            Invariant::ReplicaReadShare { min: 0.75 },
            Invariant::Latency {
                op: LatencyOp::Write,
                percentile: 99.9,
                max: ms(20),
            },
            Invariant::NoFailedQueries {
                max_error_rate: 0.01,
            },
            Invariant::MaxStaleness { max: secs(1) },
            Invariant::ReadYourWrites,
            Invariant::CapsRespected,
            Invariant::OrgRouting,
        ],
        explore: None,
    };
    assert_eq!(scenario, expected);
}

#[test]
fn fault_windows_follow_duration_undo_or_the_end_of_the_run() {
    let scenario = parse(FULL, "full.toml").expect("valid");
    let until: Vec<Option<Duration>> = scenario
        .faults
        .iter()
        .map(|fault| fault.until(&scenario.faults))
        .collect();
    assert_eq!(
        until,
        [
            Some(secs(15)),
            Some(secs(2)),
            None,
            Some(ms(21_500)),
            None,
            None,
            Some(secs(32)),
            None,
            Some(secs(41)),
            None,
            Some(secs(43)),
        ]
    );
}

#[test]
fn omitted_keys_take_their_defaults() {
    let scenario = parse(BASE, "t.toml").expect("valid");
    assert_eq!(scenario.description, "");
    assert_eq!(scenario.seed, 1);
    assert_eq!(scenario.duration, secs(10));
    assert_eq!(scenario.shards.len(), 1);
    assert_eq!(scenario.shards[0].name, "s1");
    assert_eq!(
        scenario.nodes,
        [
            node("p", 0, NodeRole::Primary, [1000, 5000, 1000]),
            node("r1", 0, NodeRole::Replica, [1000, 5000, 1000]),
            node("r2", 0, NodeRole::Replica, [1000, 5000, 1000]),
        ]
    );
    assert_eq!(scenario.router, RouterConfig::default());
    assert_eq!(scenario.workload, Workload::default());
    assert!(scenario.faults.is_empty());
    assert!(scenario.invariants.is_empty());
    let scenario = parse(
        &with("[[invariant]]\nkind = \"no_failed_queries\"\n"),
        "t.toml",
    )
    .expect("valid");
    assert_eq!(
        scenario.invariants,
        [Invariant::NoFailedQueries {
            max_error_rate: 0.0
        }]
    );
}

#[test]
fn one_node_override_leaves_the_other_keys_and_nodes_alone() {
    let text = with("[node.default]\nlink_latency = \"3ms\"\n\n[node.r2]\nquery_time = \"7ms\"\n");
    let scenario = parse(&text, "t.toml").expect("valid");
    assert_eq!(
        scenario.nodes[1],
        node("r1", 0, NodeRole::Replica, [1000, 5000, 3000])
    );
    assert_eq!(
        scenario.nodes[2],
        node("r2", 0, NodeRole::Replica, [7000, 5000, 3000])
    );
}

#[test]
fn every_scenario_file_parses_and_is_named_after_its_file() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut paths: Vec<_> = std::fs::read_dir(&directory)
        .expect("scenarios/ is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 16, "found only {paths:?}");
    for path in paths {
        let scenario = load(&path).unwrap_or_else(|error| panic!("{error}"));
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 name");
        assert_eq!(scenario.name, stem, "{}", path.display());
        assert!(
            !scenario.description.is_empty(),
            "{} has no description",
            path.display()
        );
    }
}

#[test]
fn the_reference_scenario_is_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/reference.toml");
    let scenario = load(&path).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(scenario.shards.len(), 1);
    assert_eq!(scenario.shards[0].replicas.len(), 3);
    assert_eq!(scenario.workload.clients, 1000);
    assert_eq!(scenario.workload.rate, Some(5000.0));
    assert_eq!(scenario.duration, secs(60));
    assert_eq!(scenario.workload.read_ratio, 0.8);
    assert!(
        scenario.nodes.iter().all(|n| n.query_time == ms(1)
            && n.replication_delay == ms(5)
            && n.link_latency == ms(1))
    );
    assert_eq!(scenario.router, RouterConfig::default());
    assert!(scenario.faults.is_empty());
}

#[test]
fn every_prefix_of_a_valid_file_is_answered_without_a_panic() {
    // Truncation produces unterminated strings, half tables and missing keys at every offset.
    let mut refused = 0;
    for end in (0..=FULL.len()).filter(|&end| FULL.is_char_boundary(end)) {
        match parse(&FULL[..end], "cut.toml") {
            Ok(scenario) => assert_eq!(scenario.name, "full-1"),
            Err(error) => {
                refused += 1;
                let line = error.to_string();
                assert!(line.starts_with("cut.toml"), "{line}");
                assert!(!line.contains('\n'), "{line}");
            }
        }
    }
    assert!(refused > FULL.len() / 2, "only {refused} prefixes refused");
}

#[test]
fn shard_weights_go_to_their_replicas_in_order() {
    let scenario = match parse(&with("weights = [3, 1]\n"), "t.toml") {
        Ok(scenario) => scenario,
        Err(error) => panic!("refused: {error}"),
    };
    let weights: Vec<(&str, u32)> = scenario
        .nodes
        .iter()
        .map(|node| (node.name.as_str(), node.weight))
        .collect();
    assert_eq!(weights, [("p", 1), ("r1", 3), ("r2", 1)]);
}
