//! Every checker fails end to end, on a deliberately broken router or with a feature switched off.

use super::*;

#[test]
fn writes_only_primary_catches_a_router_that_writes_to_a_replica() {
    // With promotion following on, the router would see that its "primary" is in recovery and write
    // nowhere (see `promotion`); with static roles it writes to the replica.
    let s = shorter(lighter(load("mixed-load"), 10), Duration::from_secs(3));
    let static_roles: replisim::sim::harness::ConfigEdit = Arc::new(|c| c.follow_promotion = false);
    let options = RunOptions {
        topology_edit: Some(replica_as_primary()),
        config_edit: Some(static_roles),
        ..RunOptions::default()
    };
    let r = failing_run(&s, &options, "writes_only_primary");
    assert!(
        r.nodes
            .iter()
            .any(|n| n.role == "replica" && n.rejected_writes > 0),
        "{}",
        describe(&r)
    );
}

#[test]
fn org_routing_catches_a_router_with_wrong_ranges() {
    let s = shorter(
        lighter(load("org-range-routing"), 10),
        Duration::from_secs(3),
    );
    let shifted: replisim::sim::harness::TopologyEdit = Arc::new(|t| {
        if let [first, second, ..] = t.shards.as_mut_slice() {
            first.orgs.end = 1_500_000;
            second.orgs.start = 1_500_000;
        }
    });
    let options = RunOptions {
        topology_edit: Some(shifted),
        ..RunOptions::default()
    };
    failing_run(&s, &options, "org_routing");
}

#[test]
fn failover_within_fails_with_the_default_health_interval() {
    let mut s = lighter(load("health-check-detection"), 10);
    s.router.health_interval = Duration::from_secs(30);
    failing_run(&s, &RunOptions::default(), "failover_within");
}

#[test]
fn replica_read_share_fails_without_read_replicas() {
    let mut s = shorter(lighter(load("round-robin"), 10), Duration::from_secs(3));
    s.router.use_read_replicas = false;
    failing_run(&s, &RunOptions::default(), "replica_read_share");
}

#[test]
fn no_failed_queries_fails_without_read_retries() {
    let mut s = lighter(load("health-check-detection"), 20);
    s.router.read_retries = 0;
    for i in &mut s.invariants {
        if let Invariant::NoFailedQueries { max_error_rate } = i {
            *max_error_rate = 0.0;
        }
    }
    failing_run(&s, &RunOptions::default(), "no_failed_queries");
}

#[test]
fn latency_fails_below_the_round_trip() {
    let mut s = shorter(lighter(load("mixed-load"), 10), Duration::from_secs(3));
    for i in &mut s.invariants {
        if let Invariant::Latency { max, .. } = i {
            // Two 1 ms link crossings and 1 ms of service: no read can take under 3 ms.
            *max = Duration::from_millis(2);
        }
    }
    failing_run(&s, &RunOptions::default(), "latency");
}

#[test]
fn max_staleness_fails_below_the_lag() {
    let mut s = lighter(load("replica-lag"), 20);
    for i in &mut s.invariants {
        if let Invariant::MaxStaleness { max } = i {
            *max = Duration::from_millis(200);
        }
    }
    failing_run(&s, &RunOptions::default(), "max_staleness");
}

#[test]
fn read_your_writes_fails_on_a_lagging_replica_without_the_feature() {
    let mut s = lighter(load("replica-lag"), 20);
    s.invariants = vec![Invariant::ReadYourWrites];
    failing_run(&s, &RunOptions::default(), "read_your_writes");
}

#[test]
fn caps_respected_catches_a_router_ignoring_its_caps() {
    let s = shorter(load("connection-caps"), Duration::from_secs(3));
    let loose: replisim::sim::harness::ConfigEdit = Arc::new(|c| {
        c.max_connections_per_node = 100;
        c.max_connections_per_user = 0;
        c.max_connections_per_org = 0;
    });
    let options = RunOptions {
        config_edit: Some(loose),
        ..RunOptions::default()
    };
    failing_run(&s, &options, "caps_respected");
}

/// The transaction scenario without its faults, cut short: transactions on hot rows, no crash.
fn transactions_without_faults() -> Scenario {
    let mut s = load("transactions-across-promotion");
    s.faults.clear();
    s.invariants
        .retain(|i| matches!(i, Invariant::TransactionsAtomic));
    shorter(lighter(s, 20), Duration::from_secs(4))
}

#[test]
fn transactions_atomic_holds_for_a_correct_router_and_node() {
    let r = simulate(
        &transactions_without_faults(),
        1,
        &RunOptions::default(),
        "variant",
    );
    assert!(
        invariant(&r, "transactions_atomic").passed,
        "{}",
        describe(&r)
    );
}

#[test]
fn transactions_atomic_catches_a_router_that_splits_a_transaction_over_connections() {
    let options = RunOptions {
        broken_router_splits_transactions: true,
        ..RunOptions::default()
    };
    let r = failing_run(
        &transactions_without_faults(),
        &options,
        "transactions_atomic",
    );
    let detail = &invariant(&r, "transactions_atomic").detail;
    assert!(detail.contains("split transactions"), "{detail}");
}

#[test]
fn transactions_atomic_catches_a_node_that_applies_writes_before_commit() {
    let options = RunOptions {
        broken_node_writes_before_commit: true,
        ..RunOptions::default()
    };
    // The crash catches transactions between their write and their COMMIT: a correct node loses
    // their writes; this one has applied them, and shipped them to the replica promoted next.
    let mut s = lighter(load("transactions-across-promotion"), 20);
    s.invariants
        .retain(|i| matches!(i, Invariant::TransactionsAtomic));
    let r = failing_run(&s, &options, "transactions_atomic");
    let detail = &invariant(&r, "transactions_atomic").detail;
    assert!(detail.contains("reads of uncommitted versions"), "{detail}");
}
