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

pub mod batch;
pub mod determinism;
pub mod junit;
pub mod seeds;
pub mod sweep;
pub mod verdict;
