//! `replisim overhead`: the router against tokio-postgres directly and against pgpool-II on a real
//! cluster, printed as one table (and written as Markdown with `--out`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::Outcome;
use crate::real::overhead::{self, Cell, OverheadOptions, Path};

/// The router's targets: p50 at most this times direct at 1 client ...
const P50_TARGET: f64 = 1.03;
/// ... and at least this share of direct throughput at 16 clients.
const THROUGHPUT_TARGET: f64 = 0.95;

/// Arguments of `replisim overhead`.
#[derive(Debug, clap::Args)]
pub struct OverheadArgs {
    /// Seconds each path runs per round, for each workload and client count.
    #[arg(long, default_value_t = 0.4)]
    slice: f64,
    /// Rounds; the paths take turns within each round.
    #[arg(long, default_value_t = 16)]
    rounds: u32,
    /// Client counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 16])]
    clients: Vec<u32>,
    /// Paths to measure besides direct, which is always measured (the ratios divide by it); pgpool
    /// must be installed (`apt-get install -y pgpool2`).
    #[arg(long, value_delimiter = ',', value_parser = ["direct", "router", "pgpool"], default_values_t = ["router".to_string(), "pgpool".to_string()])]
    paths: Vec<String>,
    /// Measure this one path alone (no ratios), for a profiler that must see only its work, e.g.
    /// `valgrind --tool=callgrind` (see `scripts/router-instructions`).
    #[arg(long, value_name = "PATH", value_parser = ["direct", "router", "router-one", "pgpool"], conflicts_with = "paths")]
    only: Option<String>,
    /// Also write the table, with the command and setup, as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Pin this process's threads (clients, router, drivers) to one core once the servers are up,
    /// the servers keeping every core: shows how much of a path's cost is traffic between cores.
    #[arg(long, value_name = "CORE")]
    pin_to_core: Option<u32>,
}

pub(super) fn overhead(args: &OverheadArgs) -> Outcome {
    if !(args.slice.is_finite() && (0.1..=600.0).contains(&args.slice)) {
        return Outcome::BadInput(format!("--slice {}: give 0.1 to 600 seconds", args.slice));
    }
    if args.rounds == 0 || args.rounds > 100 {
        return Outcome::BadInput(format!("--rounds {}: give 1 to 100", args.rounds));
    }
    if args.clients.is_empty() || args.clients.iter().any(|&c| c == 0 || c > 256) {
        return Outcome::BadInput("--clients: give counts from 1 to 256".to_string());
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if let Some(core) = args.pin_to_core
        && usize::try_from(core).map_or(true, |core| core >= cores)
    {
        return Outcome::BadInput(format!(
            "--pin-to-core {core}: this machine has cores 0 to {}",
            cores - 1
        ));
    }
    let only = args.only.as_deref().map(|path| match path {
        "direct" => Path::Direct,
        "router" => Path::Router,
        "router-one" => Path::RouterOneReplica,
        _ => Path::Pgpool,
    });
    let pgpool = match only {
        Some(path) => path == Path::Pgpool,
        None => args.paths.iter().any(|p| p == "pgpool"),
    };
    if pgpool && let Err(e) = crate::real::pgpool::installed() {
        return Outcome::BadInput(format!("{e} (or leave it out with --paths router)"));
    }
    let options = OverheadOptions {
        slice: Duration::from_secs_f64(args.slice),
        rounds: args.rounds,
        clients: args.clients.clone(),
        router: args.paths.iter().any(|p| p == "router"),
        pgpool,
        only,
        pin_to_core: args.pin_to_core,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Outcome::Internal(format!("cannot start the async runtime: {e}")),
    };
    let progress = |line: &str| eprintln!("{line}");
    let cells = match runtime.block_on(overhead::measure(&options, &progress)) {
        Ok(cells) => cells,
        Err(e) => return Outcome::Internal(e.to_string()),
    };
    let table = table(&cells);
    let verdicts = verdicts(&cells);
    println!("{table}");
    for line in &verdicts {
        println!("{line}");
    }
    if args.only.is_some() {
        // Exact counts for a profiler's figures per statement (the table's rates are rounded).
        for cell in &cells {
            println!(
                "statements answered: {}, {} clients, {}: {}",
                cell.mix.label(),
                cell.clients,
                cell.path.label(),
                cell.ops
            );
        }
    }
    if let Some(out) = &args.out {
        let command = command_line(args);
        let markdown = markdown(&command, &options, &table, &verdicts);
        if let Err(e) = write_atomically(out, &markdown) {
            return Outcome::BadInput(format!("{}: cannot write: {e}", out.display()));
        }
        println!("written to {}", out.display());
    }
    let errors: u64 = cells.iter().map(|c| c.errors).sum();
    if errors > 0 {
        return Outcome::Internal(format!(
            "{errors} statements failed during the benchmark; its figures are not comparable"
        ));
    }
    Outcome::Passed
}

/// The cell of `path` in the row of `cell`.
fn same_row<'a>(cells: &'a [Cell], cell: &Cell, path: Path) -> Option<&'a Cell> {
    cells
        .iter()
        .find(|c| c.mix == cell.mix && c.clients == cell.clients && c.path == path)
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.3}x", value / base)
    } else {
        "-".to_string()
    }
}

