//! `Scenario::to_toml` round-trips: the written text parses back to an equal `Scenario`.

use std::path::Path;
use std::time::Duration;

use replisim::router::Balance;
use replisim::scenario::{FaultKind, Scenario, load, parse};

use super::{FULL, with};

/// Writes `scenario`, parses the text back and compares; returns the text.
fn round_trip(scenario: &Scenario, what: &str) -> String {
    let text = match scenario.to_toml() {
        Ok(text) => text,
        Err(e) => panic!("{what}: {e}"),
    };
    match parse(&text, "written.toml") {
        Ok(back) => assert_eq!(&back, scenario, "{what} changed through:\n{text}"),
        Err(e) => panic!("{what}: the written text is refused: {e}\n{text}"),
    }
    text
}

#[test]
fn every_shipped_scenario_round_trips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    paths.sort();
    assert!(paths.len() >= 10, "only {} scenarios", paths.len());
    for path in paths {
        let scenario = load(&path).unwrap_or_else(|e| panic!("{e}"));
        round_trip(&scenario, &path.display().to_string());
    }
}

#[test]
fn every_key_and_extension_round_trips() {
    let scenario = parse(FULL, "full.toml").unwrap_or_else(|e| panic!("{e}"));
    round_trip(&scenario, "FULL");
    let extensions = with(
        r#"
[[shard]]
name = "w"
orgs = [1000, 2000]
primary = "p.2"
replicas = ["r-3", "r_4"]
weights = [2, 5]

[node."r-3"]
link_latency = "2h"
query_time = "0.25ms"

[router]
balance = "p2c_ewma"
balance_seed = 9
max_replica_lag = "750ms"
read_your_writes = true
max_connections_per_node = 8
min_connections_per_node = 2
max_idle_time = "3m"
max_lifetime = "90m"
read_retries = 0
ejection_time = "0s"
ejection_time_max = "0s"
slow_request_ejection = "0s"
replica_count = 2
follow_promotion = false
max_ejection_percent = 50
outlier_ejection = false
cancel_abandoned = false

[workload]
clients = 7
rate = 1234.5
users = 3
orgs = 2000
org_skew = 1.1
keys_per_org = 9
read_ratio = 0.25
primary_read_ratio = 0.125
transaction_ratio = 0.375

[[fault]]
at = "1s"
kind = "slow"
target = "r-3"
factor = 2.5
duration = "2s"

[[fault]]
at = "2s"
kind = "latency"
target = "p.2"
latency = "30ms"

[[invariant]]
kind = "latency"
op = "all"
percentile = 99.9
max = "1s"

[[invariant]]
kind = "no_failed_queries"
max_error_rate = 0.01
"#,
    );
    let scenario = parse(&extensions, "ext.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scenario.router.balance, Balance::P2cEwma);
    assert!(!scenario.router.follow_promotion);
    assert_eq!(scenario.router.min_connections_per_node, 2);
    let text = round_trip(&scenario, "extensions");
    assert!(
        text.contains("[node.\"r-3\"]\nquery_time = \"0.25ms\"\nlink_latency = \"120m\""),
        "{text}"
    );
}

#[test]
fn a_variant_built_in_code_round_trips_with_its_edits() {
    let mut scenario = parse(FULL, "full.toml").unwrap_or_else(|e| panic!("{e}"));
    scenario.seed = 77;
    scenario.workload.clients = 3;
    scenario.duration = Duration::from_millis(59_500);
    scenario.description = "a \"lighter\" variant\nof full\\1".to_owned();
    scenario
        .faults
        .retain(|f| !matches!(f.kind, FaultKind::Promote));
    scenario.router.max_connections_per_node = 4;
    scenario.router.min_connections_per_node = 4;
    let text = round_trip(&scenario, "variant");
    assert!(
        !text.contains("min_connections_per_node"),
        "a derived default is left out:\n{text}"
    );
}

/// The parser reads seeds up to `u64::MAX`; the writer first refused those above `i64::MAX`, which
/// TOML itself promises (found by `tests/scenario_fuzz.rs`).
#[test]
fn a_seed_above_i64_round_trips() {
    let mut scenario = parse(FULL, "full.toml").unwrap_or_else(|e| panic!("{e}"));
    scenario.seed = u64::MAX;
    scenario.router.balance_seed = Some(u64::MAX - 1);
    round_trip(&scenario, "largest seeds");
}

#[test]
fn an_explore_table_with_every_key_round_trips() {
    let text = with(
        r#"
[explore]
faults = [0, 5]
kinds = ["crash", "partition", "drop_connections", "latency", "slow"]
targets = ["p.2", "r-3"]
at = ["1s", "9s"]
fault_duration = ["0.5s", "10s"]
latency = ["20ms", "200ms"]
delay = ["0ms", "2s"]
factor = [2, 12.5]
query_time = ["0.25ms", "50ms"]
replication_delay = ["1ms", "1s"]
link_latency = ["1ms", "1ms"]
clients = [1, 200]
rate = [10, 2000.5]
read_ratio = [0.5, 0.95]
org_skew = [0, 1.5]
"#,
    );
    let extra_shard = r#"
[[shard]]
name = "w"
orgs = [1000, 2000]
primary = "p.2"
replicas = ["r-3"]
"#;
    let scenario =
        parse(&format!("{text}{extra_shard}"), "explore.toml").unwrap_or_else(|e| panic!("{e}"));
    let explore = scenario.explore.clone().expect("an [explore] table");
    assert_eq!(explore.faults, Some((0, 5)));
    assert_eq!(explore.factor, Some((2.0, 12.5)));
    assert_eq!(explore.targets.as_ref().map(Vec::len), Some(2));
    let written = round_trip(&scenario, "explore");
    assert!(
        written.contains("\n[explore]\nfaults = [0, 5]\n"),
        "{written}"
    );
    // An empty table stays a table.
    let empty = parse(&with("\n[explore]\n"), "empty.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(empty.explore, Some(Default::default()));
    round_trip(&empty, "empty explore");
}
