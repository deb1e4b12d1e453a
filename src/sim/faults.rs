//! Applying the fault schedule (`record::schedule`) to the simulation. Whether each fault took
//! effect is judged afterwards from the records, in [`crate::sim::fault_evidence`].

use std::sync::Arc;
use std::time::Duration;

use crate::record::events::{NodeIdx, NodeRole};
use crate::record::schedule::Action;
use crate::scenario::{FaultKind, Scenario};
use crate::sim::APP_HOST;
use crate::sim::connector::LinkControl;
use crate::sim::node::SimNode;

/// What the harness saw while applying a fault, beyond the recorded events. `host_state_changed`
/// is informative only: the verdicts rest on the records.
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
