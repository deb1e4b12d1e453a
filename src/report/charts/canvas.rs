//! The frame every chart is drawn in: a white SVG canvas of [`style::SIZE`], the common layout
//! (caption, margins, axis label areas), the legend box, and the SVG text it all becomes.

use std::io;

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use super::style;

/// The canvas a chart draws on.
pub type Canvas<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Renders one chart: `draw` fills the white canvas, and its SVG text is returned.
pub fn render(draw: impl FnOnce(&Canvas<'_>) -> io::Result<()>) -> io::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, style::SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(style::drawing_error)?;
        draw(&root)?;
        root.present().map_err(style::drawing_error)?;
    }
    Ok(svg)
}

/// A chart builder with the shared layout: the caption, margins, room for the time axis below,
/// and `y_label_px` for the y axis labels on the left (little when the chart has none).
pub fn layout<'a, 'b>(
    root: &'a Canvas<'b>,
    caption: &str,
    y_label_px: u32,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(caption, style::caption_font())
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(y_label_px);
    builder
}

/// Draws the legend of every labelled series of `chart`, boxed, at `position`.
pub fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> io::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(style::label_font())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(style::drawing_error)
}
