//! Every shipped scenario over eight seeds, each expected to pass with every fault observed.

use super::*;

#[test]
fn round_robin_spreads_reads_evenly_over_replicas() {
    for r in passes_over_seeds(&shorter(
        lighter(load("round-robin"), 20),
        Duration::from_secs(10),
    )) {
        let replicas: Vec<u64> = r
            .nodes
            .iter()
            .filter(|n| n.role == "replica")
            .map(|n| n.reads)
            .collect();
        let (lo, hi) = (
            replicas.iter().min().copied().unwrap_or(0),
            replicas.iter().max().copied().unwrap_or(0),
        );
        // Round robin over three healthy replicas: the busiest serves at most 1% more than the idlest.
        assert!(
            lo > 0 && (hi - lo) * 100 <= hi,
            "uneven spread {replicas:?}:\n{}",
            describe(&r)
        );
    }
}

#[test]
fn health_checks_detect_a_crashed_replica() {
    let reports = passes_over_seeds(&lighter(load("health-check-detection"), 20));
    let worst = reports
        .iter()
        .flat_map(|r| r.failovers.iter().map(|f| f.failover_ms))
        .max();
    println!(
        "health-check-detection: worst failover {worst:?} ms over {} seeds",
        reports.len()
    );
}

#[test]
fn reads_fall_back_to_the_primary_when_every_replica_dies() {
    for r in passes_over_seeds(&lighter(load("all-replicas-fail"), 20)) {
        let primary = r
            .nodes
            .iter()
            .find(|n| n.role == "primary")
            .map_or(0, |n| n.reads);
        assert!(primary > 0, "the primary served no read:\n{}", describe(&r));
    }
}

#[test]
fn org_ranges_route_to_their_shards() {
    passes_over_seeds(&shorter(
        lighter(load("org-range-routing"), 20),
        Duration::from_secs(10),
    ));
}

#[test]
fn mixed_load_reads_on_replicas_writes_on_the_primary() {
    passes_over_seeds(&shorter(
        lighter(load("mixed-load"), 30),
        Duration::from_secs(10),
    ));
}

#[test]
fn a_thousand_concurrent_reads() {
    passes_over_seeds(&shorter(
        load("concurrent-reads-1000"),
        Duration::from_secs(3),
    ));
}

#[test]
fn a_hundred_concurrent_writes() {
    passes_over_seeds(&shorter(
        load("concurrent-writes-100"),
        Duration::from_secs(5),
    ));
}

#[test]
fn a_replica_failure_under_mixed_load() {
    passes_over_seeds(&lighter(load("replica-failure-under-load"), 30));
}

#[test]
fn a_hundred_thousand_orgs_with_skew() {
    passes_over_seeds(&shorter(
        lighter(load("orgs-100k"), 30),
        Duration::from_secs(10),
    ));
}

#[test]
fn the_reference_load_shortened() {
    passes_over_seeds(&shorter(load("reference"), Duration::from_secs(3)));
}

#[test]
fn a_partitioned_replica() {
    passes_over_seeds(&lighter(load("partition-replica"), 20));
}

#[test]
fn dropped_connections() {
    passes_over_seeds(&lighter(load("drop-connections"), 20));
}

#[test]
fn a_latency_spike() {
    passes_over_seeds(&lighter(load("latency-spike"), 20));
}

#[test]
fn a_lagging_replica() {
    passes_over_seeds(&lighter(load("replica-lag"), 20));
}

#[test]
fn a_paused_replay() {
    passes_over_seeds(&lighter(load("pause-replay"), 20));
}

#[test]
fn a_slow_replica() {
    passes_over_seeds(&lighter(load("slow-replica"), 20));
}

#[test]
fn connection_caps_under_a_burst() {
    passes_over_seeds(&shorter(load("connection-caps"), Duration::from_secs(5)));
}

/// The router learns of a replica's crash from the connections the server dropped, and checks it at
/// once, even when no read is running to stumble on it (every client waits on a crashed primary).
#[test]
fn a_replica_crash_no_read_sees_is_found_by_its_dropped_connections() {
    for r in passes_over_seeds(&load("replica-crash-while-writes-wait")) {
        let replica_2 = r.failovers.iter().find(|f| f.node == "replica-2");
        assert!(
            replica_2.is_some_and(|f| f.failover_ms <= 1000),
            "{}",
            describe(&r)
        );
    }
}

/// What `replisim explore` drew and the fault evidence, `caps_respected` or `failover_within` once
/// misjudged: each must pass, with every fault seen to take effect, over the suite's seeds and on
/// the seed it was caught with (the file's own).
#[test]
fn what_explore_caught_in_the_evidence_passes() {
    for name in [
        "caps-with-a-connection-closed-as-it-opened",
        "latency-beyond-query-timeout",
        "latency-with-a-health-check-still-out",
        "partition-after-pipelined-probe",
        "slow-seen-only-by-health-checks",
        "slow-shorter-than-its-statements",
        "shard-out-by-latency-mid-read",
        "whole-shard-out-then-back",
    ] {
        let scenario = load(name);
        passes_over_seeds(&scenario);
        let caught = simulate(&scenario, scenario.seed, &RunOptions::default(), "");
        assert!(
            caught.passed && caught.faults.iter().all(|f| f.took_effect),
            "{name} on its own seed {}:\n{}",
            scenario.seed,
            describe(&caught)
        );
    }
}
