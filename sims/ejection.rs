//! Passive ejection: one replica fails under the router's default settings, and reads leave it at
//! once; with passive ejection or slow-request ejection off, the same runs fail.

use super::*;

/// Runs a passive-ejection scenario over every seed, lightened to 10 clients: each must pass with
/// every fault observed, and `name` must serve reads again from `back_by` on. Prints and returns the
/// worst failover.
fn ejection_over_seeds(file: &str, name: &str, back_by: Duration) -> u64 {
    let s = lighter(load(file), 10);
    let mut worst = 0;
    for seed in SEEDS {
        let (outcome, r) = simulate_outcome(&s, seed, &RunOptions::default(), "");
        assert!(r.passed, "expected a pass:\n{}", describe(&r));
        assert!(
            r.faults.iter().all(|f| f.took_effect),
            "a fault was not observed:\n{}",
            describe(&r)
        );
        assert!(
            reads_from(&s, &outcome, name, back_by) > 0,
            "{name} served no read from {back_by:?} on: its ban never ended\n{}",
            describe(&r)
        );
        worst = r
            .failovers
            .iter()
            .map(|f| f.failover_ms)
            .fold(worst, u64::max);
    }
    println!(
        "{file}: worst failover {worst} ms over {} seeds",
        SEEDS.len()
    );
    worst
}

#[test]
fn passive_ejection_routes_around_a_crashed_replica_at_once() {
    // Restarted at 15 s; down, its ban grew to 8 s, so it is back by 24 s.
    let worst = ejection_over_seeds(
        "passive-ejection-crash",
        "replica-1",
        Duration::from_secs(24),
    );
    // The first read to find its connections closed ejects it: nothing like a health interval.
    assert!(worst < 100, "worst failover {worst} ms");
}

#[test]
fn passive_ejection_detects_a_blackholed_replica() {
    // Healed at 15 s; back by 24 s like a crashed node.
    let worst = ejection_over_seeds(
        "passive-ejection-partition",
        "replica-1",
        Duration::from_secs(24),
    );
    // Within slow_request_ejection (1 s) of the first request that hung there.
    assert!(worst <= 1_100, "worst failover {worst} ms");
}

#[test]
fn passive_ejection_survives_dropped_connections() {
    // replica-2 lost its connections at 5 s; its probe lets it back after a one-second ban.
    ejection_over_seeds("passive-ejection-drop", "replica-2", Duration::from_secs(7));
}

#[test]
fn passive_ejection_sheds_a_slow_link() {
    // The latency ends at 15 s; replica-3 serves again by the end.
    ejection_over_seeds(
        "passive-ejection-latency",
        "replica-3",
        Duration::from_secs(25),
    );
}

#[test]
fn failover_within_fails_without_passive_ejection() {
    // The default 30 s health interval alone cannot see a crash in time.
    let mut s = lighter(load("passive-ejection-crash"), 10);
    s.router.ejection_time = Duration::ZERO;
    s.router.ejection_time_max = Duration::ZERO;
    assert_eq!(s.router.health_interval, Duration::from_secs(30));
    failing_run(&s, &RunOptions::default(), "failover_within");
}

#[test]
fn read_latency_fails_on_a_blackhole_without_slow_request_ejection() {
    // Nothing errors on a blackholed node: the reads stuck there wait for a timeout (5 s for a
    // connect, 30 s for a statement) before the node is ejected and they move on.
    let mut s = lighter(load("passive-ejection-partition"), 10);
    s.router.slow_request_ejection = Duration::ZERO;
    failing_run(&s, &RunOptions::default(), "latency");
}
