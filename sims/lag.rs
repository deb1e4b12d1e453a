//! Lag-aware routing and read-your-writes sessions: each feature's scenario holds its invariant over
//! every seed, the same run with the feature off fails it, and the router's own lag record and
//! routing reasons show the feature at work. Per-seed figures are printed (`--nocapture`).

use replisim::record::workload::ClientScope;
use replisim::router::route_reason::RouteReason;

use super::*;

/// The leading number of an invariant's figure (`worst 518 ms <= ...`, `3 of 900 reads ...`).
fn figure(r: &Report, kind: &str) -> u64 {
    let detail = &invariant(r, kind).detail;
    let number = detail
        .split_whitespace()
        .find_map(|word| word.parse::<u64>().ok());
    match number {
        Some(n) => n,
        None => panic!("{}: no figure in {kind} detail {detail:?}", r.scenario),
    }
}

/// Replica reads over all reads, as the servers executed them.
fn replica_share(r: &Report) -> f64 {
    let replica: u64 = r
        .nodes
        .iter()
        .filter(|n| n.role == "replica")
        .map(|n| n.reads)
        .sum();
    let all: u64 = r.nodes.iter().map(|n| n.reads).sum();
    replica as f64 / all.max(1) as f64
}

fn total(outcome: &RunOutcome, reason: RouteReason) -> u64 {
    outcome
        .router_metrics
        .nodes
        .iter()
        .map(|n| n.routes.get(reason))
        .sum()
}

/// The scenario as the router would run it without lag-aware routing (the checkers judge the same
/// bound).
fn lag_routing_off(mut s: Scenario) -> Scenario {
    s.router.max_replica_lag = None;
    s
}

#[test]
fn lag_aware_routing_bounds_staleness_over_seeds() {
    let on = load("max-replica-lag");
    let off = lag_routing_off(on.clone());
    for r in passes_over_seeds(&on) {
        let seed = r.seed;
        let without = simulate(&off, seed, &RunOptions::default(), "variant");
        let (worst_on, worst_off) = (
            figure(&r, "max_staleness"),
            figure(&without, "max_staleness"),
        );
        println!(
            "max-replica-lag seed {seed}: worst staleness {worst_on} ms with, {worst_off} ms \
             without; replica read share {:.3}; read p99 {:.3} ms",
            replica_share(&r),
            r.latency_ms.read.p99
        );
        assert!(
            !invariant(&without, "max_staleness").passed,
            "seed {seed}: without lag-aware routing the stale replica should break the bound:\n{}",
            describe(&without)
        );
        assert!(
            worst_off > worst_on,
            "seed {seed}: {worst_off} vs {worst_on}"
        );
    }
}

#[test]
fn max_staleness_fails_without_lag_aware_routing() {
    let s = lag_routing_off(load("max-replica-lag"));
    failing_run(&s, &RunOptions::default(), "max_staleness");
}

#[test]
fn lagging_replicas_are_counted_and_their_lag_recorded() {
    let s = load("max-replica-lag");
    let (outcome, r) = simulate_outcome(&s, 1, &RunOptions::default(), "lag");
    assert!(r.passed, "{}", describe(&r));
    let exclusions = total(&outcome, RouteReason::LagExclusion);
    assert!(exclusions > 0, "no read skipped a lagging replica");
    let reads: u64 = r.nodes.iter().map(|n| n.reads).sum();
    assert!(
        exclusions < reads,
        "{exclusions} exclusions of {reads} reads"
    );
    for name in ["replica-1", "replica-2"] {
        let Some(node) = outcome.router_metrics.node(name) else {
            panic!("no metrics for {name}");
        };
        let lag = &node.lag;
        assert!(lag.measured, "{name}: never probed");
        // Probes every 250 ms over the run (the first at start-up), give or take the drain.
        assert!(
            lag.history.count >= 100,
            "{name}: {} probes",
            lag.history.count
        );
        assert!(
            lag.history.max_us >= 500_000,
            "{name}: the fault's lag never showed (max {} us)",
            lag.history.max_us
        );
        assert!(lag.time_us < 500_000, "{name}: still lagging at the end");
    }
    let text = render_prometheus(&outcome.router_metrics);
    assert!(
        text.contains("replisim_router_replica_lag_history_seconds_count{node=\"replica-1\""),
        "the exposition lacks the lag history"
    );
    let primary = outcome.router_metrics.node("primary-1");
    assert_eq!(
        primary.map(|n| n.lag.measured),
        Some(false),
        "a primary has no lag"
    );
}

#[test]
fn a_replica_paused_for_longer_than_the_bound_is_left_out_of_reads() {
    let mut s = load("max-replica-lag");
    // Only the pause: replica-2 stops replaying from 20 s to 24 s.
    s.faults
        .retain(|f| f.kind == replisim::scenario::FaultKind::PauseReplay);
    let r = simulate(&s, 4, &RunOptions::default(), "variant");
    assert!(r.passed, "{}", describe(&r));
    let off = simulate(&lag_routing_off(s), 4, &RunOptions::default(), "variant");
    assert!(
        !invariant(&off, "max_staleness").passed,
        "a 4 s pause without lag-aware routing:\n{}",
        describe(&off)
    );
}

