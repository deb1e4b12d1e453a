//! Fault windows drawn over a chart whose x axis is time: each fault shaded from its start to its
//! end and labelled `kind target`, so what the lines do can be read against what the run did.

use std::io;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::buckets::seconds;
use super::style;
use crate::check::node_name;
use crate::record::RunOutcome;
use crate::record::events::Micros;
use crate::scenario::Scenario;

/// Label rows under the top of the plot: neighbouring faults' labels go to different rows so
/// that they overlap less.
const LABEL_ROWS: usize = 3;

/// Height of one label row, in pixels.
const LABEL_ROW_PX: i32 = 15;

/// How strongly a fault's window is shaded.
const SHADE_OPACITY: f64 = 0.12;

/// One fault as a chart shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultWindow {
    /// `kind target`, e.g. `crash replica-2`.
    pub label: String,
    /// Start, in seconds.
    pub from_s: f64,
    /// End, in seconds; `None` for a fault that acts at an instant (restart, heal, promote, ...).
    pub to_s: Option<f64>,
}

/// Every fault of the run in scenario order; one without an end lasts until `end_us`.
pub fn windows(scenario: &Scenario, outcome: &RunOutcome, end_us: Micros) -> Vec<FaultWindow> {
    outcome
        .faults
        .iter()
        .map(|fault| {
            let instant = scenario
                .faults
                .get(fault.index)
                .is_some_and(|f| !f.kind.has_undo());
            let target = node_name(scenario, fault.target);
            FaultWindow {
                label: format!("{} {target}", fault.kind),
                from_s: seconds(fault.at_us),
                to_s: (!instant)
                    .then(|| seconds(fault.until_us.unwrap_or(end_us).max(fault.at_us))),
            }
        })
        .collect()
}

/// Shades every window over the full height `y_lo..y_hi` of `chart` and labels it at the top.
pub fn draw<Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    windows: &[FaultWindow],
    (y_lo, y_hi): (f64, f64),
) -> io::Result<()> {
    let shade = style::FAULT.mix(SHADE_OPACITY).filled();
    let line = style::FAULT.stroke_width(2);
    for (i, window) in windows.iter().enumerate() {
        match window.to_s {
            Some(to_s) => chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(window.from_s, y_lo), (to_s, y_hi)],
                    shade,
                )))
                .map_err(style::drawing_error)?,
            None => chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(window.from_s, y_lo), (window.from_s, y_hi)],
                    line,
                )))
                .map_err(style::drawing_error)?,
        };
        let row = i32::try_from(i % LABEL_ROWS).unwrap_or(0);
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((window.from_s, y_hi))
                    + Text::new(
                        window.label.clone(),
                        (4, 4 + row * LABEL_ROW_PX),
                        style::label_font().color(&style::FAULT),
                    ),
            ))
            .map_err(style::drawing_error)?;
    }
    Ok(())
}
