//! Fault schedules drawn by `replisim explore`, run in the suite: each shipped explore scenario
//! states what must hold under any schedule it draws, and the first draws of each must keep it.
//! Their reports are not written (hundreds of them, made by the code the other themes' reports
//! already show to the independent checker); a failure prints the `replisim explore` command that
//! draws the same schedule again and writes it as a scenario file.

use replisim::search::explore::draw::draw;

use super::*;

/// The run of the draw of `base` on `seed`, and what it did, with how to draw it again.
fn run_drawn(base: &Scenario, seed: u64) -> (RunOutcome, Report, String) {
    let d = match draw(base, seed) {
        Ok(d) => d,
        Err(e) => panic!("{} seed {seed}: no draw: {e}", base.name),
    };
    let outcome = match run_with(&d.scenario, seed, &RunOptions::default()) {
        Ok(o) => o,
        Err(e) => panic!("{} seed {seed}: {e}", d.scenario.name),
    };
    let r = report::evaluate(&d.scenario, &outcome);
    // `explore` writes the draw as `DIR/<name>-explore-seed<N>.toml` when it fails.
    let replay = format!(
        "replisim explore scenarios/{}.toml --seeds {seed}..{seed} --out DIR",
        base.name
    );
    let again = format!(
        "seed {seed}, {}\n{}",
        d.summary,
        report::summary::render(&r, &replay)
    );
    (outcome, r, again)
}

/// The faults of the run of `seed` that nothing could show, named.
fn unseen_faults(seed: u64, r: &Report) -> Vec<String> {
    r.faults
        .iter()
        .filter(|f| !f.took_effect)
        .map(|f| format!("seed {seed}: {} {}", f.kind, f.target))
        .collect()
}

// ---- replica faults of every kind: the primary answers, so nothing may fail ----

/// Draws of `explore-replica-faults` checked here; `replisim explore` over seeds 1..5000 found no
/// draw that failed, nor one whose fault nothing could show.
const REPLICA_FAULT_DRAWS: u64 = 120;

#[test]
fn no_drawn_replica_fault_fails_an_operation() {
    let base = load("explore-replica-faults");
    let mut ops = 0;
    for seed in 1..=REPLICA_FAULT_DRAWS {
        let (_, r, again) = run_drawn(&base, seed);
        assert!(
            r.passed && r.faults.iter().all(|f| f.took_effect),
            "{again}"
        );
        assert_eq!(r.ops.failed, 0, "{again}");
        ops += r.ops.total;
    }
    println!("explore-replica-faults: {REPLICA_FAULT_DRAWS} draws, {ops} operations, none failed");
}

// ---- faults of every kind on any node, promotions included: safety must hold ----

/// Draws of `explore-safety` checked here; over seeds 1..3000 the explorer found no broken
/// invariant, and 15 draws (0.5%) whose fault nothing could show, which this test counts apart.
const SAFETY_DRAWS: u64 = 100;

#[test]
fn no_drawn_fault_breaks_routing_transactions_sessions_or_staleness() {
    let base = load("explore-safety");
    let (mut promotions, mut transactions, mut failed, mut unseen) = (0, 0, 0, Vec::new());
    for seed in 1..=SAFETY_DRAWS {
        let (outcome, r, again) = run_drawn(&base, seed);
        assert!(r.invariants.iter().all(|i| i.passed), "{again}");
        promotions += r.faults.iter().filter(|f| f.kind == "promote").count();
        transactions += outcome
            .events
            .statements
            .iter()
            .filter(|st| st.kind == StatementKind::Commit && st.sqlstate.is_none())
            .count();
        failed += r.ops.failed;
        unseen.extend(unseen_faults(seed, &r));
    }
    println!(
        "explore-safety: {SAFETY_DRAWS} draws, {promotions} promotions, {transactions} \
         transactions, {failed} failed operations; faults nothing showed: {unseen:?}"
    );
    // The draws must have exercised what the invariants judge.
    assert!(
        promotions >= 10 && transactions > 1000 && failed > 0,
        "the draws must exercise what the invariants judge"
    );
    assert!(unseen.len() <= 3, "{unseen:?}");
}

// ---- faults that lose no packet: the caps must hold as the servers saw them ----

/// Draws of `explore-caps` checked here; over seeds 1..1500 the explorer found no broken
/// invariant, and two draws whose fault nothing could show, which this test counts apart.
const CAPS_DRAWS: u64 = 60;

#[test]
fn no_drawn_crash_slow_lag_pause_or_promotion_breaks_the_caps() {
    let base = load("explore-caps");
    let (mut abandoned, mut cap_waits, mut unseen) = (0, 0, Vec::new());
    for seed in 1..=CAPS_DRAWS {
        let (_, r, again) = run_drawn(&base, seed);
        assert!(r.invariants.iter().all(|i| i.passed), "{again}");
        abandoned += r.router.iter().map(|n| n.abandoned).sum::<u64>();
        cap_waits += r.router.iter().map(|n| n.routes.cap_wait).sum::<u64>();
        unseen.extend(unseen_faults(seed, &r));
    }
    println!(
        "explore-caps: {CAPS_DRAWS} draws, {abandoned} statements given up on, {cap_waits} cap \
         waits; faults nothing showed: {unseen:?}"
    );
    assert!(
        abandoned > 100 && cap_waits > 100,
        "the draws must give statements up and fill the caps: {abandoned} given up, {cap_waits} \
         cap waits"
    );
    assert!(unseen.len() <= 2, "{unseen:?}");
}
