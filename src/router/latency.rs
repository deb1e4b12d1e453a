//! Statement latency of one node: an HDR histogram (microseconds) for percentiles, and exact counts
//! over fixed bucket bounds for the Prometheus histogram, both behind one uncontended mutex.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Upper bounds (inclusive, microseconds) of the exposition's latency buckets; `+Inf` follows.
pub const LATENCY_BUCKET_BOUNDS_US: [u64; 15] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Buckets including `+Inf`.
const BUCKETS: usize = LATENCY_BUCKET_BOUNDS_US.len() + 1;

/// Largest latency the histogram tells apart (one hour); longer ones count as one hour there, but
/// exactly in the sum, the maximum and the buckets.
const HISTOGRAM_HIGHEST_US: u64 = 3_600_000_000;

/// Percentiles within 1%: about 25 KiB per node.
const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 2;

struct Recorded {
    /// `None` only if hdrhistogram refused the constant bounds above, which it does not.
    histogram: Option<Histogram<u64>>,
    /// Per bucket, not cumulative; the last is `+Inf`.
    buckets: [u64; BUCKETS],
    count: u64,
    sum_us: u64,
    max_us: u64,
}

/// The latency record of one node.
pub struct StatementLatency {
    recorded: Mutex<Recorded>,
}

impl Default for StatementLatency {
    fn default() -> Self {
        let histogram =
            Histogram::new_with_bounds(1, HISTOGRAM_HIGHEST_US, HISTOGRAM_SIGNIFICANT_DIGITS).ok();
        StatementLatency {
            recorded: Mutex::new(Recorded {
                histogram,
                buckets: [0; BUCKETS],
                count: 0,
                sum_us: 0,
                max_us: 0,
            }),
        }
    }
}

impl std::fmt::Debug for StatementLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatementLatency")
            .field("count", &self.lock().count)
            .finish_non_exhaustive()
    }
}

impl StatementLatency {
    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // Never held across an await; every critical section leaves the record consistent.
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one statement that took `elapsed`.
    pub fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKET_BOUNDS_US.partition_point(|&bound| bound < us);
        let mut recorded = self.lock();
        if let Some(histogram) = recorded.histogram.as_mut() {
            histogram.saturating_record(us);
        }
        if let Some(count) = recorded.buckets.get_mut(bucket) {
            *count += 1;
        }
        recorded.count += 1;
        recorded.sum_us = recorded.sum_us.saturating_add(us);
        recorded.max_us = recorded.max_us.max(us);
    }

    /// The record now.
    pub fn snapshot(&self) -> LatencySnapshot {
        let recorded = self.lock();
        let percentile = |quantile: f64| match &recorded.histogram {
            Some(h) if !h.is_empty() => h.lowest_equivalent(h.value_at_quantile(quantile)),
            _ => 0,
        };
        let mut cumulative = 0;
        let buckets = recorded
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                cumulative += count;
                LatencyBucket {
                    le_us: LATENCY_BUCKET_BOUNDS_US.get(i).copied(),
                    count: cumulative,
                }
            })
            .collect();
        LatencySnapshot {
            count: recorded.count,
            sum_us: recorded.sum_us,
            p50_us: percentile(0.50),
            p95_us: percentile(0.95),
            p99_us: percentile(0.99),
            max_us: recorded.max_us,
            buckets,
        }
    }
}

/// One cumulative bucket: statements that took at most `le_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyBucket {
    /// Upper bound in microseconds; `None` is `+Inf`.
    pub le_us: Option<u64>,
    /// Statements at or below the bound.
    pub count: u64,
}

/// A node's statement latency at the time of a snapshot. Percentiles are the lowest value of the
/// histogram bucket holding them (within 1%); count, sum, maximum and buckets are exact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Statements recorded.
    pub count: u64,
    /// Their total time, in microseconds.
    pub sum_us: u64,
    /// Median, in microseconds (0 with no statement).
    pub p50_us: u64,
    /// 95th percentile, in microseconds.
    pub p95_us: u64,
    /// 99th percentile, in microseconds.
    pub p99_us: u64,
    /// Slowest, in microseconds.
    pub max_us: u64,
    /// Cumulative counts over the bucket bounds (`LATENCY_BUCKET_BOUNDS_US`) then `+Inf` (which equals `count`).
    pub buckets: Vec<LatencyBucket>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_us(latency: &StatementLatency, values: &[u64]) {
        for &us in values {
            latency.record(Duration::from_micros(us));
        }
    }

    #[test]
    fn buckets_are_cumulative_and_inclusive_of_their_bound() {
        let latency = StatementLatency::default();
        record_us(&latency, &[0, 500, 501, 1_000, 40_000_000]);
        let snapshot = latency.snapshot();
        let count_at = |le: Option<u64>| {
            snapshot
                .buckets
                .iter()
                .find(|b| b.le_us == le)
                .map(|b| b.count)
        };
        assert_eq!(count_at(Some(500)), Some(2), "0 and 500 are <= 500");
        assert_eq!(count_at(Some(1_000)), Some(4));
        assert_eq!(count_at(Some(30_000_000)), Some(4));
        assert_eq!(count_at(None), Some(5), "+Inf holds everything");
        assert_eq!(snapshot.buckets.len(), LATENCY_BUCKET_BOUNDS_US.len() + 1);
        assert_eq!(
            (snapshot.count, snapshot.sum_us, snapshot.max_us),
            (5, 40_002_001, 40_000_000)
        );
    }

    #[test]
    fn percentiles_come_within_one_percent() {
        let latency = StatementLatency::default();
        let values: Vec<u64> = (1..=1_000).map(|i| i * 100).collect();
        record_us(&latency, &values);
        let snapshot = latency.snapshot();
        for (got, want) in [
            (snapshot.p50_us, 50_000),
            (snapshot.p95_us, 95_000),
            (snapshot.p99_us, 99_000),
        ] {
            assert!(got.abs_diff(want) * 100 <= want, "{got} vs {want}");
        }
        assert_eq!(snapshot.max_us, 100_000);
    }

    #[test]
    fn an_empty_record_is_all_zero() {
        let snapshot = StatementLatency::default().snapshot();
        assert_eq!(
            (
                snapshot.count,
                snapshot.p50_us,
                snapshot.p99_us,
                snapshot.max_us
            ),
            (0, 0, 0, 0)
        );
        assert!(snapshot.buckets.iter().all(|b| b.count == 0));
    }
}
