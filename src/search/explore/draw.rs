//! One seed's draw: a fresh fault schedule and, where `[explore]` gives ranges, node parameters and
//! workload shape, applied to a copy of the base scenario that keeps its shards, router settings and
//! invariants.
//!
//! The schedule is drawn so that every fault can show its effect (SPEC 6.2): faults on one node never
//! overlap (a fault on a crashed node shows nothing), nor follow a crash, partition, latency or
//! slow fault before the node is back in rotation, nor a `drop_connections` within the ejection
//! time; a replica's `lag` or `pause_replay` never overlaps a crash, partition, latency or slow
//! fault of its shard's primary, nor the time after it until the primary is back in rotation (they
//! need commits, and a slow or far primary may leave rotation); a `latency`, `slow`,
//! `lag` or `pause_replay` never overlaps a partition in its shard, nor the query timeout after it
//! (clients stalled on the blackhole send nothing); a `lag` outlasts its delay (its records must be
//! applied while it lasts); `slow` acts only on nodes with a query time; an undo fault comes only
//! where the next health check still falls inside the run; a `promote` comes after every other
//! fault has ended.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ranges::{duration_in, number_in, whole_in};
use crate::record::events::{NodeIdx, NodeRole};
use crate::scenario::explore_section::{
    EXPLORE_DELAY_DEFAULT, EXPLORE_FACTOR_DEFAULT, EXPLORE_FAULTS_DEFAULT, EXPLORE_KINDS_DEFAULT,
    EXPLORE_LATENCY_DEFAULT,
};
use crate::scenario::{self, ExploreKind, ExploreSpec, Fault, FaultKind, Scenario};
use crate::search::fault_groups;

/// Mixed into the seed so the draw's random stream differs from the one the simulation itself
/// seeds from the same number ("explore!" in ASCII).
const DRAW_SALT: u64 = 0x6578_706c_6f72_6521;

/// Tries at one fault before giving up on it (its slot then stays empty).
const PLACE_TRIES: usize = 20;

/// Whole draws tried before a seed is reported as having no valid draw.
const DRAW_TRIES: usize = 20;

/// A drawn scenario and what was drawn, in one line.
#[derive(Clone, Debug)]
pub struct Draw {
    /// The standalone scenario: drawn values inlined, no `[explore]`, `seed` = the seed.
    pub scenario: Scenario,
    /// What was drawn: the faults, then the workload and node values that had ranges.
    pub summary: String,
}

/// The name of the scenario drawn from `base` on `seed` (also its file name, without `.toml`).
pub fn drawn_name(base: &Scenario, seed: u64) -> String {
    format!("{}-explore-seed{seed}", base.name)
}

/// Draws a scenario from `base` and `seed`. Each candidate goes through `to_toml` and `parse`, so
/// the scenario returned is exactly what its file holds and passes `check`; a candidate the
/// validation refuses is drawn again from the same stream.
pub fn draw(base: &Scenario, seed: u64) -> Result<Draw, String> {
    let spec = base.explore.clone().unwrap_or_default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ DRAW_SALT);
    let mut last_error = String::new();
    for _ in 0..DRAW_TRIES {
        let candidate = draw_once(base, &spec, seed, &mut rng);
        let name = format!("{}.toml", candidate.name);
        let parsed = candidate
            .to_toml()
            .map_err(|e| e.to_string())
            .and_then(|text| scenario::parse(&text, &name).map_err(|e| e.to_string()));
        match parsed {
            Ok(scenario) => {
                let summary = summary(&scenario, &spec);
                return Ok(Draw { scenario, summary });
            }
            Err(error) => last_error = error,
        }
    }
    Err(format!(
        "no valid draw in {DRAW_TRIES} tries; the last: {last_error}"
    ))
}

fn draw_once(base: &Scenario, spec: &ExploreSpec, seed: u64, rng: &mut ChaCha8Rng) -> Scenario {
    let mut s = base.clone();
    s.name = drawn_name(base, seed);
    s.seed = seed;
    s.explore = None;
    draw_nodes(&mut s, spec, rng);
    draw_workload(&mut s, spec, rng);
    s.faults = draw_faults(&s, spec, rng);
    s.description = format!(
        "Drawn by replisim explore from \"{}\" with seed {seed}: {}.",
        base.name,
        summary(&s, spec)
    );
    s
}

