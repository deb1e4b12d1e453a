//! The clock of one real-mode run: microseconds since the run started, from `tokio::time`, so that
//! client operations, proxy records and faults share one time line.

use std::time::Duration;

use tokio::time::Instant;

use crate::record::events::Micros;

/// Time since the start of a real run.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    /// A clock whose zero is now.
    pub fn start() -> RunClock {
        RunClock {
            start: Instant::now(),
        }
    }

    /// The instant of time zero.
    pub fn zero(&self) -> Instant {
        self.start
    }

    /// Microseconds since time zero.
    pub fn now_us(&self) -> Micros {
        self.us_at(Instant::now())
    }

    /// `instant` in microseconds since time zero (0 if it came before).
    pub fn us_at(&self, instant: Instant) -> Micros {
        micros(instant.saturating_duration_since(self.start))
    }

    /// The instant `us` microseconds after time zero.
    pub fn instant_at(&self, us: Micros) -> Instant {
        self.start + Duration::from_micros(us)
    }
}

/// A duration in microseconds, saturating.
pub(crate) fn micros(duration: Duration) -> Micros {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_before_zero_are_zero_and_offsets_round_trip() {
        let clock = RunClock::start();
        let earlier = clock.zero().checked_sub(Duration::from_millis(5));
        if let Some(earlier) = earlier {
            assert_eq!(clock.us_at(earlier), 0);
        }
        assert_eq!(clock.us_at(clock.instant_at(1_234_567)), 1_234_567);
    }
}
