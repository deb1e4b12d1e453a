//! `replisim run`: one scenario in the simulation, its reports, and its verdict.

use std::path::Path;

use super::Outcome;
use crate::report;
use crate::router::{MetricsSnapshot, render_prometheus};
use crate::scenario;
use crate::sim;

/// What `run` was asked to do.
pub(super) struct RunArgs<'a> {
    pub path: &'a Path,
    pub seed: Option<u64>,
    pub out: &'a Path,
    pub quiet: bool,
    pub metrics: Option<&'a Path>,
    pub charts: bool,
    pub check_determinism: bool,
    pub trace: Option<&'a Path>,
}

pub(super) fn run(args: &RunArgs) -> Outcome {
    let &RunArgs {
        path,
        seed,
        out,
        quiet,
        metrics,
        charts,
        check_determinism,
        trace,
    } = args;
    let scenario = match scenario::load(path) {
        Ok(s) => s,
        Err(e) => return Outcome::BadInput(e.to_string()),
    };
    let seed = seed.unwrap_or(scenario.seed);
    let outcome = match sim::run(&scenario, seed) {
        Ok(o) => o,
        Err(e) => return Outcome::Internal(e.to_string()),
    };
    let report = report::evaluate(&scenario, &outcome);
    let replay = format!("replisim run {} --seed {seed}", path.display());
    // Charts first, so that the Markdown report links exactly the charts that were written.
    let chart_files = if charts {
        match report::charts::write(out, &scenario, &outcome) {
            Ok(files) => files,
            Err(e) => {
                return Outcome::BadInput(format!("{}: cannot write charts: {e}", out.display()));
            }
        }
    } else {
        Vec::new()
    };
    let (json, md) = match report::write_with_charts(out, &report, &chart_files) {
        Ok(paths) => paths,
        Err(e) => {
            return Outcome::BadInput(format!("{}: cannot write reports: {e}", out.display()));
        }
    };
    let _ = (check_determinism, trace);
    if let Some(file) = metrics
        && let Err(e) = write_metrics(file, &outcome.router_metrics)
    {
        return Outcome::BadInput(format!("{}: cannot write metrics: {e}", file.display()));
    }
    if quiet {
        let verdict = if report.passed { "PASS" } else { "FAIL" };
        println!(
            "{verdict} {} seed {seed} ({})",
            scenario.name,
            json.display()
        );
        if !report.passed {
            for fault in report.faults.iter().filter(|f| !f.took_effect) {
                println!("{}", report::summary::fault_line(fault));
            }
            println!("replay: {replay}");
        }
    } else {
        print!("{}", report::summary::render(&report, &replay));
        println!("reports: {} {}", json.display(), md.display());
        if let Some(file) = metrics {
            println!("metrics: {}", file.display());
        }
    }
    if report.passed {
        Outcome::Passed
    } else {
        Outcome::InvariantFailed
    }
}

/// Writes the Prometheus exposition of `snapshot` to `file` (whole or not at all), creating its
/// directory if needed.
fn write_metrics(file: &Path, snapshot: &MetricsSnapshot) -> std::io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    report::write_whole(file, render_prometheus(snapshot).as_bytes())
}