fn draw_nodes(s: &mut Scenario, spec: &ExploreSpec, rng: &mut ChaCha8Rng) {
    for node in &mut s.nodes {
        if let Some(range) = spec.query_time {
            node.query_time = duration_in(rng, range);
        }
        if let Some(range) = spec.replication_delay
            && node.initial_role == NodeRole::Replica
        {
            node.replication_delay = duration_in(rng, range);
        }
        if let Some(range) = spec.link_latency {
            node.link_latency = duration_in(rng, range);
        }
    }
}

fn draw_workload(s: &mut Scenario, spec: &ExploreSpec, rng: &mut ChaCha8Rng) {
    let w = &mut s.workload;
    if let Some(range) = spec.clients {
        w.clients = whole_in(rng, range);
    }
    if let Some(range) = spec.rate {
        w.rate = Some(number_in(rng, range, 1.0));
    }
    if let Some(range) = spec.think_time {
        w.think_time = duration_in(rng, range);
    }
    if let Some(range) = spec.read_ratio {
        w.read_ratio = number_in(rng, range, 0.01);
    }
    if let Some(range) = spec.org_skew {
        w.org_skew = number_in(rng, range, 0.01);
    }
}

/// A fault placed on the timeline: it occupies its target (and, for the replication kinds, its
/// shard's replication) from `at` to `end`.
struct Placed {
    kind: ExploreKind,
    target: NodeIdx,
    at: Duration,
    end: Duration,
}

fn draw_faults(s: &Scenario, spec: &ExploreSpec, rng: &mut ChaCha8Rng) -> Vec<Fault> {
    let run = s.duration;
    let kinds = spec
        .kinds
        .clone()
        .unwrap_or_else(|| EXPLORE_KINDS_DEFAULT.to_vec());
    let targets: Vec<NodeIdx> = spec
        .targets
        .clone()
        .unwrap_or_else(|| (0..s.nodes.len()).collect());
    let pairs: Vec<(ExploreKind, NodeIdx)> = kinds
        .iter()
        .flat_map(|&kind| targets.iter().map(move |&target| (kind, target)))
        .filter(|&(kind, target)| can_act(s, kind, target))
        .collect();
    let (fewest, most) = spec.faults.unwrap_or(EXPLORE_FAULTS_DEFAULT);
    let count = whole_in(rng, (fewest, most));
    let at_range = spec.at_or_default(run);
    let duration_range = spec.fault_duration_or_default(run);
    // The pause between two faults on one node: time for the undo to show before the next fault.
    let gap = (run / 20).min(Duration::from_millis(500));

    let mut placed: Vec<Placed> = Vec::new();
    let mut faults: Vec<Fault> = Vec::new();
    let mut promote: Option<NodeIdx> = None;
    if pairs.is_empty() {
        return faults;
    }
    for _ in 0..count {
        for _ in 0..PLACE_TRIES {
            let (kind, target) = pairs[rng.random_range(0..pairs.len())];
            if kind == ExploreKind::Promote {
                if promote.is_none() {
                    promote = Some(target);
                    break;
                }
                continue;
            }
            let at = duration_in(rng, at_range);
            let lasting = has_undo(kind);
            let length = if lasting {
                duration_in(rng, duration_range)
                    .min(run.saturating_sub(at))
                    .max(Duration::from_millis(1))
            } else {
                Duration::ZERO
            };
            let candidate = Placed {
                kind,
                target,
                at,
                end: at + length,
            };
            if placed.iter().any(|p| clash(s, p, &candidate, gap)) {
                continue;
            }
            let fault_kind = fault_kind(kind, spec, rng);
            // A lag shows in records committed during it and applied `delay` later, still inside
            // it: the fault must outlast its delay, with a tenth to spare.
            if let FaultKind::Lag { delay } = fault_kind
                && length <= delay + delay / 10 + gap
            {
                continue;
            }
            // Half of the undoable faults end with a separate undo fault, the other half with a
            // `duration`, so both forms of the schedule get explored. An undo shows its effect when
            // the node is reached again, which the next health check does: it needs that long
            // before the end of the run.
            let undo_seen_by =
                candidate.end + s.router.health_interval + s.router.health_timeout + gap;
            let explicit_undo = matches!(
                kind,
                ExploreKind::Crash | ExploreKind::Partition | ExploreKind::PauseReplay
            ) && undo_seen_by < run
                && rng.random_bool(0.5);
            faults.push(Fault {
                at,
                kind: fault_kind.clone(),
                target,
                duration: (lasting && !explicit_undo).then_some(length),
            });
            if explicit_undo && let Some(undo) = undo_kind(&fault_kind) {
                faults.push(Fault {
                    at: candidate.end,
                    kind: undo,
                    target,
                    duration: None,
                });
            }
            placed.push(candidate);
            break;
        }
    }
    if let Some(target) = promote {
        let after = placed
            .iter()
            .map(|p| promotion_after(s, p) + gap)
            .max()
            .unwrap_or_default();
        let at = after.max(at_range.0);
        if at <= at_range.1 && at < run {
            faults.push(Fault {
                at,
                kind: FaultKind::Promote,
                target,
                duration: None,
            });
        }
    }
    // Time order; an undo drawn at the same instant as another fault keeps its place after it.
    faults.sort_by_key(|f| f.at);
    faults
}

