//! `replisim explore`: a fresh fault schedule drawn from each seed, every failing draw kept.

use std::path::PathBuf;

use clap::Args;

use super::Outcome;
use crate::report;
use crate::scenario;
use crate::search::explore;
use crate::search::seeds::SeedRange;

/// Arguments of `replisim explore`.
#[derive(Debug, Args)]
pub(super) struct ExploreArgs {
    /// The scenario whose shards, router settings and invariants are kept; its `[explore]` table
    /// gives the ranges drawn from (its own faults are replaced by the drawn ones).
    scenario: PathBuf,
    /// Seeds to draw from, `A..B` inclusive.
    #[arg(long)]
    seeds: SeedRange,
    /// Simulations run at once (the output is the same for any value).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Directory for the failing draws, `<name>-explore-seed<N>.toml` each.
    #[arg(long, default_value = "reports/explore")]
    out: PathBuf,
}

pub(super) fn explore(args: &ExploreArgs) -> Outcome {
    let base = match scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return Outcome::BadInput(e.to_string()),
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        return Outcome::BadInput(format!("{}: cannot create: {e}", args.out.display()));
    }
    let mut written = 0;
    let mut write_error: Option<String> = None;
    let outcomes = explore::explore(&base, args.seeds, args.jobs, |outcome| {
        println!("{}", outcome.line);
        let Some((name, text)) = &outcome.file else {
            return;
        };
        let path = args.out.join(name);
        match report::write_whole(&path, text.as_bytes()) {
            Ok(()) => written += 1,
            Err(e) => {
                write_error.get_or_insert(format!("{}: cannot write: {e}", path.display()));
            }
        }
    });
    println!(
        "{}",
        explore::summary_line(&outcomes, written, &args.out.display().to_string())
    );
    if let Some(e) = write_error {
        return Outcome::BadInput(e);
    }
    if let Some(e) = outcomes.iter().find_map(|o| o.error.as_ref()) {
        return Outcome::Internal(format!("seed exploration failed: {e}"));
    }
    if outcomes.iter().any(|o| !o.failed_kinds.is_empty()) {
        Outcome::InvariantFailed
    } else {
        Outcome::Passed
    }
}
