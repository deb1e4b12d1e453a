//! `replisim sweep`: every scenario over every seed, in parallel, tabulated.

use std::path::PathBuf;

use clap::Args;

use super::Outcome;
use crate::search::seeds::{SeedRange, Shard};

/// Arguments of `replisim sweep`.
#[derive(Debug, Args)]
pub(super) struct SweepArgs {
    /// Scenario files, or directories of them (`*.toml`, in name order).
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// Seeds, `A..B` inclusive.
    #[arg(long)]
    seeds: SeedRange,
    /// Simulations run at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Run only shard K of N of the (scenario, seed) pairs.
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    /// Write a JUnit XML file: one testcase per (scenario, seed).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Directory for the reports of failing runs.
    #[arg(long, default_value = "reports/sweep")]
    out: PathBuf,
    /// Run each seed a second time in a separate process and compare report and trace.
    #[arg(long)]
    check_determinism: bool,
}

pub(super) fn sweep(args: &SweepArgs) -> Outcome {
    let _ = args;
    Outcome::Internal("sweep is not built yet".to_string())
}
