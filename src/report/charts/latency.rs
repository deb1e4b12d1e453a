//! `<name>-seed<N>-latency.svg`: client latency over time, as Jepsen's perf plots draw it. For
//! reads and for writes, the p50 and p99 of the operations that started in each time bucket; every
//! failed operation as a point at its start and latency; each fault's window shaded.
//!
//! Percentiles come from one HDR histogram per bucket and operation kind, built like the report's
//! (`check::latency`), so the chart and the report's `latency_ms` agree on what a percentile is.

use std::io;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::buckets::{Buckets, seconds};
use super::fault_windows::{self, FaultWindow};
use super::{canvas, style};
use crate::check::latency::{empty_histogram, percentile_us, record_latency};
use crate::record::events::{ClientOp, OpKind};

/// The most failed operations drawn one by one; past it every k-th is drawn, so that a run where
/// everything failed still gives an SVG of a few hundred kilobytes.
pub const FAILED_POINTS_MAX: usize = 2_000;

/// The lowest latency the logarithmic axis shows, in ms: a zero latency is drawn there.
const LATENCY_FLOOR_MS: f64 = 0.001;

/// One line of the chart: a percentile of one operation kind, per bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct PercentileLine {
    /// `read p50`, `write p99`, ...
    pub label: String,
    /// (bucket middle in s, latency in ms), for each bucket holding an operation of the kind.
    pub points: Vec<(f64, f64)>,
    /// Whether this is a p99 line (drawn heavier than the p50).
    pub tail: bool,
    /// 0 for reads, 1 for writes: picks the colour.
    pub kind_index: usize,
}

/// What the chart shows, computed in one pass over the operations.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySeries {
    /// read p50, read p99, write p50, write p99 (a kind with no operation has no lines).
    pub lines: Vec<PercentileLine>,
    /// (start in s, latency in ms) of the failed operations drawn.
    pub failed: Vec<(f64, f64)>,
    /// How many operations failed in all (more than `failed.len()` when thinned out).
    pub failed_total: usize,
}

fn latency_ms(op: &ClientOp) -> f64 {
    op.end_us.saturating_sub(op.start_us) as f64 / 1000.0
}

/// Buckets the operations by start time and takes each bucket's percentiles. O(operations).
pub fn series(ops: &[ClientOp], buckets: &Buckets) -> LatencySeries {
    let kinds = [(OpKind::Read, "read"), (OpKind::Write, "write")];
    // Created on first use: a run with few operations never builds 200 histograms.
    let mut histograms: Vec<Vec<Option<Histogram<u64>>>> =
        vec![vec![None; buckets.count()]; kinds.len()];
    let mut failed_total: usize = 0;
    for op in ops {
        let kind_index = usize::from(op.kind == OpKind::Write);
        if let Some(slot) = histograms
            .get_mut(kind_index)
            .and_then(|h| h.get_mut(buckets.index(op.start_us)))
        {
            record_latency(slot.get_or_insert_with(empty_histogram), op);
        }
        if !op.ok {
            failed_total += 1;
        }
    }
    let stride = failed_total.div_ceil(FAILED_POINTS_MAX).max(1);
    let failed = ops
        .iter()
        .filter(|op| !op.ok)
        .step_by(stride)
        .map(|op| (seconds(op.start_us), latency_ms(op)))
        .collect();
    let mut lines = Vec::new();
    for (kind_index, (per_bucket, (_, name))) in histograms.iter().zip(kinds).enumerate() {
        if per_bucket.iter().all(Option::is_none) {
            continue;
        }
        for (percentile, tail) in [(50.0, false), (99.0, true)] {
            let points = per_bucket
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    let h = h.as_ref()?;
                    Some((
                        buckets.middle_s(i),
                        percentile_us(h, percentile) as f64 / 1000.0,
                    ))
                })
                .collect();
            lines.push(PercentileLine {
                label: format!("{name} p{percentile}"),
                points,
                tail,
                kind_index,
            });
        }
    }
    LatencySeries {
        lines,
        failed,
        failed_total,
    }
}

/// The latency axis, in whole decades (so that every power of ten on it is labelled): from the
/// decade of half the fastest value drawn to at least a decade and a half above the slowest, so
/// that the legend and the fault labels at the top stay clear of the lines.
fn latency_range_ms(series: &LatencySeries) -> (f64, f64) {
    let values = series
        .lines
        .iter()
        .flat_map(|l| l.points.iter())
        .chain(series.failed.iter())
        .map(|&(_, ms)| ms);
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), ms| {
        let lo = if ms > 0.0 { lo.min(ms) } else { lo };
        (lo, hi.max(ms))
    });
    if !lo.is_finite() || hi <= 0.0 {
        return (LATENCY_FLOOR_MS, 1.0);
    }
    let decade_below = |ms: f64| 10f64.powf(ms.log10().floor());
    let decade_above = |ms: f64| 10f64.powf(ms.log10().ceil());
    (
        decade_below((lo / 2.0).max(LATENCY_FLOOR_MS)),
        decade_above(hi * 30.0),
    )
}

