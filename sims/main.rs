//! The simulation suite: every shipped scenario over eight seeds with its expected outcome, runs that
//! must fail (each invariant caught on a deliberately broken router or a feature switched off), and
//! the determinism check. Reports land in `target/sim-reports/` for the independent report checker.
//! The router's own metrics are checked against the servers in `metrics`; the balancing policies
//! against each other in `balance`; lag-aware routing and read-your-writes in `lag`; promotions and a
//! primary crash in `promotion`; the router under ordinary stress (slow queries, saturated pools,
//! sessions across a promotion, an outlier replica) in `stress`; fault evidence in `evidence`.
//!
//! A failure prints the command that replays the run: the shipped file when the run used it as it
//! is, else the variant (lighter, shorter, edited) written as scenario TOML beside its report under
//! `target/sim-reports/`; runs that also changed the router in code (`RunOptions`) say that the
//! command is not an exact replay.

mod balance;
mod evidence;
mod lag;
mod metrics;
mod promotion;
mod stress;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replisim::report::{self, Report};
use replisim::router::render_prometheus;
use replisim::scenario::{self, Invariant, Scenario};
use replisim::sim::RunOutcome;
use replisim::sim::events::{Purpose, StatementKind};
use replisim::sim::harness::{RunOptions, run_with};
use replisim::sim::workload::ClientScope;

const SEEDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> Scenario {
    let path = root().join("scenarios").join(format!("{name}.toml"));
    match scenario::load(&path) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn report_dir() -> PathBuf {
    root().join("target").join("sim-reports")
}

/// Runs a scenario and writes its report; `tag` marks variants whose file is not the shipped one.
fn simulate(s: &Scenario, seed: u64, options: &RunOptions, tag: &str) -> Report {
    simulate_outcome(s, seed, options, tag).1
}

/// [`simulate`], keeping the run's outcome too.
fn simulate_outcome(
    s: &Scenario,
    seed: u64,
    options: &RunOptions,
    tag: &str,
) -> (RunOutcome, Report) {
    let outcome = match run_with(s, seed, options) {
        Ok(o) => o,
        Err(e) => panic!("{} seed {seed}: {e}", s.name),
    };
    let r = report::evaluate(s, &outcome);
    let dir = report_dir().join(tag);
    if let Err(e) = report::write(&dir, &r) {
        panic!("writing the report of {} to {}: {e}", s.name, dir.display());
    }
    remember_replay(&r, replay_command(s, seed, options, &dir));
    (outcome, r)
}

/// The command that replays each run, by report: the shipped file when the run used it as it is,
/// else the variant written as scenario TOML beside the report.
static REPLAYS: Mutex<BTreeMap<(String, u64, String), String>> = Mutex::new(BTreeMap::new());

/// The key of a run in [`REPLAYS`]: scenario, seed and trace hash.
fn replay_key(r: &Report) -> (String, u64, String) {
    (r.scenario.clone(), r.seed, r.trace_hash.clone())
}

fn remember_replay(r: &Report, command: String) {
    REPLAYS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(replay_key(r), command);
}

/// `replisim run FILE --seed N` for this run. A variant (lighter, shorter, edited in code) is written
/// to `dir/<name>-seed<N>-<hash of its text>.toml` (the hash keeps two variants of one scenario
/// apart); edits a scenario file cannot hold (`RunOptions`) are named after the command.
fn replay_command(s: &Scenario, seed: u64, options: &RunOptions, dir: &Path) -> String {
    let shipped = root().join("scenarios").join(format!("{}.toml", s.name));
    let unchanged = scenario::load(&shipped).is_ok_and(|file| {
        file == Scenario {
            seed: file.seed,
            ..s.clone()
        }
    });
    let file = if unchanged {
        format!("scenarios/{}.toml", s.name)
    } else {
        let variant = Scenario { seed, ..s.clone() };
        let text = match variant.to_toml() {
            Ok(text) => text,
            Err(e) => panic!("{} seed {seed}: {e}", s.name),
        };
        let path = dir.join(format!(
            "{}-seed{seed}-{:016x}.toml",
            s.name,
            fnv1a(text.as_bytes())
        ));
        if let Err(e) = report::write_whole(&path, text.as_bytes()) {
            panic!("writing {}: {e}", path.display());
        }
        path.strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string()
    };
    let mut in_code = Vec::new();
    if options.topology_edit.is_some() {
        in_code.push("the router's topology");
    }
    if options.config_edit.is_some() {
        in_code.push("the router's configuration");
    }
    if options.client_scope != ClientScope::default() {
        in_code.push("the clients' session scope");
    }
    let command = format!("replisim run {file} --seed {seed}");
    if in_code.is_empty() {
        command
    } else {
        format!(
            "{command}  (not an exact replay: this run also changed {} in code through RunOptions, \
             which a scenario file cannot express)",
            in_code.join(" and ")
        )
    }
}

/// FNV-1a, 64 bits: a stable name for a variant's text.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn describe(r: &Report) -> String {
    let replay = REPLAYS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&replay_key(r))
        .cloned()
        .unwrap_or_else(|| {
            format!(
                "replisim run scenarios/{}.toml --seed {}",
                r.scenario, r.seed
            )
        });
    report::summary::render(r, &replay)
}

