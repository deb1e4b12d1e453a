//! Bad input of every kind is refused with a one-line message at the right line and column.

use std::path::Path;

use replisim::scenario::{ScenarioError, ScenarioErrorKind, load, parse};

use super::{BASE, with};

pub(crate) fn error(text: &str) -> ScenarioError {
    match parse(text, "t.toml") {
        Ok(scenario) => panic!("accepted {text}\nas {scenario:#?}"),
        Err(error) => {
            let line = error.to_string();
            assert!(!line.contains('\n'), "not one line: {line}");
            error
        }
    }
}

/// Asserts the error's full first part: `t.toml:line:col: <message start>`.
pub(crate) fn assert_refused(text: &str, expected_start: &str) -> ScenarioError {
    let error = error(text);
    assert!(
        error.to_string().starts_with(expected_start),
        "expected `{expected_start}...`\n     got `{error}`"
    );
    error
}

#[test]
fn invalid_toml_is_refused_with_its_position() {
    let error = assert_refused("name = \"t\"\nduration = \"10s\n", "t.toml:2:");
    assert_eq!(error.kind(), ScenarioErrorKind::Syntax);
    assert_refused("name = \"t\"\nname = \"u\"\n", "t.toml:2:1: duplicate key");
    assert_refused("name = \"t\"\nseed = \"one\"\n", "t.toml:2:8: invalid type");
}

#[test]
fn unknown_keys_are_refused_where_they_are() {
    let error = assert_refused(
        &format!("colour = \"red\"\n{BASE}"),
        "t.toml:1:1: unknown field `colour`",
    );
    assert_eq!(error.kind(), ScenarioErrorKind::Syntax);
    assert_refused(
        &with("[router]\nhealth_interval = \"1s\"\nbalanse = \"random\"\n"),
        "t.toml:10:1: unknown field `balanse`",
    );
    assert_refused(
        &with("[[fault]]\nat = \"1s\"\nkind = \"crash\"\ntarget = \"r1\"\nseverity = 3\n"),
        "t.toml:12:1: unknown field `severity`",
    );
    assert_refused(
        &with("[workload]\nthreads = 3\n"),
        "t.toml:9:1: unknown field `threads`",
    );
    assert_refused(
        &with("[node.r1]\nspeed = 3\n"),
        "t.toml:9:1: unknown field `speed`",
    );
    assert_refused(
        &with("[node.r1]\nweight = 1\n"),
        "t.toml:9:1: unknown field `weight`",
    );
    assert_refused(
        &with("[[invariant]]\nkind = \"org_routing\"\nstrict = true\n"),
        "t.toml:10:1: unknown field `strict`",
    );
}

#[test]
fn required_keys_are_refused_when_missing() {
    let error = assert_refused("duration = \"1s\"\n", "t.toml: missing required key `name`");
    assert_eq!(error.position(), None);
    assert_refused("name = \"t\"\n", "t.toml: missing required key `duration`");
    assert_refused(
        "name = \"t\"\nduration = \"1s\"\n",
        "t.toml: at least one [[shard]] is required",
    );
    assert_refused(
        "name = \"t\"\nduration = \"1s\"\n[[shard]]\nprimary = \"p\"\n",
        "t.toml:3:1: shard 1: missing required key `orgs`",
    );
    assert_refused(
        "name = \"t\"\nduration = \"1s\"\n[[shard]]\norgs = [0, 1000]\n",
        "t.toml:3:1: shard 1: missing required key `primary`",
    );
    assert_refused(
        &with("[[fault]]\nkind = \"crash\"\ntarget = \"r1\"\n"),
        "t.toml:8:1: fault 1: missing required key `at`",
    );
    assert_refused(
        &with("[[fault]]\nat = \"1s\"\ntarget = \"r1\"\n"),
        "t.toml:8:1: fault 1: missing required key `kind`",
    );
    assert_refused(
        &with("[[fault]]\nat = \"1s\"\nkind = \"crash\"\n"),
        "t.toml:8:1: fault 1: missing required key `target`",
    );
    assert_refused(
        &with("[[fault]]\nat = \"1s\"\nkind = \"latency\"\ntarget = \"r1\"\n"),
        "t.toml:8:1: fault 1: kind \"latency\" needs key `latency`",
    );
    assert_refused(
        &with("[[invariant]]\nmax = \"1s\"\n"),
        "t.toml:8:1: invariant 1: missing required key `kind`",
    );
    for (kind, key) in [
        ("failover_within", "max"),
        ("replica_read_share", "min"),
        ("max_staleness", "max"),
    ] {
        assert_refused(
            &with(&format!("[[invariant]]\nkind = \"{kind}\"\n")),
            &format!("t.toml:8:1: invariant 1: kind \"{kind}\" needs key `{key}`"),
        );
    }
    let latency = "[[invariant]]\nkind = \"latency\"\n";
    assert_refused(
        &with(&format!("{latency}percentile = 99\nmax = \"1s\"\n")),
        "t.toml:8:1: invariant 1: kind \"latency\" needs key `op`",
    );
    assert_refused(
        &with(&format!("{latency}op = \"read\"\nmax = \"1s\"\n")),
        "t.toml:8:1: invariant 1: kind \"latency\" needs key `percentile`",
    );
    assert_refused(
        &with(&format!("{latency}op = \"read\"\npercentile = 99\n")),
        "t.toml:8:1: invariant 1: kind \"latency\" needs key `max`",
    );
}

