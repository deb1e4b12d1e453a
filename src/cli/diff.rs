//! `replisim diff`: two JSON reports compared figure by figure.

use std::path::PathBuf;

use clap::Args;

use super::Outcome;

/// Arguments of `replisim diff`.
#[derive(Debug, Args)]
pub(super) struct DiffArgs {
    /// The baseline report.
    base: PathBuf,
    /// The new report.
    new: PathBuf,
    /// Largest tolerated regression of a figure, in percent.
    #[arg(long, default_value_t = 10.0)]
    max_regression: f64,
}

pub(super) fn diff(args: &DiffArgs) -> Outcome {
    let _ = (&args.base, &args.new, args.max_regression);
    Outcome::Internal("diff is not built yet".to_string())
}
