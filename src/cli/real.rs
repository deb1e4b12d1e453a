//! `replisim real`: one scenario against a real PostgreSQL 15 cluster, in real time.

use std::path::Path;

use super::Outcome;
use crate::real as real_mode;
use crate::real::ClusterError;
use crate::real::pgpool::PgpoolError;
use crate::real::scenario_run::{RealRunError, RouterUnderTest};
use crate::report;
use crate::scenario;

pub(super) fn real(
    path: &Path,
    seed: Option<u64>,
    out: &Path,
    quiet: bool,
    urls: &[String],
    router: RouterUnderTest,
) -> Outcome {
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
    if router == RouterUnderTest::Pgpool {
        if let Some(message) = pgpool_refusal(&scenario, external.is_some()) {
            return Outcome::BadInput(format!("{}: {message}", path.display()));
        }
        if let Err(e) = real_mode::pgpool::installed() {
            return Outcome::BadInput(e.to_string());
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Outcome::Internal(format!("cannot start the async runtime: {e}")),
    };
    let ran = runtime.block_on(real_mode::scenario_run::run_through(
        &scenario, seed, external, router,
    ));
    let real_outcome = match ran {
        Ok(o) => o,
        // What the user can fix (the machine's PostgreSQL, the servers given with --url) is
        // bad input; anything else is replisim's fault.
        Err(
            e @ (RealRunError::External { .. }
            | RealRunError::Cluster(
                ClusterError::MissingBinaries { .. } | ClusterError::NoPostgresUser { .. },
            )
            | RealRunError::Pgpool(PgpoolError::NotInstalled { .. })),
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
    if router == RouterUnderTest::Pgpool {
        replay.push_str(" --router pgpool");
    }
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

/// Why a scenario cannot run through pgpool: it fronts one primary, and reaches the nodes with
/// trust authentication only.
fn pgpool_refusal(scenario: &scenario::Scenario, external: bool) -> Option<String> {
    if scenario.shards.len() != 1 {
        return Some(format!(
            "--router pgpool needs one shard (pgpool fronts one primary); this scenario has {}",
            scenario.shards.len()
        ));
    }
    if external {
        return Some(
            "--router pgpool runs only against the cluster replisim starts, not with --url"
                .to_string(),
        );
    }
    None
}
