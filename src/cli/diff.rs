//! `replisim diff`: two JSON reports compared figure by figure.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use super::Outcome;
use crate::report::diff::{compare, render};

/// Arguments of `replisim diff`.
#[derive(Debug, Args)]
pub(super) struct DiffArgs {
    /// The baseline report.
    base: PathBuf,
    /// The new report.
    new: PathBuf,
    /// Largest tolerated worsening of a figure, in percent of its base value.
    #[arg(long, default_value_t = 10.0)]
    max_regression: f64,
    /// Fail (exit 1) on any difference at all, the event trace included: for deterministic
    /// baselines, where every change is either a regression or a baseline update.
    #[arg(long)]
    fail_on_change: bool,
}

pub(super) fn diff(args: &DiffArgs) -> Outcome {
    if !(args.max_regression.is_finite() && args.max_regression >= 0.0) {
        return Outcome::BadInput(format!(
            "--max-regression {}: expected a percentage >= 0",
            args.max_regression
        ));
    }
    let (base, new) = match (read_report(&args.base), read_report(&args.new)) {
        (Ok(b), Ok(n)) => (b, n),
        (Err(e), _) | (_, Err(e)) => return Outcome::BadInput(e),
    };
    let diff = compare(&base, &new, args.max_regression);
    print!("{}", render(&diff, args.max_regression));
    if diff.is_worse() || (args.fail_on_change && diff.changed()) {
        Outcome::InvariantFailed
    } else {
        Outcome::Passed
    }
}

/// Reads a JSON report; anything but a JSON object with a `scenario` is bad input.
fn read_report(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: not JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    if value.get("scenario").is_none() {
        return Err(format!(
            "{}: not a replisim report (no `scenario`)",
            path.display()
        ));
    }
    Ok(value)
}
