//! `<name>-seed<N>-failover.svg`, for runs with crash or partition faults: one row per such fault,
//! a bar from the fault's start to its end (the node's recovery, or the end of the run) and, over
//! it, a bar from the start to the last workload attempt the router made on the node meanwhile.
//! The second bar's length is the report's `failover_ms`.

use std::io;

use plotters::prelude::*;

use super::buckets::seconds;
use super::{canvas, style};
use crate::check::failover_within::Failover;
use crate::check::node_name;
use crate::record::events::{FaultRecord, Micros};
use crate::scenario::Scenario;

/// Half the height of a fault's bar, in rows.
const WINDOW_HALF_HEIGHT: f64 = 0.28;

/// Half the height of a failover's bar, in rows.
const FAILOVER_HALF_HEIGHT: f64 = 0.12;

/// One row of the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct FailoverRow {
    /// `crash replica-2: failover 12 ms, recovered at 30 s`.
    pub label: String,
    /// Fault start, in s.
    pub fault_s: f64,
    /// Last workload attempt on the node while the fault lasted (ms precision), in s.
    pub last_attempt_s: f64,
    /// Fault end, in s: the node's recovery, or the end of the run.
    pub recovery_s: f64,
    /// Whether the fault ended before the run did.
    pub recovered: bool,
}

/// One row per crash or partition fault, from the failovers the report judges.
pub fn rows(
    scenario: &Scenario,
    outages: &[(&FaultRecord, Failover)],
    end_us: Micros,
) -> Vec<FailoverRow> {
    outages
        .iter()
        .map(|(fault, failover)| {
            let target = node_name(scenario, fault.target);
            let recovery_us = fault.until_us.unwrap_or(end_us).max(fault.at_us);
            let recovery = match fault.until_us {
                Some(_) => format!("recovered at {} s", seconds(recovery_us)),
                None => "no recovery before the end".to_string(),
            };
            FailoverRow {
                label: format!(
                    "{} {target}: failover {} ms, {recovery}",
                    fault.kind, failover.failover_ms
                ),
                fault_s: seconds(fault.at_us),
                last_attempt_s: seconds(failover.last_attempt_ms.saturating_mul(1000)),
                recovery_s: seconds(recovery_us),
                recovered: fault.until_us.is_some(),
            }
        })
        .collect()
}

/// Renders the chart as SVG text; `rows` come from [`rows`].
pub fn render(title: &str, rows: &[FailoverRow], end_s: f64) -> io::Result<String> {
    // The first fault on the top row, with headroom for its label; room below the last row for
    // the legend, which takes about a quarter of the plot's height.
    let row_y = |i: usize| (rows.len() - i) as f64 - 1.0;
    let y_lo = -0.6 - 0.5 * (rows.len() as f64 + 1.0);
    let y_hi = rows.len() as f64 - 0.2;
    let window_fill = style::FAULT.mix(0.35).filled();
    let failover_fill = style::series_colour(0).filled();
    canvas::render(|root| {
        let caption = format!("{title}: failover per crash or partition");
        let mut chart = canvas::layout(root, &caption, 10)
            .build_cartesian_2d(0.0..end_s, y_lo..y_hi)
            .map_err(style::drawing_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("time since start (s)")
            .label_style(style::label_font())
            .draw()
            .map_err(style::drawing_error)?;
        let bar = |from: f64, to: f64, y: f64, half: f64, fill| {
            Rectangle::new([(from, y - half), (to, y + half)], fill)
        };
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                bar(
                    r.fault_s,
                    r.recovery_s,
                    row_y(i),
                    WINDOW_HALF_HEIGHT,
                    window_fill,
                )
            }))
            .map_err(style::drawing_error)?
            .label("fault, from its start to the node's recovery")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], window_fill));
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                bar(
                    r.fault_s,
                    r.last_attempt_s,
                    row_y(i),
                    FAILOVER_HALF_HEIGHT,
                    failover_fill,
                )
            }))
            .map_err(style::drawing_error)?
            .label("failover: until the last workload attempt on the node")
            .legend(move |(x, y)| Rectangle::new([(x, y - 3), (x + 20, y + 3)], failover_fill));
        chart
            .draw_series(
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| Circle::new((r.fault_s, row_y(i)), 5, BLACK.filled())),
            )
            .map_err(style::drawing_error)?
            .label("fault starts")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, BLACK.filled()));
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                TriangleMarker::new(
                    (r.last_attempt_s, row_y(i)),
                    7,
                    style::series_colour(1).filled(),
                )
            }))
            .map_err(style::drawing_error)?
            .label("last workload attempt")
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 7, style::series_colour(1).filled()));
        chart
            .draw_series(
                rows.iter()
                    .enumerate()
                    .filter(|(_, r)| r.recovered)
                    .map(|(i, r)| Cross::new((r.recovery_s, row_y(i)), 6, BLACK.stroke_width(2))),
            )
            .map_err(style::drawing_error)?
            .label("recovery (fault ends)")
            .legend(|(x, y)| Cross::new((x + 10, y), 6, BLACK.stroke_width(2)));
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                EmptyElement::at((r.fault_s, row_y(i) + WINDOW_HALF_HEIGHT))
                    + Text::new(r.label.clone(), (0, -18), style::label_font())
            }))
            .map_err(style::drawing_error)?;
        canvas::legend(&mut chart, SeriesLabelPosition::LowerLeft)
    })
}
