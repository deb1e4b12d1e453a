//! `replisim run --profile`: how fast the simulation ran, in simulated seconds and operations per
//! wall-clock second. Wall-clock time is read only here, in the command line, and only printed:
//! it never reaches a report, trace or chart, which stay byte-identical from run to run.

use std::time::Duration;

use crate::record::events::Micros;

/// Wall-clock durations of one run's phases.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Phases {
    /// Building and stepping the simulation, up to the recorded events.
    pub simulation: Duration,
    /// Checkers, reports, charts and trace.
    pub reporting: Duration,
}

/// The `profile:` lines for a run that simulated `simulated_us` and `ops` client operations in
/// `phases`.
pub(super) fn render(simulated_us: Micros, ops: usize, phases: Phases) -> String {
    let simulated_s = simulated_us as f64 / 1e6;
    let total = phases.simulation + phases.reporting;
    let per_second = |wall: Duration, amount: f64| {
        let secs = wall.as_secs_f64();
        if secs > 0.0 { amount / secs } else { 0.0 }
    };
    format!(
        "profile: simulated {simulated_s:.2} s and {ops} operations in {:.2} s wall \
         ({:.2} s simulation, {:.2} s checkers and reports)\n\
         profile: {:.1} simulated seconds per wall-second ({:.1} for the simulation alone), \
         {:.0} operations per wall-second\n",
        total.as_secs_f64(),
        phases.simulation.as_secs_f64(),
        phases.reporting.as_secs_f64(),
        per_second(total, simulated_s),
        per_second(phases.simulation, simulated_s),
        per_second(total, ops as f64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_simulated_seconds_and_operations_over_wall_seconds() {
        let phases = Phases {
            simulation: Duration::from_millis(1500),
            reporting: Duration::from_millis(500),
        };
        let text = render(60_000_000, 4000, phases);
        assert!(
            text.contains("simulated 60.00 s and 4000 operations in 2.00 s wall"),
            "{text}"
        );
        assert!(
            text.contains("30.0 simulated seconds per wall-second (40.0 for the simulation alone)"),
            "{text}"
        );
        assert!(text.contains("2000 operations per wall-second"), "{text}");
    }

    #[test]
    fn a_zero_wall_time_gives_zero_rates_not_infinity() {
        let text = render(1_000_000, 10, Phases::default());
        assert!(
            text.contains("0.0 simulated seconds per wall-second"),
            "{text}"
        );
    }
}
