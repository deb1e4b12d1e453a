//! What one run produced, in either mode: the records every checker and report reads, the fault
//! windows with their verdicts, and the router's metrics at the end.

use crate::record::events::{Events, FaultRecord, Micros};
use crate::router::MetricsSnapshot;

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The seed used.
    pub seed: u64,
    /// The ground truth.
    pub events: Events,
    /// Every fault of the scenario with its window and whether it took effect.
    pub faults: Vec<FaultRecord>,
    /// When the last operation finished (simulated microseconds).
    pub run_end_us: Micros,
    /// The router's metrics at the end of the run (what `--metrics` writes; its per-node `stats` are
    /// the router's own statistics).
    pub router_metrics: MetricsSnapshot,
}
