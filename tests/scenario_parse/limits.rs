//! Values above the documented limits (`replisim::scenario::limits`) and router settings the
//! router would refuse are refused at their line and column; values at the limits are accepted.

use replisim::scenario::limits::{
    CLIENTS_MAX, DURATION_KEY_MAX, FILE_SIZE_MAX, KEYS_PER_ORG_MAX, NODES_MAX, ORGS_MAX, RATE_MAX,
    READ_RETRIES_MAX, REPLICAS_PER_SHARD_MAX, SLOW_FACTOR_MAX, USERS_MAX,
};
use replisim::scenario::{format_duration, parse};

use super::refused::assert_refused;
use super::{BASE, with};

/// One shard with `replicas` replicas and a workload over its orgs.
fn shard_with_replicas(replicas: usize) -> String {
    let names: Vec<String> = (0..replicas).map(|i| format!("\"r{i}\"")).collect();
    format!(
        "name = \"t\"\nduration = \"10s\"\n\n[[shard]]\norgs = [0, 1000]\nprimary = \"p\"\nreplicas = [{}]\n",
        names.join(", ")
    )
}

#[test]
fn read_retries_above_the_routers_limit_are_refused() {
    let over = READ_RETRIES_MAX + 1;
    assert_refused(
        &with(&format!("[router]\nread_retries = {over}\n")),
        &format!("t.toml:9:16: router.read_retries = {over} is above the limit of 64"),
    );
    let at = with(&format!("[router]\nread_retries = {READ_RETRIES_MAX}\n"));
    assert!(parse(&at, "t.toml").is_ok());
}

#[test]
fn a_shard_above_the_replica_limit_is_refused_at_the_first_replica_too_many() {
    let text = shard_with_replicas(70);
    let error = assert_refused(&text, "t.toml:7:");
    assert!(
        error
            .message()
            .contains("70 replicas is above the limit of 63 per shard"),
        "{error}"
    );
    assert!(parse(&shard_with_replicas(REPLICAS_PER_SHARD_MAX), "t.toml").is_ok());
}

#[test]
fn more_nodes_than_the_limit_are_refused() {
    let mut text = "name = \"t\"\nduration = \"10s\"\n".to_owned();
    // Shards of 1 + 63 nodes until one node more than the limit.
    let shards = NODES_MAX / (REPLICAS_PER_SHARD_MAX + 1) + 1;
    for shard in 0..shards {
        let replicas: Vec<String> = (0..REPLICAS_PER_SHARD_MAX)
            .map(|i| format!("\"r{shard}-{i}\""))
            .collect();
        text.push_str(&format!(
            "[[shard]]\norgs = [{}, {}]\nprimary = \"p{shard}\"\nreplicas = [{}]\n",
            shard * 10,
            shard * 10 + 10,
            replicas.join(", ")
        ));
    }
    text.push_str("[workload]\norgs = 10\n");
    let error = assert_refused(&text, "t.toml:");
    assert!(
        error.message().contains("than the limit of 256 nodes"),
        "{error}"
    );
}

#[test]
fn workload_sizes_above_their_limits_are_refused() {
    let cases = [
        (
            "clients = 4294967295",
            "t.toml:9:11: workload.clients = 4294967295 is above the limit of 100000",
        ),
        (
            "users = 18446744073709551615",
            "t.toml:9:9: workload.users = 18446744073709551615 is above the limit of 1000000000",
        ),
        (
            "orgs = 1000000001",
            "t.toml:9:8: workload.orgs = 1000000001 is above the limit of 1000000000",
        ),
        (
            "keys_per_org = 1000000001",
            "t.toml:9:16: workload.keys_per_org = 1000000001 is above the limit of 1000000000",
        ),
        (
            "rate = 1e300",
            "t.toml:9:8: workload.rate = 1e300 is above the limit of 1e6 arrivals per second",
        ),
        (
            "rate = 1000000.5",
            "t.toml:9:8: workload.rate = 1.0000005e6 is above",
        ),
    ];
    for (line, expected) in cases {
        assert_refused(&with(&format!("[workload]\n{line}\n")), expected);
    }
    let at = format!(
        "[workload]\nclients = {CLIENTS_MAX}\nusers = {USERS_MAX}\nkeys_per_org = {KEYS_PER_ORG_MAX}\nrate = {RATE_MAX}\n"
    );
    assert!(parse(&with(&at), "t.toml").is_ok());
    // The shard must hold every org the workload draws.
    let orgs = BASE.replace("[0, 1000]", &format!("[0, {ORGS_MAX}]"));
    assert!(parse(&format!("{orgs}[workload]\norgs = {ORGS_MAX}\n"), "t.toml").is_ok());
}