#[test]
fn names_and_durations_must_be_well_formed() {
    let error = assert_refused(
        "name = \"Replica Crash\"\n",
        "t.toml:1:8: name \"Replica Crash\" must match [a-z0-9-]+",
    );
    assert_eq!(error.kind(), ScenarioErrorKind::Invalid);
    assert_refused(
        "name = \"t\"\nduration = \"10 s\"\n",
        "t.toml:2:12: duration: \"10 s\" is not a duration",
    );
    assert_refused(
        "name = \"t\"\nduration = \"0s\"\n",
        "t.toml:2:12: duration must be above zero",
    );
    assert_refused(
        &with("[node.default]\nquery_time = \"fast\"\n"),
        "t.toml:9:14: node.default.query_time: \"fast\" is not a duration",
    );
    assert_refused(
        &with("weights = [1, 0]\n"),
        "t.toml:8:15: shard 1: weights: each must be a whole number from 1 to 4294967295, got 0",
    );
    assert_refused(
        &with("weights = [-2, 1]\n"),
        "t.toml:8:12: shard 1: weights: each must be a whole number from 1 to 4294967295, got -2",
    );
    assert_refused(
        &with("weights = [3]\n"),
        "t.toml:8:11: shard 1: weights lists 1 values for 2 replicas",
    );
    assert_refused(
        &with("weights = [1.5, 1]\n"),
        "t.toml:8:12: invalid type: floating point",
    );
    assert_refused(
        &with("[workload]\nthink_time = \"5\"\n"),
        "t.toml:9:14: workload.think_time: \"5\" is not a duration",
    );
}

#[test]
fn shard_ranges_must_be_well_formed_and_disjoint() {
    let shard = |orgs: &str| {
        format!("name = \"t\"\nduration = \"1s\"\n[[shard]]\norgs = {orgs}\nprimary = \"p\"\n")
    };
    assert_refused(
        &shard("[5, 5]"),
        "t.toml:4:8: shard 1: orgs [5, 5) is empty",
    );
    assert_refused(
        &shard("[9, 2]"),
        "t.toml:4:8: shard 1: orgs [9, 2) is empty",
    );
    assert_refused(
        &shard("[-1, 2]"),
        "t.toml:4:8: shard 1: orgs [-1, 2): org ids start at 0",
    );
    assert_refused(
        &shard("[0, 1, 2]"),
        "t.toml:4:8: shard 1: orgs must be [start, end] (two integers, end exclusive), got 3 values",
    );
    assert_refused(
        &with("[[shard]]\norgs = [999, 2000]\nprimary = \"p2\"\n"),
        "t.toml:9:8: shard 2: orgs [999, 2000) overlap shard 1's [0, 1000)",
    );
    // The later shard in the file is blamed even when its range starts first.
    assert_refused(
        &with("[[shard]]\norgs = [0, 10]\nprimary = \"p2\"\n"),
        "t.toml:9:8: shard 2: orgs [0, 10) overlap shard 1's [0, 1000)",
    );
    let adjacent = with("[[shard]]\norgs = [1000, 2000]\nprimary = \"p2\"\n");
    let scenario = parse(&adjacent, "t.toml").expect("adjacent ranges are valid");
    assert_eq!(scenario.shard_of_org(999), Some(0));
    assert_eq!(scenario.shard_of_org(1000), Some(1));
    assert_refused(
        &with("[[shard]]\nname = \"s1\"\norgs = [1000, 2000]\nprimary = \"p2\"\n"),
        "t.toml:9:8: shard 2: shard name \"s1\" is used twice",
    );
}

