//! `[explore]`: the ranges `replisim explore` draws a fault schedule, node parameters and workload
//! shape from. Every key is optional; a range left out keeps the scenario's own value (node and
//! workload keys) or takes the default documented in README.md (fault keys).

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::duration::format_duration;
use super::error::Issue;
use super::limits::{CLIENTS_MAX, EXPLORE_FAULTS_MAX, RATE_MAX, SLOW_FACTOR_MAX};
use super::model::Node;
use super::raw::{RawExplore, RawPair};
use super::validate::{duration_value, list};
use crate::record::events::{NodeIdx, NodeRole};

/// A fault kind explore may draw. Undo kinds (`restart`, `heal`, `resume_replay`) are never drawn
/// on their own: they come with the fault they end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExploreKind {
    /// `crash`, undone by `restart` or a `duration`.
    Crash,
    /// `partition`, undone by `heal` or a `duration`.
    Partition,
    /// `drop_connections`, an instant.
    DropConnections,
    /// `latency` with a drawn `latency`.
    Latency,
    /// `lag` with a drawn `delay` (replicas).
    Lag,
    /// `pause_replay`, undone by `resume_replay` or a `duration` (replicas).
    PauseReplay,
    /// `slow` with a drawn `factor`.
    Slow,
    /// `promote` (replicas): at most one, after every other drawn fault has ended.
    Promote,
}

impl ExploreKind {
    /// Every kind, in the order draws and messages list them.
    pub const ALL: [ExploreKind; 8] = [
        ExploreKind::Crash,
        ExploreKind::Partition,
        ExploreKind::DropConnections,
        ExploreKind::Latency,
        ExploreKind::Lag,
        ExploreKind::PauseReplay,
        ExploreKind::Slow,
        ExploreKind::Promote,
    ];

    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            ExploreKind::Crash => "crash",
            ExploreKind::Partition => "partition",
            ExploreKind::DropConnections => "drop_connections",
            ExploreKind::Latency => "latency",
            ExploreKind::Lag => "lag",
            ExploreKind::PauseReplay => "pause_replay",
            ExploreKind::Slow => "slow",
            ExploreKind::Promote => "promote",
        }
    }

    /// Whether the kind acts on a replica's replication, so only replicas are targets.
    pub fn replicas_only(self) -> bool {
        matches!(
            self,
            ExploreKind::Lag | ExploreKind::PauseReplay | ExploreKind::Promote
        )
    }
}

/// A closed range `[min, max]` of durations.
pub type DurationRange = (Duration, Duration);

/// The validated `[explore]` table; `None` is a key left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExploreSpec {
    /// How many faults (undo faults not counted).
    pub faults: Option<(u32, u32)>,
    /// Which kinds.
    pub kinds: Option<Vec<ExploreKind>>,
    /// Which nodes faults act on.
    pub targets: Option<Vec<NodeIdx>>,
    /// When faults start.
    pub at: Option<DurationRange>,
    /// How long faults with an undo last.
    pub fault_duration: Option<DurationRange>,
    /// The added latency of a `latency` fault.
    pub latency: Option<DurationRange>,
    /// The apply delay of a `lag` fault.
    pub delay: Option<DurationRange>,
    /// The factor of a `slow` fault.
    pub factor: Option<(f64, f64)>,
    /// Each node's `query_time`.
    pub query_time: Option<DurationRange>,
    /// Each node's `replication_delay`.
    pub replication_delay: Option<DurationRange>,
    /// Each node's `link_latency`.
    pub link_latency: Option<DurationRange>,
    /// `workload.clients`.
    pub clients: Option<(u32, u32)>,
    /// `workload.rate` (open loop).
    pub rate: Option<(f64, f64)>,
    /// `workload.think_time` (closed loop).
    pub think_time: Option<DurationRange>,
    /// `workload.read_ratio`.
    pub read_ratio: Option<(f64, f64)>,
    /// `workload.org_skew`.
    pub org_skew: Option<(f64, f64)>,
}

/// Fault count when `faults` is left out.
pub const EXPLORE_FAULTS_DEFAULT: (u32, u32) = (1, 3);
/// Kinds when `kinds` is left out: all but `promote` (the last of [`ExploreKind::ALL`]), which
/// changes the topology for good.
pub const EXPLORE_KINDS_DEFAULT: &[ExploreKind] = ExploreKind::ALL.split_at(7).0;
/// `latency` fault range when left out.
pub const EXPLORE_LATENCY_DEFAULT: DurationRange =
    (Duration::from_millis(20), Duration::from_millis(200));
/// `lag` delay range when left out.
pub const EXPLORE_DELAY_DEFAULT: DurationRange =
    (Duration::from_millis(200), Duration::from_secs(2));
/// `slow` factor range when left out.
pub const EXPLORE_FACTOR_DEFAULT: (f64, f64) = (2.0, 10.0);