/// Every seed must pass every invariant.
fn passes_over_seeds(s: &Scenario) -> Vec<Report> {
    SEEDS
        .iter()
        .map(|&seed| {
            let r = simulate(s, seed, &RunOptions::default(), "");
            assert!(r.passed, "expected a pass:\n{}", describe(&r));
            assert!(
                r.faults.iter().all(|f| f.took_effect),
                "a fault was not observed:\n{}",
                describe(&r)
            );
            r
        })
        .collect()
}

fn invariant<'a>(r: &'a Report, kind: &str) -> &'a replisim::check::InvariantResult {
    match r.invariants.iter().find(|i| i.kind == kind) {
        Some(i) => i,
        None => panic!("{} has no {kind} invariant", r.scenario),
    }
}

/// A lighter variant for the suite: at most `clients` closed-loop clients, the same timeline. The
/// shipped files run whole from the command line.
fn lighter(mut s: Scenario, clients: u32) -> Scenario {
    if s.workload.rate.is_none() {
        s.workload.clients = s.workload.clients.min(clients);
    }
    s
}

/// The same scenario cut to `duration` (only for scenarios without faults).
fn shorter(mut s: Scenario, duration: Duration) -> Scenario {
    assert!(
        s.faults.is_empty(),
        "{} has faults: keep its timeline",
        s.name
    );
    s.duration = duration;
    s
}

fn failing_run(s: &Scenario, options: &RunOptions, kind: &str) -> Report {
    let r = simulate(s, 1, options, "variant");
    assert!(!r.passed, "expected {kind} to fail:\n{}", describe(&r));
    assert!(
        !invariant(&r, kind).passed,
        "{kind} held:\n{}",
        describe(&r)
    );
    r
}

// ---- every shipped scenario, eight seeds, expected to pass ----

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

// ---- passive ejection: one replica fails under the router's default settings ----

/// Workload reads the node called `name` executed from `from` on (server side).
fn reads_from(s: &Scenario, outcome: &RunOutcome, name: &str, from: Duration) -> usize {
    let node = s.node_index(name);
    let from_us = u64::try_from(from.as_micros()).unwrap_or(u64::MAX);
    outcome
        .events
        .statements
        .iter()
        .filter(|st| Some(st.node) == node && st.start_us >= from_us)
        .filter(|st| st.purpose == Purpose::Workload && st.kind == StatementKind::Read)
        .count()
}

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

// ---- determinism ----