#[test]
fn a_replica_restarted_while_its_primary_is_down_stays_out_until_measured() {
    // replica-1 comes back at 1.8 s with the data it had at 0.5 s while primary-1 is down until
    // 2.4 s: its lag from before the crash no longer holds, and it could not catch up.
    let s = load("replica-restarted-while-its-primary-is-down");
    for seed in 1..=16 {
        let r = simulate(&s, seed, &RunOptions::default(), "");
        assert!(r.passed, "expected a pass:\n{}", describe(&r));
        println!(
            "{} seed {seed}: worst staleness {} ms; replica-1 read share {:.3}",
            s.name,
            figure(&r, "max_staleness"),
            r.nodes
                .iter()
                .find(|n| n.name == "replica-1")
                .map_or(0.0, |n| n.read_share)
        );
    }
    // Without lag-aware routing nothing keeps it out.
    let off = simulate(&lag_routing_off(s), 1, &RunOptions::default(), "variant");
    assert!(
        !invariant(&off, "max_staleness").passed,
        "{}",
        describe(&off)
    );
}

/// The scenario with read-your-writes sessions turned off (the checkers judge the same invariants).
fn sessions_off(mut s: Scenario) -> Scenario {
    s.router.read_your_writes = false;
    s
}

/// Client reads served by a replica over all successful client reads started in `[from_us,
/// until_us)` (a read the router sent to a replica, found behind, and repeated on the primary
/// counts once, on the primary).
fn client_replica_share_between(
    outcome: &RunOutcome,
    s: &Scenario,
    from_us: u64,
    until_us: u64,
) -> f64 {
    let reads = outcome.events.ops.iter().filter(|op| {
        op.ok
            && op.kind == replisim::record::events::OpKind::Read
            && (from_us..until_us).contains(&op.start_us)
    });
    let (mut all, mut replica) = (0u64, 0u64);
    for op in reads {
        all += 1;
        let on_replica = op
            .node
            .and_then(|node| s.nodes.get(node))
            .is_some_and(|node| node.initial_role == replisim::record::events::NodeRole::Replica);
        replica += u64::from(on_replica);
    }
    replica as f64 / all.max(1) as f64
}

/// Client reads served by a replica over the whole run.
fn client_replica_share(outcome: &RunOutcome, s: &Scenario) -> f64 {
    client_replica_share_between(outcome, s, 0, u64::MAX)
}

/// From the first lag fault's start to the last one's end: while replicas apply the WAL late.
fn lag_window_us(outcome: &RunOutcome) -> (u64, u64) {
    let lags = outcome.faults.iter().filter(|f| f.kind == "lag");
    let from = lags.clone().map(|f| f.at_us).min();
    let until = lags.map(|f| f.until_us.unwrap_or(outcome.run_end_us)).max();
    match (from, until) {
        (Some(from), Some(until)) => (from, until),
        _ => panic!("the scenario has no lag fault"),
    }
}

/// Client reads on replicas while the replicas lag.
fn lag_window_share(outcome: &RunOutcome, s: &Scenario) -> f64 {
    let (from, until) = lag_window_us(outcome);
    client_replica_share_between(outcome, s, from, until)
}

/// Runs the read-your-writes scenario over every seed with `options`, expecting `read_your_writes`
/// (and, if `all`, every invariant) to hold and every fault to be seen; prints per seed and returns
/// (seed, whole-run share, lag-window share).
fn sessions_over_seeds(
    s: &Scenario,
    options: &RunOptions,
    label: &str,
    all: bool,
) -> Vec<(u64, f64, f64)> {
    SEEDS
        .iter()
        .map(|&seed| {
            let (outcome, r) = simulate_outcome(s, seed, options, "variant");
            assert!(
                invariant(&r, "read_your_writes").passed && (r.passed || !all),
                "{label}: expected a pass:\n{}",
                describe(&r)
            );
            assert!(
                r.faults.iter().all(|f| f.took_effect),
                "{label}: a fault was not observed:\n{}",
                describe(&r)
            );
            let (whole, lagging) = (
                client_replica_share(&outcome, s),
                lag_window_share(&outcome, s),
            );
            println!(
                "read-your-writes {label} seed {seed}: violations {}; replica read share {whole:.3} \
                 over the run ({:.3} server-side), {lagging:.3} while lagging; read p99 {:.3} ms",
                figure(&r, "read_your_writes"),
                replica_share(&r),
                r.latency_ms.read.p99
            );
            (seed, whole, lagging)
        })
        .collect()
}

/// Mean of the lag-window shares.
fn mean_lagging(runs: &[(u64, f64, f64)]) -> f64 {
    runs.iter().map(|run| run.2).sum::<f64>() / runs.len().max(1) as f64
}

