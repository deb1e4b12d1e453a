//! Scenario files: TOML text -> raw serde structs (positions kept) -> the validated [`Scenario`].
//!
//! - `duration`: `"250ms"`, `"1.5s"`, `"2m"` both ways.
//! - `error`: [`ScenarioError`], one line with `file:line:col`.
//! - `limits`: the upper limit of every value one machine can run (`CLIENTS_MAX`, ...).
//! - `model`: the validated scenario every other part reads.
//! - `raw`: the file as written; unknown keys and wrong types are refused there.
//! - `validate`: raw -> resolved, with `topology`, `router_section`, `workload`, `faults` and
//!   `invariants` for the sections.
//! - `write`: [`Scenario::to_toml`], the validated model back to scenario TOML (round-trips).
//! - `explore_section`: `[explore]`, the ranges `replisim explore` draws from.
//! - `router_topology`: the router's view of a scenario's cluster, for the simulation and real mode.
//!
//! Beyond the schema of SPEC section 4, a `[[shard]]` takes `weights`, one whole number from 1 per
//! replica in the order of `replicas` (default all 1): each replica's share of reads under
//! `balance = "weighted"`, relative to the other replicas of its shard.

pub mod duration;
pub mod error;
pub mod explore_section;
mod faults;
mod invariants;
pub mod limits;
pub mod model;
mod raw;
pub(crate) mod router_section;
mod router_topology;
mod topology;
mod validate;
mod workload;
mod write;

use std::path::Path;

pub use duration::{format_duration, parse_duration};
pub use error::{Position, ScenarioError, ScenarioErrorKind};
pub use model::*;
pub use router_topology::Login;
pub(crate) use topology::{LINK_LATENCY_DEFAULT, QUERY_TIME_DEFAULT, REPLICATION_DELAY_DEFAULT};
pub use write::WriteError;

/// Reads, parses and validates the scenario file at `path`; a file above
/// [`limits::FILE_SIZE_MAX`] is refused without being read whole.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    use std::io::Read;
    let file = path.display().to_string();
    let unreadable = |error| ScenarioError::unreadable(&file, error);
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|opened| {
            opened
                .take(limits::FILE_SIZE_MAX + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(unreadable)?;
    if bytes.len() as u64 > limits::FILE_SIZE_MAX {
        return Err(too_large(&file, &String::from_utf8_lossy(&bytes)));
    }
    let text = String::from_utf8(bytes)
        .map_err(|error| unreadable(std::io::Error::new(std::io::ErrorKind::InvalidData, error)))?;
    parse(&text, &file)
}

/// A file above [`limits::FILE_SIZE_MAX`], located where its `text` crosses the limit.
fn too_large(file: &str, text: &str) -> ScenarioError {
    let message = format!(
        "the file goes past the limit of {} bytes for a scenario here",
        limits::FILE_SIZE_MAX
    );
    let limit = usize::try_from(limits::FILE_SIZE_MAX).unwrap_or(usize::MAX);
    let issue = error::Issue::at(limit..limit, message);
    ScenarioError::from_issue(file, text, issue)
}

/// Parses and validates scenario `text`; `file` names it in error messages.
pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    if text.len() as u64 > limits::FILE_SIZE_MAX {
        return Err(too_large(file, text));
    }
    raw::read(text)
        .and_then(|raw| validate::validate(&raw, text))
        .map_err(|issue| ScenarioError::from_issue(file, text, issue))
}
