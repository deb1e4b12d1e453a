//! `[[fault]]`: each fault's kind, keys, time and target, then the schedule as a whole (faults of one
//! kind on one node must not overlap, and every undo must have something to undo).

use std::time::Duration;

use toml::Spanned;

use super::duration::format_duration;
use super::error::Issue;
use super::limits::SLOW_FACTOR_MAX;
use super::model::{Fault, FaultKind, Node};
use super::raw::{RawFault, key_offset};
use super::validate::{duration_value, list, missing_key, positive_duration};
use crate::record::events::NodeRole;

/// Every fault kind; the values of the kind-specific keys are placeholders, filled from the file.
const KINDS: [FaultKind; 11] = [
    FaultKind::Crash,
    FaultKind::Restart,
    FaultKind::Partition,
    FaultKind::Heal,
    FaultKind::DropConnections,
    FaultKind::Latency {
        latency: Duration::ZERO,
    },
    FaultKind::Lag {
        delay: Duration::ZERO,
    },
    FaultKind::PauseReplay,
    FaultKind::ResumeReplay,
    FaultKind::Slow { factor: 1.0 },
    FaultKind::Promote,
];

/// Resolves the faults in file order and checks the schedule they make.
pub(crate) fn resolve(
    raw: &[Spanned<RawFault>],
    text: &str,
    nodes: &[Node],
    run: Duration,
) -> Result<Vec<Fault>, Issue> {
    let mut faults = Vec::with_capacity(raw.len());
    for (index, fault) in raw.iter().enumerate() {
        let context = format!("fault {}", index + 1);
        faults.push(resolve_one(fault, text, nodes, run).map_err(|i| i.within(&context))?);
    }
    check_schedule(raw, &faults, nodes)?;
    Ok(faults)
}

/// One fault on its own.
fn resolve_one(
    raw: &Spanned<RawFault>,
    text: &str,
    nodes: &[Node],
    run: Duration,
) -> Result<Fault, Issue> {
    let table = raw.get_ref();
    let kind = table
        .kind
        .as_ref()
        .ok_or_else(|| missing_key(raw.span(), "kind"))?;
    let template = KINDS
        .iter()
        .find(|template| template.name() == kind.get_ref())
        .ok_or_else(|| {
            Issue::at(
                kind.span(),
                format!(
                    "unknown kind \"{}\" (expected one of: {})",
                    kind.get_ref(),
                    list(KINDS.iter().map(FaultKind::name))
                ),
            )
        })?;
    check_keys_belong(table, template, text)?;

    let at_value = table
        .at
        .as_ref()
        .ok_or_else(|| missing_key(raw.span(), "at"))?;
    let at = duration_value(at_value, "at")?;
    if at >= run {
        return Err(Issue::at(
            at_value.span(),
            format!(
                "at \"{}\" is not before the end of the run (duration = \"{}\"), so the fault would never act",
                at_value.get_ref(),
                format_duration(run)
            ),
        ));
    }

    let target_value = table
        .target
        .as_ref()
        .ok_or_else(|| missing_key(raw.span(), "target"))?;
    let target = nodes
        .iter()
        .position(|node| node.name == *target_value.get_ref())
        .ok_or_else(|| {
            Issue::at(
                target_value.span(),
                format!(
                    "target \"{}\" is not a node (nodes: {})",
                    target_value.get_ref(),
                    list(nodes.iter().map(|node| node.name.as_str()))
                ),
            )
        })?;
    if template.replicas_only() && nodes[target].initial_role != NodeRole::Replica {
        return Err(Issue::at(
            target_value.span(),
            format!(
                "{} acts on replicas, and \"{}\" is a primary",
                template.name(),
                target_value.get_ref()
            ),
        ));
    }

    // A slow node's service time is query_time x factor: with no query time there is nothing to
    // slow, and a fault that can have no effect could never show one.
    if matches!(template, FaultKind::Slow { .. }) && nodes[target].query_time.is_zero() {
        return Err(Issue::at(
            target_value.span(),
            format!(
                "slow multiplies query_time, and \"{}\" has query_time = 0, so it can have no effect",
                target_value.get_ref()
            ),
        ));
    }

    let duration = table
        .duration
        .as_ref()
        .map(|value| positive_duration(value, "duration"))
        .transpose()?;
    Ok(Fault {
        at,
        kind: with_values(template, table, raw.span())?,
        target,
        duration,
    })
}

/// A `duration` on a kind without undo, or a kind-specific key of another kind, is refused at the key.
fn check_keys_belong(table: &RawFault, template: &FaultKind, text: &str) -> Result<(), Issue> {
    let optional_keys = [
        ("duration", table.duration.as_ref().map(Spanned::span)),
        ("latency", table.latency.as_ref().map(Spanned::span)),
        ("delay", table.delay.as_ref().map(Spanned::span)),
        ("factor", table.factor.as_ref().map(Spanned::span)),
    ];
    for (key, span) in optional_keys {
        let Some(span) = span else {
            continue;
        };
        let belongs = if key == "duration" {
            template.has_undo()
        } else {
            template.extra_key() == Some(key)
        };
        if belongs {
            continue;
        }
        let name = template.name();
        let message = if key == "duration" {
            format!("kind \"{name}\" has no undo, so it takes no `duration`")
        } else {
            let mut keys = vec!["at", "kind", "target"];
            keys.extend(template.has_undo().then_some("duration"));
            keys.extend(template.extra_key());
            format!(
                "key `{key}` does not belong to kind \"{name}\" ({name} takes: {})",
                list(keys)
            )
        };
        let offset = key_offset(text, key, &span);
        return Err(Issue::at(offset..offset, message));
    }
    Ok(())
}

