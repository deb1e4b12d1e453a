//! The command line, one file per command, and the mapping of every outcome to an exit code (0 held
//! / valid, 1 an invariant failed, 2 bad input or usage, 3 internal error).
//!
//! - `run`: one simulated run (reports, charts, `--metrics`, `--check-determinism`); `profile`:
//!   its `--profile` speed lines.
//! - `real`: one run against a real PostgreSQL cluster.
//! - `check`: validates scenario files.
//! - `sweep`, `explore`, `shrink`: the searches, over [`crate::search`].
//! - `diff`: two reports compared figure by figure.
//! - `overhead`: the router against direct connections and pgpool-II on a real cluster.

mod check;
mod diff;
mod explore;
mod logging;
mod overhead;
mod profile;
mod real;
mod run;
mod shrink;
mod sweep;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// More log output on stderr: `-v` info, `-vv` debug (`RUST_LOG` overrides; default: warnings,
    /// and for sweep, explore and shrink only errors, as their runs would interleave).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario in the simulation and write its reports and charts.
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
        /// Do not write the SVG charts.
        #[arg(long)]
        no_charts: bool,
        /// Run the seed twice more in separate processes and fail on any difference of report or
        /// trace, naming the first differing event.
        #[arg(long)]
        check_determinism: bool,
        /// Write the ordered event trace, one event per line (what `trace_hash` fingerprints).
        #[arg(long, value_name = "FILE", hide = true)]
        trace: Option<PathBuf>,
        /// Print how fast the run went: simulated seconds and client operations per wall-clock
        /// second, for the whole command and for the simulation alone. Wall-clock figures go to
        /// the terminal only, never into a report, trace or chart.
        #[arg(long)]
        profile: bool,
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
        /// The router the workload goes through: `replisim` (in process) or `pgpool` (pgpool-II
        /// 4.3, started by replisim in front of the same fault proxies; one shard, no `--url`).
        #[arg(long, value_enum, default_value_t = RouterArg::Replisim)]
        router: RouterArg,
    },
    /// Validate scenario files without running them.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Run every scenario over every seed and tabulate the outcome.
    Sweep(sweep::SweepArgs),
    /// Draw a fresh fault schedule (and, with `[explore]`, node and workload parameters) from each
    /// seed, run it, and keep every failing draw as a standalone scenario.
    Explore(explore::ExploreArgs),
    /// Reduce a failing scenario to a smaller one that still fails the same invariant on that seed.
    Shrink(shrink::ShrinkArgs),
    /// Compare two JSON reports figure by figure.
    Diff(diff::DiffArgs),
    /// Measure the router against tokio-postgres directly and against pgpool-II on a real cluster
    /// started here, and print one table (see `scripts/router-overhead`).
    Overhead(overhead::OverheadArgs),
}

/// How a command ended.
/// `replisim real --router`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RouterArg {
    /// This crate's router, in process.
    Replisim,
    /// pgpool-II, started by replisim.
    Pgpool,
}

impl From<RouterArg> for crate::real::scenario_run::RouterUnderTest {
    fn from(arg: RouterArg) -> Self {
        match arg {
            RouterArg::Replisim => Self::Replisim,
            RouterArg::Pgpool => Self::Pgpool,
        }
    }
}

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
    let searching = matches!(
        cli.command,
        Command::Sweep(_) | Command::Explore(_) | Command::Shrink(_)
    );
    logging::install(cli.verbose, if searching { "error" } else { "warn" });
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
            no_charts,
            check_determinism,
            trace,
            profile,
        } => run::run(&run::RunArgs {
            path: &scenario,
            seed,
            out: &out,
            quiet,
            metrics: metrics.as_deref(),
            charts: !no_charts,
            check_determinism,
            trace: trace.as_deref(),
            profile,
        }),
        Command::Real {
            scenario,
            seed,
            out,
            quiet,
            urls,
            router,
        } => real::real(&scenario, seed, &out, quiet, &urls, router.into()),
        Command::Check { scenarios } => check::check_files(&scenarios),
        Command::Sweep(args) => sweep::sweep(&args),
        Command::Explore(args) => explore::explore(&args),
        Command::Shrink(args) => shrink::shrink(&args),
        Command::Diff(args) => diff::diff(&args),
        Command::Overhead(args) => overhead::overhead(&args),
    }
}
