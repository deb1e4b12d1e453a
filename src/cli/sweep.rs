//! `replisim sweep`: every scenario over every seed, in parallel, tabulated.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::Outcome;
use crate::report;
use crate::search::batch::{InOrder, run_parallel};
use crate::search::determinism::{Comparison, OwnRun, compare_with_child, work_dir};
use crate::search::junit;
use crate::search::seeds::{SeedRange, Shard};
use crate::search::sweep::{
    Job, JobResult, SweepScenario, load_all, plan, render_table, replay_command, scenario_files,
    totals,
};
use crate::search::verdict::simulate_keeping_trace;

/// Arguments of `replisim sweep`.
#[derive(Debug, Args)]
pub(super) struct SweepArgs {
    /// Scenario files, or directories of them (`*.toml`, in name order).
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// Seeds, `A..B` inclusive.
    #[arg(long)]
    seeds: SeedRange,
    /// Simulations run at once (each stays single-threaded and deterministic).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// Run only shard K of N of the (scenario, seed) pairs (for a CI matrix).
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    /// Write a JUnit XML file: one testcase per (scenario, seed).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Directory for the reports of runs (failing runs only, unless `--all-reports`).
    #[arg(long, default_value = "reports/sweep")]
    out: PathBuf,
    /// Write the JSON and Markdown reports of every run, not only the failing ones.
    #[arg(long)]
    all_reports: bool,
    /// Run each seed a second time in a separate process and compare report and trace.
    #[arg(long)]
    check_determinism: bool,
}

pub(super) fn sweep(args: &SweepArgs) -> Outcome {
    let files = match scenario_files(&args.scenarios) {
        Ok(files) => files,
        Err(e) => return Outcome::BadInput(e),
    };
    let scenarios = match load_all(&files) {
        Ok(s) => s,
        Err(e) => return Outcome::BadInput(e.to_string()),
    };
    let jobs = plan(scenarios.len(), args.seeds, args.shard);
    let exe = if args.check_determinism {
        match std::env::current_exe() {
            Ok(exe) => Some(exe),
            Err(e) => return Outcome::Internal(format!("cannot find this executable: {e}")),
        }
    } else {
        None
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        return Outcome::BadInput(format!("{}: cannot create: {e}", args.out.display()));
    }

    // Wall time is only printed (seeds per minute), never written into a report.
    let started = std::time::Instant::now();
    let progress = Progress::new(jobs.len() as u64);
    let mut in_order = InOrder::new();
    let results = run_parallel(
        usize::from(args.jobs),
        &jobs,
        |job| run_job(&scenarios, *job, args, exe.as_deref()),
        |index, result| {
            let line = status_line(&scenarios, result);
            for line in in_order.push(index, line) {
                progress.line(&line);
            }
        },
    );
    progress.finish();
    let elapsed = started.elapsed().as_secs_f64();

    print!(
        "{}",
        render_table(&scenarios, &totals(scenarios.len(), &results))
    );
    let failed: Vec<&JobResult> = results.iter().filter(|r| !r.passed()).collect();
    for result in &failed {
        let path = &scenarios[result.job.scenario].path;
        println!(
            "FAIL {} seed {}",
            scenarios[result.job.scenario].scenario.name, result.job.seed
        );
        for problem in result.problems() {
            println!("  {problem}");
        }
        println!("  replay: {}", replay_command(path, result.job.seed));
    }
    println!(
        "{} runs, {} failed, in {elapsed:.1} s ({:.1} seeds per minute, {} jobs){}",
        results.len(),
        failed.len(),
        results.len() as f64 * 60.0 / elapsed.max(1e-9),
        args.jobs,
        args.shard
            .map(|s| format!(", shard {}/{}", s.index, s.count))
            .unwrap_or_default()
    );
    if let Some(file) = &args.junit {
        let xml = junit::render(&scenarios, &results);
        if let Err(e) = report::write_whole_creating_dir(file, xml.as_bytes()) {
            return Outcome::BadInput(format!("{}: cannot write JUnit: {e}", file.display()));
        }
        println!("junit: {}", file.display());
    }
    let internal = results.iter().filter(|r| r.verdict.is_err()).count();
    if internal > 0 {
        Outcome::Internal(format!(
            "{internal} runs hit an internal error (listed above)"
        ))
    } else if failed.is_empty() {
        Outcome::Passed
    } else {
        Outcome::InvariantFailed
    }
}

/// Runs one (scenario, seed) pair: the simulation, its reports when kept, and with
/// `--check-determinism` a second process compared with it.
fn run_job(
    scenarios: &[SweepScenario],
    job: Job,
    args: &SweepArgs,
    exe: Option<&Path>,
) -> JobResult {
    let s = &scenarios[job.scenario];
    let ran = simulate_keeping_trace(&s.scenario, job.seed, exe.is_some());
    let mut nondeterminism = None;
    if let (Ok((verdict, trace)), Some(exe)) = (&ran, exe) {
        let json = report::to_json(&verdict.report);
        let own = OwnRun {
            scenario_path: &s.path,
            scenario_name: &s.scenario.name,
            seed: job.seed,
            json: &json,
            trace,
        };
        nondeterminism =
            match compare_with_child(exe, &own, &work_dir(&args.out, &s.scenario.name, job.seed)) {
                Ok(Comparison::Identical) => None,
                Ok(Comparison::Differs(what)) => Some(what),
                Err(e) => Some(format!("the check could not run: {e}")),
            };
    }
    let verdict = ran.map(|(verdict, _)| verdict);
    let result = JobResult {
        job,
        verdict,
        nondeterminism,
    };
    if let Ok(verdict) = &result.verdict
        && (args.all_reports || !result.passed())
        && let Err(e) = report::write(&args.out, &verdict.report)
    {
        // The verdict stands without its files; say why they are missing.
        eprintln!(
            "replisim: {}: cannot write reports: {e}",
            args.out.display()
        );
    }
    result
}

/// `PASS name seed N` or `FAIL name seed N: kinds`.
fn status_line(scenarios: &[SweepScenario], result: &JobResult) -> String {
    let name = &scenarios[result.job.scenario].scenario.name;
    let seed = result.job.seed;
    if result.passed() {
        return format!("PASS {name} seed {seed}");
    }
    let mut kinds: Vec<&str> = match &result.verdict {
        Ok(v) => v.failed_kinds(),
        Err(_) => vec!["internal_error"],
    };
    if result.nondeterminism.is_some() {
        kinds.push("determinism");
    }
    format!("FAIL {name} seed {seed}: {}", kinds.join(", "))
}

/// A progress bar on a terminal; plain lines, one per run, otherwise.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(total: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40} {pos}/{len} runs, {elapsed} elapsed, eta {eta} {msg}",
        ) {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    fn line(&self, line: &str) {
        match &self.0 {
            // On a terminal only failures are worth a line; the bar counts the rest.
            Some(bar) => {
                if line.starts_with("FAIL") {
                    bar.println(line);
                }
                bar.inc(1);
            }
            None => println!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
