//! The sweep: every scenario over every seed, and its table per scenario.

use std::path::{Path, PathBuf};

use crate::scenario::{self, Scenario, ScenarioError};
use crate::search::seeds::{SeedRange, Shard};
use crate::search::verdict::Verdict;

/// One scenario of a sweep, loaded.
pub struct SweepScenario {
    /// The file it came from (what the replay command names).
    pub path: PathBuf,
    /// The validated scenario.
    pub scenario: Scenario,
}

/// The scenario files named by `inputs`: files as given, directories as their `*.toml` files in
/// name order (not recursive).
pub fn scenario_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input)
                .map_err(|e| format!("{}: cannot list: {e}", input.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
                .collect();
            if found.is_empty() {
                return Err(format!("{}: no *.toml scenario files", input.display()));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// Loads every file; the first invalid one stops the sweep before anything runs.
pub fn load_all(files: &[PathBuf]) -> Result<Vec<SweepScenario>, ScenarioError> {
    files
        .iter()
        .map(|path| {
            scenario::load(path).map(|scenario| SweepScenario {
                path: path.clone(),
                scenario,
            })
        })
        .collect()
}

/// One (scenario, seed) pair to run: the scenario's index in the sweep, and the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    /// Index into the sweep's scenarios.
    pub scenario: usize,
    /// Seed.
    pub seed: u64,
}

/// Every (scenario, seed) pair in order (scenario by scenario, seeds ascending), keeping only
/// `shard`'s share when given: the shards of one count together run each pair exactly once.
pub fn plan(scenarios: usize, seeds: SeedRange, shard: Option<Shard>) -> Vec<Job> {
    (0..scenarios)
        .flat_map(|scenario| seeds.iter().map(move |seed| Job { scenario, seed }))
        .enumerate()
        .filter(|(position, _)| shard.is_none_or(|s| s.owns(*position)))
        .map(|(_, job)| job)
        .collect()
}

/// What one job produced.
#[derive(Debug)]
pub struct JobResult {
    /// The job.
    pub job: Job,
    /// The verdict, or a harness error (a bug in replisim) as text.
    pub verdict: Result<Verdict, String>,
    /// With `--check-determinism`: `Some(description)` when a second process differed, or the
    /// check itself could not run.
    pub nondeterminism: Option<String>,
}

impl JobResult {
    /// Whether the run passed and, when checked, was deterministic.
    pub fn passed(&self) -> bool {
        self.nondeterminism.is_none() && self.verdict.as_ref().is_ok_and(Verdict::passed)
    }

    /// One line per problem: failed invariants, faults not observed, nondeterminism, harness errors.
    pub fn problems(&self) -> Vec<String> {
        let mut lines = match &self.verdict {
            Ok(v) => v.failure_lines(),
            Err(e) => vec![format!("internal error: {e}")],
        };
        if let Some(what) = &self.nondeterminism {
            lines.push(format!("not deterministic: {what}"));
        }
        lines
    }
}

/// The replay command of one run.
pub fn replay_command(path: &Path, seed: u64) -> String {
    format!("replisim run {} --seed {seed}", path.display())
}

/// One scenario's line of the table.
#[derive(Debug, Default, PartialEq)]
pub struct ScenarioTotals {
    /// Runs made.
    pub runs: u64,
    /// Runs that failed (an invariant, a fault not observed, nondeterminism, a harness error).
    pub failures: u64,
    /// Worst failover over the runs, ms.
    pub worst_failover_ms: u64,
    /// Worst read p99 over the runs, ms.
    pub worst_read_p99_ms: f64,
    /// Failed client operations, summed over the runs.
    pub failed_ops: u64,
}

/// Totals per scenario, in sweep order (scenarios none of whose pairs ran show zero runs).
pub fn totals(scenarios: usize, results: &[JobResult]) -> Vec<ScenarioTotals> {
    let mut totals: Vec<ScenarioTotals> =
        (0..scenarios).map(|_| ScenarioTotals::default()).collect();
    for result in results {
        let Some(t) = totals.get_mut(result.job.scenario) else {
            continue;
        };
        t.runs += 1;
        t.failures += u64::from(!result.passed());
        if let Ok(v) = &result.verdict {
            t.worst_failover_ms = t.worst_failover_ms.max(v.worst_failover_ms());
            t.worst_read_p99_ms = t.worst_read_p99_ms.max(v.report.latency_ms.read.p99);
            t.failed_ops += v.report.ops.failed;
        }
    }
    totals
}

/// The table, one row per scenario that ran.
pub fn render_table(scenarios: &[SweepScenario], totals: &[ScenarioTotals]) -> String {
    let width = scenarios
        .iter()
        .map(|s| s.scenario.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>8}  {:>14}  {:>14}  {:>10}\n",
        "scenario", "runs", "failures", "worst failover", "worst read p99", "failed ops"
    );
    for (s, t) in scenarios.iter().zip(totals).filter(|(_, t)| t.runs > 0) {
        out.push_str(&format!(
            "{:<width$}  {:>6}  {:>8}  {:>11} ms  {:>11.1} ms  {:>10}\n",
            s.scenario.name,
            t.runs,
            t.failures,
            t.worst_failover_ms,
            t.worst_read_p99_ms,
            t.failed_ops
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_covers_every_pair_once_across_shards() {
        let seeds: SeedRange = "1..5".parse().unwrap();
        let all = plan(3, seeds, None);
        assert_eq!(all.len(), 15);
        assert_eq!(
            all[0],
            Job {
                scenario: 0,
                seed: 1
            }
        );
        assert_eq!(
            all[14],
            Job {
                scenario: 2,
                seed: 5
            }
        );
        let mut union: Vec<Job> = (1..=4)
            .flat_map(|k| plan(3, seeds, Some(Shard { index: k, count: 4 })))
            .collect();
        union.sort_by_key(|j| (j.scenario, j.seed));
        assert_eq!(union, all);
        // Shards are balanced to within one pair.
        let sizes: Vec<usize> = (1..=4)
            .map(|k| plan(3, seeds, Some(Shard { index: k, count: 4 })).len())
            .collect();
        assert_eq!(sizes, vec![4, 4, 4, 3]);
    }

    #[test]
    fn directories_expand_to_their_scenarios_in_name_order() {
        let dir = std::env::temp_dir().join(format!("replisim-sweep-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["b.toml", "a.toml", "notes.md"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let files = scenario_files(&[dir.clone(), PathBuf::from("x.toml")]).unwrap();
        assert_eq!(
            files,
            vec![
                dir.join("a.toml"),
                dir.join("b.toml"),
                PathBuf::from("x.toml")
            ]
        );
        std::fs::remove_file(dir.join("a.toml")).unwrap();
        std::fs::remove_file(dir.join("b.toml")).unwrap();
        assert!(
            scenario_files(&[dir]).is_err(),
            "a directory without scenarios is an error"
        );
    }
}
