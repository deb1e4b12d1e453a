//! The passes of a shrink: each turns the current scenario into smaller variants, in a fixed order,
//! most aggressive first. A variant may be an invalid scenario (the search skips those).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::scenario::{
    LINK_LATENCY_DEFAULT, QUERY_TIME_DEFAULT, REPLICATION_DELAY_DEFAULT, Scenario, format_duration,
};
use crate::search::fault_groups::{self, FaultGroup};
use crate::search::verdict::FAULT_TOOK_EFFECT;

/// A smaller variant and what makes it smaller, in words.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The variant.
    pub scenario: Scenario,
    /// `dropped crash primary-1 @1s for 2s`, `duration 4s -> 1.5s`, ...
    pub what: String,
}

/// A pass: the current scenario and the failure kind kept -> variants to try in order.
pub type Pass = fn(&Scenario, &str) -> Vec<Candidate>;

/// The passes, in the order a round runs them.
pub const PASSES: [Pass; 6] = [
    drop_faults,
    drop_invariants,
    shorten_faults,
    shorten_run,
    lighten_workload,
    default_nodes,
];

/// Faults dropped, a fault and its undo together: first all of them, then each half, each quarter,
/// ... down to single faults (ddmin's complements, coarse to fine).
fn drop_faults(s: &Scenario, _kind: &str) -> Vec<Candidate> {
    let groups = fault_groups::groups(&s.faults);
    let mut out = Vec::new();
    let mut seen: BTreeSet<Vec<usize>> = BTreeSet::new();
    let mut chunks = 1;
    while chunks <= groups.len() {
        let size = groups.len().div_ceil(chunks);
        for chunk in groups.chunks(size) {
            let removed: Vec<usize> = chunk.iter().map(|g| g.fault).collect();
            if seen.insert(removed) {
                out.push(without_groups(s, chunk));
            }
        }
        if chunks == groups.len() {
            break;
        }
        chunks = (chunks * 2).min(groups.len());
    }
    out
}

fn without_groups(s: &Scenario, removed: &[FaultGroup]) -> Candidate {
    let gone: BTreeSet<usize> = removed.iter().flat_map(|g| g.indexes()).collect();
    let described: Vec<String> = removed
        .iter()
        .map(|&g| fault_groups::describe(s, g))
        .collect();
    let mut scenario = s.clone();
    scenario.faults = s
        .faults
        .iter()
        .enumerate()
        .filter(|(i, _)| !gone.contains(i))
        .map(|(_, f)| f.clone())
        .collect();
    Candidate {
        scenario,
        what: format!("dropped {}", described.join(", ")),
    }
}

/// The invariants other than the failing kind: all at once, then one at a time.
fn drop_invariants(s: &Scenario, kind: &str) -> Vec<Candidate> {
    let others: Vec<usize> = s
        .invariants
        .iter()
        .enumerate()
        .filter(|(_, i)| i.name() != kind || kind == FAULT_TOOK_EFFECT)
        .map(|(index, _)| index)
        .collect();
    let mut out = Vec::new();
    let without = |drop: &[usize]| {
        let mut scenario = s.clone();
        let names: Vec<&str> = drop.iter().map(|&i| s.invariants[i].name()).collect();
        scenario.invariants = s
            .invariants
            .iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, inv)| inv.clone())
            .collect();
        Candidate {
            scenario,
            what: format!("dropped invariant {}", names.join(", ")),
        }
    };
    if others.len() > 1 {
        out.push(without(&others));
    }
    for &index in &others {
        out.push(without(&[index]));
    }
    out
}

/// Each fault's `duration`, or the time to its undo, cut to a quarter, then to a half.
fn shorten_faults(s: &Scenario, _kind: &str) -> Vec<Candidate> {
    let mut out = Vec::new();
    for group in fault_groups::groups(&s.faults) {
        let fault = &s.faults[group.fault];
        let length = match (fault.duration, group.undo) {
            (Some(d), _) => d,
            (None, Some(undo)) => s.faults[undo].at.saturating_sub(fault.at),
            (None, None) => continue,
        };
        for shorter in [length / 4, length / 2] {
            let shorter = whole_ms(shorter);
            if shorter.is_zero() || shorter >= length {
                continue;
            }
            let mut scenario = s.clone();
            match group.undo {
                Some(undo) => scenario.faults[undo].at = fault.at + shorter,
                None => scenario.faults[group.fault].duration = Some(shorter),
            }
            out.push(Candidate {
                scenario,
                what: format!(
                    "{}: lasts {} instead of {}",
                    fault_groups::describe(s, group),
                    format_duration(shorter),
                    format_duration(length)
                ),
            });
        }
    }
    out
}

/// The run cut down towards just after its last fault starts.
fn shorten_run(s: &Scenario, _kind: &str) -> Vec<Candidate> {
    let last_start = s.faults.iter().map(|f| f.at).max().unwrap_or_default();
    let floor = whole_ms(last_start + Duration::from_millis(100)).max(Duration::from_millis(200));
    if floor >= s.duration {
        return Vec::new();
    }
    let room = s.duration - floor;
    let mut lengths: Vec<Duration> = [floor, floor + room / 4, floor + room / 2]
        .into_iter()
        .map(whole_ms)
        .filter(|d| *d < s.duration && *d >= floor)
        .collect();
    lengths.dedup();
    lengths
        .into_iter()
        .map(|duration| {
            let mut scenario = s.clone();
            scenario.duration = duration;
            Candidate {
                scenario,
                what: format!(
                    "duration {} -> {}",
                    format_duration(s.duration),
                    format_duration(duration)
                ),
            }
        })
        .collect()
}

