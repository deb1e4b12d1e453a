//! `replisim sweep`, `diff` and `run --check-determinism`: exit codes, tables, replay commands,
//! shards, JUnit, and the determinism check across processes.

mod cli_support;

use std::process::Output;

use cli_support::*;

/// Fails on every seed: no read can take under the two link crossings and the service time.
fn failing() -> String {
    format!(
        "{}\n[[invariant]]\nkind = \"latency\"\nop = \"read\"\npercentile = 50\nmax = \"1ms\"\n",
        TINY.replace("\"tiny\"", "\"tiny-slow\"")
    )
}

fn all(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

#[test]
fn a_passing_sweep_is_exit_0_with_a_table_and_a_junit_case_per_pair() {
    let dir = scratch("sweep-pass");
    write(&dir, "a.toml", TINY);
    write(&dir, "b.toml", &TINY.replace("\"tiny\"", "\"tiny-b\""));
    let junit = dir.join("junit.xml");
    let o = replisim(&[
        "sweep",
        &dir.display().to_string(),
        "--seeds",
        "1..3",
        "--jobs",
        "2",
        "--junit",
        &junit.display().to_string(),
        "--out",
        &dir.join("out").display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let out = text(&o.stdout);
    // Per-run lines come in (scenario, seed) order whatever thread finished first.
    let runs: Vec<&str> = out.lines().filter(|l| l.starts_with("PASS")).collect();
    assert_eq!(
        runs,
        vec![
            "PASS tiny seed 1",
            "PASS tiny seed 2",
            "PASS tiny seed 3",
            "PASS tiny-b seed 1",
            "PASS tiny-b seed 2",
            "PASS tiny-b seed 3"
        ]
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("tiny ") && l.split_whitespace().nth(1) == Some("3")),
        "{out}"
    );
    let xml = read(&junit);
    assert_eq!(xml.matches("<testcase ").count(), 6, "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
    // Passing runs keep no reports unless asked.
    assert!(!dir.join("out").join("tiny-seed1.json").exists());
}

#[test]
fn a_failing_sweep_is_exit_1_and_each_failure_has_a_replay_command_that_fails_alike() {
    let dir = scratch("sweep-fail");
    let path = write(&dir, "slow.toml", &failing());
    let junit = dir.join("junit.xml");
    let out_dir = dir.join("out").display().to_string();
    let o = replisim(&[
        "sweep",
        &path,
        "--seeds",
        "5..6",
        "--out",
        &out_dir,
        "--junit",
        &junit.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    let out = text(&o.stdout);
    let replay = format!("replay: replisim run {path} --seed 6");
    assert!(out.contains(&replay), "{out}");
    assert!(out.contains("FAIL tiny-slow seed 5: latency"), "{out}");
    // The failing run's reports are kept, and the replay command reproduces the failure.
    assert!(dir.join("out").join("tiny-slow-seed6.json").is_file());
    let again = replisim(&[
        "run",
        &path,
        "--seed",
        "6",
        "--out",
        &dir.join("again").display().to_string(),
    ]);
    assert_eq!(again.status.code(), Some(1), "{}", all(&again));
    assert_eq!(
        read(&dir.join("out").join("tiny-slow-seed6.json")),
        read(&dir.join("again").join("tiny-slow-seed6.json")),
        "the replay gives the sweep's report byte for byte"
    );
    let xml = read(&junit);
    assert_eq!(xml.matches("<failure ").count(), 2, "{xml}");
    assert!(
        xml.contains("latency: "),
        "one line per failed invariant: {xml}"
    );
}

#[test]
fn shards_together_run_every_pair_exactly_once() {
    let dir = scratch("sweep-shard");
    let a = write(&dir, "a.toml", TINY);
    let b = write(&dir, "b.toml", &TINY.replace("\"tiny\"", "\"tiny-b\""));
    let mut lines = Vec::new();
    for shard in ["1/3", "2/3", "3/3"] {
        let o = replisim(&[
            "sweep",
            &a,
            &b,
            "--seeds",
            "1..4",
            "--shard",
            shard,
            "--out",
            &dir.join("out").display().to_string(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", all(&o));
        lines.extend(
            text(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("PASS"))
                .map(str::to_string),
        );
    }
    lines.sort();
    let mut expected: Vec<String> = ["tiny", "tiny-b"]
        .iter()
        .flat_map(|n| (1..=4).map(move |s| format!("PASS {n} seed {s}")))
        .collect();
    expected.sort();
    assert_eq!(lines, expected);
}

#[test]
fn sweep_refuses_bad_input_before_running_anything() {
    let dir = scratch("sweep-bad");
    let good = write(&dir, "good.toml", TINY);
    let bad = write(&dir, "bad.toml", "name = \"x\"\nnope = 1\n");
    let o = replisim(&["sweep", &good, &bad, "--seeds", "1..2"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(text(&o.stderr).contains("bad.toml:"), "{}", all(&o));
    for args in [["--seeds", "3..1"], ["--shard", "0/2"]] {
        let mut argv = vec!["sweep", good.as_str(), "--seeds", "1..2"];
        argv.extend(args);
        assert_eq!(replisim(&argv).status.code(), Some(2));
    }
}

#[test]
fn run_check_determinism_compares_a_second_process() {
    let dir = scratch("run-determinism");
    let path = write(&dir, "tiny.toml", TINY);
    let out = dir.join("out");
    let o = replisim(&[
        "run",
        &path,
        "--check-determinism",
        "--quiet",
        "--no-charts",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(
        text(&o.stdout).contains("byte-identical report and trace"),
        "{}",
        all(&o)
    );
    assert!(
        !out.join(".determinism").exists(),
        "an identical second run leaves nothing behind"
    );
}

#[test]
fn diff_flags_regressions_and_new_failures_and_nothing_else() {
    let dir = scratch("diff");
    let path = write(&dir, "tiny.toml", TINY);
    let out = dir.join("out");
    let o = replisim(&[
        "run",
        &path,
        "--quiet",
        "--no-charts",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let base = out.join("tiny-seed1.json").display().to_string();
    let same = replisim(&["diff", &base, &base]);
    assert_eq!(same.status.code(), Some(0), "{}", all(&same));
    assert!(text(&same.stdout).contains("no differences"));

    let mut report: serde_json::Value =
        serde_json::from_str(&read(&out.join("tiny-seed1.json"))).unwrap();
    let p99 = report["latency_ms"]["read"]["p99"].as_f64().unwrap();
    report["latency_ms"]["read"]["p99"] = serde_json::json!(p99 * 2.0 + 5.0);
    let slower = write(&dir, "slower.json", &report.to_string());
    let o = replisim(&["diff", &base, &slower]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(
        text(&o.stdout).contains("latency_ms.read.p99") && text(&o.stdout).contains("REGRESSED")
    );
    // A generous allowance accepts it.
    let o = replisim(&["diff", &base, &slower, "--max-regression", "10000"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));

    report["latency_ms"]["read"]["p99"] = serde_json::json!(p99);
    report["invariants"][0]["passed"] = serde_json::json!(false);
    let failing = write(&dir, "failing.json", &report.to_string());
    let o = replisim(&["diff", &base, &failing]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(text(&o.stdout).contains("PASS -> FAIL"), "{}", all(&o));

    report["invariants"][0]["passed"] = serde_json::json!(true);
    report["trace_hash"] = serde_json::json!("0000000000000000");
    let retraced = write(&dir, "retraced.json", &report.to_string());
    assert_eq!(replisim(&["diff", &base, &retraced]).status.code(), Some(0));
    assert_eq!(
        replisim(&["diff", &base, &retraced, "--fail-on-change"])
            .status
            .code(),
        Some(1)
    );

    let junk = write(&dir, "junk.json", "{ not json");
    let o = replisim(&["diff", &base, &junk]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(text(&o.stderr).contains("junk.json:1:"), "{}", all(&o));
}