#[test]
fn a_run_longer_than_a_day_is_refused() {
    let text = BASE.replace("duration = \"10s\"", "duration = \"5000000h\"");
    assert_refused(
        &text,
        "t.toml:2:12: duration \"5000000h\" is above the limit of 24h of simulated time",
    );
    let text = BASE.replace("duration = \"10s\"", "duration = \"24h\"");
    assert!(parse(&text, "t.toml").is_ok());
}

#[test]
fn every_other_duration_key_is_limited_to_a_day() {
    let over = "24.001h";
    let fault = |kind: &str, extra: &str| {
        format!("[[fault]]\nat = \"1s\"\nkind = \"{kind}\"\ntarget = \"r1\"\n{extra}\n")
    };
    let cases = [
        (
            format!("[router]\nquery_timeout = \"{over}\"\n"),
            "router.query_timeout",
        ),
        (
            format!("[router]\nconnect_timeout = \"{over}\"\n"),
            "router.connect_timeout",
        ),
        (
            format!("[router]\nhealth_interval = \"{over}\"\n"),
            "router.health_interval",
        ),
        (
            format!("[router]\nmax_lifetime = \"{over}\"\n"),
            "router.max_lifetime",
        ),
        (
            format!("[node.default]\nquery_time = \"{over}\"\n"),
            "node.default.query_time",
        ),
        (
            format!("[node.r1]\nlink_latency = \"{over}\"\n"),
            "node.r1.link_latency",
        ),
        (
            format!("[workload]\nthink_time = \"{over}\"\n"),
            "workload.think_time",
        ),
        (
            fault("crash", &format!("duration = \"{over}\"")),
            "fault 1: duration",
        ),
        (
            fault("latency", &format!("latency = \"{over}\"")),
            "fault 1: latency",
        ),
        (
            fault("lag", &format!("delay = \"{over}\"")),
            "fault 1: delay",
        ),
        (
            format!("[[invariant]]\nkind = \"failover_within\"\nmax = \"{over}\"\n"),
            "invariant 1: max",
        ),
    ];
    for (extra, what) in cases {
        let error = assert_refused(&with(&extra), "t.toml:");
        let expected = format!("{what} \"{over}\" is above the limit of 24h");
        assert_eq!(error.message(), expected, "{error}");
        assert!(error.position().is_some(), "{error}");
    }
    let at = format_duration(DURATION_KEY_MAX);
    assert!(
        parse(
            &with(&format!("[router]\nquery_timeout = \"{at}\"\n")),
            "t.toml"
        )
        .is_ok()
    );
}

#[test]
fn a_slow_factor_above_the_limit_is_refused() {
    let fault = |factor: &str| {
        with(&format!(
            "[[fault]]\nat = \"1s\"\nkind = \"slow\"\ntarget = \"r1\"\nfactor = {factor}\n"
        ))
    };
    assert_refused(
        &fault("1e300"),
        "t.toml:12:10: fault 1: factor = 1000000000000000",
    );
    assert!(parse(&fault(&format!("{SLOW_FACTOR_MAX:.1}")), "t.toml").is_ok());
}

#[test]
fn a_file_above_the_size_limit_is_refused_where_it_crosses_it() {
    let padding = "# padding\n".repeat(usize::try_from(FILE_SIZE_MAX).unwrap_or(0) / 10 + 1);
    let error = assert_refused(&with(&padding), "t.toml:");
    assert!(
        error.message().contains("past the limit of 1048576 bytes"),
        "{error}"
    );
    assert!(error.position().is_some(), "{error}");
}

#[test]
fn router_settings_the_router_refuses_are_refused_at_their_key() {
    assert_refused(
        &with("[router]\nmax_connections_per_node = 4\nmin_connections_per_node = 5\n"),
        "t.toml:10:28: router.min_connections_per_node (5) must not exceed max_connections_per_node (4)",
    );
    // Left unset, the idle minimum follows a lowered maximum and is valid.
    let lowered = parse(&with("[router]\nmax_connections_per_node = 4\n"), "t.toml");
    assert_eq!(
        lowered.map(|s| s.router.min_connections_per_node).ok(),
        Some(4)
    );
}
