//! The fault schedule: when each fault starts and ends, applying it to the simulation, and judging
//! from the recorded evidence whether it took effect (observed, never assumed).

use std::sync::Arc;
use std::time::Duration;

use crate::scenario::{FaultKind, Scenario};
use crate::sim::APP_HOST;
use crate::sim::connector::LinkControl;
use crate::sim::events::{Events, FaultRecord, Micros, NodeIdx, NodeRole, StatementKind};
use crate::sim::node::SimNode;

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
        })
        .collect()
}

/// What the harness saw while applying a fault, beyond the recorded events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sighting {
    /// crash: the host was down right after; restart: it was up right after.
    pub host_state_changed: bool,
    /// drop_connections: how many open streams were reset.
    pub streams_reset: usize,
    /// promote: the old primaries of the shard that were fenced read-only.
    pub fenced: Vec<NodeIdx>,
}

/// Everything the fault actions act upon.
pub struct FaultTargets<'a> {
    /// The scenario (for each node's model values).
    pub scenario: &'a Scenario,
    /// Durable node states, by node index.
    pub nodes: &'a [Arc<SimNode>],
    /// The application host's link switches.
    pub links: &'a LinkControl,
}

/// Applies one action to the simulation; returns what was seen (for `took_effect`).
pub fn apply(sim: &mut turmoil::Sim<'_>, targets: &FaultTargets<'_>, action: Action) -> Sighting {
    let Some(fault) = targets.scenario.faults.get(action.fault) else {
        return Sighting::default();
    };
    let node_idx = fault.target;
    let (Some(model), Some(node)) = (
        targets.scenario.nodes.get(node_idx),
        targets.nodes.get(node_idx),
    ) else {
        return Sighting::default();
    };
    let name = model.name.as_str();
    let mut sighting = Sighting::default();
    match (&fault.kind, action.undo) {
        (FaultKind::Crash, false) => {
            sim.crash(name);
            sighting.host_state_changed = !sim.is_host_running(name);
        }
        (FaultKind::Crash, true) | (FaultKind::Restart, _) => {
            sim.bounce(name);
            sighting.host_state_changed = sim.is_host_running(name);
        }
        (FaultKind::Partition, false) => {
            targets.links.set_blackholed(node_idx, true);
            sim.partition(APP_HOST, name);
        }
        (FaultKind::Partition, true) | (FaultKind::Heal, _) => {
            targets.links.set_blackholed(node_idx, false);
            sim.repair(APP_HOST, name);
        }
        (FaultKind::DropConnections, _) => {
            sighting.streams_reset = targets.links.drop_connections(node_idx);
        }
        (FaultKind::Latency { latency }, undo) => {
            let extra = if undo { Duration::ZERO } else { *latency };
            sim.set_link_latency(APP_HOST, name, model.link_latency + extra);
        }
        (FaultKind::Lag { delay }, undo) => {
            node.set_replication_delay(if undo {
                model.replication_delay
            } else {
                *delay
            });
        }
        (FaultKind::PauseReplay, undo) => node.set_replay_paused(!undo),
        (FaultKind::ResumeReplay, _) => node.set_replay_paused(false),
        (FaultKind::Slow { factor }, undo) => {
            node.set_slow_factor(if undo { 1.0 } else { *factor });
        }
        (FaultKind::Promote, _) => sighting.fenced = promote(targets, node_idx),
    }
    sighting
}

/// Promotes `target`, fences every other primary of its shard read-only (crashed ones too, so that
/// one restarts fenced rather than as a second writable primary, as a failover manager would see to)
/// and points the shard's other replicas at the new primary. Returns the fenced nodes.
fn promote(targets: &FaultTargets<'_>, target: NodeIdx) -> Vec<NodeIdx> {
    let scenario = targets.scenario;
    let (Some(model), Some(node)) = (scenario.nodes.get(target), targets.nodes.get(target)) else {
        return Vec::new();
    };
    node.promote();
    let mut fenced = Vec::new();
    let siblings = scenario
        .nodes
        .iter()
        .enumerate()
        .filter(|&(idx, n)| idx != target && n.shard == model.shard);
    for (idx, _) in siblings {
        let Some(sibling) = targets.nodes.get(idx) else {
            continue;
        };
        match sibling.role() {
            NodeRole::Primary => {
                sibling.set_read_only(true);
                fenced.push(idx);
            }
            NodeRole::Replica => sibling.set_upstream(Some(model.name.clone())),
        }
    }
    fenced
}