/// Whether `kind` can show its effect on `target` at all.
fn can_act(s: &Scenario, kind: ExploreKind, target: NodeIdx) -> bool {
    let Some(node) = s.nodes.get(target) else {
        return false;
    };
    if kind.replicas_only() && node.initial_role != NodeRole::Replica {
        return false;
    }
    // A slow node's service time is query_time x factor: nothing to slow without a query time.
    !(kind == ExploreKind::Slow && node.query_time.is_zero())
}

fn has_undo(kind: ExploreKind) -> bool {
    !matches!(kind, ExploreKind::DropConnections | ExploreKind::Promote)
}

/// Whether two placed faults would hide each other's effect.
fn clash(s: &Scenario, a: &Placed, b: &Placed, gap: Duration) -> bool {
    let overlap =
        |x: &Placed, x_end: Duration, y: &Placed| x.at < y.end + gap && y.at < x_end + gap;
    if a.target == b.target {
        return overlap(a, shadow_end(s, a), b) || overlap(b, shadow_end(s, b), a);
    }
    let same_shard =
        s.nodes.get(a.target).map(|n| n.shard) == s.nodes.get(b.target).map(|n| n.shard);
    same_shard
        && (hides(s, a, b) && overlap(a, shadow_end(s, a), b)
            || hides(s, b, a) && overlap(b, shadow_end(s, b), a))
}

/// Whether fault `x` on one node can keep fault `y` on another node of its shard from showing.
fn hides(s: &Scenario, x: &Placed, y: &Placed) -> bool {
    let primary = s
        .nodes
        .get(x.target)
        .is_some_and(|n| n.initial_role == NodeRole::Primary);
    // Replication faults need commits from the shard's primary while they last. A crashed or
    // partitioned primary makes none; one made slow or far may fail its health checks and leave
    // rotation, and its clients' writes stall on it.
    let stops_commits = primary
        && matches!(
            x.kind,
            ExploreKind::Crash | ExploreKind::Partition | ExploreKind::Latency | ExploreKind::Slow
        );
    let needs_commits = matches!(y.kind, ExploreKind::Lag | ExploreKind::PauseReplay);
    // A partition is a blackhole: closed-loop clients waiting on it send nothing else, so a fault
    // judged by the operations a node served (or the commits it made) may see none.
    let stalls_clients = x.kind == ExploreKind::Partition;
    let needs_traffic = matches!(
        y.kind,
        ExploreKind::Latency | ExploreKind::Slow | ExploreKind::Lag | ExploreKind::PauseReplay
    );
    (stops_commits && needs_commits) || (stalls_clients && needs_traffic)
}