/// One Markdown table: a row per (workload, clients, path).
fn table(cells: &[Cell]) -> String {
    let mut out = String::from(
        "| workload | clients | path | p50 µs | p99 µs | ops/s | p50 vs direct | p99 vs direct | ops/s vs direct | client CPU µs/op | servers CPU µs/op | machine CPU µs/op | machine busy | context switches /op | failed |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for cell in cells {
        let direct = same_row(cells, cell, Path::Direct);
        let (p50, p99, ops) = (
            cell.percentile_us(50.0),
            cell.percentile_us(99.0),
            cell.ops_per_second(),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {p50:.1} | {p99:.1} | {ops:.0} | {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.0}% | {:.2} | {} |",
            cell.mix.label(),
            cell.clients,
            cell.path.label(),
            direct.map_or("-".into(), |d| ratio(p50, d.percentile_us(50.0))),
            direct.map_or("-".into(), |d| ratio(p99, d.percentile_us(99.0))),
            direct.map_or("-".into(), |d| ratio(ops, d.ops_per_second())),
            cell.cpu_per_op_us(),
            cell.servers_cpu_per_op_us(),
            cell.machine_cpu_per_op_us(),
            cell.machine_busy_percent(),
            cell.switches_per_op(),
            cell.errors,
        );
    }
    out
}

/// How a ratio varied over the rounds, each round comparing the two paths measured minutes apart
/// at most: the middle half of the rounds' ratios, and the lowest and highest.
fn round_spread(sorted: &[f64]) -> String {
    let (Some(low), Some(high)) = (sorted.first(), sorted.last()) else {
        return String::new();
    };
    if sorted.len() < 2 {
        return String::new();
    }
    let at = |q: f64| {
        let index = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted.get(index).copied().unwrap_or(*high)
    };
    format!(
        "; by round {:.2}-{:.2}x, lowest {low:.2}x, highest {high:.2}x",
        at(0.25),
        at(0.75)
    )
}

/// The router's two targets, each met or missed, per workload.
fn verdicts(cells: &[Cell]) -> Vec<String> {
    let mut lines = Vec::new();
    for cell in cells
        .iter()
        .filter(|c| matches!(c.path, Path::Router | Path::RouterOneReplica))
    {
        let Some(direct) = same_row(cells, cell, Path::Direct) else {
            continue;
        };
        let (what, met) = match cell.clients {
            1 => {
                let r =
                    cell.percentile_us(50.0) / direct.percentile_us(50.0).max(f64::MIN_POSITIVE);
                (
                    format!("p50 {r:.3}x direct (target <= {P50_TARGET}x)"),
                    r <= P50_TARGET,
                )
            }
            16 => {
                let r = cell.ops_per_second() / direct.ops_per_second().max(f64::MIN_POSITIVE);
                (
                    format!(
                        "throughput {r:.3}x direct{} (target >= {THROUGHPUT_TARGET}x)",
                        round_spread(&cell.round_ratios(direct))
                    ),
                    r >= THROUGHPUT_TARGET,
                )
            }
            _ => continue,
        };
        lines.push(format!(
            "{} {}, {}, {} client(s): {what}",
            if met { "MET   " } else { "MISSED" },
            cell.path.label(),
            cell.mix.label(),
            cell.clients
        ));
    }
    lines
}

fn command_line(args: &OverheadArgs) -> String {
    let clients: Vec<String> = args.clients.iter().map(u32::to_string).collect();
    let mut command = format!(
        "replisim overhead --slice {} --rounds {} --clients {}",
        args.slice,
        args.rounds,
        clients.join(",")
    );
    match &args.only {
        Some(only) => {
            let _ = write!(command, " --only {only}");
        }
        None => {
            let _ = write!(command, " --paths {}", args.paths.join(","));
        }
    }
    if let Some(core) = args.pin_to_core {
        let _ = write!(command, " --pin-to-core {core}");
    }
    if let Some(out) = &args.out {
        let _ = write!(command, " --out {}", out.display());
    }
    command
}

