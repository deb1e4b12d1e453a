//! `replisim shrink`: a failing scenario reduced to a smaller one that fails the same way.

use std::path::PathBuf;

use clap::Args;

use super::Outcome;
use crate::report;
use crate::scenario::{self, format_duration};
use crate::search::fault_groups;
use crate::search::shrink::{self, ShrinkError, ShrinkOptions};

/// Arguments of `replisim shrink`.
#[derive(Debug, Args)]
pub(super) struct ShrinkArgs {
    /// The failing scenario.
    scenario: PathBuf,
    /// The seed it fails on (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Where to write the reduced scenario.
    #[arg(long)]
    out: PathBuf,
    /// The failure to keep: an invariant kind, or `fault_took_effect` (default: the first kind the
    /// scenario fails on that seed, in the order of its report).
    #[arg(long)]
    kind: Option<String>,
    /// Most simulation runs, counted as if candidates ran one at a time; the smallest failing
    /// scenario found by then is written.
    #[arg(long, default_value_t = 200)]
    max_runs: usize,
    /// Candidates run at once (the result is the same for any value).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
}

pub(super) fn shrink(args: &ShrinkArgs) -> Outcome {
    let original = match scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return Outcome::BadInput(e.to_string()),
    };
    let seed = args.seed.unwrap_or(original.seed);
    let options = ShrinkOptions {
        seed,
        kind: args.kind.clone(),
        max_runs: args.max_runs,
        jobs: args.jobs,
    };
    let shrunk = match shrink::shrink(&original, &options) {
        Ok(shrunk) => shrunk,
        Err(e @ (ShrinkError::DoesNotFail { .. } | ShrinkError::KindNotFailed { .. })) => {
            return Outcome::BadInput(format!("{}: {e}", args.scenario.display()));
        }
        Err(ShrinkError::Internal(e)) => return Outcome::Internal(e),
    };
    let text = match shrunk.scenario.to_toml() {
        Ok(text) => text,
        Err(e) => return Outcome::Internal(e.to_string()),
    };
    if let Err(e) = report::write_whole_creating_dir(&args.out, text.as_bytes()) {
        return Outcome::BadInput(format!("{}: cannot write: {e}", args.out.display()));
    }
    let s = &shrunk.scenario;
    println!(
        "shrink {} seed {seed}: keeping {} (the run failed: {})",
        args.scenario.display(),
        shrunk.kind,
        shrunk.original_kinds.join(", ")
    );
    for step in &shrunk.steps {
        println!("  {step}");
    }
    println!(
        "faults {} -> {} (an undo counted with its fault), invariants {} -> {}, duration {} -> {}, clients {} -> {}",
        fault_groups::groups(&original.faults).len(),
        fault_groups::groups(&s.faults).len(),
        original.invariants.len(),
        s.invariants.len(),
        format_duration(original.duration),
        format_duration(s.duration),
        original.workload.clients,
        s.workload.clients
    );
    let budget = if shrunk.budget_spent {
        format!(" (the budget of {} ran out)", args.max_runs)
    } else {
        String::new()
    };
    println!(
        "runs: {} ({} simulated){budget}",
        shrunk.runs, shrunk.simulated
    );
    println!(
        "wrote {} (replay: replisim run {} --seed {seed})",
        args.out.display(),
        args.out.display()
    );
    Outcome::Passed
}
