//! Bad faults are refused: wrong targets, keys of another kind, values out of range, and
//! schedules where faults of one kind on one node overlap or an undo has nothing to undo.

use replisim::scenario::{ScenarioErrorKind, parse};

use super::refused::{assert_refused, error};
use super::{BASE, secs, with};

#[test]
fn fault_targets_must_be_nodes_of_the_right_role() {
    let text = r#"name = "x"
duration = "60s"
[[shard]]
orgs = [0, 1000]
primary = "primary-1"
replicas = ["replica-1"]
[[fault]]
at = "1s"
kind = "crash"
target = "replica-1"
[[fault]]
    target = "replica-9"
    at = "2s"
    kind = "crash"
"#;
    let refused = error(text);
    assert_eq!(
        parse(text, "scenarios/x.toml")
            .expect_err("unknown target")
            .to_string(),
        "scenarios/x.toml:12:14: fault 2: target \"replica-9\" is not a node (nodes: primary-1, replica-1)"
    );
    assert_eq!(refused.kind(), ScenarioErrorKind::Invalid);
    for kind in [
        "lag\"\ndelay = \"1s",
        "pause_replay",
        "resume_replay",
        "promote",
    ] {
        assert_refused(
            &with(&format!(
                "[[fault]]\nat = \"1s\"\ntarget = \"p\"\nkind = \"{kind}\"\n"
            )),
            "t.toml:10:10: fault 1: ",
        );
    }
    let refused = error(&with(
        "[[fault]]\nat = \"1s\"\ntarget = \"p\"\nkind = \"pause_replay\"\n",
    ));
    assert!(
        refused
            .message()
            .contains("pause_replay acts on replicas, and \"p\" is a primary"),
        "{refused}"
    );
}

#[test]
fn fault_keys_must_belong_to_their_kind() {
    let fault = "[[fault]]\nat = \"1s\"\ntarget = \"r1\"\n";
    assert_refused(
        &with(&format!("{fault}kind = \"crash\"\n  delay = \"2s\"\n")),
        "t.toml:12:3: fault 1: key `delay` does not belong to kind \"crash\" (crash takes: at, kind, target, duration)",
    );
    assert_refused(
        &with(&format!(
            "{fault}kind = \"lag\"\ndelay = \"2s\"\nfactor = 3\n"
        )),
        "t.toml:13:1: fault 1: key `factor` does not belong to kind \"lag\" (lag takes: at, kind, target, duration, delay)",
    );
    assert_refused(
        &with(&format!("{fault}kind = \"restart\"\nduration = \"2s\"\n")),
        "t.toml:12:1: fault 1: kind \"restart\" has no undo, so it takes no `duration`",
    );
    for kind in ["heal", "drop_connections", "resume_replay", "promote"] {
        let text = with(&format!("{fault}kind = \"{kind}\"\nduration = \"2s\"\n"));
        let refused = error(&text);
        assert!(
            refused.message().contains("has no undo"),
            "{kind}: {refused}"
        );
    }
    assert_refused(
        &with(&format!("{fault}kind = \"explode\"\n")),
        "t.toml:11:8: fault 1: unknown kind \"explode\" (expected one of: crash, restart,",
    );
    // Inline tables are refused the same way, at the key.
    assert_refused(
        &format!(
            "fault = [{{ at = \"1s\", kind = \"crash\", target = \"r1\", factor = 2 }}]\n{BASE}"
        ),
        "t.toml:1:54: fault 1: key `factor` does not belong",
    );
}

#[test]
fn fault_values_must_be_in_range() {
    let fault = "[[fault]]\nat = \"1s\"\ntarget = \"r1\"\n";
    assert_refused(
        &with(&format!("{fault}kind = \"slow\"\nfactor = 1\n")),
        "t.toml:12:10: fault 1: factor must be above 1 (it multiplies query_time), got 1",
    );
    assert_refused(
        &with(&format!("{fault}kind = \"slow\"\nfactor = 0.5\n")),
        "t.toml:12:10: fault 1: factor must be above 1",
    );
    assert_refused(
        &with(&format!("{fault}kind = \"crash\"\nduration = \"0s\"\n")),
        "t.toml:12:12: fault 1: duration must be above zero",
    );
    assert_refused(
        &with(&format!("{fault}kind = \"latency\"\nlatency = \"0ms\"\n")),
        "t.toml:12:11: fault 1: latency must be above zero",
    );
    assert_refused(
        &with("[[fault]]\nat = \"10s\"\ntarget = \"r1\"\nkind = \"crash\"\n"),
        "t.toml:9:6: fault 1: at \"10s\" is not before the end of the run (duration = \"10s\")",
    );
    let lag_zero = with(&format!("{fault}kind = \"lag\"\ndelay = \"0ms\"\n"));
    assert!(
        parse(&lag_zero, "t.toml").is_ok(),
        "an apply delay of zero is valid"
    );
}

