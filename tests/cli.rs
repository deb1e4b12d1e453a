//! The command line's contract: exit codes, one-line errors with positions, nothing half-written.

mod cli_support;

use std::path::Path;
use std::process::Output;

use cli_support::*;

fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

#[test]
fn check_accepts_every_shipped_scenario() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    assert!(files.len() >= 10, "only {} scenarios", files.len());
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let o = replisim(&args);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn a_syntax_error_is_exit_2_with_file_line_and_column() {
    let dir = scratch("syntax");
    let path = write(
        &dir,
        "bad.toml",
        "name = \"x\"\nduration = \"1s\nseed = 3\n",
    );
    let o = replisim(&["check", &path]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.contains(&format!("{path}:2:")), "no position: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_is_exit_2_and_names_the_key() {
    let dir = scratch("unknown-key");
    let text = TINY.replace("clients = 4", "clients = 4\nthreads = 9");
    let path = write(&dir, "bad.toml", &text);
    let o = replisim(&["check", &path]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("threads") && err.contains(&format!("{path}:")),
        "{err}"
    );
}

#[test]
fn an_unreadable_file_is_exit_2() {
    let o = replisim(&["run", "/nonexistent/scenario.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/scenario.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_usage_is_exit_2() {
    assert_eq!(replisim::<&str>(&[]).status.code(), Some(2));
    assert_eq!(replisim(&["fly"]).status.code(), Some(2));
    assert_eq!(
        replisim(&["run", "x.toml", "--seed", "minus-one"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn a_bad_scenario_writes_no_report() {
    let dir = scratch("no-report");
    let path = write(
        &dir,
        "bad.toml",
        &TINY.replace("\"replica-1\"]", "\"replica-1\", \"primary-1\"]"),
    );
    let out = dir.join("out");
    let o = replisim(&["run", &path, "--out", &out.display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        !out.exists(),
        "a report directory was created for bad input"
    );
}

#[test]
fn a_passing_run_is_exit_0_and_writes_both_reports() {
    let dir = scratch("pass");
    let path = write(&dir, "tiny.toml", TINY);
    let out = dir.join("out");
    let o = replisim(&[
        "run",
        &path,
        "--seed",
        "3",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(out.join("tiny-seed3.json").is_file() && out.join("tiny-seed3.md").is_file());
    assert!(
        stdout(&o).contains("PASS writes_only_primary"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_failing_run_is_exit_1_and_prints_the_replay_command() {
    let dir = scratch("fail");
    // No read can take under the two link crossings and the service time (3 ms).
    let text = format!(
        "{TINY}\n[[invariant]]\nkind = \"latency\"\nop = \"read\"\npercentile = 50\nmax = \"1ms\"\n"
    );
    let path = write(&dir, "tiny.toml", &text);
    let out = dir.join("out");
    let o = replisim(&[
        "run",
        &path,
        "--seed",
        "4",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("replay: replisim run {path} --seed 4")),
        "{}",
        stdout(&o)
    );
}

/// Values `check` used to accept that `run` could not run (exit 3, an abort on a huge allocation,
/// a stopped arrival clock): both commands now refuse them with exit 2 and one `file:line:col` line.
#[test]
fn values_run_cannot_run_are_refused_by_check_and_run_alike() {
    let dir = scratch("limits");
    let replicas: Vec<String> = (0..70).map(|i| format!("\"replica-{i}\"")).collect();
    let cases = [
        (
            "read-retries",
            TINY.replace("[workload]", "[router]\nread_retries = 100\n[workload]"),
            10,
        ),
        (
            "replicas",
            TINY.replace("[\"replica-1\"]", &format!("[{}]", replicas.join(", "))),
            8,
        ),
        (
            "clients",
            TINY.replace("clients = 4", "clients = 4294967295"),
            10,
        ),
        (
            "rate",
            TINY.replace("clients = 4", "clients = 4\nrate = 1e300"),
            11,
        ),
        ("duration", TINY.replace("\"2s\"", "\"5000000h\""), 3),
    ];
    for (name, text, line) in cases {
        let path = write(&dir, &format!("{name}.toml"), &text);
        let out = dir.join(format!("{name}-reports"));
        let out = out.display().to_string();
        for args in [
            vec!["check", path.as_str()],
            vec!["run", path.as_str(), "--out", &out],
        ] {
            let o = replisim(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{name} {args:?}: {err}");
            assert_eq!(
                err.lines().count(),
                1,
                "{name} {args:?}: not one line: {err}"
            );
            assert!(
                err.contains(&format!("{path}:{line}:")) && err.contains("above the limit"),
                "{name} {args:?}: {err}"
            );
        }
        assert!(
            !Path::new(&out).exists(),
            "{name}: run wrote reports for bad input"
        );
    }
}

/// A closed-loop client's last pause ends after `duration`; a `think_time` longer than the time the
/// harness allowed for draining made the simulation give up and `run` exit 3.
#[test]
fn a_think_time_longer_than_the_drain_is_not_an_internal_error() {
    let dir = scratch("long-think-time");
    let path = write(
        &dir,
        "think.toml",
        &TINY.replace("think_time = \"10ms\"", "think_time = \"5m\""),
    );
    let out = dir.join("reports").display().to_string();
    let o = replisim(&["run", &path, "--out", &out, "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn a_fault_nothing_could_observe_fails_the_run_and_is_named() {
    let dir = scratch("unseen-fault");
    // Writes only (so no read ever goes to the replica) and one health check per 30 s: nothing is
    // sent towards replica-1 while it is partitioned, so the partition cannot show its effect.
    let text = r#"
name = "unseen-partition"
duration = "10s"
[[shard]]
name = "s1"
orgs = [0, 100]
primary = "primary-1"
replicas = ["replica-1"]
[router]
health_interval = "30s"
[workload]
clients = 4
think_time = "10ms"
orgs = 100
read_ratio = 0.0
[[fault]]
at = "5s"
kind = "partition"
target = "replica-1"
duration = "3s"
[[invariant]]
kind = "writes_only_primary"
"#;
    let path = write(&dir, "unseen.toml", text);
    let out = dir.join("out");
    let o = replisim(&["run", &path, "--out", &out.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(
            "fault partition replica-1 at 5000 ms until 8000 ms: FAIL: effect NOT observed \
             (nothing could show it: no connect or statement was sent towards the node"
        ),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("PASS writes_only_primary"),
        "{}",
        stdout(&o)
    );
    let json = std::fs::read_to_string(out.join("unseen-partition-seed1.json")).unwrap_or_default();
    assert!(json.contains("\"passed\": false"), "{json}");
    assert!(json.contains("\"took_effect\": false"), "{json}");
    assert!(
        json.contains("\"evidence\": \"nothing could show it"),
        "{json}"
    );
    let quiet = replisim(&["run", &path, "--out", &out.display().to_string(), "--quiet"]);
    assert_eq!(quiet.status.code(), Some(1));
    assert!(
        stdout(&quiet).contains("fault partition replica-1 at 5000 ms until 8000 ms: FAIL"),
        "{}",
        stdout(&quiet)
    );
}

/// `replisim sweep ... | head -1`: the reader goes away after one line. The command must end by
/// SIGPIPE, quietly, as `cat` does, not panic on its next line of output.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    let dir = scratch("closed-stdout");
    let path = write(&dir, "tiny.toml", TINY);
    let out = dir.join("out").display().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_replisim"))
        .args([
            "sweep", &path, "--seeds", "1..400", "--jobs", "1", "--out", &out,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => panic!("cannot run replisim: {e}"),
    };
    let Some(stdout) = child.stdout.take() else {
        panic!("no stdout pipe");
    };
    let mut first = String::new();
    let read = BufReader::new(stdout).read_line(&mut first);
    // Dropping the reader closes the pipe: every later line meets a closed pipe (400 seeds: the
    // sweep cannot have printed them all before the drop, even on a loaded machine).
    assert!(matches!(read, Ok(n) if n > 0), "no first line: {read:?}");
    let o = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("replisim did not end: {e}"),
    };
    assert!(first.contains("seed 1"), "{first}");
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{:?}", o.status);
}