#[test]
fn the_same_seed_gives_a_byte_identical_report() {
    let s = shorter(lighter(load("mixed-load"), 20), Duration::from_secs(3));
    let (first, a) = simulate_outcome(&s, 11, &RunOptions::default(), "determinism");
    let (second, b) = simulate_outcome(&s, 11, &RunOptions::default(), "determinism");
    let (a, b) = (report::to_json(&a), report::to_json(&b));
    assert_eq!(a, b, "two runs of seed 11 differ");
    assert_eq!(
        render_prometheus(&first.router_metrics),
        render_prometheus(&second.router_metrics),
        "two runs of seed 11 give different metrics"
    );
    let c = simulate(&s, 12, &RunOptions::default(), "determinism");
    assert!(
        !a.contains(&format!("\"trace_hash\": \"{}\"", c.trace_hash)),
        "seeds 11 and 12 share a trace hash"
    );
}

#[test]
fn the_same_seed_gives_the_same_report_under_faults() {
    let s = lighter(load("health-check-detection"), 10);
    let (first, a) = simulate_outcome(&s, 5, &RunOptions::default(), "determinism");
    let (second, b) = simulate_outcome(&s, 5, &RunOptions::default(), "determinism");
    assert_eq!(
        report::to_json(&a),
        report::to_json(&b),
        "two runs of seed 5 differ"
    );
    let text = render_prometheus(&first.router_metrics);
    assert_eq!(
        text,
        render_prometheus(&second.router_metrics),
        "two runs of seed 5 give different metrics"
    );
    assert!(
        first
            .router_metrics
            .nodes
            .iter()
            .all(|n| n.stats.attempts > 0),
        "a node saw no attempt:\n{text}"
    );
}

// ---- every checker fails end to end on a broken router or with a feature switched off ----

/// A topology that gives the router the first shard's first replica as its primary.
fn replica_as_primary() -> replisim::sim::harness::TopologyEdit {
    Arc::new(|t| {
        if let Some(shard) = t.shards.first_mut()
            && let Some(replica) = shard.replicas.first()
        {
            shard.primary.host = replica.host.clone();
        }
    })
}

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

// ---- replay commands ----

/// Failure messages printed `replisim run scenarios/X.toml --seed N` for lighter or shorter variants,
/// which replays the shipped file, not the run. A variant's command now names the variant written
/// beside its report, and running that command gives the same report byte for byte.
#[test]
fn a_variants_replay_command_reproduces_its_report() {
    let s = shorter(lighter(load("round-robin"), 5), Duration::from_secs(2));
    let r = simulate(&s, 3, &RunOptions::default(), "replay");
    // What `describe` prints after `replay: ` when the run fails.
    let Some(command) = REPLAYS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&replay_key(&r))
        .cloned()
    else {
        panic!("no replay command for:\n{}", describe(&r));
    };
    let args: Vec<&str> = command.split_whitespace().collect();
    let [_, "run", file, "--seed", "3"] = args.as_slice() else {
        panic!("unexpected command {command}");
    };
    assert!(
        file.starts_with("target/sim-reports/replay/round-robin-seed3-") && file.ends_with(".toml"),
        "{command}"
    );
    let out = report_dir().join("replay-cli");
    let out_arg = out.display().to_string();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_replisim"))
        .current_dir(root())
        .args(["run", file, "--seed", "3", "--out", &out_arg, "--quiet"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run replisim: {e}"));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let replayed = std::fs::read_to_string(out.join("round-robin-seed3.json"))
        .unwrap_or_else(|e| panic!("the replay wrote no report: {e}"));
    assert_eq!(
        replayed,
        report::to_json(&r),
        "the replay differs from the run"
    );

    // The shipped file as it is replays from itself; a run edited in code says it is not exact.
    let whole = load("round-robin");
    let shipped = replay_command(&whole, 4, &RunOptions::default(), &report_dir());
    assert_eq!(shipped, "replisim run scenarios/round-robin.toml --seed 4");
    let edited = RunOptions {
        config_edit: Some(Arc::new(|c| c.read_retries = 0)),
        ..RunOptions::default()
    };
    let command = replay_command(&whole, 4, &edited, &report_dir());
    assert!(
        command.contains("not an exact replay") && command.contains("router's configuration"),
        "{command}"
    );
}