/// Faults `(at, kind, target, extra)` appended to `BASE` (duration 10 s).
fn schedule(faults: &[(&str, &str, &str, &str)]) -> String {
    let tables: String = faults
        .iter()
        .map(|(at, kind, target, extra)| {
            format!("[[fault]]\nat = \"{at}\"\nkind = \"{kind}\"\ntarget = \"{target}\"\n{extra}")
        })
        .collect();
    with(&tables)
}

#[test]
fn faults_of_one_kind_on_one_node_must_not_overlap() {
    assert_refused(
        &schedule(&[
            ("1s", "crash", "r1", "duration = \"5s\"\n"),
            ("3s", "crash", "r1", ""),
        ]),
        "t.toml:14:6: fault 2: crash of \"r1\" from 3s to the end of the run overlaps fault 1 (crash of \"r1\" from 1s to 6s)",
    );
    // Without a duration a crash lasts until its restart...
    assert_refused(
        &schedule(&[
            ("1s", "crash", "r1", ""),
            ("2s", "crash", "r1", "duration = \"1s\"\n"),
            ("4s", "restart", "r1", ""),
        ]),
        "t.toml:13:6: fault 2: crash of \"r1\" from 2s to 3s overlaps fault 1 (crash of \"r1\" from 1s to 4s)",
    );
    // ... so a crash after the restart is fine, as are other nodes and other kinds.
    let valid = schedule(&[
        ("1s", "crash", "r1", ""),
        ("4s", "restart", "r1", ""),
        ("4s", "crash", "r1", "duration = \"1s\"\n"),
        ("1s", "crash", "r2", ""),
        ("2s", "partition", "r1", ""),
        ("6s", "crash", "r1", ""),
        ("8s", "restart", "r1", ""),
    ]);
    let scenario = parse(&valid, "t.toml").expect("no overlap");
    assert_eq!(scenario.faults[0].until(&scenario.faults), Some(secs(4)));
    assert_eq!(scenario.faults[3].until(&scenario.faults), None);
    // Latency, lag and slow without a duration last to the end of the run; kinds without undo act
    // at an instant.
    assert_refused(
        &schedule(&[
            ("1s", "latency", "r1", "latency = \"5ms\"\n"),
            ("9s", "latency", "r1", "latency = \"9ms\"\n"),
        ]),
        "t.toml:14:6: fault 2: latency of \"r1\" from 9s to the end of the run overlaps fault 1",
    );
    assert_refused(
        &schedule(&[
            ("2s", "drop_connections", "p", ""),
            ("3s", "drop_connections", "p", ""),
            ("2s", "drop_connections", "p", ""),
        ]),
        "t.toml:17:6: fault 3: drop_connections of \"p\" at 2s overlaps fault 1 (drop_connections of \"p\" at 2s)",
    );
    let back_to_back = schedule(&[
        ("1s", "slow", "r2", "factor = 2\nduration = \"2s\"\n"),
        ("3s", "slow", "r2", "factor = 3\n"),
    ]);
    assert!(
        parse(&back_to_back, "t.toml").is_ok(),
        "[1s, 3s) and [3s, end) touch"
    );
}

#[test]
fn an_undo_must_have_something_to_undo() {
    assert_refused(
        &schedule(&[("5s", "restart", "r1", "")]),
        "t.toml:9:6: fault 1: restart of \"r1\" at 5s has nothing to undo: no crash of that node without `duration`",
    );
    assert_refused(
        &schedule(&[
            ("1s", "crash", "r1", "duration = \"5s\"\n"),
            ("3s", "restart", "r1", ""),
        ]),
        "t.toml:14:6: fault 2: restart of \"r1\" at 3s has nothing to undo",
    );
    assert_refused(
        &schedule(&[("1s", "partition", "r1", ""), ("3s", "heal", "r2", "")]),
        "t.toml:13:6: fault 2: heal of \"r2\" at 3s has nothing to undo: no partition",
    );
    assert_refused(
        &schedule(&[
            ("3s", "resume_replay", "r1", ""),
            ("4s", "pause_replay", "r1", ""),
        ]),
        "t.toml:9:6: fault 1: resume_replay of \"r1\" at 3s has nothing to undo: no pause_replay",
    );
    assert_refused(
        &schedule(&[
            ("1s", "crash", "r1", ""),
            ("3s", "restart", "r1", ""),
            ("4s", "restart", "r1", ""),
        ]),
        "t.toml:17:6: fault 3: restart of \"r1\" at 4s has nothing to undo",
    );
}

#[test]
fn a_slow_fault_on_a_node_without_query_time_is_refused() {
    let fault = "[[fault]]\nat = \"1s\"\ntarget = \"r1\"\nkind = \"slow\"\nfactor = 3\n";
    assert_refused(
        &with(&format!("[node.r1]\nquery_time = \"0ms\"\n{fault}")),
        "t.toml:12:10: fault 1: slow multiplies query_time, and \"r1\" has query_time = 0, so it can have no effect",
    );
    assert!(
        parse(
            &with(&format!("[node.r1]\nquery_time = \"1ms\"\n{fault}")),
            "t.toml"
        )
        .is_ok()
    );
}
