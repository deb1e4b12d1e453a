//! SVG charts of a run, written beside its reports (`replisim run`, unless `--no-charts`).
//!
//! - `latency`: client latency over time, p50 and p99 of reads and writes, failed operations marked.
//! - `nodes`: workload statements each node executed over time.
//! - `failover`: per crash or partition, how long the router kept trying the node (only when the
//!   run has such faults).
//! - `buckets`: the time buckets the first two are counted in; `fault_windows`: the fault windows
//!   shaded over them; `canvas`: the frame, layout and legend all three share; `style`: size,
//!   colours, fonts (and why text is never measured).
//!
//! Charts hold only simulated times and counts, never the wall clock, so the same scenario and seed
//! give byte-identical SVG files.

pub mod buckets;
pub mod canvas;
pub mod failover;
pub mod fault_windows;
pub mod latency;
pub mod nodes;
pub mod style;

use std::io;
use std::path::{Path, PathBuf};

use crate::check::Evidence;
use crate::check::failover_within::outages;
use crate::record::RunOutcome;
use crate::record::events::Micros;
use crate::report::{stem, write_whole};
use crate::scenario::Scenario;
use buckets::{Buckets, seconds};

/// One chart of a run, rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// `latency`, `nodes` or `failover`: the end of its file name.
    pub kind: &'static str,
    /// The SVG text.
    pub svg: String,
}

/// A chart written beside the reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartFile {
    /// `latency`, `nodes` or `failover`.
    pub kind: &'static str,
    /// `<name>-seed<N>-<kind>.svg`: what the Markdown report links to.
    pub file_name: String,
    /// Where it was written.
    pub path: PathBuf,
}

/// The end of every chart's time axis: the scenario's duration, or the last operation's end if
/// the run went past it.
fn end_us(scenario: &Scenario, outcome: &RunOutcome) -> Micros {
    let duration_us = u64::try_from(scenario.duration.as_micros()).unwrap_or(u64::MAX);
    duration_us.max(outcome.run_end_us).max(1)
}

/// Renders every chart of the run: latency and nodes always, failover when the run has a crash or
/// a partition.
pub fn render(scenario: &Scenario, outcome: &RunOutcome) -> io::Result<Vec<Chart>> {
    let end_us = end_us(scenario, outcome);
    let end_s = seconds(end_us);
    let buckets = Buckets::covering(end_us);
    let title = format!("{} seed {}", scenario.name, outcome.seed);
    let faults = fault_windows::windows(scenario, outcome, end_us);
    let events = &outcome.events;
    let mut charts = vec![
        Chart {
            kind: "latency",
            svg: latency::render(&title, &events.ops, &buckets, end_s, &faults)?,
        },
        Chart {
            kind: "nodes",
            svg: nodes::render(
                &title,
                scenario,
                &events.statements,
                &buckets,
                end_s,
                &faults,
            )?,
        },
    ];
    let evidence = Evidence {
        scenario,
        events,
        faults: &outcome.faults,
        run_end_us: outcome.run_end_us,
    };
    let outages = outages(&evidence);
    if !outages.is_empty() {
        let rows = failover::rows(scenario, &outages, end_us);
        charts.push(Chart {
            kind: "failover",
            svg: failover::render(&title, &rows, end_s)?,
        });
    }
    Ok(charts)
}

/// Writes the run's charts into `dir` (each file whole or not at all) and says what it wrote.
pub fn write(dir: &Path, scenario: &Scenario, outcome: &RunOutcome) -> io::Result<Vec<ChartFile>> {
    let charts = render(scenario, outcome)?;
    std::fs::create_dir_all(dir)?;
    let stem = stem(&scenario.name, outcome.seed);
    let mut written = Vec::with_capacity(charts.len());
    for chart in charts {
        let file_name = format!("{stem}-{}.svg", chart.kind);
        let path = dir.join(&file_name);
        write_whole(&path, chart.svg.as_bytes())?;
        written.push(ChartFile {
            kind: chart.kind,
            file_name,
            path,
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition of replica-2, healed; shared with `tests/cli_charts.rs`.
    const PARTITION: &str = include_str!("../../../tests/charts/partition.toml");

    fn charts(seed: u64) -> Vec<Chart> {
        let scenario = match crate::scenario::parse(PARTITION, "partition.toml") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let outcome = match crate::sim::run(&scenario, seed) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        match render(&scenario, &outcome) {
            Ok(charts) => charts,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
        let first = charts(7);
        let kinds: Vec<&str> = first.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, ["latency", "nodes", "failover"]);
        for chart in &first {
            assert!(chart.svg.starts_with("<svg"), "{}", chart.kind);
            assert!(chart.svg.trim_end().ends_with("</svg>"), "{}", chart.kind);
        }
        assert!(first[0].svg.contains("partition replica-2"));
        assert!(first[1].svg.contains("heal replica-2"));
        assert!(first[2].svg.contains("partition replica-2: failover"));
        assert_eq!(first, charts(7), "same scenario and seed, different charts");
        let other = charts(8);
        assert_ne!(
            first[0].svg, other[0].svg,
            "another seed should change the latency chart"
        );
    }
}
