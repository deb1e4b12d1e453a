//! `<name>-seed<N>-nodes.svg`: the workload statements each node executed, per second, over time,
//! one line per node, with each fault's window shaded. A failover shows as load leaving one line
//! and arriving on the others.
//!
//! Counted from the servers' own records (`events.statements`), as the report's query distribution
//! is, so a statement the router sent but no server ran is not on it; errors are counted too, since
//! an answered statement is load all the same.

use std::io;

use plotters::prelude::*;

use super::buckets::Buckets;
use super::fault_windows::{self, FaultWindow};
use super::{canvas, style};
use crate::record::events::{Purpose, StatementEvent};
use crate::scenario::Scenario;

/// One node's line: (bucket middle in s, workload statements per second).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLine {
    /// The node's name.
    pub node: String,
    /// One point per bucket, empty buckets included (a node that stops getting load drops to 0).
    pub points: Vec<(f64, f64)>,
}

/// Counts each node's workload statements per bucket by start time. O(statements).
pub fn lines(
    scenario: &Scenario,
    statements: &[StatementEvent],
    buckets: &Buckets,
) -> Vec<NodeLine> {
    let mut counts = vec![vec![0u64; buckets.count()]; scenario.nodes.len()];
    for statement in statements.iter().filter(|s| s.purpose == Purpose::Workload) {
        if let Some(count) = counts
            .get_mut(statement.node)
            .and_then(|c| c.get_mut(buckets.index(statement.start_us)))
        {
            *count += 1;
        }
    }
    scenario
        .nodes
        .iter()
        .zip(counts)
        .map(|(node, counts)| NodeLine {
            node: node.name.clone(),
            points: counts
                .into_iter()
                .enumerate()
                .map(|(i, count)| (buckets.middle_s(i), count as f64 / buckets.span_s(i)))
                .collect(),
        })
        .collect()
}

/// Renders the chart as SVG text.
pub fn render(
    title: &str,
    scenario: &Scenario,
    statements: &[StatementEvent],
    buckets: &Buckets,
    end_s: f64,
    faults: &[FaultWindow],
) -> io::Result<String> {
    let lines = lines(scenario, statements, buckets);
    let peak = lines
        .iter()
        .flat_map(|l| l.points.iter())
        .fold(0.0f64, |peak, &(_, rate)| peak.max(rate));
    // Headroom above the busiest node for the legend (upper right) and the fault labels (upper
    // left of each window): about 18 px per node out of a plot about 400 px high.
    let legend_share = ((30.0 + 18.0 * lines.len() as f64) / 400.0).min(0.6);
    let y_hi = if peak > 0.0 {
        peak / (1.0 - legend_share)
    } else {
        1.0
    };
    canvas::render(|root| {
        let caption = format!(
            "{title}: workload statements per node, per {} s",
            buckets.width_s()
        );
        let mut chart = canvas::layout(root, &caption, 70)
            .build_cartesian_2d(0.0..end_s, 0.0..y_hi)
            .map_err(style::drawing_error)?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc("statements per second")
            .label_style(style::label_font())
            .draw()
            .map_err(style::drawing_error)?;
        fault_windows::draw(&mut chart, faults, (0.0, y_hi))?;
        for (i, line) in lines.iter().enumerate() {
            let stroke = style::series_colour(i).stroke_width(2);
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), stroke))
                .map_err(style::drawing_error)?
                .label(line.node.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], stroke));
        }
        canvas::legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}
