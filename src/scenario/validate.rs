//! Raw -> resolved: checks every value of a [`RawScenario`] and builds the [`Scenario`] with every
//! default filled in. Each section has its own file; this one holds the top-level keys and the small
//! value checks the sections share.

use std::time::Duration;

use toml::Spanned;

use super::duration::{format_duration, parse_duration};
use super::error::Issue;
use super::limits::{DURATION_KEY_MAX, DURATION_MAX};
use super::model::Scenario;
use super::raw::RawScenario;
use super::{explore_section, faults, invariants, router_section, topology, workload};

/// Seed used when the file names none.
const SEED_DEFAULT: u64 = 1;

/// Checks `raw` (read from `text`) and resolves it into a [`Scenario`].
pub(crate) fn validate(raw: &RawScenario, text: &str) -> Result<Scenario, Issue> {
    let name = scenario_name(raw.name.as_ref())?;
    let duration = match &raw.duration {
        Some(value) => run_duration(value)?,
        None => return Err(missing_top_level("duration", "e.g. duration = \"60s\"")),
    };
    let (shards, nodes) = topology::resolve(&raw.shard, &raw.node)?;
    let router = router_section::resolve(&raw.router)?;
    let workload = workload::resolve(&raw.workload, &shards)?;
    let faults = faults::resolve(&raw.fault, text, &nodes, duration)?;
    let invariants = invariants::resolve(&raw.invariant, text)?;
    let explore = raw
        .explore
        .as_ref()
        .map(|e| explore_section::resolve(e, &nodes, duration))
        .transpose()?;
    let scenario = Scenario {
        name,
        description: raw.description.clone().unwrap_or_default(),
        seed: raw.seed.unwrap_or(SEED_DEFAULT),
        duration,
        shards,
        nodes,
        router,
        workload,
        faults,
        invariants,
        explore,
    };
    Ok(scenario)
}

/// The scenario's name: required, `[a-z0-9-]+` because it becomes part of report file names.
fn scenario_name(name: Option<&Spanned<String>>) -> Result<String, Issue> {
    let name = name.ok_or_else(|| missing_top_level("name", "e.g. name = \"replica-crash\""))?;
    let text = name.get_ref();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if text.is_empty() || !text.chars().all(allowed) {
        return Err(Issue::at(
            name.span(),
            format!(
                "name \"{text}\" must match [a-z0-9-]+ (lower-case letters, digits and '-'): it is used in report file names"
            ),
        ));
    }
    Ok(text.clone())
}

/// A required top-level key is absent; the top level has no position of its own.
fn missing_top_level(key: &str, example: &str) -> Issue {
    Issue::nowhere(format!("missing required key `{key}` ({example})"))
}

/// A required key of the table at `table` is absent.
pub(crate) fn missing_key(table: std::ops::Range<usize>, key: &str) -> Issue {
    Issue::at(table, format!("missing required key `{key}`"))
}

/// The run's `duration`: above zero and at most [`DURATION_MAX`].
fn run_duration(value: &Spanned<String>) -> Result<Duration, Issue> {
    let duration = parse_duration(value.get_ref())
        .map_err(|error| Issue::at(value.span(), format!("duration: {error}")))?;
    if duration.is_zero() {
        return Err(Issue::at(
            value.span(),
            format!("duration must be above zero, got \"{}\"", value.get_ref()),
        ));
    }
    if duration > DURATION_MAX {
        return Err(Issue::at(
            value.span(),
            format!(
                "duration \"{}\" is above the limit of {} of simulated time",
                value.get_ref(),
                format_duration(DURATION_MAX)
            ),
        ));
    }
    Ok(duration)
}

/// A duration of at most [`DURATION_KEY_MAX`]; the issue names `what` and points at the value.
pub(crate) fn duration_value(value: &Spanned<String>, what: &str) -> Result<Duration, Issue> {
    let duration = parse_duration(value.get_ref())
        .map_err(|error| Issue::at(value.span(), format!("{what}: {error}")))?;
    if duration > DURATION_KEY_MAX {
        return Err(Issue::at(
            value.span(),
            format!(
                "{what} \"{}\" is above the limit of {}",
                value.get_ref(),
                format_duration(DURATION_KEY_MAX)
            ),
        ));
    }
    Ok(duration)
}

/// A duration that must be above zero.
pub(crate) fn positive_duration(value: &Spanned<String>, what: &str) -> Result<Duration, Issue> {
    let duration = duration_value(value, what)?;
    if duration.is_zero() {
        return Err(Issue::at(
            value.span(),
            format!("{what} must be above zero, got \"{}\"", value.get_ref()),
        ));
    }
    Ok(duration)
}

/// A number in [0, 1].
pub(crate) fn ratio_value(value: &Spanned<f64>, what: &str) -> Result<f64, Issue> {
    let ratio = *value.get_ref();
    if !(0.0..=1.0).contains(&ratio) {
        return Err(Issue::at(
            value.span(),
            format!("{what} must be in [0, 1], got {ratio}"),
        ));
    }
    Ok(ratio)
}

/// An integer that must be at least 1.
pub(crate) fn at_least_one<T>(value: &Spanned<T>, what: &str) -> Result<T, Issue>
where
    T: Copy + PartialOrd + From<u8> + std::fmt::Display,
{
    let number = *value.get_ref();
    if number < T::from(1) {
        return Err(Issue::at(
            value.span(),
            format!("{what} must be at least 1, got {number}"),
        ));
    }
    Ok(number)
}

/// A number that must not exceed `max` (one of the limits of `super::limits`).
pub(crate) fn at_most<T>(value: &Spanned<T>, max: T, what: &str) -> Result<T, Issue>
where
    T: Copy + PartialOrd + std::fmt::Display,
{
    let number = *value.get_ref();
    if number > max {
        return Err(Issue::at(
            value.span(),
            format!("{what} = {number} is above the limit of {max}"),
        ));
    }
    Ok(number)
}

/// `f(value)` if the key is present, else `default`.
pub(crate) fn or_default<T, U>(
    value: Option<&T>,
    default: U,
    f: impl FnOnce(&T) -> Result<U, Issue>,
) -> Result<U, Issue> {
    value.map_or(Ok(default), f)
}

/// Names joined for a message: `a, b, c`.
pub(crate) fn list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spanned<T>(value: T) -> Spanned<T> {
        Spanned::new(3..5, value)
    }

    #[test]
    fn value_checks_point_at_the_value() {
        let issue = positive_duration(&spanned("0s".to_owned()), "duration").expect_err("zero");
        assert_eq!(issue.offset, Some(3));
        assert_eq!(issue.message, "duration must be above zero, got \"0s\"");
        let issue = duration_value(&spanned("5".to_owned()), "at").expect_err("no unit");
        assert!(
            issue.message.starts_with("at: \"5\" is not a duration"),
            "{issue:?}"
        );
        assert!(ratio_value(&spanned(f64::NAN), "r").is_err());
        assert!(ratio_value(&spanned(1.01), "r").is_err());
        assert_eq!(ratio_value(&spanned(1.0), "r"), Ok(1.0));
        assert!(at_least_one(&spanned(0u32), "clients").is_err());
        assert_eq!(at_least_one(&spanned(1u64), "users"), Ok(1));
    }

    #[test]
    fn names_must_be_lower_case_words() {
        for bad in ["", "Replica", "a b", "a_b", "é"] {
            assert!(
                scenario_name(Some(&spanned(bad.to_owned()))).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            scenario_name(Some(&spanned("org-1000".to_owned()))),
            Ok("org-1000".to_owned())
        );
        assert!(scenario_name(None).is_err());
    }
}
