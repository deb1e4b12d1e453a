//! The binary's log output: `tracing` events on stderr, filtered by `RUST_LOG` or by `-v`.
//!
//! Inside a simulation each line carries the simulated time (`sim 12.345s`), the clock the
//! events' own records use; real mode's lines carry wall-clock time. Logs only ever go to stderr:
//! nothing of them reaches a report, a trace or a chart, so they cannot break determinism.

use std::fmt;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// Installs the subscriber. `RUST_LOG` wins when set; otherwise `default` (e.g. `warn`), raised
/// to `info` by `-v` and `debug` by `-vv` for replisim's own events. A second call (as in tests) leaves the first in place.
pub(super) fn install(verbose: u8, default: &str) {
    // The simulator's own chatter (hosts created, ports bound) stays at warnings.
    let level = match verbose {
        0 => default,
        1 => "warn,replisim=info",
        _ => "warn,replisim=debug",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(spec.trim()).unwrap_or_else(|e| {
                eprintln!("replisim: RUST_LOG: {e}; using `{level}`");
                EnvFilter::new(level)
            })
        }
        _ => EnvFilter::new(level),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(SimulatedOrWallClock)
        .with_writer(std::io::stderr)
        // Colour codes only where a person reads them, never into a CI log or a file.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Simulated time inside a simulation, wall-clock time outside one.
struct SimulatedOrWallClock;

impl FormatTime for SimulatedOrWallClock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        match turmoil::sim_elapsed() {
            Some(elapsed) => write!(w, "sim {:>9.3}s", elapsed.as_secs_f64()),
            None => SystemTime.format_time(w),
        }
    }
}