/// A latency axis label: at most three decimals (a microsecond), without trailing zeros.
fn latency_label(ms: &f64) -> String {
    let text = format!("{ms:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Renders the chart as SVG text.
pub fn render(
    title: &str,
    ops: &[ClientOp],
    buckets: &Buckets,
    end_s: f64,
    faults: &[FaultWindow],
) -> io::Result<String> {
    let series = series(ops, buckets);
    let (y_lo, y_hi) = latency_range_ms(&series);
    let on_axis = |ms: f64| ms.max(y_lo);
    canvas::render(|root| {
        let caption = format!(
            "{title}: client latency, p50 and p99 per {} s",
            buckets.width_s()
        );
        let mut chart = canvas::layout(root, &caption, 70)
            .build_cartesian_2d(0.0..end_s, (y_lo..y_hi).log_scale())
            .map_err(style::drawing_error)?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc("latency (ms, log scale; faster ones drawn at the bottom)")
            .y_label_formatter(&latency_label)
            .label_style(style::label_font())
            .draw()
            .map_err(style::drawing_error)?;
        fault_windows::draw(&mut chart, faults, (y_lo, y_hi))?;
        for line in &series.lines {
            let colour = style::series_colour(line.kind_index);
            let stroke = if line.tail {
                colour.stroke_width(2)
            } else {
                colour.mix(0.55).stroke_width(1)
            };
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().map(|&(s, ms)| (s, on_axis(ms))),
                    stroke,
                ))
                .map_err(style::drawing_error)?
                .label(line.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], stroke));
        }
        if series.failed_total > 0 {
            let shown = if series.failed.len() < series.failed_total {
                format!(
                    "failed ({} of {} shown)",
                    series.failed.len(),
                    series.failed_total
                )
            } else {
                format!("failed ({})", series.failed_total)
            };
            chart
                .draw_series(
                    series
                        .failed
                        .iter()
                        .map(|&(s, ms)| Cross::new((s, on_axis(ms)), 3, style::FAILED)),
                )
                .map_err(style::drawing_error)?
                .label(shown)
                .legend(|(x, y)| Cross::new((x + 10, y), 3, style::FAILED));
        }
        canvas::legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, start_ms: u64, latency_ms: u64, ok: bool) -> ClientOp {
        ClientOp {
            client: 0,
            user: 0,
            org: 0,
            key: 0,
            kind,
            prefer_replica: true,
            transaction: false,
            start_us: start_ms * 1000,
            end_us: (start_ms + latency_ms) * 1000,
            ok,
            node: None,
            version: 0,
            error: None,
        }
    }

    #[test]
    fn each_bucket_gets_its_own_percentiles() {
        // 1 s run, 10 ms buckets: 100 reads of 2 ms in bucket 0, one of 40 ms in bucket 5.
        let mut ops: Vec<ClientOp> = (0..100).map(|_| op(OpKind::Read, 1, 2, true)).collect();
        ops.push(op(OpKind::Read, 55, 40, false));
        let buckets = Buckets::covering(1_000_000);
        let s = series(&ops, &buckets);
        assert_eq!(s.lines.len(), 2, "reads only: no write lines");
        let p50 = &s.lines[0];
        assert_eq!(p50.label, "read p50");
        assert_eq!(p50.points, vec![(0.005, 2.0), (0.055, 40.0)]);
        assert_eq!(s.failed, vec![(0.055, 40.0)]);
        assert_eq!(s.failed_total, 1);
    }

    #[test]
    fn the_axis_spans_whole_decades_with_short_labels() {
        let ops = vec![op(OpKind::Read, 0, 3, true), op(OpKind::Read, 0, 3, true)];
        let s = series(&ops, &Buckets::covering(1_000_000));
        let (lo, hi) = latency_range_ms(&s);
        assert!(
            (lo - 1.0).abs() < 1e-9 && (hi - 100.0).abs() < 1e-9,
            "{lo}..{hi}"
        );
        assert_eq!(latency_label(&10.0), "10");
        assert_eq!(latency_label(&0.25), "0.25");
        assert_eq!(latency_label(&1000.0), "1000");
    }

    #[test]
    fn many_failures_are_thinned_out() {
        let ops: Vec<ClientOp> = (0..(FAILED_POINTS_MAX as u64 * 3))
            .map(|i| op(OpKind::Write, i, 1, false))
            .collect();
        let s = series(&ops, &Buckets::covering(10_000_000));
        assert_eq!(s.failed_total, FAILED_POINTS_MAX * 3);
        assert_eq!(s.failed.len(), FAILED_POINTS_MAX);
        assert_eq!(s.lines[0].label, "write p50");
    }
}