/// Until when fault `x` can hide another. A crashed or partitioned node is back in rotation only
/// once a health check finds it well; a statement sent into a partition's blackhole is never
/// answered and holds its client until the query timeout; connections dropped on a node make the
/// router eject it for a while; a node made slow or far may have been ejected (for the ejection
/// time) or found unhealthy (until a health check finds it well), and gets no statement meanwhile.
fn shadow_end(s: &Scenario, x: &Placed) -> Duration {
    let router = &s.router;
    let readmitted = router.health_interval.saturating_add(router.health_timeout);
    match x.kind {
        ExploreKind::Latency | ExploreKind::Slow => {
            x.end.saturating_add(readmitted.max(router.ejection_time))
        }
        ExploreKind::Crash => x.end.saturating_add(readmitted),
        ExploreKind::Partition => x
            .end
            .saturating_add(readmitted)
            .saturating_add(router.query_timeout),
        ExploreKind::DropConnections => x.end.saturating_add(router.ejection_time),
        _ => x.end,
    }
}

/// Until when fault `x` can hide a promotion: as [`shadow_end`], but a node made slow or far is no
/// longer so once its fault ends, and its ejection from reads, if any, keeps no write from a
/// promoted node (a writer is never ejected), so the promotion need not wait for it.
fn promotion_after(s: &Scenario, x: &Placed) -> Duration {
    match x.kind {
        ExploreKind::Latency | ExploreKind::Slow => x.end,
        _ => shadow_end(s, x),
    }
}

/// The fault kind with its drawn value.
fn fault_kind(kind: ExploreKind, spec: &ExploreSpec, rng: &mut ChaCha8Rng) -> FaultKind {
    match kind {
        ExploreKind::Crash => FaultKind::Crash,
        ExploreKind::Partition => FaultKind::Partition,
        ExploreKind::DropConnections => FaultKind::DropConnections,
        ExploreKind::Latency => FaultKind::Latency {
            latency: duration_in(rng, spec.latency.unwrap_or(EXPLORE_LATENCY_DEFAULT)),
        },
        ExploreKind::Lag => FaultKind::Lag {
            delay: duration_in(rng, spec.delay.unwrap_or(EXPLORE_DELAY_DEFAULT)),
        },
        ExploreKind::PauseReplay => FaultKind::PauseReplay,
        ExploreKind::Slow => FaultKind::Slow {
            factor: number_in(rng, spec.factor.unwrap_or(EXPLORE_FACTOR_DEFAULT), 0.1),
        },
        ExploreKind::Promote => FaultKind::Promote,
    }
}

fn undo_kind(kind: &FaultKind) -> Option<FaultKind> {
    match kind {
        FaultKind::Crash => Some(FaultKind::Restart),
        FaultKind::Partition => Some(FaultKind::Heal),
        FaultKind::PauseReplay => Some(FaultKind::ResumeReplay),
        _ => None,
    }
}

/// What was drawn: the faults, then every workload and node value `[explore]` gave a range for.
pub fn summary(s: &Scenario, spec: &ExploreSpec) -> String {
    let mut parts = vec![fault_groups::describe_all(s)];
    let w = &s.workload;
    if spec.clients.is_some() {
        parts.push(format!("clients {}", w.clients));
    }
    if let (Some(_), Some(rate)) = (spec.rate, w.rate) {
        parts.push(format!("rate {rate}/s"));
    }
    if spec.think_time.is_some() {
        parts.push(format!(
            "think_time {}",
            scenario::format_duration(w.think_time)
        ));
    }
    if spec.read_ratio.is_some() {
        parts.push(format!("read_ratio {}", w.read_ratio));
    }
    if spec.org_skew.is_some() {
        parts.push(format!("org_skew {}", w.org_skew));
    }
    let node_keys = [
        ("query_time", spec.query_time, NodeValue::QueryTime),
        (
            "replication_delay",
            spec.replication_delay,
            NodeValue::ReplicationDelay,
        ),
        ("link_latency", spec.link_latency, NodeValue::LinkLatency),
    ];
    for (key, range, which) in node_keys {
        if range.is_none() {
            continue;
        }
        let values: Vec<String> = s
            .nodes
            .iter()
            .filter_map(|n| {
                which
                    .of(n)
                    .map(|v| format!("{} {}", n.name, scenario::format_duration(v)))
            })
            .collect();
        parts.push(format!("{key} {}", values.join(" ")));
    }
    parts.join("; ")
}

