//! The deterministic simulation harness around the router.
//!
//! - `events`: the ground-truth records.
//! - `node`: the simulated PostgreSQL server.
//! - `connector`: the router's stream trait over `turmoil::net`, recording what crosses the network.
//! - `workload`: the application's sessions (closed or open loop).
//! - `faults`: the fault schedule and applying it.
//! - `fault_evidence`: judging from the records whether each fault took effect, and why.
//! - `harness`: one whole run.

pub mod connector;
pub mod events;
pub mod fault_evidence;
pub mod faults;
pub mod harness;
pub mod node;
pub mod workload;

pub use harness::{RunOutcome, run};

use events::Micros;

/// The turmoil host name of the application host (router and clients).
pub const APP_HOST: &str = "replisim-app";

/// Simulated time now, in microseconds since the start of the run (0 outside a simulation).
pub fn now_us() -> Micros {
    turmoil::sim_elapsed().map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