impl ExploreSpec {
    /// Fault start times: the given range, else the 10%..60% stretch of the run.
    pub fn at_or_default(&self, run: Duration) -> DurationRange {
        self.at.unwrap_or((run / 10, run * 6 / 10))
    }

    /// Fault durations: the given range, else 5%..25% of the run.
    pub fn fault_duration_or_default(&self, run: Duration) -> DurationRange {
        self.fault_duration.unwrap_or((run / 20, run / 4))
    }
}

/// Resolves `[explore]` against the scenario's nodes and run `duration`.
pub(crate) fn resolve(
    raw: &Spanned<RawExplore>,
    nodes: &[Node],
    run: Duration,
) -> Result<ExploreSpec, Issue> {
    let table = raw.get_ref();
    let durations = |value: &Option<RawPair<String>>, key: &str, positive: bool| {
        value
            .as_ref()
            .map(|v| duration_pair(v, key, positive))
            .transpose()
    };
    let spec = ExploreSpec {
        faults: table
            .faults
            .as_ref()
            .map(|v| whole_pair(v, "faults", 0, i64::from(EXPLORE_FAULTS_MAX)))
            .transpose()?,
        kinds: table.kinds.as_ref().map(kinds).transpose()?,
        targets: table
            .targets
            .as_ref()
            .map(|v| targets(v, nodes))
            .transpose()?,
        at: durations(&table.at, "at", false)?,
        fault_duration: durations(&table.fault_duration, "fault_duration", true)?,
        latency: durations(&table.latency, "latency", true)?,
        delay: durations(&table.delay, "delay", false)?,
        factor: table
            .factor
            .as_ref()
            .map(|v| {
                number_pair(
                    v,
                    "factor",
                    |x| x > 1.0 && x <= SLOW_FACTOR_MAX,
                    "in (1, 1000]",
                )
            })
            .transpose()?,
        query_time: durations(&table.query_time, "query_time", false)?,
        replication_delay: durations(&table.replication_delay, "replication_delay", false)?,
        link_latency: durations(&table.link_latency, "link_latency", false)?,
        clients: table
            .clients
            .as_ref()
            .map(|v| whole_pair(v, "clients", 1, i64::from(CLIENTS_MAX)))
            .transpose()?,
        rate: table
            .rate
            .as_ref()
            .map(|v| number_pair(v, "rate", |x| x > 0.0 && x <= RATE_MAX, "in (0, 1e6]"))
            .transpose()?,
        think_time: durations(&table.think_time, "think_time", false)?,
        read_ratio: table
            .read_ratio
            .as_ref()
            .map(|v| number_pair(v, "read_ratio", |x| (0.0..=1.0).contains(&x), "in [0, 1]"))
            .transpose()?,
        org_skew: table
            .org_skew
            .as_ref()
            .map(|v| number_pair(v, "org_skew", |x| x >= 0.0, "0 or above"))
            .transpose()?,
    };
    if let (Some(_), Some(think)) = (&spec.rate, &table.think_time) {
        return Err(Issue::at(
            think.span(),
            "explore.think_time: give rate (open loop) or think_time (closed loop), not both",
        ));
    }
    if let (Some((_, last)), Some(value)) = (spec.at, &table.at)
        && last >= run
    {
        return Err(Issue::at(
            value.span(),
            format!(
                "explore.at ends at {}, not before the end of the run (duration = \"{}\")",
                format_duration(last),
                format_duration(run)
            ),
        ));
    }
    check_kinds_have_targets(table, &spec, nodes)?;
    Ok(spec)
}

/// A `[min, max]` pair: two values, the first not above the second.
fn two<'a, T>(value: &'a RawPair<T>, key: &str) -> Result<(&'a Spanned<T>, &'a Spanned<T>), Issue> {
    match value.get_ref().as_slice() {
        [min, max] => Ok((min, max)),
        other => Err(Issue::at(
            value.span(),
            format!(
                "explore.{key} must be a [min, max] pair, got {} values",
                other.len()
            ),
        )),
    }
}

fn min_above_max(span: Range<usize>, key: &str) -> Issue {
    Issue::at(span, format!("explore.{key}: min is above max"))
}

fn duration_pair(
    value: &RawPair<String>,
    key: &str,
    positive: bool,
) -> Result<DurationRange, Issue> {
    let (min, max) = two(value, key)?;
    let what = format!("explore.{key}");
    let (low, high) = (duration_value(min, &what)?, duration_value(max, &what)?);
    if positive && low.is_zero() {
        return Err(Issue::at(min.span(), format!("{what} must be above zero")));
    }
    if low > high {
        return Err(min_above_max(value.span(), key));
    }
    Ok((low, high))
}