#[test]
fn read_your_writes_holds_over_seeds() {
    let on = load("read-your-writes");
    let off = sessions_off(on.clone());
    let runs = sessions_over_seeds(&on, &RunOptions::default(), "row scope", true);
    for &(seed, _, lagging) in &runs {
        let (outcome, without) = simulate_outcome(&off, seed, &RunOptions::default(), "variant");
        println!(
            "read-your-writes off seed {seed}: violations {}; replica read share {:.3} over the \
             run, {:.3} while lagging; read p99 {:.3} ms",
            figure(&without, "read_your_writes"),
            client_replica_share(&outcome, &off),
            lag_window_share(&outcome, &off),
            without.latency_ms.read.p99
        );
        assert!(
            !invariant(&without, "read_your_writes").passed,
            "seed {seed}: without sessions the lagging replicas should show old versions:\n{}",
            describe(&without)
        );
        assert!(
            lagging > 0.6,
            "seed {seed}: row-scoped sessions kept only {lagging:.3} of reads on replicas while \
             they lagged"
        );
    }
    println!(
        "read-your-writes row scope: mean replica read share while lagging {:.3}",
        mean_lagging(&runs)
    );
}

/// Shard-scoped sessions send most reads to the primary while the replicas lag, so only
/// `read_your_writes` is expected of them, not the scenario's replica read share.
#[test]
fn read_your_writes_holds_with_shard_scoped_sessions() {
    let on = load("read-your-writes");
    let shard = RunOptions {
        client_scope: ClientScope::Shard,
        ..RunOptions::default()
    };
    let runs = sessions_over_seeds(&on, &shard, "shard scope", false);
    println!(
        "read-your-writes shard scope: mean replica read share while lagging {:.3}",
        mean_lagging(&runs)
    );
}

#[test]
fn row_scopes_keep_more_reads_on_lagging_replicas_than_the_shard_scope() {
    let s = load("read-your-writes");
    let shard = RunOptions {
        client_scope: ClientScope::Shard,
        ..RunOptions::default()
    };
    let (row_run, row) = simulate_outcome(&s, 3, &RunOptions::default(), "variant");
    let (shard_run, whole) = simulate_outcome(&s, 3, &shard, "variant");
    println!(
        "seed 3 whole run: {:.3} by row, {:.3} by shard; lag window {:?}",
        client_replica_share(&row_run, &s),
        client_replica_share(&shard_run, &s),
        lag_window_us(&row_run)
    );
    let (by_row, by_shard) = (
        lag_window_share(&row_run, &s),
        lag_window_share(&shard_run, &s),
    );
    assert!(row.passed, "{}", describe(&row));
    assert!(
        invariant(&whole, "read_your_writes").passed,
        "{}",
        describe(&whole)
    );
    println!(
        "read-your-writes seed 3: replica read share while lagging {by_row:.3} by row, \
         {by_shard:.3} by shard"
    );
    assert!(
        by_row > by_shard + 0.1,
        "replica read share while lagging: {by_row:.3} by row, {by_shard:.3} by shard"
    );
}

#[test]
fn read_your_writes_fails_without_sessions() {
    let s = sessions_off(load("read-your-writes"));
    failing_run(&s, &RunOptions::default(), "read_your_writes");
}

#[test]
fn sessions_steer_reads_and_their_position_queries_are_not_workload() {
    let s = load("read-your-writes");
    let (outcome, r) = simulate_outcome(&s, 2, &RunOptions::default(), "lag");
    assert!(r.passed, "{}", describe(&r));
    for m in &outcome.router_metrics.nodes {
        assert_eq!(
            m.routes.decisions(),
            m.stats.attempts,
            "{}: one decision per attempt, redirected reads included",
            m.stats.name
        );
    }
    let steered = total(&outcome, RouteReason::ReadYourWrites);
    assert!(steered > 0, "no read was steered by its token");
    let primary = outcome.router_metrics.node("primary-1");
    let on_primary = primary.map_or(0, |n| n.routes.get(RouteReason::ReadYourWrites));
    assert!(on_primary > 0, "no read went to the primary for its token");
    // Position queries ran on workload connections, classified as probes, not as reads.
    let position_queries = outcome
        .events
        .statements
        .iter()
        .filter(|st| st.purpose == Purpose::Workload && st.kind == StatementKind::Probe)
        .count() as u64;
    assert!(
        position_queries >= r.ops.total,
        "one after every operation at least"
    );
    let executed: u64 = r.nodes.iter().map(|n| n.reads).sum();
    assert!(
        executed >= r.ops.reads && executed - r.ops.reads <= r.ops.reads / 100,
        "servers executed {executed} reads for {} client reads",
        r.ops.reads
    );
    let share = client_replica_share(&outcome, &s);
    println!("read-your-writes seed 2: client-side replica read share {share:.3}");
    assert!(share >= 0.6, "client-side replica share {share:.3}");
}
