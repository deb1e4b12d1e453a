//! The same seed in a separate process: report and trace compared, the first difference named.
//!
//! A second run inside the same process could share whatever a process holds (counters, caches,
//! the allocator's state), so the check runs `replisim run` again as a child process, with
//! `--trace`, and compares its JSON report and event trace with this process's, byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::trace;

/// This process's run of one seed, to compare against.
pub struct OwnRun<'a> {
    /// The scenario file the child is to run.
    pub scenario_path: &'a Path,
    /// The scenario's name (its report's file name).
    pub scenario_name: &'a str,
    /// The seed.
    pub seed: u64,
    /// This process's JSON report text.
    pub json: &'a str,
    /// This process's trace lines (`report::trace::lines`).
    pub trace: &'a [String],
}

/// What the comparison found.
#[derive(Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Report and trace identical; the child's files were removed.
    Identical,
    /// A difference, described in one line (the child's files are kept for inspection).
    Differs(String),
}

/// Runs `own`'s seed again in a child `replisim run` (the executable `exe`), writing into
/// `work_dir`, and compares. An error means the child could not be run or read: no verdict.
pub fn compare_with_child(exe: &Path, own: &OwnRun, work_dir: &Path) -> Result<Comparison, String> {
    std::fs::create_dir_all(work_dir)
        .map_err(|e| format!("{}: cannot create: {e}", work_dir.display()))?;
    let trace_path = work_dir.join("trace.txt");
    let child = Command::new(exe)
        .arg("run")
        .arg(own.scenario_path)
        .args(["--seed", &own.seed.to_string(), "--quiet", "--no-charts"])
        .arg("--out")
        .arg(work_dir)
        .arg("--trace")
        .arg(&trace_path)
        .output()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    // 0 and 1 are verdicts; anything else means the child did not finish its run.
    if !matches!(child.status.code(), Some(0 | 1)) {
        return Err(format!(
            "the second process failed ({}): {}",
            child.status,
            String::from_utf8_lossy(&child.stderr).trim()
        ));
    }
    let json_path: PathBuf = work_dir.join(format!("{}-seed{}.json", own.scenario_name, own.seed));
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))
    };
    let theirs_json = read(&json_path)?;
    let theirs_trace: Vec<String> = read(&trace_path)?.lines().map(str::to_string).collect();

    let described = if let Some((line, ours, theirs)) =
        trace::first_difference(own.trace, &theirs_trace)
    {
        Some(format!(
            "first differing event (trace line {line}): this process `{}`, the other `{}`",
            ours.unwrap_or("<end of trace>"),
            theirs.unwrap_or("<end of trace>")
        ))
    } else {
        let ours: Vec<String> = own.json.lines().map(str::to_string).collect();
        let theirs: Vec<String> = theirs_json.lines().map(str::to_string).collect();
        trace::first_difference(&ours, &theirs).map(|(line, a, b)| {
            format!(
                "same events, but the reports differ at line {line}: this process `{}`, the other `{}`",
                a.unwrap_or("<end>").trim(),
                b.unwrap_or("<end>").trim()
            )
        })
    };
    match described {
        None => {
            // Nothing to inspect: leave no clutter behind.
            let _ = std::fs::remove_dir_all(work_dir);
            // The shared parent goes too once no other check keeps files there.
            if let Some(parent) = work_dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
            Ok(Comparison::Identical)
        }
        Some(what) => Ok(Comparison::Differs(format!(
            "{what} (second run's files: {})",
            work_dir.display()
        ))),
    }
}

/// Where a determinism check of `name` and `seed` keeps its second run, under `out`.
pub fn work_dir(out: &Path, name: &str, seed: u64) -> PathBuf {
    out.join(".determinism").join(format!("{name}-seed{seed}"))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A stand-in for `replisim run` that writes the given report and trace where the real one
    /// would, so that each way of differing can be produced on purpose.
    fn fake_exe(dir: &Path, json: &str, trace: &str, exit: i32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("fake-replisim");
        // Arguments: run FILE --seed N --quiet --no-charts --out DIR --trace FILE
        let body = format!(
            "#!/bin/sh\nprintf '%s' '{json}' > \"$8/s-seed3.json\"\nprintf '%s' '{trace}' > \"${{10}}\"\nexit {exit}\n"
        );
        std::fs::write(&script, body).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    fn own<'a>(json: &'a str, trace: &'a [String]) -> OwnRun<'a> {
        OwnRun {
            scenario_path: Path::new("s.toml"),
            scenario_name: "s",
            seed: 3,
            json,
            trace,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "replisim-determinism-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn identical_runs_pass_and_leave_nothing_behind() {
        let dir = scratch("same");
        let trace = vec!["a".to_string(), "b".to_string()];
        let exe = fake_exe(&dir, "{}\n", "a\nb\n", 1);
        let work = work_dir(&dir, "s", 3);
        let got = compare_with_child(&exe, &own("{}\n", &trace), &work).unwrap();
        assert_eq!(got, Comparison::Identical);
        assert!(!work.exists());
    }

    #[test]
    fn a_differing_event_is_named() {
        let dir = scratch("event");
        let trace = vec!["a".to_string(), "b".to_string()];
        let exe = fake_exe(&dir, "{}\n", "a\nB\n", 0);
        let got = compare_with_child(&exe, &own("{}\n", &trace), &work_dir(&dir, "s", 3)).unwrap();
        let Comparison::Differs(what) = got else {
            panic!("not flagged")
        };
        assert!(
            what.contains("trace line 2") && what.contains("`b`") && what.contains("`B`"),
            "{what}"
        );
    }

    #[test]
    fn a_differing_report_with_the_same_events_is_named() {
        let dir = scratch("report");
        let trace = vec!["a".to_string()];
        let exe = fake_exe(&dir, "{\n  x: 2\n}\n", "a\n", 0);
        let got = compare_with_child(
            &exe,
            &own("{\n  x: 1\n}\n", &trace),
            &work_dir(&dir, "s", 3),
        )
        .unwrap();
        let Comparison::Differs(what) = got else {
            panic!("not flagged")
        };
        assert!(
            what.contains("line 2") && what.contains("x: 1") && what.contains("x: 2"),
            "{what}"
        );
    }

    #[test]
    fn a_child_that_crashes_gives_no_verdict() {
        let dir = scratch("crash");
        let exe = fake_exe(&dir, "{}", "", 3);
        assert!(compare_with_child(&exe, &own("{}", &[]), &work_dir(&dir, "s", 3)).is_err());
    }
}