#[test]
fn node_names_must_be_unique_non_empty_and_known() {
    assert_refused(
        &with("[[shard]]\norgs = [1000, 2000]\nprimary = \"p2\"\nreplicas = [\"r3\", \"r1\"]\n"),
        "t.toml:11:19: shard 2: node \"r1\" is named twice (already in shard 1)",
    );
    assert_refused(
        "name = \"t\"\nduration = \"1s\"\n[[shard]]\norgs = [0, 1000]\nprimary = \"p\"\nreplicas = [\"p\"]\n",
        "t.toml:6:13: shard 1: node \"p\" is named twice",
    );
    assert_refused(
        "name = \"t\"\nduration = \"1s\"\n[[shard]]\norgs = [0, 1000]\nprimary = \"\"\n",
        "t.toml:5:11: shard 1: node name is empty",
    );
    assert_refused(
        "name = \"t\"\nduration = \"1s\"\n[[shard]]\norgs = [0, 1000]\nprimary = \"default\"\n",
        "t.toml:5:11: shard 1: node name \"default\" is reserved",
    );
    assert_refused(
        "name = \"t\"\nduration = \"1s\"\n[[shard]]\norgs = [0, 1000]\nprimary = \"a b\"\n",
        "t.toml:5:11: shard 1: node name \"a b\" may only use",
    );
    assert_refused(
        &with("[node.replica-9]\nquery_time = \"1ms\"\n"),
        "t.toml:8:7: [node.replica-9]: \"replica-9\" is not a node (nodes: p, r1, r2)",
    );
}

#[test]
fn workload_values_must_be_in_range() {
    let cases = [
        (
            "clients = 0",
            "t.toml:9:11: workload.clients must be at least 1",
        ),
        ("users = 0", "t.toml:9:9: workload.users must be at least 1"),
        ("orgs = 0", "t.toml:9:8: workload.orgs must be at least 1"),
        (
            "keys_per_org = 0",
            "t.toml:9:16: workload.keys_per_org must be at least 1",
        ),
        ("rate = 0", "t.toml:9:8: workload.rate must be above zero"),
        (
            "rate = -5.0",
            "t.toml:9:8: workload.rate must be above zero",
        ),
        ("rate = nan", "t.toml:9:8: workload.rate must be above zero"),
        (
            "org_skew = -0.5",
            "t.toml:9:12: workload.org_skew must be 0",
        ),
        (
            "read_ratio = 1.5",
            "t.toml:9:14: workload.read_ratio must be in [0, 1], got 1.5",
        ),
        (
            "primary_read_ratio = -0.1",
            "t.toml:9:22: workload.primary_read_ratio must be in [0, 1]",
        ),
        (
            "transaction_ratio = 2.0",
            "t.toml:9:21: workload.transaction_ratio must be in [0, 1], got 2",
        ),
        ("clients = -1", "t.toml:9:11: invalid value: integer `-1`"),
    ];
    for (line, expected) in cases {
        assert_refused(&with(&format!("[workload]\n{line}\n")), expected);
    }
}

#[test]
fn every_org_id_of_the_workload_must_be_in_a_shard() {
    assert_refused(
        &with("[workload]\norgs = 1001\n"),
        "t.toml:9:8: workload.orgs = 1001, but org ids [1000, 1001) are in no shard (shards: [0, 1000))",
    );
    let gap = "name = \"t\"\nduration = \"1s\"\n[[shard]]\norgs = [0, 10]\nprimary = \"p\"\n\
               [[shard]]\norgs = [20, 1000]\nprimary = \"q\"\n";
    // The default of 1000 orgs has no position to point at.
    assert_refused(
        gap,
        "t.toml: workload.orgs = 1000 (the default), but org ids [10, 20) are in no shard",
    );
    assert_refused(
        "name = \"t\"\nduration = \"1s\"\n[[shard]]\norgs = [5, 1000]\nprimary = \"p\"\n",
        "t.toml: workload.orgs = 1000 (the default), but org ids [0, 5) are in no shard",
    );
    let fewer = format!("{gap}[workload]\norgs = 10\n");
    assert!(
        parse(&fewer, "t.toml").is_ok(),
        "orgs [0, 10) are all in shard 1"
    );
}

