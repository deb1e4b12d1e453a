//! Features the scenario schema names but the router does not have yet. A file that asks for one is
//! refused ("... is not supported yet", exit 2) rather than run without it. When a feature lands,
//! delete its entry from [`NOT_SUPPORTED`] (and its function).

use std::ops::Range;

use super::error::Issue;
use super::model::Scenario;
use super::raw::RawScenario;
use crate::router::Balance;

/// Where a file asks for a missing feature: what it asked for, and where.
type Request = Option<(String, Range<usize>)>;

/// Every feature not supported yet, each a function that finds a request for it in a valid file.
const NOT_SUPPORTED: [fn(&Scenario, &RawScenario) -> Request; 3] = [
    balance_other_than_round_robin,
    lag_aware_routing,
    read_your_writes_sessions,
];

/// Refuses the first request for a feature that is not supported yet.
pub(crate) fn reject_unsupported(scenario: &Scenario, raw: &RawScenario) -> Result<(), Issue> {
    match NOT_SUPPORTED.iter().find_map(|find| find(scenario, raw)) {
        Some((what, span)) => Err(Issue::not_supported(span, what)),
        None => Ok(()),
    }
}

/// `router.balance`: only round robin exists.
fn balance_other_than_round_robin(scenario: &Scenario, raw: &RawScenario) -> Request {
    let value = raw.router.balance.as_ref()?;
    (scenario.router.balance != Balance::RoundRobin).then(|| {
        (
            format!("router.balance = \"{}\"", value.get_ref()),
            value.span(),
        )
    })
}

/// `router.max_replica_lag`: no lag-aware routing yet.
fn lag_aware_routing(_: &Scenario, raw: &RawScenario) -> Request {
    let value = raw.router.max_replica_lag.as_ref()?;
    Some((
        "router.max_replica_lag (lag-aware routing)".to_owned(),
        value.span(),
    ))
}

/// `router.read_your_writes = true`: no session tokens yet.
fn read_your_writes_sessions(scenario: &Scenario, raw: &RawScenario) -> Request {
    let value = raw.router.read_your_writes.as_ref()?;
    scenario
        .router
        .read_your_writes
        .then(|| ("router.read_your_writes = true".to_owned(), value.span()))
}
