//! Scenario files: TOML text -> raw serde structs (positions kept) -> the validated [`Scenario`].
//!
//! - `duration`: `"250ms"`, `"1.5s"`, `"2m"` both ways.
//! - `error`: [`ScenarioError`], one line with `file:line:col`.
//! - `model`: the validated scenario every other part reads.
//! - `raw`: the file as written; unknown keys and wrong types are refused there.
//! - `validate`: raw -> resolved, with `topology`, `router_section`, `workload`, `faults` and
//!   `invariants` for the sections.
//! - `router_topology`: the router's view of a scenario's cluster, for the simulation and real mode.
//!
//! Beyond the schema of SPEC section 4, a `[[shard]]` takes `weights`, one whole number from 1 per
//! replica in the order of `replicas` (default all 1): each replica's share of reads under
//! `balance = "weighted"`, relative to the other replicas of its shard.

pub mod duration;
pub mod error;
mod faults;
mod invariants;
pub mod model;
mod raw;
mod router_section;
mod router_topology;
mod topology;
mod validate;
mod workload;

use std::path::Path;

pub use duration::{format_duration, parse_duration};
pub use error::{Position, ScenarioError, ScenarioErrorKind};
pub use model::*;
pub use router_topology::Login;

/// Reads, parses and validates the scenario file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|error| ScenarioError::unreadable(&file, error))?;
    parse(&text, &file)
}

/// Parses and validates scenario `text`; `file` names it in error messages.
pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    raw::read(text)
        .and_then(|raw| validate::validate(&raw, text))
        .map_err(|issue| ScenarioError::from_issue(file, text, issue))
}
