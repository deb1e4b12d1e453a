//! `shrink` (delta debugging): a failing scenario reduced, one accepted step at a time, to a smaller
//! one that still fails the same kind on the same seed.
//!
//! Each pass (`candidates`) proposes smaller variants of the current scenario in a fixed order,
//! most aggressive first: faults dropped (ddmin over the fault list, an undo with its fault), the
//! other invariants dropped, fault durations and the run shortened, fewer clients and a lower rate,
//! node parameters back to their defaults. The first variant that still fails is kept and the passes
//! go round again until a whole round keeps nothing or the run budget is spent.
//!
//! Variants run `jobs` at a time, but the one kept is always the first failing one in the fixed
//! order and the budget counts runs as if they ran one at a time, so the result does not depend on
//! `jobs`.

mod candidates;

use crate::scenario::{self, Scenario};
use crate::search::batch::run_parallel;
use crate::search::verdict::{FAULT_TOOK_EFFECT, Verdict, simulate};

pub use candidates::Candidate;

/// What to shrink for.
#[derive(Clone, Debug)]
pub struct ShrinkOptions {
    /// The seed the scenario fails on.
    pub seed: u64,
    /// The failure kind to keep (an invariant name or `fault_took_effect`); `None` = the first kind
    /// the original run failed.
    pub kind: Option<String>,
    /// Most candidate runs, counted as if they ran one at a time.
    pub max_runs: usize,
    /// Candidates run at once.
    pub jobs: usize,
}

/// Why nothing was shrunk.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The scenario does not fail on that seed.
    #[error("the scenario passes on seed {seed}: nothing to shrink")]
    DoesNotFail {
        /// The seed.
        seed: u64,
    },
    /// The kind asked for is not among those that failed.
    #[error("the scenario does not fail {kind} on seed {seed} (it fails: {failed})")]
    KindNotFailed {
        /// The kind asked for.
        kind: String,
        /// The seed.
        seed: u64,
        /// What failed, comma-separated.
        failed: String,
    },
    /// A simulation or the scenario writer failed: a bug.
    #[error("{0}")]
    Internal(String),
}

/// A reduced scenario and how it was reached.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The reduced scenario (named `<name>-shrunk`, `seed` = the seed), checked to fail `kind`.
    pub scenario: Scenario,
    /// The failure kind it keeps.
    pub kind: &'static str,
    /// What the original failed.
    pub original_kinds: Vec<&'static str>,
    /// One line per accepted step.
    pub steps: Vec<String>,
    /// Runs, counted as if candidates ran one at a time (what the budget counts).
    pub runs: usize,
    /// Runs simulated (more than `runs` with `jobs` above 1).
    pub simulated: usize,
    /// Whether the budget ran out before the passes were done.
    pub budget_spent: bool,
}

/// Shrinks `original` for `options`.
pub fn shrink(original: &Scenario, options: &ShrinkOptions) -> Result<Shrunk, ShrinkError> {
    let seed = options.seed;
    let mut start = original.clone();
    if !start.name.ends_with("-shrunk") {
        start.name = format!("{}-shrunk", start.name);
    }
    start.seed = seed;
    start.explore = None;
    let start = round_trip(&start).map_err(ShrinkError::Internal)?;
    let verdict = simulate(&start, seed).map_err(ShrinkError::Internal)?;
    if verdict.passed() {
        return Err(ShrinkError::DoesNotFail { seed });
    }
    let original_kinds = verdict.failed_kinds();
    let kind = pick_kind(&verdict, options.kind.as_deref(), seed)?;
    let mut search = Search {
        seed,
        kind,
        // A variant that gains a fault showing no effect (a run cut before a restart could show)
        // is a broken schedule, not a smaller failure: refused unless the original had one.
        refuse_unseen: !original_kinds.contains(&FAULT_TOOK_EFFECT),
        jobs: options.jobs.max(1),
        max_runs: options.max_runs,
        runs: 1,
        simulated: 1,
    };
    let mut current = start;
    let mut steps = Vec::new();
    loop {
        let mut kept_any = false;
        for pass in candidates::PASSES {
            while let Some(kept) = search.first_failing(pass(&current, kind))? {
                steps.push(kept.what);
                current = kept.scenario;
                kept_any = true;
            }
        }
        if !kept_any || search.spent() {
            break;
        }
    }
    let budget_spent = search.spent();
    current.description = format!(
        "Reduced by replisim shrink from \"{}\" on seed {seed}; still fails {kind}. Left: {}.",
        original.name,
        crate::search::fault_groups::describe_all(&current)
    );
    // The description is the one change made after the last check: run the file as written once
    // more, so what is handed back is known to fail.
    let last = round_trip(&current).map_err(ShrinkError::Internal)?;
    search.simulated += 1;
    let verdict = simulate(&last, seed).map_err(ShrinkError::Internal)?;
    if !verdict.failed_kinds().contains(&kind) {
        return Err(ShrinkError::Internal(format!(
            "the reduced scenario no longer fails {kind} once its description is set"
        )));
    }
    Ok(Shrunk {
        scenario: last,
        kind,
        original_kinds,
        steps,
        runs: search.runs + 1,
        simulated: search.simulated,
        budget_spent,
    })
}

