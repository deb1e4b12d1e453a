//! `replisim explore`: a fresh fault schedule drawn from each seed, every failing draw kept.

use std::path::PathBuf;

use clap::Args;

use super::Outcome;
use crate::search::seeds::SeedRange;

/// Arguments of `replisim explore`.
#[derive(Debug, Args)]
pub(super) struct ExploreArgs {
    /// The scenario whose shards, router settings and invariants are kept.
    scenario: PathBuf,
    /// Seeds to draw from, `A..B` inclusive.
    #[arg(long)]
    seeds: SeedRange,
    /// Simulations run at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Directory for the failing draws (`<name>-explore-seed<N>.toml`) and their reports.
    #[arg(long, default_value = "reports/explore")]
    out: PathBuf,
}

pub(super) fn explore(args: &ExploreArgs) -> Outcome {
    let _ = (&args.scenario, args.seeds, args.jobs, &args.out);
    Outcome::Internal("explore is not built yet".to_string())
}
