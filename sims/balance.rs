//! Balancing policies in the simulation: `p2c_ewma` and `least_outstanding` keep reads off a replica
//! that turned slow where round robin cannot, and `weighted` splits reads by the nodes' weights.
//! Reads are counted by the servers, latency by the clients.

use replisim::router::Balance;

use super::*;

/// The same scenario with another balancing policy.
fn balanced_by(mut s: Scenario, balance: Balance) -> Scenario {
    s.router.balance = balance;
    s
}

/// The server-side reads of `name` in `r`.
fn reads(r: &Report, name: &str) -> u64 {
    match r.nodes.iter().find(|n| n.name == name) {
        Some(n) => n.reads,
        None => panic!("{}: no node {name}", r.scenario),
    }
}

/// The share of all replica reads `name` served.
fn replica_share(r: &Report, name: &str) -> f64 {
    let total: u64 = r
        .nodes
        .iter()
        .filter(|n| n.role == "replica")
        .map(|n| n.reads)
        .sum();
    assert!(total > 0, "no replica reads:\n{}", describe(r));
    reads(r, name) as f64 / total as f64
}

/// The share of the replica reads started from the first fault on that `name` served (server side).
fn share_under_fault(s: &Scenario, outcome: &RunOutcome, name: &str) -> f64 {
    let from = s.faults.first().map_or(Duration::ZERO, |f| f.at);
    let total: usize = ["replica-1", "replica-2", "replica-3"]
        .iter()
        .map(|n| reads_from(s, outcome, n, from))
        .sum();
    assert!(total > 0, "no replica reads under the fault");
    reads_from(s, outcome, name, from) as f64 / total as f64
}

#[test]
fn p2c_ewma_keeps_the_read_p99_where_round_robin_breaks_it() {
    let s = load("p2c-slow-replica");
    assert_eq!(s.router.balance, Balance::P2cEwma);
    let round_robin = balanced_by(s.clone(), Balance::RoundRobin);
    for seed in SEEDS {
        let (p2c_outcome, p2c) = simulate_outcome(&s, seed, &RunOptions::default(), "");
        assert!(p2c.passed, "expected a pass:\n{}", describe(&p2c));
        assert!(
            p2c.faults.iter().all(|f| f.took_effect),
            "{}",
            describe(&p2c)
        );
        let (rr_outcome, rr) = simulate_outcome(&round_robin, seed, &RunOptions::default(), "rr");
        let p2c_share = share_under_fault(&s, &p2c_outcome, "replica-3");
        let rr_share = share_under_fault(&round_robin, &rr_outcome, "replica-3");
        eprintln!(
            "p2c-slow-replica seed {seed}: read p99 p2c_ewma {:.3} ms (slow replica's share of \
             reads under the fault {p2c_share:.4}), round_robin {:.3} ms ({rr_share:.4})",
            p2c.latency_ms.read.p99, rr.latency_ms.read.p99,
        );
        assert!(
            !invariant(&rr, "latency").passed,
            "round robin held the read p99:\n{}",
            describe(&rr)
        );
        assert!(
            p2c_share > 0.0 && p2c_share * 20.0 < rr_share,
            "p2c_ewma should probe the slow replica now and then, at under a twentieth of round \
             robin's share: {p2c_share:.4} vs {rr_share:.4}"
        );
    }
}

#[test]
fn least_outstanding_sheds_reads_from_a_slow_replica() {
    let s = load("p2c-slow-replica");
    let least = balanced_by(s.clone(), Balance::LeastOutstanding);
    let round_robin = balanced_by(s, Balance::RoundRobin);
    for seed in [1, 2] {
        let lo = simulate(&least, seed, &RunOptions::default(), "least-outstanding");
        let rr = simulate(&round_robin, seed, &RunOptions::default(), "round-robin");
        eprintln!(
            "least_outstanding seed {seed}: read p95 {:.3} ms p99 {:.3} ms (replica-3 share {:.4}); \
             round_robin p95 {:.3} ms p99 {:.3} ms (replica-3 share {:.4})",
            lo.latency_ms.read.p95,
            lo.latency_ms.read.p99,
            replica_share(&lo, "replica-3"),
            rr.latency_ms.read.p95,
            rr.latency_ms.read.p99,
            replica_share(&rr, "replica-3"),
        );
        assert!(
            replica_share(&lo, "replica-3") < replica_share(&rr, "replica-3") * 0.8,
            "least_outstanding did not shed the slow replica:\n{}\n{}",
            describe(&lo),
            describe(&rr)
        );
        assert!(
            lo.latency_ms.read.p99 <= rr.latency_ms.read.p99,
            "least_outstanding p99 above round robin's:\n{}\n{}",
            describe(&lo),
            describe(&rr)
        );
    }
}

#[test]
fn weighted_splits_reads_by_weight() {
    let s = load("weighted");
    let weights: Vec<(String, u32)> = s
        .shards
        .iter()
        .flat_map(|shard| shard.replicas.iter())
        .map(|&i| (s.nodes[i].name.clone(), s.nodes[i].weight))
        .collect();
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    assert!(
        weights.iter().any(|(_, w)| *w != weights[0].1),
        "the scenario should give the replicas different weights: {weights:?}"
    );
    for r in passes_over_seeds(&s) {
        for (name, weight) in &weights {
            let want = f64::from(*weight) / f64::from(total);
            let got = replica_share(&r, name);
            assert!(
                (got - want).abs() < 0.03,
                "{name}: share {got:.3}, weight says {want:.3}:\n{}",
                describe(&r)
            );
        }
    }
}

#[test]
fn random_spreads_reads_over_every_replica() {
    let s = balanced_by(load("weighted"), Balance::Random);
    let r = simulate(&s, 1, &RunOptions::default(), "random");
    assert!(r.passed, "{}", describe(&r));
    for name in ["replica-1", "replica-2", "replica-3"] {
        let share = replica_share(&r, name);
        assert!(
            (share - 1.0 / 3.0).abs() < 0.03,
            "{name}: share {share:.3}, weights ignored:\n{}",
            describe(&r)
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_report_under_p2c_ewma() {
    let s = load("p2c-slow-replica");
    let first = simulate(&s, 3, &RunOptions::default(), "determinism");
    let second = simulate(&s, 3, &RunOptions::default(), "determinism");
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(
        serde_json::to_string(&first).ok(),
        serde_json::to_string(&second).ok()
    );
}
