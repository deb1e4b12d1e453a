//! SVG charts of a run, beside its reports.

use std::path::{Path, PathBuf};

use crate::record::RunOutcome;
use crate::scenario::Scenario;

/// Writes the run's charts into `dir` and returns their paths.
pub fn write(
    dir: &Path,
    scenario: &Scenario,
    outcome: &RunOutcome,
) -> std::io::Result<Vec<PathBuf>> {
    let _ = (dir, scenario, outcome);
    Ok(Vec::new())
}
