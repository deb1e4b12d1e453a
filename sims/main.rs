//! The simulation suite, one file per theme: every shipped scenario over eight seeds (`shipped`),
//! passive ejection (`ejection`), runs that must fail, each invariant caught on a deliberately broken
//! router or with a feature switched off (`must_fail`), determinism (`determinism`), and replay
//! commands (`replay`). This file holds the helpers they share. Reports land in
//! `target/sim-reports/` for the independent report checker. The router's own metrics are checked
//! against the servers in `metrics`; the balancing policies against each other in `balance`;
//! lag-aware routing and read-your-writes in `lag`; promotions and a primary crash in `promotion`;
//! the router under ordinary stress (slow queries, saturated pools, sessions across a promotion, an
//! outlier replica, two replicas failing in turn) in `stress`; fault evidence in `evidence`;
//! schedules drawn by `replisim explore` in `explored`.
//!
//! A failure prints the command that replays the run: the shipped file when the run used it as it
//! is, else the variant (lighter, shorter, edited) written as scenario TOML beside its report under
//! `target/sim-reports/`; runs that also changed the router in code (`RunOptions`) say that the
//! command is not an exact replay.

mod balance;
mod determinism;
mod ejection;
mod evidence;
mod explored;
mod lag;
mod metrics;
mod must_fail;
mod promotion;
mod replay;
mod shipped;
mod stress;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replisim::record::events::{Purpose, StatementKind};
use replisim::record::workload::ClientScope;
use replisim::report::{self, Report};
use replisim::router::render_prometheus;
use replisim::scenario::{self, Invariant, Scenario};
use replisim::sim::RunOutcome;
use replisim::sim::harness::{RunOptions, run_with};

const SEEDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

// The allocator `replisim` itself runs with: simulations allocate many small buffers per message,
// and the suite would otherwise run on the system allocator, slower than the command it tests.
#[cfg(feature = "cli")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
