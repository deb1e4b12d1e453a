//! `[workload]`: the application's load, checked against the shards that must serve every org.

use toml::Spanned;

use super::error::Issue;
use super::limits::{CLIENTS_MAX, KEYS_PER_ORG_MAX, ORGS_MAX, RATE_MAX, USERS_MAX};
use super::model::{Shard, Workload};
use super::raw::RawWorkload;
use super::validate::{at_least_one, at_most, duration_value, or_default, ratio_value};

/// Resolves `[workload]` over [`Workload::default`]; every org id drawn must fall inside a shard.
pub(crate) fn resolve(raw: &RawWorkload, shards: &[Shard]) -> Result<Workload, Issue> {
    let defaults = Workload::default();
    let workload = Workload {
        clients: or_default(raw.clients.as_ref(), defaults.clients, |v| {
            at_least_one(v, "workload.clients")
                .and_then(|_| at_most(v, CLIENTS_MAX, "workload.clients"))
        })?,
        rate: raw.rate.as_ref().map(rate).transpose()?,
        think_time: or_default(raw.think_time.as_ref(), defaults.think_time, |v| {
            duration_value(v, "workload.think_time")
        })?,
        users: or_default(raw.users.as_ref(), defaults.users, |v| {
            at_least_one(v, "workload.users").and_then(|_| at_most(v, USERS_MAX, "workload.users"))
        })?,
        orgs: or_default(raw.orgs.as_ref(), defaults.orgs, |v| {
            at_least_one(v, "workload.orgs").and_then(|_| at_most(v, ORGS_MAX, "workload.orgs"))
        })?,
        org_skew: or_default(raw.org_skew.as_ref(), defaults.org_skew, org_skew)?,
        keys_per_org: or_default(raw.keys_per_org.as_ref(), defaults.keys_per_org, |v| {
            at_least_one(v, "workload.keys_per_org")
                .and_then(|_| at_most(v, KEYS_PER_ORG_MAX, "workload.keys_per_org"))
        })?,
        read_ratio: or_default(raw.read_ratio.as_ref(), defaults.read_ratio, |v| {
            ratio_value(v, "workload.read_ratio")
        })?,
        primary_read_ratio: or_default(
            raw.primary_read_ratio.as_ref(),
            defaults.primary_read_ratio,
            |v| ratio_value(v, "workload.primary_read_ratio"),
        )?,
        transaction_ratio: or_default(
            raw.transaction_ratio.as_ref(),
            defaults.transaction_ratio,
            |v| ratio_value(v, "workload.transaction_ratio"),
        )?,
    };
    check_orgs_covered(workload.orgs, raw.orgs.as_ref(), shards)?;
    Ok(workload)
}

/// Open-loop arrivals per second: a finite number above zero.
fn rate(value: &Spanned<f64>) -> Result<f64, Issue> {
    let rate = *value.get_ref();
    if !(rate.is_finite() && rate > 0.0) {
        return Err(Issue::at(
            value.span(),
            format!(
                "workload.rate must be above zero (arrivals per second), got {rate}; omit it for a closed loop"
            ),
        ));
    }
    if rate > RATE_MAX {
        return Err(Issue::at(
            value.span(),
            format!(
                "workload.rate = {rate:e} is above the limit of {RATE_MAX:e} arrivals per second"
            ),
        ));
    }
    Ok(rate)
}

/// Zipf exponent: 0 for uniform, or a finite number above zero.
fn org_skew(value: &Spanned<f64>) -> Result<f64, Issue> {
    let skew = *value.get_ref();
    if !(skew.is_finite() && skew >= 0.0) {
        return Err(Issue::at(
            value.span(),
            format!("workload.org_skew must be 0 (uniform) or above (Zipf exponent), got {skew}"),
        ));
    }
    Ok(skew)
}

/// Every org id in `[0, orgs)` must belong to a shard, or the workload would ask for an org that no
/// node serves.
fn check_orgs_covered(
    orgs: u64,
    written: Option<&Spanned<u64>>,
    shards: &[Shard],
) -> Result<(), Issue> {
    let Some(gap) = first_gap(orgs, shards) else {
        return Ok(());
    };
    let ranges = shards
        .iter()
        .map(|shard| format!("[{}, {})", shard.orgs_start, shard.orgs_end))
        .collect::<Vec<_>>()
        .join(", ");
    let how = if written.is_some() {
        ""
    } else {
        " (the default)"
    };
    let message = format!(
        "workload.orgs = {orgs}{how}, but org ids [{}, {}) are in no shard (shards: {ranges})",
        gap.0, gap.1
    );
    Err(match written {
        Some(value) => Issue::at(value.span(), message),
        None => Issue::nowhere(message),
    })
}

/// The first range of org ids in `[0, orgs)` that no shard holds.
fn first_gap(orgs: u64, shards: &[Shard]) -> Option<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = shards
        .iter()
        .map(|shard| {
            // Shard ranges are checked to be non-negative before this runs.
            let start = u64::try_from(shard.orgs_start).unwrap_or(0);
            let end = u64::try_from(shard.orgs_end).unwrap_or(0);
            (start, end)
        })
        .collect();
    ranges.sort_unstable();
    let mut covered_to = 0;
    for (start, end) in ranges {
        if covered_to >= orgs {
            break;
        }
        if start > covered_to {
            return Some((covered_to, start.min(orgs)));
        }
        covered_to = covered_to.max(end);
    }
    (covered_to < orgs).then_some((covered_to, orgs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(start: i64, end: i64) -> Shard {
        Shard {
            name: String::new(),
            orgs_start: start,
            orgs_end: end,
            primary: 0,
            replicas: Vec::new(),
        }
    }

    #[test]
    fn finds_gaps_at_the_start_middle_and_end() {
        let shards = [shard(0, 10), shard(20, 30)];
        assert_eq!(first_gap(10, &shards), None);
        assert_eq!(first_gap(15, &shards), Some((10, 15)));
        assert_eq!(first_gap(25, &shards), Some((10, 20)));
        assert_eq!(
            first_gap(31, &[shard(0, 10), shard(10, 30)]),
            Some((30, 31))
        );
        assert_eq!(first_gap(5, &[shard(1, 10)]), Some((0, 1)));
        assert_eq!(first_gap(30, &[shard(10, 30), shard(0, 10)]), None);
    }

    #[test]
    fn rate_and_skew_must_be_finite() {
        let at = |x: f64| Spanned::new(0..1, x);
        assert!(rate(&at(0.0)).is_err());
        assert!(rate(&at(f64::INFINITY)).is_err());
        assert!(rate(&at(f64::NAN)).is_err());
        assert_eq!(rate(&at(0.5)), Ok(0.5));
        assert!(org_skew(&at(-0.1)).is_err());
        assert!(org_skew(&at(f64::NAN)).is_err());
        assert_eq!(org_skew(&at(0.0)), Ok(0.0));
    }
}
