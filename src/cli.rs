//! The command line: `replisim run` (with `--metrics FILE`), `replisim real` and `replisim check`,
//! and the mapping of every outcome to an exit code (0 held / valid, 1 an invariant failed, 2 bad
//! input or usage, 3 internal error).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::real as real_mode;
use crate::real::ClusterError;
use crate::real::scenario_run::RealRunError;
use crate::report;
use crate::router::{MetricsSnapshot, render_prometheus};
use crate::scenario;
use crate::sim;

/// Raw command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "replisim",
    version,
    about = "PostgreSQL replica router and its deterministic simulation harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario in the simulation and write its reports.
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// Seed (default: the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Directory for the reports.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// Print only the verdict line.
        #[arg(long)]
        quiet: bool,
        /// Also write the router's Prometheus text exposition, as it stood at the end of the run.
        #[arg(long, value_name = "FILE")]
        metrics: Option<PathBuf>,
    },
    /// Run one scenario against a real PostgreSQL 15 cluster in real time and write its reports.
    Real {
        /// The scenario file.
        scenario: PathBuf,
        /// Seed of the workload (default: the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Directory for the reports (`<name>-seed<N>-real.json` and `.md`).
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// Print only the verdict line.
        #[arg(long)]
        quiet: bool,
        /// `NODE=postgres://USER@HOST:PORT/DB`: use this server for NODE instead of starting a
        /// cluster (give one for every node; faults that need server control are refused).
        #[arg(long = "url", value_name = "NODE=URL")]
        urls: Vec<String>,
    },
    /// Validate scenario files without running them.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
}

/// How a command ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every invariant held, or every file was valid.
    Passed,
    /// At least one invariant failed.
    InvariantFailed,
    /// Bad input or usage; the message is one line.
    BadInput(String),
    /// A bug in replisim.
    Internal(String),
    /// Stopped by Ctrl-C before it could finish (exit 3, as no verdict was reached).
    Interrupted(String),
}

impl Outcome {
    /// The exit code of the SPEC.
    pub fn code(&self) -> u8 {
        match self {
            Outcome::Passed => 0,
            Outcome::InvariantFailed => 1,
            Outcome::BadInput(_) => 2,
            Outcome::Internal(_) | Outcome::Interrupted(_) => 3,
        }
    }
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // A panic is a bug: say so in one line and exit 3, never with a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("replisim: internal error: {info}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let outcome = match std::panic::catch_unwind(|| execute(cli.command)) {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Internal("a panic (see above)".to_string()),
    };
    match &outcome {
        Outcome::BadInput(msg) => eprintln!("replisim: {msg}"),
        Outcome::Internal(msg) => eprintln!("replisim: internal error: {msg}"),
        Outcome::Interrupted(msg) => eprintln!("replisim: {msg}"),
        Outcome::Passed | Outcome::InvariantFailed => {}
    }
    ExitCode::from(outcome.code())
}

fn execute(command: Command) -> Outcome {
    match command {
        Command::Run {
            scenario,
            seed,
            out,
            quiet,
            metrics,
        } => run(&scenario, seed, &out, quiet, metrics.as_deref()),
        Command::Real {
            scenario,
            seed,
            out,
            quiet,
            urls,
        } => real(&scenario, seed, &out, quiet, &urls),
        Command::Check { scenarios } => check_files(&scenarios),
    }
}

fn real(path: &Path, seed: Option<u64>, out: &Path, quiet: bool, urls: &[String]) -> Outcome {
    let scenario = match scenario::load(path) {
        Ok(s) => s,
        Err(e) => return Outcome::BadInput(e.to_string()),
    };
    let seed = seed.unwrap_or(scenario.seed);
    let external = if urls.is_empty() {
        None
    } else {
        match real_mode::urls::parse(&scenario, urls) {
            Ok(nodes) => Some(nodes),
            Err(e) => return Outcome::BadInput(e.to_string()),
        }
    };
    if let Some(message) = real_mode::refusal::refusal(&scenario, external.is_some()) {
        return Outcome::BadInput(format!("{}: {message}", path.display()));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Outcome::Internal(format!("cannot start the async runtime: {e}")),
    };
    let ran = runtime.block_on(real_mode::scenario_run::run(&scenario, seed, external));
    let real_outcome = match ran {
        Ok(o) => o,
        // What the user can fix (the machine's PostgreSQL, the servers given with --url) is
        // bad input; anything else is replisim's fault.
        Err(
            e @ (RealRunError::External { .. }
            | RealRunError::Cluster(
                ClusterError::MissingBinaries { .. } | ClusterError::NoPostgresUser { .. },
            )),
        ) => return Outcome::BadInput(e.to_string()),
        Err(e @ RealRunError::Interrupted) => return Outcome::Interrupted(e.to_string()),
        Err(e) => return Outcome::Internal(e.to_string()),
    };
    let mut report = report::evaluate(&scenario, &real_outcome.outcome);
    // The evidence must agree with the servers' own counts, or the run proves nothing.
    let cross_check = &real_outcome.details.cross_check;
    report.passed &= cross_check.passed;
    let (json, md) = match real_mode::real_report::write(out, &report, &real_outcome.details) {
        Ok(paths) => paths,
        Err(e) => {
            return Outcome::BadInput(format!("{}: cannot write reports: {e}", out.display()));
        }
    };
    let mut replay = format!("replisim real {} --seed {seed}", path.display());
    for url in urls {
        replay.push_str(&format!(" --url {}", url.split('=').next().unwrap_or(url)));
        replay.push_str("=...");
    }
    if quiet {
        let verdict = if report.passed { "PASS" } else { "FAIL" };
        println!(
            "{verdict} {} seed {seed} real ({})",
            scenario.name,
            json.display()
        );
        if !report.passed {
            println!("rerun (real time, not an exact replay): {replay}");
        }
    } else {
        print!(
            "{}",
            report::summary::render(&report, &replay)
                .replacen(" s simulated ", " s of real time ", 1)
                .replacen("replay: ", "rerun (real time, not an exact replay): ", 1)
        );
        println!("reports: {} {}", json.display(), md.display());
    }
    for c in cross_check.disagreements() {
        println!(
            "cross-check disagrees: {}",
            real_mode::cross_check::describe(c)
        );
    }
    if report.passed {
        Outcome::Passed
    } else {
        Outcome::InvariantFailed
    }
}

fn check_files(paths: &[PathBuf]) -> Outcome {
    let mut first_error = None;
    for path in paths {
        match scenario::load(path) {
            Ok(s) => println!("ok   {} ({})", path.display(), s.name),
            Err(e) => {
                println!("BAD  {e}");
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    match first_error {
        None => Outcome::Passed,
        Some(e) => Outcome::BadInput(e),
    }
}

fn run(path: &Path, seed: Option<u64>, out: &Path, quiet: bool, metrics: Option<&Path>) -> Outcome {
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
    let (json, md) = match report::write(out, &report) {
        Ok(paths) => paths,
        Err(e) => {
            return Outcome::BadInput(format!("{}: cannot write reports: {e}", out.display()));
        }
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
