//! Replay commands: a variant's printed command reproduces its report.

use super::*;

/// Failure messages printed `replisim run scenarios/X.toml --seed N` for lighter or shorter variants,
/// which replays the shipped file, not the run. A variant's command now names the variant written
/// beside its report, and running that command gives the same report byte for byte.
#[test]
fn a_variants_replay_command_reproduces_its_report() {
    let s = shorter(lighter(load("round-robin"), 5), Duration::from_secs(2));
    let r = simulate(&s, 3, &RunOptions::default(), "replay");
    // What `describe` prints after `replay: ` when the run fails.
    let Some(command) = REPLAYS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&replay_key(&r))
        .cloned()
    else {
        panic!("no replay command for:\n{}", describe(&r));
    };
    let args: Vec<&str> = command.split_whitespace().collect();
    let [_, "run", file, "--seed", "3"] = args.as_slice() else {
        panic!("unexpected command {command}");
    };
    assert!(
        file.starts_with("target/sim-reports/replay/round-robin-seed3-") && file.ends_with(".toml"),
        "{command}"
    );
    let out = report_dir().join("replay-cli");
    let out_arg = out.display().to_string();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_replisim"))
        .current_dir(root())
        .args(["run", file, "--seed", "3", "--out", &out_arg, "--quiet"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run replisim: {e}"));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let replayed = std::fs::read_to_string(out.join("round-robin-seed3.json"))
        .unwrap_or_else(|e| panic!("the replay wrote no report: {e}"));
    assert_eq!(
        replayed,
        report::to_json(&r),
        "the replay differs from the run"
    );

    // The shipped file as it is replays from itself; a run edited in code says it is not exact.
    let whole = load("round-robin");
    let shipped = replay_command(&whole, 4, &RunOptions::default(), &report_dir());
    assert_eq!(shipped, "replisim run scenarios/round-robin.toml --seed 4");
    let edited = RunOptions {
        config_edit: Some(Arc::new(|c| c.read_retries = 0)),
        ..RunOptions::default()
    };
    let command = replay_command(&whole, 4, &edited, &report_dir());
    assert!(
        command.contains("not an exact replay") && command.contains("router's configuration"),
        "{command}"
    );
}
