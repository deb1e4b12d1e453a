//! The event trace as text, one event per line in time order: what `trace_hash` fingerprints,
//! written by `run --trace FILE` so that two runs can be compared event by event and the first
//! difference named.

use std::fmt::Write;

use crate::record::events::{ClientOp, Events, OpKind, StatementEvent};
use crate::scenario::Scenario;

/// Every statement and client operation of the run, one line each, ordered by start time
/// (statements before operations at the same microsecond, each in recorded order).
pub fn lines(scenario: &Scenario, events: &Events) -> Vec<String> {
    let node_name = |node: usize| scenario.nodes.get(node).map_or("?", |n| n.name.as_str());
    let mut timed: Vec<(u64, u8, usize)> =
        Vec::with_capacity(events.statements.len() + events.ops.len());
    timed.extend(
        events
            .statements
            .iter()
            .enumerate()
            .map(|(i, s)| (s.start_us, 0, i)),
    );
    timed.extend(
        events
            .ops
            .iter()
            .enumerate()
            .map(|(i, o)| (o.start_us, 1, i)),
    );
    // Stable and total: (time, statements first, recorded order).
    timed.sort_unstable();
    timed
        .into_iter()
        .map(|(_, source, i)| match source {
            0 => statement_line(&events.statements[i], node_name),
            _ => op_line(&events.ops[i], node_name),
        })
        .collect()
}

fn statement_line<'a>(s: &StatementEvent, node_name: impl Fn(usize) -> &'a str) -> String {
    let mut line = format!(
        "{}..{}us statement {} conn {} {:?} {:?} as {:?} org {} key {} user {} version {}",
        s.start_us,
        s.end_us,
        node_name(s.node),
        s.conn,
        s.purpose,
        s.kind,
        s.role,
        s.org,
        s.key,
        s.user,
        s.version
    );
    let _ = write!(line, " {}", s.sqlstate.as_deref().unwrap_or("ok"));
    line
}

fn op_line<'a>(o: &ClientOp, node_name: impl Fn(usize) -> &'a str) -> String {
    let kind = match (o.kind, o.prefer_replica) {
        (OpKind::Read, true) => "read",
        (OpKind::Read, false) => "critical-read",
        (OpKind::Write, _) => "write",
    };
    let outcome = if o.ok {
        format!(
            "ok on {} version {}",
            o.node.map_or("?", &node_name),
            o.version
        )
    } else {
        format!("failed: {}", o.error.as_deref().unwrap_or("?"))
    };
    format!(
        "{}..{}us op client {} user {} {kind} org {} key {} {outcome}",
        o.start_us, o.end_us, o.client, o.user, o.org, o.key
    )
}

/// The first line where two traces differ: its 1-based number and both sides (`None` past the end
/// of a trace). `None` when they are identical.
pub fn first_difference<'a>(
    a: &'a [String],
    b: &'a [String],
) -> Option<(usize, Option<&'a str>, Option<&'a str>)> {
    let len = a.len().max(b.len());
    (0..len).find(|&i| a.get(i) != b.get(i)).map(|i| {
        (
            i + 1,
            a.get(i).map(String::as_str),
            b.get(i).map(String::as_str),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_difference_is_named_with_both_sides() {
        let a = owned(&["x", "y", "z"]);
        assert_eq!(first_difference(&a, &a), None);
        let b = owned(&["x", "Y", "z"]);
        assert_eq!(first_difference(&a, &b), Some((2, Some("y"), Some("Y"))));
        let short = owned(&["x", "y"]);
        assert_eq!(first_difference(&a, &short), Some((3, Some("z"), None)));
    }
}
