//! The fault schedule both modes follow: when each fault of a scenario starts and ends (the
//! simulation applies it to turmoil hosts, real mode to servers and proxies), and the record of each
//! fault's window that the checkers and reports read.

use std::time::Duration;

use crate::record::events::{FaultRecord, Micros};
use crate::scenario::Scenario;

/// One step of the schedule: a fault starts, or a fault with a `duration` is undone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    /// Simulated time at which to apply it.
    pub at: Duration,
    /// Index of the fault in `Scenario::faults`.
    pub fault: usize,
    /// true: undo the fault (its `duration` ran out).
    pub undo: bool,
}

/// Every action of the scenario in the order to apply them: by time, undos before starts at the same
/// time (so a fault may follow its own end), then in file order.
pub fn schedule(scenario: &Scenario) -> Vec<Action> {
    let mut actions = Vec::new();
    for (i, fault) in scenario.faults.iter().enumerate() {
        actions.push(Action {
            at: fault.at,
            fault: i,
            undo: false,
        });
        if let Some(d) = fault.duration {
            actions.push(Action {
                at: fault.at + d,
                fault: i,
                undo: true,
            });
        }
    }
    actions.sort_by_key(|a| (a.at, !a.undo, a.fault));
    actions
}

fn micros(d: Duration) -> Micros {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The window of every fault: from `at` to its own end, or to the next undo fault on the same target.
/// Instant faults (restart, heal, resume_replay, drop_connections, promote) have no end.
pub fn records(scenario: &Scenario) -> Vec<FaultRecord> {
    scenario
        .faults
        .iter()
        .enumerate()
        .map(|(index, fault)| FaultRecord {
            index,
            kind: fault.kind.name(),
            target: fault.target,
            at_us: micros(fault.at),
            until_us: fault.until(&scenario.faults).map(micros),
            took_effect: false,
            evidence: String::new(),
        })
        .collect()
}
