//! The report of a real run: the simulation's report fields (SPEC section 5), then `mode: "real"`
//! and the `real` object of [`RealDetails`]; written as `DIR/<name>-seed<N>-real.json` and `.md`
//! so that it never overwrites the simulated run's report of the same scenario and seed. The
//! Markdown ends with the per-node cross-check of the evidence against the servers' counts.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::real::cross_check;
use crate::real::scenario_run::RealDetails;
use crate::report::{Report, markdown, write_whole};

/// The JSON document: every report field in the SPEC's order, then the real-mode additions.
#[derive(Serialize)]
struct RealReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    mode: &'static str,
    real: &'a RealDetails,
}

/// The paths a real run writes: `DIR/<name>-seed<N>-real.json` and `.md`.
pub fn paths(dir: &Path, report: &Report) -> (PathBuf, PathBuf) {
    let stem = format!("{}-seed{}-real", report.scenario, report.seed);
    (
        dir.join(format!("{stem}.json")),
        dir.join(format!("{stem}.md")),
    )
}

/// The JSON text (pretty, newline-terminated).
pub fn to_json(report: &Report, details: &RealDetails) -> String {
    let document = RealReport {
        report,
        mode: "real",
        real: details,
    };
    // Plain structs of strings, numbers and maps with string keys always serialise.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

/// The Markdown text: the simulation's layout, marked as real time, and a real-mode section.
pub fn to_markdown(report: &Report, details: &RealDetails) -> String {
    let mut out =
        markdown::render(report, &[]).replacen(" ms simulated (", " ms of real time (", 1);
    out.push_str("\n## Real mode\n\n");
    let _ = writeln!(
        out,
        "Router under test: {}. Read stall: {} ms without a successful read, from {} ms.\n",
        details.router, details.read_stall.longest_ms, details.read_stall.from_ms
    );
    if !details.router_unhonoured.is_empty() {
        out.push_str("Router settings it could not honour:\n\n");
        for line in &details.router_unhonoured {
            let _ = writeln!(out, "- {line}");
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Servers: {}. Statements are counted from what crossed each node's fault proxy; {} \
         matched no client operation, {} were held by a partition.\n",
        details.servers, details.unmatched_statements, details.held_statements
    );
    if !details.server_counts.is_empty() {
        out.push_str(
            "| node | pg_stat_statements reads | pg_stat_statements writes | read-only errors in \
             its log | 25006 seen by clients |\n|---|---|---|---|---|\n",
        );
        for n in &details.server_counts {
            let shown = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                n.name,
                shown(n.stat_reads),
                shown(n.stat_writes),
                n.log_read_only_errors,
                details
                    .client_read_only_errors
                    .get(&n.name)
                    .copied()
                    .unwrap_or(0)
            );
        }
        out.push_str(
            "\n`pg_stat_statements` counts start again at every server start, so a crashed \
             node's count covers only the time since its restart.\n",
        );
    }
    cross_check_section(&mut out, details);
    for (i, note) in details.fault_notes.iter().enumerate() {
        if let Some(note) = note {
            let _ = writeln!(out, "- fault {}: {note}", i + 1);
        }
    }
    for item in &details.not_emulated {
        let _ = writeln!(out, "- not reproduced: {item}");
    }
    out
}

/// The per-node comparison of the evidence with the servers' counts, and its verdict.
fn cross_check_section(out: &mut String, details: &RealDetails) {
    let check = &details.cross_check;
    if check.comparisons.is_empty() {
        return;
    }
    let verdict = if check.passed { "agrees" } else { "DISAGREES" };
    let _ = writeln!(
        out,
        "\n### Cross-check: the evidence {verdict} with the servers\n\n| node | figure | inferred \
         | server | tolerance | agrees |\n|---|---|---|---|---|---|"
    );
    for c in &check.comparisons {
        let server = c.server.map_or_else(|| "-".to_string(), |v| v.to_string());
        let tolerance = if c.figure == cross_check::REFUSED_SEEN_BY_CLIENTS {
            "<= server".to_string()
        } else {
            c.tolerance.to_string()
        };
        let agrees = match (c.server, c.agrees) {
            (None, _) => "not compared",
            (Some(_), true) => "yes",
            (Some(_), false) => "**no**",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {server} | {tolerance} | {agrees} |",
            c.node, c.figure, c.inferred
        );
    }
    for c in check.disagreements() {
        let _ = writeln!(out, "- disagreement: {}", cross_check::describe(c));
    }
    out.push_str(
        "\nTolerances: `reads`/`writes` allow the statements whose execution the proxy could not \
         know (no answer crossed it, or a partition held them) and those executed between a \
         snapshot of `pg_stat_statements` (taken before each crash or restart) and the stop; \
         `refused_writes` allows the writes with no answer; clients may see fewer refusals than \
         a server's log, never more.\n",
    );
}

/// Writes both files; each appears whole or not at all.
pub fn write(
    dir: &Path,
    report: &Report,
    details: &RealDetails,
) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let (json_path, md_path) = paths(dir, report);
    write_whole(&json_path, to_json(report, details).as_bytes())?;
    write_whole(&md_path, to_markdown(report, details).as_bytes())?;
    Ok((json_path, md_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::real::cross_check::{NodeFigures, compare};

    fn failing() -> RealDetails {
        let node = NodeFigures {
            name: "replica-1".to_string(),
            reads_inferred: 100,
            reads_uncertain: 5,
            reads_server: Some(94),
            writes_server: Some(0),
            refused_server: Some(0),
            ..NodeFigures::default()
        };
        RealDetails {
            servers: "cluster",
            cross_check: compare(&[node]),
            ..RealDetails::default()
        }
    }

    #[test]
    fn a_disagreement_is_named_in_the_markdown_and_the_json() {
        let details = failing();
        let mut out = String::new();
        cross_check_section(&mut out, &details);
        assert!(
            out.contains("### Cross-check: the evidence DISAGREES with the servers"),
            "{out}"
        );
        assert!(
            out.contains("| replica-1 | reads | 100 | 94 | 5 | **no** |"),
            "{out}"
        );
        assert!(
            out.contains("- disagreement: replica-1 reads: inferred 100 vs server 94, tolerance 5"),
            "{out}"
        );
        let json = serde_json::to_value(&details).unwrap_or_default();
        assert_eq!(json["cross_check"]["passed"], false);
        assert_eq!(json["cross_check"]["comparisons"][0]["node"], "replica-1");
        assert_eq!(json["cross_check"]["comparisons"][0]["figure"], "reads");
        assert_eq!(json["cross_check"]["comparisons"][0]["agrees"], false);
    }

    #[test]
    fn no_comparisons_no_section() {
        let mut out = String::new();
        cross_check_section(&mut out, &RealDetails::default());
        assert!(out.is_empty());
    }
}
