//! `replisim run --metrics FILE` through the real binary: the file holds the exposition of the run, the
//! same seed writes the same bytes, and a path that cannot be written is bad input (exit 2) that
//! leaves nothing behind.

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Output;

use cli_support::*;

const SCENARIO: &str = r#"
name = "metrics-cli"
duration = "2s"

[[shard]]
name = "s1"
orgs = [0, 1000]
primary = "primary-1"
replicas = ["replica-1", "replica-2"]

[workload]
clients = 5
think_time = "5ms"
read_ratio = 0.8

[[invariant]]
kind = "writes_only_primary"
"#;

/// A fresh directory for one test, holding the scenario file.
fn workdir(test: &str) -> PathBuf {
    let dir = scratch(test);
    write(&dir, "scenario.toml", SCENARIO);
    dir
}

fn run(dir: &Path, metrics: &Path) -> Output {
    replisim(&[
        "run".as_ref(),
        dir.join("scenario.toml").as_os_str(),
        "--quiet".as_ref(),
        "--out".as_ref(),
        dir.join("reports").as_os_str(),
        "--metrics".as_ref(),
        metrics.as_os_str(),
    ])
}

#[test]
fn run_writes_the_exposition_of_the_run() {
    let dir = workdir("metrics-written");
    let first = dir.join("out").join("first.prom");
    let output = run(&dir, &first);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = read(&first);
    assert!(text.starts_with("# HELP replisim_router_attempts_total "));
    let writes = "replisim_router_routes_total{node=\"primary-1\",shard=\"s1\",role=\"primary\",reason=\"write\"} ";
    let count = text
        .lines()
        .find_map(|line| line.strip_prefix(writes))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(count.is_some_and(|n| n > 0), "no writes counted:\n{text}");

    let second = dir.join("second.prom");
    let again = run(&dir, &second);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert_eq!(text, read(&second), "the same seed wrote different metrics");
}

#[test]
fn an_unwritable_metrics_path_is_bad_input() {
    let dir = workdir("metrics-unwritable");
    // A directory where the file should go: it cannot be replaced by a file.
    let target = dir.join("taken.prom");
    if let Err(e) = std::fs::create_dir_all(target.join("inside")) {
        panic!("creating {}: {e}", target.display());
    }
    let output = run(&dir, &target);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot write metrics"), "{stderr}");
    assert!(target.is_dir(), "the directory in the way was left alone");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}