fn markdown(command: &str, options: &OverheadOptions, table: &str, verdicts: &[String]) -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mut out = String::from("# Router overhead: direct, router, pgpool-II\n\n");
    let _ = writeln!(
        out,
        "Measured with `scripts/router-overhead` (which installs pgpool-II if missing and runs `{command}`).\n"
    );
    let _ = writeln!(
        out,
        "- One PostgreSQL 15 cluster on this machine ({cores} cores, shared with the clients): \
         primary-1, replica-1, replica-2, streaming replication.\n\
         - Statements (prepared, SPEC 2a): the primary-key read of one of 10,000 rows of one org, \
         and a mix of 90% of that read and 10% of the upsert.\n\
         - Each client runs one statement after another for {:.1} s per round; {} rounds, the paths \
         taking turns in each round, so that ratios compare figures measured in the same minutes. \
         Latency is what the client saw, connections opened and warmed before timing.\n\
         - direct: tokio-postgres to replica-1 (writes to primary-1); router: the in-process router \
         with its default configuration over all three; pgpool-II: one tokio-postgres connection per \
         client to pgpool-II 4.3 in streaming-replication mode with load balancing over all three.\n\
         - client CPU µs/op: CPU time of the measuring process (clients, router, tokio-postgres' \
         connection tasks; not the servers or pgpool) per answered statement, from \
         `/proc/self/task/*/schedstat`: the router's own cost, apart from the servers'.\n\
         - servers CPU µs/op: CPU time of the server processes (every `postgres` and `pgpool` \
         process: PostgreSQL's backends, WAL senders and receivers, replay; pgpool-II's) per \
         answered statement, from `/proc/PID/schedstat`: whether a path makes the servers work \
         more per statement. What the machine spent beyond the client and the servers is the \
         kernel's (interrupts, the loopback network) and anything else running.\n\
         - machine CPU µs/op and machine busy: CPU time of the whole machine (clients, servers, \
         pgpool-II, kernel, anything else running) per answered statement, and the share of the \
         machine's CPU time that was busy, from `/proc/stat` in 10 ms ticks: a path that leaves \
         cores idle loses throughput without costing more CPU.\n\
         - context switches /op: the machine's context switches (`ctxt` in `/proc/stat`) per \
         answered statement: each wake-up of a sleeping server process or client thread is one, \
         and on a virtual machine waking a process on another core is dear, so a path that wakes \
         more pays for it in CPU.\n\
         - by round (in the verdicts): the throughput ratio of each round, the two paths measured \
         within seconds of each other; the middle half of the rounds and the extremes show how \
         much of a ratio is the machine's noise.\n",
        options.slice.as_secs_f64(),
        options.rounds
    );
    if let Some(core) = options.pin_to_core {
        let _ = writeln!(
            out,
            "- Pinned: once the servers were up, every thread of the measuring process ran on core \
             {core} only (`taskset -a -p`), the servers on every core.\n"
        );
    }
    out.push_str(table);
    out.push('\n');
    for line in verdicts {
        let _ = writeln!(out, "- {line}");
    }
    out
}

/// Writes `text` to `path` through a temporary file, so a failure leaves nothing half-written.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pin_to_core: Option<u32>) -> OverheadArgs {
        OverheadArgs {
            slice: 0.4,
            rounds: 1,
            clients: vec![16],
            paths: vec!["router".to_string()],
            only: None,
            out: None,
            pin_to_core,
        }
    }

    #[test]
    fn the_recorded_command_names_a_path_measured_alone() {
        let alone = OverheadArgs {
            only: Some("router-one".to_string()),
            ..args(None)
        };
        assert_eq!(
            command_line(&alone),
            "replisim overhead --slice 0.4 --rounds 1 --clients 16 --only router-one"
        );
    }

    #[test]
    fn a_core_the_machine_lacks_is_refused_before_anything_starts() {
        let outcome = overhead(&args(Some(u32::MAX)));
        assert!(
            matches!(&outcome, Outcome::BadInput(message) if message.starts_with("--pin-to-core 4294967295: this machine has cores 0 to")),
            "{outcome:?}"
        );
    }

    #[test]
    fn the_recorded_command_says_which_core_it_was_pinned_to() {
        assert_eq!(
            command_line(&args(Some(0))),
            "replisim overhead --slice 0.4 --rounds 1 --clients 16 --paths router --pin-to-core 0"
        );
        assert!(!command_line(&args(None)).contains("--pin-to-core"));
    }

    #[test]
    fn the_spread_gives_the_middle_half_and_the_extremes_of_the_rounds() {
        let ratios = [0.80, 0.88, 0.90, 0.91, 0.93, 0.99];
        assert_eq!(
            round_spread(&ratios),
            "; by round 0.88-0.93x, lowest 0.80x, highest 0.99x"
        );
        assert_eq!(round_spread(&[0.9]), "", "one round has no spread");
        assert_eq!(round_spread(&[]), "");
    }
}