/// The kind to keep: the one asked for if it failed, else the first that failed.
fn pick_kind(
    verdict: &Verdict,
    asked: Option<&str>,
    seed: u64,
) -> Result<&'static str, ShrinkError> {
    let failed = verdict.failed_kinds();
    let first = failed
        .first()
        .copied()
        .ok_or(ShrinkError::DoesNotFail { seed })?;
    match asked {
        None => Ok(first),
        Some(kind) => {
            failed
                .iter()
                .copied()
                .find(|k| *k == kind)
                .ok_or_else(|| ShrinkError::KindNotFailed {
                    kind: kind.to_owned(),
                    seed,
                    failed: failed.join(", "),
                })
        }
    }
}

/// The scenario as its file would hold it: written and read back, so what runs is what is written.
fn round_trip(s: &Scenario) -> Result<Scenario, String> {
    let text = s.to_toml().map_err(|e| e.to_string())?;
    scenario::parse(&text, &format!("{}.toml", s.name)).map_err(|e| e.to_string())
}

/// The runs of one shrink: the failure kind kept and the budget.
struct Search {
    seed: u64,
    kind: &'static str,
    refuse_unseen: bool,
    jobs: usize,
    max_runs: usize,
    runs: usize,
    simulated: usize,
}

impl Search {
    fn spent(&self) -> bool {
        self.runs >= self.max_runs
    }

    /// The first candidate, in order, that is a valid scenario and still fails the kind. Invalid
    /// candidates (a schedule the validation refuses) cost no run.
    fn first_failing(
        &mut self,
        candidates: Vec<Candidate>,
    ) -> Result<Option<Candidate>, ShrinkError> {
        let valid: Vec<Candidate> = candidates
            .into_iter()
            .filter_map(|c| {
                round_trip(&c.scenario).ok().map(|scenario| Candidate {
                    scenario,
                    what: c.what,
                })
            })
            .collect();
        let mut start = 0;
        while start < valid.len() && !self.spent() {
            let room = self.max_runs - self.runs;
            let end = valid.len().min(start + self.jobs.min(room));
            let batch = &valid[start..end];
            let (seed, kind, refuse_unseen) = (self.seed, self.kind, self.refuse_unseen);
            let still_fails = |c: &Candidate| {
                simulate(&c.scenario, seed).map(|v| {
                    let failed = v.failed_kinds();
                    failed.contains(&kind)
                        && !(refuse_unseen && failed.contains(&FAULT_TOOK_EFFECT))
                })
            };
            let results = run_parallel(self.jobs, batch, still_fails, |_, _| {});
            self.simulated += batch.len();
            for (offset, result) in results.into_iter().enumerate() {
                self.runs += 1;
                if result.map_err(ShrinkError::Internal)? {
                    return Ok(valid.into_iter().nth(start + offset));
                }
            }
            start = end;
        }
        Ok(None)
    }
}