/// The kind with the values of its kind-specific key, which is required.
fn with_values(
    template: &FaultKind,
    table: &RawFault,
    table_span: std::ops::Range<usize>,
) -> Result<FaultKind, Issue> {
    let needs = |key: &str, example: &str| {
        Issue::at(
            table_span.clone(),
            format!(
                "kind \"{}\" needs key `{key}` (e.g. {key} = {example})",
                template.name()
            ),
        )
    };
    Ok(match template {
        FaultKind::Latency { .. } => {
            let value = table
                .latency
                .as_ref()
                .ok_or_else(|| needs("latency", "\"50ms\""))?;
            FaultKind::Latency {
                latency: positive_duration(value, "latency")?,
            }
        }
        FaultKind::Lag { .. } => {
            let value = table
                .delay
                .as_ref()
                .ok_or_else(|| needs("delay", "\"2s\""))?;
            FaultKind::Lag {
                delay: duration_value(value, "delay")?,
            }
        }
        FaultKind::Slow { .. } => {
            let value = table.factor.as_ref().ok_or_else(|| needs("factor", "10"))?;
            let factor = *value.get_ref();
            if !(factor.is_finite() && factor > 1.0) {
                return Err(Issue::at(
                    value.span(),
                    format!("factor must be above 1 (it multiplies query_time), got {factor}"),
                ));
            }
            if factor > SLOW_FACTOR_MAX {
                return Err(Issue::at(
                    value.span(),
                    format!("factor = {factor} is above the limit of {SLOW_FACTOR_MAX}"),
                ));
            }
            FaultKind::Slow { factor }
        }
        other => other.clone(),
    })
}

/// Faults of one kind on one node must not overlap, and every undo (`restart`, `heal`,
/// `resume_replay`) must end a fault of its kind that has no `duration`.
fn check_schedule(
    raw: &[Spanned<RawFault>],
    faults: &[Fault],
    nodes: &[Node],
) -> Result<(), Issue> {
    let at_span = |index: usize| {
        let fault = &raw[index];
        fault
            .get_ref()
            .at
            .as_ref()
            .map_or_else(|| fault.span(), Spanned::span)
    };
    let describe = |fault: &Fault| describe(fault, faults, nodes);
    for (later_index, later) in faults.iter().enumerate() {
        let clash = faults[..later_index].iter().position(|earlier| {
            earlier.kind.name() == later.kind.name()
                && earlier.target == later.target
                && overlap(earlier, later, faults)
        });
        if let Some(earlier_index) = clash {
            return Err(Issue::at(
                at_span(later_index),
                format!(
                    "fault {}: {} overlaps fault {} ({}): faults of one kind on one node must not overlap",
                    later_index + 1,
                    describe(later),
                    earlier_index + 1,
                    describe(&faults[earlier_index])
                ),
            ));
        }
    }
    for (index, undo) in faults.iter().enumerate() {
        let Some(undone) = KINDS
            .iter()
            .find(|kind| kind.ended_by() == Some(undo.kind.name()))
        else {
            continue;
        };
        let ends_something = faults.iter().any(|fault| {
            fault.kind.name() == undone.name()
                && fault.target == undo.target
                && fault.duration.is_none()
                && fault.until(faults) == Some(undo.at)
        });
        if !ends_something {
            return Err(Issue::at(
                at_span(index),
                format!(
                    "fault {}: {} has nothing to undo: no {} of that node without `duration` is in effect then",
                    index + 1,
                    describe(undo),
                    undone.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Whether two faults of one kind on one node act at the same time. Kinds without undo act at an
/// instant; the others from `at` until they are undone (or the end of the run).
fn overlap(a: &Fault, b: &Fault, schedule: &[Fault]) -> bool {
    if !a.kind.has_undo() {
        return a.at == b.at;
    }
    let end = |fault: &Fault| fault.until(schedule).unwrap_or(Duration::MAX);
    a.at < end(b) && b.at < end(a)
}

/// `crash of "replica-1" from 10s to 25s`, `restart of "replica-1" at 25s`.
fn describe(fault: &Fault, schedule: &[Fault], nodes: &[Node]) -> String {
    let node = nodes
        .get(fault.target)
        .map_or("?", |node| node.name.as_str());
    let start = format_duration(fault.at);
    let when = if !fault.kind.has_undo() {
        format!("at {start}")
    } else {
        match fault.until(schedule) {
            Some(end) => format!("from {start} to {}", format_duration(end)),
            None => format!("from {start} to the end of the run"),
        }
    };
    format!("{} of \"{node}\" {when}", fault.kind.name())
}
