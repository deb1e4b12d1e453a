//! The deterministic simulation harness around the router. It fills the records of
//! [`crate::record`] (real mode is its peer over the same records) and runs the same client loops.
//!
//! - `node`: the simulated PostgreSQL server.
//! - `connector`: the router's stream trait over `turmoil::net`, recording what crosses the network.
//! - `faults`: applying the fault schedule to the simulation.
//! - `fault_evidence`: judging from the records whether each fault took effect, and why.
//! - `harness`: one whole run.

// turmoil seeds each simulated host's tokio runtime from the simulation seed only when tokio is built
// with `--cfg tokio_unstable`; without it tokio's per-process RNG reorders wake-ups and the same seed
// gives a different report in another process. A build that lost the flag (a `RUSTFLAGS` that
// replaces `.cargo/config.toml`'s, a crate depending on this one) must fail rather than run
// simulations that cannot replay. The router alone does not need the flag, so the guard lives here.
#[cfg(not(tokio_unstable))]
compile_error!(
    "the simulation needs tokio built with `--cfg tokio_unstable` to be deterministic: build with \
     this repository's .cargo/config.toml (build.rustflags), or with \
     RUSTFLAGS=\"--cfg tokio_unstable\" when you set RUSTFLAGS yourself"
);

pub mod connector;
pub mod fault_evidence;
pub mod faults;
pub mod harness;
pub mod node;

pub use crate::record::RunOutcome;
pub use harness::run;

use crate::record::events::Micros;

/// The turmoil host name of the application host (router and clients).
pub const APP_HOST: &str = "replisim-app";

/// Simulated time now, in microseconds since the start of the run (0 outside a simulation).
pub fn now_us() -> Micros {
    turmoil::sim_elapsed().map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
