//! Time buckets of a chart's x axis: the run cut into equal slices, each event counted in one.
//!
//! Placing an event is one division, so bucketing a run of any length costs O(events); the
//! `reference` scenario's ~300k operations take a few milliseconds.

use crate::record::events::Micros;

/// The most buckets a run is cut into: fine enough to show a failover of a second or two in a
/// run of a minute, coarse enough that each bucket of a busy run holds hundreds of operations.
pub const BUCKETS: u64 = 100;

/// The narrowest bucket: shorter runs get fewer buckets rather than buckets of a few microseconds.
const WIDTH_MIN_US: Micros = 1_000;

/// Equal time slices from 0 to the end of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buckets {
    width_us: Micros,
    count: usize,
    end_us: Micros,
}

impl Buckets {
    /// At most [`BUCKETS`] buckets covering `[0, end_us)`, each at least `WIDTH_MIN_US` wide
    /// and a round width (1, 2 or 5 times a power of ten), so that bucket edges fall on round times.
    pub fn covering(end_us: Micros) -> Buckets {
        let width_us = round_up(end_us.div_ceil(BUCKETS).max(WIDTH_MIN_US));
        let count = end_us.div_ceil(width_us).max(1);
        Buckets {
            width_us,
            count: usize::try_from(count).unwrap_or(usize::MAX),
            end_us,
        }
    }

    /// Number of buckets.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Width of one bucket, in seconds.
    pub fn width_s(&self) -> f64 {
        seconds(self.width_us)
    }

    /// The bucket holding time `at_us`; times past the end fall into the last one.
    pub fn index(&self, at_us: Micros) -> usize {
        let index = usize::try_from(at_us / self.width_us).unwrap_or(usize::MAX);
        index.min(self.count - 1)
    }

    /// How much of the run bucket `index` covers, in seconds: its width, less for the last bucket
    /// when the run ends inside it (a rate over the last bucket divides by this, not the width).
    pub fn span_s(&self, index: usize) -> f64 {
        let start_us = (index as u64).saturating_mul(self.width_us);
        let span_us = self.end_us.saturating_sub(start_us).min(self.width_us);
        seconds(span_us.max(1))
    }

    /// The middle of bucket `index`, in seconds: where its value is plotted.
    pub fn middle_s(&self, index: usize) -> f64 {
        (index as f64 + 0.5) * self.width_s()
    }
}

/// The smallest of 1, 2 and 5 times a power of ten that is at least `us`.
fn round_up(us: Micros) -> Micros {
    let mut decade: Micros = 1;
    loop {
        for step in [1, 2, 5] {
            let width = decade.saturating_mul(step);
            if width >= us || width == Micros::MAX {
                return width;
            }
        }
        decade = decade.saturating_mul(10);
    }
}

/// Microseconds as seconds, the unit of every chart's time axis.
pub fn seconds(us: Micros) -> f64 {
    us as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_is_cut_into_one_second_buckets() {
        let buckets = Buckets::covering(60_000_000);
        assert_eq!(buckets.count(), 60);
        assert_eq!(buckets.index(0), 0);
        assert_eq!(buckets.index(999_999), 0);
        assert_eq!(buckets.index(1_000_000), 1);
        assert_eq!(buckets.index(59_999_999), 59);
        assert!((buckets.middle_s(0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn widths_are_round() {
        // 45 s and a little: 100 buckets would be 0.45011 s wide; 0.5 s gives 91.
        let buckets = Buckets::covering(45_001_100);
        assert!((buckets.width_s() - 0.5).abs() < 1e-12);
        assert_eq!(buckets.count(), 91);
        assert_eq!(round_up(1_001), 2_000);
        assert_eq!(round_up(2_001), 5_000);
        assert_eq!(round_up(5_001), 10_000);
        assert_eq!(round_up(u64::MAX), u64::MAX);
    }

    #[test]
    fn the_last_bucket_spans_only_what_is_left_of_the_run() {
        let buckets = Buckets::covering(45_100_000);
        assert_eq!(buckets.count(), 91);
        assert!((buckets.span_s(0) - 0.5).abs() < 1e-12);
        assert!((buckets.span_s(90) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn times_past_the_end_go_to_the_last_bucket() {
        let buckets = Buckets::covering(10_000_000);
        assert_eq!(buckets.index(10_000_000), buckets.count() - 1);
        assert_eq!(buckets.index(u64::MAX), buckets.count() - 1);
    }

    #[test]
    fn short_runs_get_fewer_wider_buckets() {
        let buckets = Buckets::covering(20_000);
        assert_eq!(buckets.count(), 20);
        assert_eq!(Buckets::covering(20_001).count(), 21);
        assert!((buckets.width_s() - 0.001).abs() < 1e-12);
        let empty = Buckets::covering(0);
        assert_eq!(empty.count(), 1);
        assert_eq!(empty.index(5), 0);
    }
}
