//! A schedule's faults grouped with the undo faults that end them (`crash` with its `restart`), so a
//! search drops or describes a fault and its undo together, never an undo left with nothing to undo.

use crate::scenario::{Fault, Scenario, format_duration};

/// One fault and, when a separate fault ends it, that undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultGroup {
    /// The fault's index in the schedule.
    pub fault: usize,
    /// The index of the `restart`, `heal` or `resume_replay` that ends it.
    pub undo: Option<usize>,
}

impl FaultGroup {
    /// The schedule indexes this group holds.
    pub fn indexes(self) -> impl Iterator<Item = usize> {
        std::iter::once(self.fault).chain(self.undo)
    }
}

/// The groups of `faults`, in the order of each group's fault. Every fault belongs to exactly one
/// group; an undo that ends nothing (not a valid schedule) stands as a group of its own.
pub fn groups(faults: &[Fault]) -> Vec<FaultGroup> {
    let undo_of = |index: usize| {
        let fault = &faults[index];
        let undo_kind = fault.kind.ended_by()?;
        if fault.duration.is_some() {
            return None;
        }
        let end = fault.until(faults)?;
        faults
            .iter()
            .position(|f| f.kind.name() == undo_kind && f.target == fault.target && f.at == end)
    };
    let ends: Vec<Option<usize>> = (0..faults.len()).map(undo_of).collect();
    (0..faults.len())
        .filter(|index| !ends.contains(&Some(*index)))
        .map(|fault| FaultGroup {
            fault,
            undo: ends[fault],
        })
        .collect()
}

/// One group in a few words: `crash primary-1 @1.2s for 800ms`, `partition replica-2 @2s..3.5s
/// (heal)`, `latency replica-1 +50ms @1s for 2s`, `drop_connections replica-1 @3s`.
pub fn describe(scenario: &Scenario, group: FaultGroup) -> String {
    let faults = &scenario.faults;
    let Some(fault) = faults.get(group.fault) else {
        return String::from("?");
    };
    let target = scenario
        .nodes
        .get(fault.target)
        .map_or("?", |n| n.name.as_str());
    let extra = match &fault.kind {
        crate::scenario::FaultKind::Latency { latency } => {
            format!(" +{}", format_duration(*latency))
        }
        crate::scenario::FaultKind::Lag { delay } => format!(" {}", format_duration(*delay)),
        crate::scenario::FaultKind::Slow { factor } => format!(" x{factor}"),
        _ => String::new(),
    };
    let start = format_duration(fault.at);
    let when = match (fault.duration, group.undo.and_then(|u| faults.get(u))) {
        (Some(duration), _) => format!("@{start} for {}", format_duration(duration)),
        (None, Some(undo)) => format!(
            "@{start}..{} ({})",
            format_duration(undo.at),
            undo.kind.name()
        ),
        (None, None) if fault.kind.has_undo() => format!("@{start} to the end"),
        (None, None) => format!("@{start}"),
    };
    format!("{} {target}{extra} {when}", fault.kind.name())
}

/// Every group of the scenario described, joined by `, `; `no faults` for none.
pub fn describe_all(scenario: &Scenario) -> String {
    let phrases: Vec<String> = groups(&scenario.faults)
        .into_iter()
        .map(|g| describe(scenario, g))
        .collect();
    if phrases.is_empty() {
        String::from("no faults")
    } else {
        phrases.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
name = "g"
duration = "10s"
[[shard]]
name = "s1"
orgs = [0, 1000]
primary = "primary-1"
replicas = ["replica-1"]
[[fault]]
at = "1s"
kind = "crash"
target = "replica-1"
[[fault]]
at = "2s"
kind = "partition"
target = "primary-1"
duration = "1s"
[[fault]]
at = "3s"
kind = "restart"
target = "replica-1"
[[fault]]
at = "4s"
kind = "drop_connections"
target = "primary-1"
"#;

    #[test]
    fn an_undo_goes_with_the_fault_it_ends() {
        let scenario = crate::scenario::parse(FILE, "g.toml").expect("valid");
        let found = groups(&scenario.faults);
        assert_eq!(
            found,
            vec![
                FaultGroup {
                    fault: 0,
                    undo: Some(2)
                },
                FaultGroup {
                    fault: 1,
                    undo: None
                },
                FaultGroup {
                    fault: 3,
                    undo: None
                },
            ]
        );
        assert_eq!(
            describe_all(&scenario),
            "crash replica-1 @1s..3s (restart), partition primary-1 @2s for 1s, \
             drop_connections primary-1 @4s"
        );
    }
}
