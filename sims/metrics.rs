//! The router's own metrics against the servers' ground truth: what the router says it did must agree
//! with what the simulated servers executed, and each routing reason must show where the scenario
//! makes it happen.

use replisim::report::NodeCounts;
use replisim::router::metrics::NodeMetrics;
use replisim::router::render_prometheus;
use replisim::router::route_reason::RouteReason;

use super::*;

fn server<'a>(r: &'a Report, name: &str) -> &'a NodeCounts {
    match r.nodes.iter().find(|n| n.name == name) {
        Some(n) => n,
        None => panic!("{}: no server counts for {name}", r.scenario),
    }
}

fn router_node<'a>(outcome: &'a RunOutcome, name: &str) -> &'a NodeMetrics {
    match outcome.router_metrics.node(name) {
        Some(n) => n,
        None => panic!("no router metrics for {name}"),
    }
}

fn total(outcome: &RunOutcome, reason: RouteReason) -> u64 {
    outcome
        .router_metrics
        .nodes
        .iter()
        .map(|n| n.routes.get(reason))
        .sum()
}

/// What holds on any run. Per node: one decision per attempt, every attempt ended and every ended one
/// timed, and each success is a statement the server executed. A server may have executed statements
/// whose answers the router lost; those count as the router's errors or cancellations.
fn check_consistency(outcome: &RunOutcome, r: &Report) {
    assert_eq!(
        r.router.len(),
        outcome.router_metrics.nodes.len(),
        "one report entry per node"
    );
    for (m, summary) in outcome.router_metrics.nodes.iter().zip(&r.router) {
        let s = &m.stats;
        let name = s.name.as_str();
        let executed = server(r, name).reads + server(r, name).writes;
        assert_eq!(summary.name, name, "report order is topology order");
        assert_eq!(summary.attempts, s.attempts, "{name}: report vs metrics");
        assert_eq!(m.routes.decisions(), s.attempts, "{name}: decisions");
        assert_eq!(
            s.attempts,
            s.successes + s.errors + s.cancelled,
            "{name}: every attempt ended"
        );
        assert_eq!(s.in_flight, 0, "{name}: in flight after the run");
        assert_eq!(m.latency.count, s.successes + s.errors, "{name}: timed");
        assert!(
            s.successes <= executed && executed - s.successes <= s.errors + s.cancelled,
            "{name}: router ok {} vs server executed {executed}, router errors {}",
            s.successes,
            s.errors
        );
    }
    let text = render_prometheus(&outcome.router_metrics);
    for m in &outcome.router_metrics.nodes {
        let line = format!(
            "replisim_router_attempts_total{{node=\"{}\",shard=\"{}\",role=\"{}\"}} {}\n",
            m.stats.name,
            m.stats.shard,
            if m.stats.role == replisim::router::ServedRole::Primary {
                "primary"
            } else {
                "replica"
            },
            m.stats.attempts
        );
        assert!(text.contains(&line), "the exposition lacks {line:?}");
    }
}

#[test]
fn router_counts_match_the_servers_without_faults() {
    let s = shorter(lighter(load("mixed-load"), 20), Duration::from_secs(3));
    let (outcome, r) = simulate_outcome(&s, 3, &RunOptions::default(), "metrics");
    check_consistency(&outcome, &r);
    for n in &r.nodes {
        let m = router_node(&outcome, &n.name);
        assert_eq!(
            (m.stats.successes, m.stats.errors),
            (n.reads + n.writes, 0),
            "{}: without faults the router's successes are exactly the server's statements",
            n.name
        );
        let (requested, replica_picks) = (
            m.routes.get(RouteReason::PrimaryRequested),
            m.routes.get(RouteReason::RoundRobin),
        );
        if n.role == "primary" {
            assert_eq!(m.routes.get(RouteReason::Write), n.writes, "{}", n.name);
            assert!(requested > 0, "mixed-load asks for primary reads");
            assert_eq!(requested, n.reads, "every primary read was asked for");
            assert_eq!(m.routes.get(RouteReason::FallbackPrimary), 0);
        } else {
            assert!(replica_picks > 0, "{} served no read", n.name);
            assert_eq!(replica_picks, n.reads, "{}", n.name);
        }
    }
    assert_eq!(total(&outcome, RouteReason::Retry), 0, "nothing failed");
}

#[test]
fn fallbacks_and_retries_are_counted_when_every_replica_dies() {
    let mut s = lighter(load("all-replicas-fail"), 20);
    // Passive ejection would take the crashed replicas out before any read failed on them; without
    // it, reads caught by the crashes fail and are retried, which is what this test counts, until
    // fast health checks take the replicas out and reads fall back to the primary.
    s.router.ejection_time = Duration::ZERO;
    s.router.slow_request_ejection = Duration::ZERO;
    s.router.health_interval = Duration::from_millis(500);
    s.router.health_timeout = Duration::from_millis(250);
    s.router.failure_threshold = 2;
    let (outcome, r) = simulate_outcome(&s, 2, &RunOptions::default(), "metrics");
    check_consistency(&outcome, &r);
    let primary = router_node(&outcome, "primary-1");
    let fallbacks = primary.routes.get(RouteReason::FallbackPrimary);
    assert!(
        fallbacks > 0 && fallbacks <= server(&r, "primary-1").reads,
        "fallback_primary {fallbacks}, primary reads {}",
        server(&r, "primary-1").reads
    );
    assert!(
        total(&outcome, RouteReason::Retry) > 0,
        "reads caught by the crashes were retried"
    );
    let replica_errors: u64 = outcome
        .router_metrics
        .nodes
        .iter()
        .filter(|n| n.stats.name.starts_with("replica"))
        .map(|n| n.stats.errors)
        .sum();
    assert!(replica_errors > 0, "the crashes failed attempts");
}

#[test]
fn cap_waits_are_counted_under_tight_caps() {
    let s = shorter(load("connection-caps"), Duration::from_secs(3));
    let (outcome, r) = simulate_outcome(&s, 1, &RunOptions::default(), "metrics");
    check_consistency(&outcome, &r);
    assert!(
        total(&outcome, RouteReason::CapWait) > 0,
        "300 sessions against caps of 2 per user never waited"
    );
    assert_eq!(
        outcome.router_metrics.cap_timeouts,
        Default::default(),
        "every wait ended in a slot: the run has no failed operation"
    );
    assert_eq!(r.ops.failed, 0);
}