fn whole_pair(value: &RawPair<i64>, key: &str, least: i64, most: i64) -> Result<(u32, u32), Issue> {
    let (min, max) = two(value, key)?;
    let mut bounds = [0u32; 2];
    for (slot, bound) in bounds.iter_mut().zip([min, max]) {
        let number = *bound.get_ref();
        *slot = u32::try_from(number)
            .ok()
            .filter(|_| (least..=most).contains(&number))
            .ok_or_else(|| {
                Issue::at(
                    bound.span(),
                    format!("explore.{key} must be within [{least}, {most}], got {number}"),
                )
            })?;
    }
    if bounds[0] > bounds[1] {
        return Err(min_above_max(value.span(), key));
    }
    Ok((bounds[0], bounds[1]))
}

fn number_pair(
    value: &RawPair<f64>,
    key: &str,
    valid: impl Fn(f64) -> bool,
    rule: &str,
) -> Result<(f64, f64), Issue> {
    let (min, max) = two(value, key)?;
    for bound in [min, max] {
        let number = *bound.get_ref();
        if !(number.is_finite() && valid(number)) {
            return Err(Issue::at(
                bound.span(),
                format!("explore.{key} must be {rule}, got {number}"),
            ));
        }
    }
    if min.get_ref() > max.get_ref() {
        return Err(min_above_max(value.span(), key));
    }
    Ok((*min.get_ref(), *max.get_ref()))
}

fn kinds(value: &RawPair<String>) -> Result<Vec<ExploreKind>, Issue> {
    distinct_list(value, "kinds", "kind", |name| {
        ExploreKind::ALL
            .into_iter()
            .find(|k| k.name() == name.get_ref())
            .ok_or_else(|| {
                let undo = ["restart", "heal", "resume_replay"].contains(&name.get_ref().as_str());
                let why = if undo {
                    " (undo kinds are drawn with the fault they end)"
                } else {
                    ""
                };
                format!(
                    "\"{}\" cannot be drawn{why}; expected some of: {}",
                    name.get_ref(),
                    list(ExploreKind::ALL.iter().map(|k| k.name()))
                )
            })
    })
}

fn targets(value: &RawPair<String>, nodes: &[Node]) -> Result<Vec<NodeIdx>, Issue> {
    distinct_list(value, "targets", "node", |name| {
        nodes
            .iter()
            .position(|n| n.name == *name.get_ref())
            .ok_or_else(|| {
                format!(
                    "\"{}\" is not a node (nodes: {})",
                    name.get_ref(),
                    list(nodes.iter().map(|n| n.name.as_str()))
                )
            })
    })
}

/// A list of names, each resolved by `resolve` (its error is the message, placed at the name),
/// none listed twice, at least one.
fn distinct_list<T: PartialEq>(
    value: &RawPair<String>,
    key: &str,
    what: &str,
    resolve: impl Fn(&Spanned<String>) -> Result<T, String>,
) -> Result<Vec<T>, Issue> {
    let mut found = Vec::new();
    for name in value.get_ref() {
        let item = resolve(name)
            .map_err(|message| Issue::at(name.span(), format!("explore.{key}: {message}")))?;
        if found.contains(&item) {
            return Err(Issue::at(
                name.span(),
                format!("explore.{key}: \"{}\" is listed twice", name.get_ref()),
            ));
        }
        found.push(item);
    }
    if found.is_empty() {
        return Err(Issue::at(
            value.span(),
            format!("explore.{key} must list at least one {what}"),
        ));
    }
    Ok(found)
}

/// Every kind listed must have a target it can act on: a replica for the replication kinds.
fn check_kinds_have_targets(
    table: &RawExplore,
    spec: &ExploreSpec,
    nodes: &[Node],
) -> Result<(), Issue> {
    let (Some(kinds), Some(raw_kinds)) = (&spec.kinds, &table.kinds) else {
        return Ok(());
    };
    let all: Vec<NodeIdx> = (0..nodes.len()).collect();
    let targets = spec.targets.as_deref().unwrap_or(&all);
    let has_replica = targets.iter().any(|&t| {
        nodes
            .get(t)
            .is_some_and(|n| n.initial_role == NodeRole::Replica)
    });
    for (kind, name) in kinds.iter().zip(raw_kinds.get_ref()) {
        if kind.replicas_only() && !has_replica {
            return Err(Issue::at(
                name.span(),
                format!(
                    "explore.kinds: \"{}\" acts on replicas, and no target is a replica",
                    kind.name()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_kinds_are_every_kind_but_promote() {
        assert_eq!(EXPLORE_KINDS_DEFAULT.len(), ExploreKind::ALL.len() - 1);
        assert!(!EXPLORE_KINDS_DEFAULT.contains(&ExploreKind::Promote));
        let run = Duration::from_secs(20);
        let spec = ExploreSpec::default();
        assert_eq!(
            spec.at_or_default(run),
            (Duration::from_secs(2), Duration::from_secs(12))
        );
        assert_eq!(
            spec.fault_duration_or_default(run),
            (Duration::from_secs(1), Duration::from_secs(5))
        );
    }
}
