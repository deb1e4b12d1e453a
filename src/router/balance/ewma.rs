//! A node's latency signal for `p2c_ewma`: a peak-sensitive EWMA of statement latency that decays
//! with time (after Finagle's "peak EWMA").
//!
//! A slower answer than the current value replaces it at once, so a node that turns slow is avoided
//! after its first slow answer; faster answers pull it down over [`EWMA_DECAY`], and each by at least
//! [`ANSWER_WEIGHT_MIN`] of the way, so that a one-off slow answer on a busy node (a new connection
//! opened) fades within a few answers instead of a whole decay time. Without answers the
//! value decays towards zero, so a node that was avoided for being slow is tried again after a while,
//! and its next answer says whether it still is. Errors count as at least [`ERROR_PENALTY`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Time constant of the decay: an old value weighs `e^(-age / EWMA_DECAY)`.
pub const EWMA_DECAY: Duration = Duration::from_secs(1);

/// The least weight of one faster answer in the average.
pub const ANSWER_WEIGHT_MIN: f64 = 0.1;

/// The least latency a failed attempt counts as, so that a node failing fast does not look fast.
pub const ERROR_PENALTY: Duration = Duration::from_millis(250);

/// The decayed EWMA of one node. Two fields in atomics, updated with a load and a store each: an
/// update racing another may be lost, which only delays the signal by one answer.
#[derive(Debug)]
pub struct LatencyEwma {
    /// Time zero of `stamp_us`.
    epoch: Instant,
    /// The value at `stamp_us`, in microseconds (`f64` bits).
    value_us: AtomicU64,
    /// When the value was last updated, in microseconds since `epoch`.
    stamp_us: AtomicU64,
}

impl Default for LatencyEwma {
    fn default() -> Self {
        LatencyEwma {
            epoch: Instant::now(),
            value_us: AtomicU64::new(0f64.to_bits()),
            stamp_us: AtomicU64::new(0),
        }
    }
}

impl LatencyEwma {
    fn micros_at(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// The stored value and its age at `now`, in microseconds.
    fn stored(&self, now: Instant) -> (f64, u64) {
        let value = f64::from_bits(self.value_us.load(Ordering::Relaxed));
        let stamp = self.stamp_us.load(Ordering::Relaxed);
        (value, self.micros_at(now).saturating_sub(stamp))
    }

    fn store(&self, value_us: f64, now: Instant) {
        self.value_us.store(value_us.to_bits(), Ordering::Relaxed);
        self.stamp_us.store(self.micros_at(now), Ordering::Relaxed);
    }

    /// Feeds one answer that took `sample`, received at `now`.
    pub fn observe(&self, sample: Duration, now: Instant) {
        let (value, age_us) = self.stored(now);
        self.store(updated(value, age_us, micros(sample)), now);
    }

    /// Feeds one failed attempt that took `elapsed`: it counts as at least [`ERROR_PENALTY`].
    pub fn observe_error(&self, elapsed: Duration, now: Instant) {
        self.observe(elapsed.max(ERROR_PENALTY), now);
    }

    /// Feeds an attempt given up after `waited`: the node took at least that long, so the value rises
    /// to it if below, and is otherwise left alone.
    pub fn observe_at_least(&self, waited: Duration, now: Instant) {
        let (value, age_us) = self.stored(now);
        let current = decayed(value, age_us);
        let waited_us = micros(waited);
        if waited_us > current {
            self.store(waited_us, now);
        }
    }

    /// The value at `now`, in microseconds.
    #[inline]
    pub fn value_us(&self, now: Instant) -> f64 {
        let (value, age_us) = self.stored(now);
        decayed(value, age_us)
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// `value_us` after `age_us` microseconds without answers.
#[inline]
pub fn decayed(value_us: f64, age_us: u64) -> f64 {
    if age_us == 0 {
        return value_us;
    }
    value_us * weight_of(age_us)
}

/// The weight an old value keeps after `age_us`.
fn weight_of(age_us: u64) -> f64 {
    (-(age_us as f64) / micros(EWMA_DECAY)).exp()
}

/// `value_us`, last updated `age_us` ago, after an answer that took `sample_us`: the sample if slower
/// than the decayed value, else the two averaged by the weight the old value keeps (at most
/// `1 - ANSWER_WEIGHT_MIN`).
pub fn updated(value_us: f64, age_us: u64, sample_us: f64) -> f64 {
    // One `exp` per answer: it is most of the cost of an update.
    let kept = if age_us == 0 { 1.0 } else { weight_of(age_us) };
    if sample_us > value_us * kept {
        return sample_us;
    }
    let weight = kept.min(1.0 - ANSWER_WEIGHT_MIN);
    value_us * weight + sample_us * (1.0 - weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_US: u64 = 1_000_000;

    #[test]
    fn a_slower_answer_takes_over_at_once() {
        assert_eq!(updated(3_000.0, 1_000, 60_000.0), 60_000.0);
        assert_eq!(updated(0.0, 0, 1_500.0), 1_500.0, "the first answer");
    }

    /// Answers of 3 ms every `every_us` from 60 ms: how many until the value is within 3 ms of them.
    fn answers_to_settle(every_us: u64) -> u32 {
        let mut value = 60_000.0;
        let mut answers = 0;
        while value > 6_000.0 && answers < 10_000 {
            value = updated(value, every_us, 3_000.0);
            answers += 1;
            assert!(value >= 3_000.0, "never below the answers: {value}");
        }
        answers
    }

    #[test]
    fn faster_answers_pull_the_value_down() {
        // From 57 ms above the answers to 3 ms above: a factor 19.
        let decay_us = micros(EWMA_DECAY) as u64;
        // Sparse answers: the decay time rules, e^-3 is about 3 decay times.
        let sparse = answers_to_settle(decay_us / 2);
        assert!((5..=7).contains(&sparse), "{sparse} answers");
        // Dense answers: each moves the value 10% of the way (0.9^28 < 1/19).
        let dense = answers_to_settle(100);
        assert_eq!(dense, 28);
    }

    #[test]
    fn an_idle_value_decays_towards_zero() {
        assert_eq!(decayed(20_000.0, 0), 20_000.0);
        let after_one_decay = decayed(20_000.0, micros(EWMA_DECAY) as u64);
        assert!((after_one_decay - 20_000.0 / std::f64::consts::E).abs() < 1.0);
        assert!(decayed(20_000.0, 60 * SECOND_US) < 1.0);
    }

    #[test]
    fn the_node_signal_follows_answers_errors_and_time() {
        let ewma = LatencyEwma::default();
        let now = Instant::now();
        assert_eq!(ewma.value_us(now), 0.0, "no answer yet");
        ewma.observe(Duration::from_millis(4), now);
        assert_eq!(ewma.value_us(now), 4_000.0);
        ewma.observe_error(Duration::from_millis(1), now);
        assert_eq!(ewma.value_us(now), micros(ERROR_PENALTY), "penalised");
        let later = now + EWMA_DECAY * 3;
        assert!(ewma.value_us(later) < micros(ERROR_PENALTY) / 19.0);
        ewma.observe_at_least(Duration::from_secs(1), later);
        assert_eq!(ewma.value_us(later), 1e6);
        ewma.observe_at_least(Duration::from_millis(1), later);
        assert_eq!(ewma.value_us(later), 1e6, "a short wait says nothing");
    }
}