/// Fewer clients (one, a quarter, a half), a lower rate, and the read mix and org skew back to
/// their defaults.
fn lighten_workload(s: &Scenario, _kind: &str) -> Vec<Candidate> {
    let w = &s.workload;
    let defaults = crate::scenario::Workload::default();
    let mut out = Vec::new();
    let mut with = |what: String, edit: &dyn Fn(&mut Scenario)| {
        let mut scenario = s.clone();
        edit(&mut scenario);
        out.push(Candidate { scenario, what });
    };
    let mut fewer: Vec<u32> = vec![1, w.clients / 4, w.clients / 2];
    fewer.retain(|&c| c >= 1 && c < w.clients);
    fewer.dedup();
    for clients in fewer {
        with(format!("clients {} -> {clients}", w.clients), &|x| {
            x.workload.clients = clients;
        });
    }
    if let Some(rate) = w.rate {
        for lower in [(rate / 4.0).round(), (rate / 2.0).round()] {
            if lower >= 1.0 && lower < rate {
                with(format!("rate {rate} -> {lower}"), &|x| {
                    x.workload.rate = Some(lower);
                });
            }
        }
    }
    if w.org_skew.to_bits() != defaults.org_skew.to_bits() {
        with(
            format!("org_skew {} -> {}", w.org_skew, defaults.org_skew),
            &|x| {
                x.workload.org_skew = defaults.org_skew;
            },
        );
    }
    if w.read_ratio.to_bits() != defaults.read_ratio.to_bits() {
        with(
            format!("read_ratio {} -> {}", w.read_ratio, defaults.read_ratio),
            &|x| x.workload.read_ratio = defaults.read_ratio,
        );
    }
    out
}

/// Node parameters back to the defaults: every node at once, then one node at a time.
fn default_nodes(s: &Scenario, _kind: &str) -> Vec<Candidate> {
    let is_default = |n: &crate::scenario::Node| {
        n.query_time == QUERY_TIME_DEFAULT
            && n.replication_delay == REPLICATION_DELAY_DEFAULT
            && n.link_latency == LINK_LATENCY_DEFAULT
    };
    let changed: Vec<usize> = (0..s.nodes.len())
        .filter(|&i| !is_default(&s.nodes[i]))
        .collect();
    let reset = |indexes: &[usize], what: String| {
        let mut scenario = s.clone();
        for &i in indexes {
            let node = &mut scenario.nodes[i];
            node.query_time = QUERY_TIME_DEFAULT;
            node.replication_delay = REPLICATION_DELAY_DEFAULT;
            node.link_latency = LINK_LATENCY_DEFAULT;
        }
        Candidate { scenario, what }
    };
    let mut out = Vec::new();
    if changed.len() > 1 {
        out.push(reset(
            &changed,
            "every node's query_time, replication_delay and link_latency back to the defaults"
                .to_owned(),
        ));
    }
    for &i in &changed {
        out.push(reset(
            &[i],
            format!("{}: node parameters back to the defaults", s.nodes[i].name),
        ));
    }
    out
}

/// `d` rounded down to whole milliseconds, so reduced files show plain values.
fn whole_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
name = "c"
duration = "10s"
[[shard]]
name = "s1"
orgs = [0, 1000]
primary = "primary-1"
replicas = ["replica-1", "replica-2"]
[workload]
clients = 40
[[fault]]
at = "1s"
kind = "crash"
target = "replica-1"
[[fault]]
at = "2s"
kind = "partition"
target = "primary-1"
duration = "2s"
[[fault]]
at = "3s"
kind = "restart"
target = "replica-1"
[[fault]]
at = "5s"
kind = "drop_connections"
target = "replica-2"
[[invariant]]
kind = "writes_only_primary"
[[invariant]]
kind = "no_failed_queries"
"#;

    fn scenario() -> Scenario {
        crate::scenario::parse(FILE, "c.toml").expect("valid")
    }

    #[test]
    fn faults_go_all_at_once_then_in_halves_then_one_by_one_with_their_undo() {
        let s = scenario();
        let found = drop_faults(&s, "no_failed_queries");
        let counts: Vec<usize> = found.iter().map(|c| c.scenario.faults.len()).collect();
        // 3 groups: all (0 left), halves {crash+restart, partition} / {drop} (1 and 3 left), then
        // single groups: crash+restart and partition (the last single was already a half).
        assert_eq!(counts, vec![0, 1, 3, 2, 3]);
        // Dropping the crash takes its restart with it: no undo is left with nothing to undo.
        assert!(
            found[3]
                .scenario
                .faults
                .iter()
                .all(|f| f.kind.name() != "restart"),
            "{:?}",
            found[3].what
        );
        assert!(found.iter().all(|c| {
            crate::scenario::parse(&c.scenario.to_toml().expect("writes"), "c.toml").is_ok()
        }));
    }

    #[test]
    fn the_failing_invariant_is_kept_and_the_run_ends_after_the_last_fault() {
        let s = scenario();
        let dropped = drop_invariants(&s, "no_failed_queries");
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].scenario.invariants.len(), 1);
        assert_eq!(
            dropped[0].scenario.invariants[0].name(),
            "no_failed_queries"
        );
        let shorter = shorten_run(&s, "no_failed_queries");
        assert_eq!(shorter[0].scenario.duration, Duration::from_millis(5100));
        assert!(shorter.iter().all(|c| c.scenario.duration < s.duration));
        let fewer = lighten_workload(&s, "no_failed_queries");
        let clients: Vec<u32> = fewer.iter().map(|c| c.scenario.workload.clients).collect();
        assert_eq!(clients, vec![1, 10, 20]);
    }
}