/// Sets `took_effect` on every record from what the servers, the network wrapper and the clients
/// recorded. `sightings[i]` is what applying fault i's start showed.
pub fn judge(
    scenario: &Scenario,
    records: &mut [FaultRecord],
    sightings: &[Sighting],
    events: &Events,
    run_end_us: Micros,
) {
    for record in records.iter_mut() {
        let Some(fault) = scenario.faults.get(record.index) else {
            continue;
        };
        let sighting = sightings.get(record.index).cloned().unwrap_or_default();
        let from = record.at_us;
        let to = record.until_us.unwrap_or(run_end_us).min(run_end_us);
        let node = record.target;
        record.took_effect = match &fault.kind {
            FaultKind::Crash => {
                sighting.host_state_changed && statements_started(events, node, from + 1, to) == 0
            }
            FaultKind::Restart => {
                sighting.host_state_changed
                    && statements_started(events, node, from, run_end_us) > 0
            }
            FaultKind::Partition => {
                // A blackhole is seen when the application host tried the node and nothing arrived.
                app_attempts(events, node, from, to) > 0
                    && statements_started(events, node, from + 1_000, to) == 0
            }
            FaultKind::Heal => statements_started(events, node, from, run_end_us) > 0,
            FaultKind::DropConnections => {
                sighting.streams_reset > 0 && server_closes(events, node, from, from + 100_000) > 0
            }
            FaultKind::Latency { latency } => {
                min_op_latency_on(events, node, from, to).is_some_and(|l| l >= 2 * micros(*latency))
            }
            FaultKind::Lag { delay } => {
                max_apply_delay(events, node, from, to).is_some_and(|d| d + 1_000 >= micros(*delay))
            }
            FaultKind::PauseReplay => {
                let primary_wrote = primary_commits(scenario, events, node, from, to) > 0;
                primary_wrote && applies(events, node, from + 1_000, to) == 0
            }
            FaultKind::ResumeReplay => applies(events, node, from, run_end_us) > 0,
            FaultKind::Slow { factor } => {
                let base = scenario.nodes.get(node).map_or(0, |n| micros(n.query_time));
                let slowed = (base as f64 * factor) as u64;
                max_service_time(events, node, from, to).is_some_and(|t| t + 1 >= slowed)
            }
            FaultKind::Promote => promotion_seen(scenario, events, &sighting, node, from),
        };
    }
}

/// A promotion of `target` at `from` took effect when the target served a statement as a primary,
/// no fenced node executed a write started after `from`, and, if the shard has other replicas and
/// the new primary committed writes, one of them applied a record the new primary committed.
fn promotion_seen(
    scenario: &Scenario,
    events: &Events,
    sighting: &Sighting,
    target: NodeIdx,
    from: Micros,
) -> bool {
    let after = |s: &&crate::sim::events::StatementEvent| s.start_us >= from;
    let served_as_primary = events
        .statements
        .iter()
        .filter(after)
        .any(|s| s.node == target && s.role == NodeRole::Primary);
    let fence_held = !events.statements.iter().filter(after).any(|s| {
        s.kind == StatementKind::Write && s.sqlstate.is_none() && sighting.fenced.contains(&s.node)
    });
    let commits: std::collections::BTreeSet<(u64, Micros)> = events
        .statements
        .iter()
        .filter(after)
        .filter(|s| s.node == target && s.kind == StatementKind::Write && s.sqlstate.is_none())
        .map(|s| (s.lsn, s.end_us))
        .collect();
    let shard = scenario.nodes.get(target).map(|n| n.shard);
    let followers: Vec<NodeIdx> = scenario
        .nodes
        .iter()
        .enumerate()
        .filter(|&(idx, n)| {
            idx != target && Some(n.shard) == shard && !sighting.fenced.contains(&idx)
        })
        .map(|(idx, _)| idx)
        .collect();
    let followed = followers.is_empty()
        || commits.is_empty()
        || events
            .wal_applies
            .iter()
            .any(|w| followers.contains(&w.node) && commits.contains(&(w.lsn, w.commit_us)));
    served_as_primary && fence_held && followed
}

fn statements_started(events: &Events, node: NodeIdx, from: Micros, to: Micros) -> usize {
    events
        .statements
        .iter()
        .filter(|s| s.node == node && s.start_us >= from && s.start_us < to)
        .count()
}

fn app_attempts(events: &Events, node: NodeIdx, from: Micros, to: Micros) -> usize {
    events
        .net
        .iter()
        .filter(|n| n.node == node && n.at_us >= from && n.at_us < to)
        .count()
}

fn server_closes(events: &Events, node: NodeIdx, from: Micros, to: Micros) -> usize {
    events
        .server_conns
        .iter()
        .filter(|c| c.node == node && !c.open && c.at_us >= from && c.at_us < to)
        .count()
}

fn min_op_latency_on(events: &Events, node: NodeIdx, from: Micros, to: Micros) -> Option<u64> {
    events
        .ops
        .iter()
        .filter(|o| o.ok && o.node == Some(node) && o.start_us >= from && o.start_us < to)
        .map(|o| o.end_us.saturating_sub(o.start_us))
        .min()
}

fn max_apply_delay(events: &Events, node: NodeIdx, from: Micros, to: Micros) -> Option<u64> {
    events
        .wal_applies
        .iter()
        .filter(|w| w.node == node && w.commit_us >= from && w.commit_us < to)
        .map(|w| w.applied_us.saturating_sub(w.commit_us))
        .max()
}

fn applies(events: &Events, node: NodeIdx, from: Micros, to: Micros) -> usize {
    events
        .wal_applies
        .iter()
        .filter(|w| w.node == node && w.applied_us >= from && w.applied_us < to)
        .count()
}

fn primary_commits(
    scenario: &Scenario,
    events: &Events,
    replica: NodeIdx,
    from: Micros,
    to: Micros,
) -> usize {
    let Some(shard) = scenario.nodes.get(replica).map(|n| n.shard) else {
        return 0;
    };
    events
        .statements
        .iter()
        .filter(|s| {
            s.kind == crate::sim::events::StatementKind::Write
                && s.sqlstate.is_none()
                && s.end_us >= from
                && s.end_us < to
                && scenario.nodes.get(s.node).is_some_and(|n| n.shard == shard)
        })
        .count()
}

fn max_service_time(events: &Events, node: NodeIdx, from: Micros, to: Micros) -> Option<u64> {
    events
        .statements
        .iter()
        .filter(|s| s.node == node && s.start_us >= from && s.start_us < to)
        .map(|s| s.end_us.saturating_sub(s.start_us))
        .max()
}
