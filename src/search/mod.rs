//! The searches over many runs: `sweep` (every scenario over every seed), `explore` (a fresh fault
//! schedule drawn from each seed), `shrink` (a failing scenario reduced), and what they share.
//!
//! - `batch`: runs independent simulations on a few threads; each simulation stays single-threaded
//!   and deterministic, only the order in which they finish varies.
//! - `verdict`: one simulated run reduced to what a search needs (its report and failed invariants).
//! - `seeds`: the `A..B` seed range and the `K/N` shard of a work list.
//! - `determinism`: the same seed in a separate process, compared report and trace.
//! - `junit`: the JUnit XML a CI shows per (scenario, seed).
//! - `sweep`: the sweep and its table.
//! - `fault_groups`: a schedule's faults grouped with the undo faults that end them, and described.
//! - `explore`: a fault schedule (and node and workload values) drawn from each seed; failing draws
//!   kept as standalone scenarios.
//! - `shrink`: delta debugging of a failing scenario down to a smaller one that fails the same way.

pub mod batch;
pub mod determinism;
pub mod explore;
pub mod fault_groups;
pub mod junit;
pub mod seeds;
pub mod shrink;
pub mod sweep;
pub mod verdict;
