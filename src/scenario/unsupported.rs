//! Features the scenario schema names but the router does not have yet. A file that asks for one is
//! refused ("... is not supported yet", exit 2) rather than run without it. When a feature lands,
//! delete its entry from [`NOT_SUPPORTED`] (and its function).

use std::ops::Range;

use super::error::Issue;
use super::model::{FaultKind, Scenario};
use super::raw::RawScenario;

/// Where a file asks for a missing feature: what it asked for, and where.
type Request = Option<(String, Range<usize>)>;

/// Every feature not supported yet, each a function that finds a request for it in a valid file.
const NOT_SUPPORTED: [fn(&Scenario, &RawScenario) -> Request; 1] = [promotion];

/// Refuses the first request for a feature that is not supported yet.
pub(crate) fn reject_unsupported(scenario: &Scenario, raw: &RawScenario) -> Result<(), Issue> {
    match NOT_SUPPORTED.iter().find_map(|find| find(scenario, raw)) {
        Some((what, span)) => Err(Issue::not_supported(span, what)),
        None => Ok(()),
    }
}

/// Fault kind `promote`: the router does not follow a new primary yet.
fn promotion(scenario: &Scenario, raw: &RawScenario) -> Request {
    let index = scenario
        .faults
        .iter()
        .position(|fault| fault.kind == FaultKind::Promote)?;
    let fault = raw.fault.get(index)?;
    let span = fault
        .get_ref()
        .kind
        .as_ref()
        .map_or_else(|| fault.span(), |kind| kind.span());
    Some((format!("fault {}: kind \"promote\"", index + 1), span))
}