/// A node parameter explore may draw.
#[derive(Clone, Copy)]
enum NodeValue {
    QueryTime,
    ReplicationDelay,
    LinkLatency,
}

impl NodeValue {
    /// The node's value, if it has one (a primary has no replication delay of its own).
    fn of(self, node: &scenario::Node) -> Option<Duration> {
        match self {
            NodeValue::QueryTime => Some(node.query_time),
            NodeValue::ReplicationDelay => {
                (node.initial_role == NodeRole::Replica).then_some(node.replication_delay)
            }
            NodeValue::LinkLatency => Some(node.link_latency),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "base"
duration = "10s"
[[shard]]
name = "s1"
orgs = [0, 1000]
primary = "primary-1"
replicas = ["replica-1", "replica-2"]
[router]
health_interval = "250ms"
[explore]
faults = [2, 6]
kinds = ["crash", "partition", "pause_replay", "lag", "drop_connections", "slow", "latency", "promote"]
"#;

    fn base() -> Scenario {
        scenario::parse(BASE, "base.toml").expect("valid")
    }

    #[test]
    fn the_same_seed_draws_the_same_scenario_and_another_seed_another() {
        let base = base();
        let a = draw(&base, 7).expect("a draw");
        let b = draw(&base, 7).expect("a draw");
        assert_eq!(a.scenario, b.scenario);
        assert_eq!(a.summary, b.summary);
        let others: Vec<Scenario> = (8..14)
            .map(|seed| draw(&base, seed).expect("a draw").scenario.clone())
            .collect();
        assert!(others.iter().any(|o| o.faults != a.scenario.faults));
        assert_eq!(a.scenario.seed, 7);
        assert_eq!(a.scenario.name, "base-explore-seed7");
        assert!(a.scenario.explore.is_none());
    }

    #[test]
    fn faults_on_one_node_never_overlap_and_promote_comes_last() {
        let base = base();
        for seed in 1..60 {
            let s = draw(&base, seed).expect("a draw").scenario;
            let groups = fault_groups::groups(&s.faults);
            let span = |g: &fault_groups::FaultGroup| {
                let f = &s.faults[g.fault];
                let end = match (f.duration, g.undo) {
                    (Some(d), _) => f.at + d,
                    (None, Some(u)) => s.faults[u].at,
                    (None, None) => f.at,
                };
                (f.target, f.at, end, f.kind.name())
            };
            let spans: Vec<_> = groups.iter().map(span).collect();
            for (i, a) in spans.iter().enumerate() {
                for b in &spans[i + 1..] {
                    if a.0 == b.0 {
                        assert!(a.2 < b.1 || b.2 < a.1, "seed {seed}: {a:?} {b:?}");
                    }
                }
            }
            if let Some(promote) = spans.iter().find(|s| s.3 == "promote") {
                assert!(
                    spans.iter().all(|o| o.3 == "promote" || o.2 < promote.1),
                    "seed {seed}: {spans:?}"
                );
            }
            for (target, at, end, kind) in &spans {
                if ["lag", "pause_replay", "promote"].contains(kind) {
                    assert_eq!(s.nodes[*target].initial_role, NodeRole::Replica);
                }
                // Replication faults need commits: no primary crash, partition, latency or slow
                // fault meanwhile.
                if ["lag", "pause_replay"].contains(kind) {
                    let stopped = spans.iter().any(|o| {
                        ["crash", "partition", "latency", "slow"].contains(&o.3)
                            && o.0 == 0
                            && o.1 < *end
                            && *at < o.2
                    });
                    assert!(!stopped, "seed {seed}: {spans:?}");
                }
            }
            for fault in &s.faults {
                if let (FaultKind::Lag { delay }, Some(length)) = (&fault.kind, fault.duration) {
                    assert!(length > *delay, "seed {seed}: {fault:?}");
                }
            }
        }
    }
}
