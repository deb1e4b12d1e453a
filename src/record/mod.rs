//! The record format and the workload shared by the two ways of running a scenario: the simulation
//! (`sim`) and real mode (`real`) are peers over these, and the checkers and reports read only them.
//!
//! Map of the files:
//! - [`events`]: the ground truth of a run (statements the servers executed, connections, what
//!   crossed the network, client operations, fault windows).
//! - [`workload`]: the clients' loops, the same in both modes, and the [`workload::ClientRecorder`]
//!   each mode gives them (its clock and where operations are recorded).
//! - [`schedule`]: when each fault starts and ends, and its record.
//! - [`outcome`]: [`RunOutcome`], what one run produced.

pub mod events;
pub mod outcome;
pub mod schedule;
pub mod workload;

pub use outcome::RunOutcome;