#[test]
fn router_values_must_be_in_range() {
    let cases = [
        (
            "failure_threshold = 0",
            "t.toml:9:21: router.failure_threshold must be at least 1",
        ),
        (
            "recovery_threshold = 0",
            "t.toml:9:22: router.recovery_threshold must be at least 1",
        ),
        (
            "max_connections_per_node = 0",
            "t.toml:9:28: router.max_connections_per_node must be at least 1",
        ),
        (
            "health_interval = \"0ms\"",
            "t.toml:9:19: router.health_interval must be above zero",
        ),
        (
            "health_timeout = \"0s\"",
            "t.toml:9:18: router.health_timeout must be above zero",
        ),
        (
            "connect_timeout = \"0s\"",
            "t.toml:9:19: router.connect_timeout must be above zero",
        ),
        (
            "query_timeout = \"0m\"",
            "t.toml:9:17: router.query_timeout must be above zero",
        ),
        (
            "query_timeout = \"soon\"",
            "t.toml:9:17: router.query_timeout: \"soon\" is not a duration",
        ),
        (
            "balance = \"fastest\"",
            "t.toml:9:11: router.balance: unknown policy \"fastest\"",
        ),
        (
            "use_read_replicas = \"yes\"",
            "t.toml:9:21: invalid type: string",
        ),
        (
            "ejection_time = \"1 s\"",
            "t.toml:9:17: router.ejection_time: \"1 s\"",
        ),
        (
            "slow_request_ejection = \"-1s\"",
            "t.toml:9:25: router.slow_request_ejection: \"-1s\"",
        ),
        (
            "ejection_time_max = \"500ms\"",
            "t.toml:9:21: router.ejection_time_max (500ms) must not be below router.ejection_time (1s)",
        ),
        (
            "ejection_time = \"1m\"",
            "t.toml:9:17: router.ejection_time_max (30s) must not be below router.ejection_time (60s)",
        ),
    ];
    for (line, expected) in cases {
        assert_refused(&with(&format!("[router]\n{line}\n")), expected);
    }
    // Zero means "no cap" for users and orgs, and "no retry" for reads.
    let text = with(
        "[router]\nmax_connections_per_user = 0\nmax_connections_per_org = 0\nread_retries = 0\n",
    );
    assert_eq!(
        parse(&text, "t.toml").expect("valid").router.read_retries,
        0
    );
    // Zero switches passive ejection, or only its slow-request part, off.
    let text = with("[router]\nejection_time = \"0s\"\nslow_request_ejection = \"0s\"\n");
    let router = parse(&text, "t.toml").expect("valid").router;
    assert!(router.ejection_time.is_zero() && router.slow_request_ejection.is_zero());
}

#[test]
fn invariant_keys_must_belong_and_be_in_range() {
    let latency = |op: &str, percentile: &str, max: &str| {
        with(&format!(
            "[[invariant]]\nkind = \"latency\"\nop = {op}\npercentile = {percentile}\nmax = {max}\n"
        ))
    };
    assert_refused(
        &latency("\"reads\"", "99", "\"1s\""),
        "t.toml:10:6: invariant 1: op must be \"read\", \"write\" or \"all\", got \"reads\"",
    );
    for percentile in ["0", "-1", "100.5"] {
        assert_refused(
            &latency("\"all\"", percentile, "\"1s\""),
            "t.toml:11:14: invariant 1: percentile must be in (0, 100]",
        );
    }
    assert_refused(
        &latency("\"all\"", "100", "\"0ms\""),
        "t.toml:12:7: invariant 1: max must be above zero",
    );
    let invariant =
        |kind: &str, line: &str| with(&format!("[[invariant]]\nkind = \"{kind}\"\n{line}\n"));
    assert_refused(
        &invariant("replica_read_share", "min = 1.5"),
        "t.toml:10:7: invariant 1: min must be in [0, 1], got 1.5",
    );
    assert_refused(
        &invariant("no_failed_queries", "max_error_rate = -0.1"),
        "t.toml:10:18: invariant 1: max_error_rate must be in [0, 1]",
    );
    assert_refused(
        &invariant("failover_within", "max = \"0s\""),
        "t.toml:10:7: invariant 1: max must be above zero",
    );
    assert_refused(
        &invariant("max_staleness", "max = \"2\""),
        "t.toml:10:7: invariant 1: max: \"2\" is not a duration",
    );
    assert_refused(
        &invariant("failover_within", "min = 0.5\nmax = \"1s\""),
        "t.toml:10:1: invariant 1: key `min` does not belong to kind \"failover_within\" (failover_within takes: max)",
    );
    assert_refused(
        &invariant("org_routing", "max = \"1s\""),
        "t.toml:10:1: invariant 1: key `max` does not belong to kind \"org_routing\" (org_routing takes: no other keys)",
    );
    assert_refused(
        &invariant("fastest_reads", ""),
        "t.toml:9:8: invariant 1: unknown kind \"fastest_reads\"",
    );
}

#[test]
fn every_schema_feature_is_accepted_and_its_bad_values_refused() {
    for extra in [
        "[router]\nbalance = \"p2c_ewma\"\n",
        "[router]\nmax_replica_lag = \"1s\"\n",
        "[router]\nread_your_writes = true\n",
        "[[fault]]\nat = \"1s\"\nkind = \"promote\"\ntarget = \"r1\"\n",
    ] {
        if let Err(error) = parse(&with(extra), "t.toml") {
            panic!("refused {extra:?}: {error}");
        }
    }
    assert_refused(
        &with("[router]\nmax_replica_lag = \"0s\"\n"),
        "t.toml:9:19: router.max_replica_lag must be above zero",
    );
}

#[test]
fn an_unreadable_file_is_named() {
    let error = load(Path::new("scenarios/no-such-file.toml")).expect_err("missing file");
    assert_eq!(error.kind(), ScenarioErrorKind::Unreadable);
    assert!(
        error
            .to_string()
            .starts_with("scenarios/no-such-file.toml: cannot read the scenario file: "),
        "{error}"
    );
}
