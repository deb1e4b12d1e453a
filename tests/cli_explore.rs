//! `replisim explore` and `replisim shrink` end to end: deterministic draws inside the `[explore]`
//! ranges, failing draws kept as standalone scenarios, and those reduced by `shrink`.

mod cli_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cli_support::*;
use replisim::scenario::{self, Scenario};

/// The shipped scenario made for exploring: 4 s runs, a crash or partition of the primary fails
/// `no_failed_queries`.
fn explore_scenario() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/explore-primary-faults.toml")
        .display()
        .to_string()
}

fn explore(dir: &Path, seeds: &str, jobs: &str) -> (Option<i32>, Vec<String>) {
    let out = dir.display().to_string();
    let o = replisim(&[
        "explore",
        &explore_scenario(),
        "--seeds",
        seeds,
        "--jobs",
        jobs,
        "--out",
        &out,
    ]);
    let lines = text(&o.stdout).lines().map(str::to_owned).collect();
    (o.status.code(), lines)
}

/// The written files, sorted by name.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

fn load(path: &Path) -> Scenario {
    match scenario::load(path) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// The distinct faults of a schedule: undo faults (`restart`, `heal`) belong to theirs.
fn fault_count(s: &Scenario) -> usize {
    replisim::search::fault_groups::groups(&s.faults).len()
}

#[test]
fn the_same_seeds_give_the_same_lines_and_files_whatever_the_jobs() {
    let (one, two) = (scratch("explore-jobs-1"), scratch("explore-jobs-2"));
    let (code_one, lines_one) = explore(&one, "1..12", "1");
    let (code_two, lines_two) = explore(&two, "1..12", "2");
    assert_eq!(code_one, Some(1), "{lines_one:?}");
    assert_eq!(code_two, Some(1), "{lines_two:?}");
    // One line per seed in seed order, then the summary (which names its own directory).
    assert_eq!(lines_one.len(), 13, "{lines_one:?}");
    for (seed, line) in (1..=12).zip(&lines_one) {
        assert!(line.starts_with(&format!("seed {seed}: ")), "{line}");
        assert!(line.ends_with("PASS") || line.contains(": FAIL "), "{line}");
    }
    assert_eq!(lines_one[..12], lines_two[..12]);
    let summary = lines_one[12].replace(&one.display().to_string(), "DIR");
    assert_eq!(
        summary,
        lines_two[12].replace(&two.display().to_string(), "DIR")
    );
    let failing = lines_one.iter().filter(|l| l.contains(": FAIL ")).count();
    assert!(failing > 0, "{lines_one:?}");
    assert!(summary.contains(&format!("{failing} failed")), "{summary}");
    assert!(
        summary.contains(&format!("{failing} files written")),
        "{summary}"
    );

    let (written_one, written_two) = (files(&one), files(&two));
    assert_eq!(written_one.len(), failing);
    let names = |paths: &[PathBuf]| -> Vec<String> {
        paths
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    };
    assert_eq!(names(&written_one), names(&written_two));
    for (a, b) in written_one.iter().zip(&written_two) {
        assert_eq!(read(a), read(b), "{}", a.display());
    }
}

#[test]
fn a_failing_draw_passes_check_and_fails_a_plain_run() {
    let dir = scratch("explore-replay");
    let (code, lines) = explore(&dir, "1..6", "2");
    assert_eq!(code, Some(1), "{lines:?}");
    let written = files(&dir);
    let first = written.first().expect("a failing seed among 1..6");
    let name = first.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    let seed: u64 = name
        .trim_end_matches(".toml")
        .rsplit("seed")
        .next()
        .and_then(|n| n.parse().ok())
        .expect("file named <name>-explore-seed<N>.toml");
    let written_text = read(first);
    assert!(
        written_text.contains(&format!("\nseed = {seed}\n")),
        "{written_text}"
    );
    assert!(!written_text.contains("[explore]"), "{written_text}");
    assert!(
        written_text.contains("name = \"explore-primary-faults-explore-seed"),
        "{written_text}"
    );
    let file = first.display().to_string();
    let check = replisim(&["check", &file]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    let reports = scratch("explore-replay-reports").display().to_string();
    let run = replisim(&["run", &file, "--out", &reports, "--no-charts"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stdout));
    // It fails the way the explore line said.
    let line = lines
        .iter()
        .find(|l| l.starts_with(&format!("seed {seed}: ")))
        .expect("a line for the seed");
    let kinds = line.rsplit(": FAIL ").next().unwrap_or_default();
    for kind in kinds.split(", ") {
        assert!(
            text(&run.stdout).contains(&format!("FAIL {kind}")),
            "{kind}: {}",
            text(&run.stdout)
        );
    }
}

#[test]
fn draws_stay_inside_the_explore_ranges() {
    let dir = scratch("explore-ranges");
    let (code, _) = explore(&dir, "1..30", "2");
    assert_eq!(code, Some(1));
    let written = files(&dir);
    assert!(written.len() >= 5, "{} files", written.len());
    let ms = Duration::from_millis;
    for path in &written {
        let s = load(path);
        let what = path.display();
        assert!((4..=12).contains(&s.workload.clients), "{what}");
        for node in &s.nodes {
            assert!(
                (ms(1)..=ms(3)).contains(&node.query_time),
                "{what}: {node:?}"
            );
        }
        let groups = replisim::search::fault_groups::groups(&s.faults);
        assert!((1..=3).contains(&groups.len()), "{what}");
        for group in groups {
            let fault = &s.faults[group.fault];
            assert!(
                ["crash", "partition", "latency"].contains(&fault.kind.name()),
                "{what}"
            );
            assert!((ms(500)..=ms(2500)).contains(&fault.at), "{what}");
            let length = match (fault.duration, group.undo) {
                (Some(d), _) => d,
                (None, Some(undo)) => s.faults[undo].at - fault.at,
                (None, None) => panic!("{what}: a fault with no end"),
            };
            // Cut short only by the end of the run.
            assert!(
                length <= ms(1500) && (length >= ms(300) || fault.at + length == s.duration),
                "{what}: {length:?}"
            );
            if let scenario::FaultKind::Latency { latency } = fault.kind {
                assert!((ms(20)..=ms(100)).contains(&latency), "{what}");
            }
        }
    }
}

#[test]
fn a_bad_explore_table_is_exit_2_with_file_line_and_column() {
    let dir = scratch("explore-bad");
    let base = read(Path::new(&explore_scenario()));
    let (head, _) = base
        .split_once("\n[explore]\n")
        .expect("the scenario has [explore]");
    let cases = [
        ("clients = [12, 4]", "min is above max"),
        ("colour = [1, 2]", "unknown field `colour`"),
        ("kinds = [\"restart\"]", "drawn with the fault they end"),
        ("at = [\"1s\", \"9s\"]", "not before the end of the run"),
        ("faults = [1]", "[min, max] pair"),
        ("targets = [\"replica-9\"]", "is not a node"),
    ];
    for (index, (line, message)) in cases.iter().enumerate() {
        let bad = format!("{head}\n[explore]\n{line}\n");
        let file = write(&dir, &format!("bad{index}.toml"), &bad);
        let line_number = bad.lines().count();
        for command in ["check", "explore"] {
            let args: Vec<&str> = match command {
                "check" => vec!["check", &file],
                _ => vec!["explore", &file, "--seeds", "1..2", "--out", "unused"],
            };
            let o = replisim(&args);
            let err = text(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{line}: {err}");
            assert!(
                err.contains(&format!("bad{index}.toml:{line_number}:")),
                "{line}: {err}"
            );
            assert!(err.contains(message), "{line}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}

#[test]
fn shrink_reduces_an_explore_failure_that_still_fails_the_same_way() {
    let dir = scratch("shrink-explored");
    let (code, _) = explore(&dir, "1..12", "2");
    assert_eq!(code, Some(1));
    // The failing draw with the most faults.
    let input = files(&dir)
        .into_iter()
        .max_by_key(|p| (fault_count(&load(p)), std::cmp::Reverse(p.clone())))
        .expect("a failing draw");
    let before = load(&input);
    assert!(fault_count(&before) >= 2, "{}", input.display());
    let out_dir = scratch("shrink-explored-out");
    let out = out_dir.join("small.toml").display().to_string();
    let input_text = input.display().to_string();
    let o = replisim(&["shrink", &input_text, "--out", &out]);
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains("keeping no_failed_queries"), "{stdout}");
    assert!(stdout.contains("dropped "), "{stdout}");
    assert!(stdout.contains("runs: "), "{stdout}");

    let after = load(Path::new(&out));
    assert!(
        fault_count(&after) < fault_count(&before),
        "{stdout}\n{}",
        read(Path::new(&out))
    );
    assert!(after.duration <= before.duration);
    assert_eq!(after.seed, before.seed);
    assert_eq!(after.invariants.len(), 1, "{stdout}");
    let reports = out_dir.join("reports").display().to_string();
    let run = replisim(&["run", &out, "--out", &reports, "--no-charts"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stdout));
    assert!(text(&run.stdout).contains("FAIL no_failed_queries"));

    // Running candidates two at a time picks the same ones.
    let again = out_dir.join("small-jobs2.toml").display().to_string();
    let o = replisim(&["shrink", &input_text, "--out", &again, "--jobs", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(read(Path::new(&out)), read(Path::new(&again)));
}

#[test]
fn shrink_refuses_a_scenario_that_passes_on_the_seed() {
    let out_dir = scratch("shrink-passing");
    let out = out_dir.join("never.toml");
    let out_text = out.display().to_string();
    let o = replisim(&["shrink", &explore_scenario(), "--out", &out_text]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("passes on seed 1"),
        "{}",
        text(&o.stderr)
    );
    assert!(!out.exists());
}

#[test]
fn a_clean_exploration_is_exit_0_and_writes_nothing() {
    let dir = scratch("explore-clean");
    let base = read(Path::new(&explore_scenario()));
    // Replica latency alone breaks neither invariant.
    let only_latency = base.replace(
        "kinds = [\"crash\", \"partition\", \"latency\"]",
        "kinds = [\"latency\"]\ntargets = [\"replica-1\", \"replica-2\"]",
    );
    assert_ne!(only_latency, base);
    let file = write(&dir, "latency-only.toml", &only_latency);
    let out = dir.join("out");
    let out_text = out.display().to_string();
    let o = replisim(&["explore", &file, "--seeds", "1..4", "--out", &out_text]);
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}{}", text(&o.stderr));
    assert_eq!(stdout.matches(": PASS\n").count(), 4, "{stdout}");
    assert!(
        stdout.contains("explored 4 seeds: 0 failed; 0 files written"),
        "{stdout}"
    );
    assert!(files(&out).is_empty());
}
