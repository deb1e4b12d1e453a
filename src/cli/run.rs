//! `replisim run`: one scenario in the simulation, its reports, and its verdict.

use std::path::Path;
use std::time::Instant;

use super::Outcome;
use super::profile::{self, Phases};
use crate::report;
use crate::router::{MetricsSnapshot, render_prometheus};
use crate::scenario;
use crate::search::determinism::{Comparison, OwnRun, compare_with_child, work_dir};
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
    /// Print how fast the simulation ran (wall-clock figures, printed only).
    pub profile: bool,
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
        profile,
    } = args;
    let scenario = match scenario::load(path) {
        Ok(s) => s,
        Err(e) => return Outcome::BadInput(e.to_string()),
    };
    let seed = seed.unwrap_or(scenario.seed);
    let started = Instant::now();
    let outcome = match sim::run(&scenario, seed) {
        Ok(o) => o,
        Err(e) => return Outcome::Internal(e.to_string()),
    };
    let simulated = Instant::now();
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
    if let Some(file) = trace
        && let Err(e) = write_lines(file, &report::trace::lines(&scenario, &outcome.events))
    {
        return Outcome::BadInput(format!("{}: cannot write the trace: {e}", file.display()));
    }
    // Measured before the determinism check, which runs the seed again in other processes.
    let phases = Phases {
        simulation: simulated - started,
        reporting: simulated.elapsed(),
    };
    let determinism = if check_determinism {
        match second_process(path, &scenario, &report, &outcome, out) {
            Ok(comparison) => Some(comparison),
            Err(e) => return Outcome::Internal(format!("determinism check: {e}")),
        }
    } else {
        None
    };
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
    if profile {
        print!(
            "{}",
            profile::render(outcome.run_end_us, outcome.events.ops.len(), phases)
        );
    }
    match &determinism {
        Some(Comparison::Identical) => {
            println!("determinism: a second process gave a byte-identical report and trace");
        }
        Some(Comparison::Differs(what)) => println!("NOT DETERMINISTIC: {what}"),
        None => {}
    }
    let deterministic = !matches!(determinism, Some(Comparison::Differs(_)));
    if report.passed && deterministic {
        Outcome::Passed
    } else {
        Outcome::InvariantFailed
    }
}

/// Runs the seed again in a child process and compares its report and trace with this run's.
fn second_process(
    path: &Path,
    scenario: &scenario::Scenario,
    report: &report::Report,
    outcome: &crate::record::RunOutcome,
    out: &Path,
) -> Result<Comparison, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let json = report::to_json(report);
    let trace = report::trace::lines(scenario, &outcome.events);
    let own = OwnRun {
        scenario_path: path,
        scenario_name: &scenario.name,
        seed: report.seed,
        json: &json,
        trace: &trace,
    };
    compare_with_child(&exe, &own, &work_dir(out, &scenario.name, report.seed))
}

/// Writes `lines`, each newline-terminated, whole or not at all.
fn write_lines(file: &Path, lines: &[String]) -> std::io::Result<()> {
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    report::write_whole_creating_dir(file, text.as_bytes())
}

/// Writes the Prometheus exposition of `snapshot` to `file` (whole or not at all), creating its
/// directory if needed.
fn write_metrics(file: &Path, snapshot: &MetricsSnapshot) -> std::io::Result<()> {
    report::write_whole_creating_dir(file, render_prometheus(snapshot).as_bytes())
}
