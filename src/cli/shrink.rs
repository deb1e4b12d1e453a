//! `replisim shrink`: a failing scenario reduced to a smaller one that fails the same way.

use std::path::PathBuf;

use clap::Args;

use super::Outcome;

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
}

pub(super) fn shrink(args: &ShrinkArgs) -> Outcome {
    let _ = (&args.scenario, args.seed, &args.out);
    Outcome::Internal("shrink is not built yet".to_string())
}
