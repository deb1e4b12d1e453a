//! The binary's logs: router events on stderr with simulated time and node, shard and reason
//! fields; `RUST_LOG` and `-v` choose how much; none of it changes a report.

mod cli_support;

use std::process::{Command, Output};

use cli_support::*;

fn run_with(args: &[&str], rust_log: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_replisim"));
    command.args(args).env_remove("RUST_LOG");
    if let Some(spec) = rust_log {
        command.env("RUST_LOG", spec);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run replisim: {e}"))
}

#[test]
fn a_crash_logs_the_health_transition_in_simulated_time_and_changes_no_report() {
    let dir = scratch("logs");
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/promote-replica.toml"
    );
    let quiet_out = dir.join("quiet").display().to_string();
    let loud_out = dir.join("loud").display().to_string();
    let plain = run_with(
        &[
            "run",
            scenario,
            "--quiet",
            "--no-charts",
            "--out",
            &quiet_out,
        ],
        None,
    );
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stderr));
    let stderr = text(&plain.stderr);
    let unhealthy = stderr
        .lines()
        .find(|l| l.contains("node is unhealthy"))
        .unwrap_or_else(|| panic!("no health transition at the default level:\n{stderr}"));
    assert!(
        unhealthy.starts_with("sim "),
        "simulated time first: {unhealthy}"
    );
    for field in ["WARN", "node=\"primary-1\"", "shard=\"s1\"", "reason="] {
        assert!(unhealthy.contains(field), "{field} missing: {unhealthy}");
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("it is the shard's primary now")),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "no colour codes off a terminal");

    let loud = run_with(
        &[
            "run",
            scenario,
            "--quiet",
            "--no-charts",
            "-vv",
            "--out",
            &loud_out,
        ],
        None,
    );
    assert_eq!(loud.status.code(), Some(0));
    assert!(
        text(&loud.stderr).lines().count() > stderr.lines().count(),
        "-vv adds events"
    );
    assert!(
        !text(&loud.stderr).contains("turmoil:"),
        "the simulator's chatter stays out"
    );
    let report = "promote-replica-seed1.json";
    assert_eq!(
        read(&dir.join("quiet").join(report)),
        read(&dir.join("loud").join(report)),
        "logging changes nothing in the report"
    );

    let silent = run_with(
        &[
            "run",
            scenario,
            "--quiet",
            "--no-charts",
            "--out",
            &quiet_out,
        ],
        Some("off"),
    );
    assert_eq!(text(&silent.stderr), "", "RUST_LOG=off silences it");
}
