//! Simulated time, as the node sees it: microseconds since the start of the run, and the wall
//! clock the simulation pretends to have (its fixed epoch plus elapsed time).

use std::time::Duration;

use crate::record::events::Micros;

/// Simulated microseconds since the start of the run, or `None` outside a running host (for
/// instance while the simulation itself is being dropped).
pub(crate) fn try_now_us() -> Option<Micros> {
    turmoil::sim_elapsed().map(|elapsed| saturating_micros(elapsed.as_micros()))
}

/// Simulated microseconds since the start of the run (0 outside a running host).
pub(crate) fn now_us() -> Micros {
    try_now_us().unwrap_or(0)
}

/// Microseconds since the UNIX epoch, on the simulation's wall clock, of the simulated instant
/// `at_us`. PostgreSQL's `now()` and commit timestamps come from this clock.
pub(crate) fn wall_us(at_us: Micros) -> i64 {
    let offset = match (turmoil::since_epoch(), turmoil::sim_elapsed()) {
        (Some(since_epoch), Some(elapsed)) => since_epoch.saturating_sub(elapsed).as_micros(),
        _ => 0,
    };
    i64::try_from(offset.saturating_add(u128::from(at_us))).unwrap_or(i64::MAX)
}

/// How long from now until the simulated instant `at_us` (zero if it has passed).
pub(crate) fn until_us(at_us: Micros) -> Duration {
    Duration::from_micros(at_us.saturating_sub(now_us()))
}

fn saturating_micros(micros: u128) -> Micros {
    Micros::try_from(micros).unwrap_or(Micros::MAX)
}
