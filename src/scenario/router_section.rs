//! `[router]`: the library's [`RouterConfig`] defaults, overridden by the keys the file sets, then
//! checked by [`RouterConfig::validate`] so that `check` refuses whatever the router would.

use std::ops::Range;

use toml::Spanned;

use super::error::Issue;
use super::limits::READ_RETRIES_MAX;
use super::raw::RawRouter;
use super::validate::{at_least_one, at_most, duration_value, or_default, positive_duration};
use crate::router::{Balance, RouterConfig, RouterError};

/// Every balancing policy by the name scenario files use.
const BALANCE_NAMES: [(&str, Balance); 5] = [
    ("round_robin", Balance::RoundRobin),
    ("random", Balance::Random),
    ("least_outstanding", Balance::LeastOutstanding),
    ("weighted", Balance::Weighted),
    ("p2c_ewma", Balance::P2cEwma),
];

/// Builds the router's configuration from its defaults and the `[router]` keys.
pub(crate) fn resolve(raw: &RawRouter) -> Result<RouterConfig, Issue> {
    let defaults = RouterConfig::default();
    let max_connections_per_node = or_default(
        raw.max_connections_per_node.as_ref(),
        defaults.max_connections_per_node,
        |v| at_least_one(v, "router.max_connections_per_node"),
    )?;
    let ejection_time = or_default(raw.ejection_time.as_ref(), defaults.ejection_time, |v| {
        duration_value(v, "router.ejection_time")
    })?;
    let ejection_time_max = or_default(
        raw.ejection_time_max.as_ref(),
        defaults.ejection_time_max,
        |v| duration_value(v, "router.ejection_time_max"),
    )?;
    if ejection_time_max < ejection_time {
        let span = raw
            .ejection_time_max
            .as_ref()
            .or(raw.ejection_time.as_ref())
            .map(Spanned::span);
        let message = format!(
            "router.ejection_time_max ({ejection_time_max:?}) must not be below \
             router.ejection_time ({ejection_time:?})"
        );
        return Err(match span {
            Some(span) => Issue::at(span, message),
            None => Issue::nowhere(message),
        });
    }
    let min_connections_per_node = match &raw.min_connections_per_node {
        Some(value) => *value.get_ref(),
        // Left unset, the idle minimum follows a lowered maximum rather than exceed it.
        None => defaults
            .min_connections_per_node
            .min(max_connections_per_node),
    };
    let config = RouterConfig {
        balance: or_default(raw.balance.as_ref(), defaults.balance, balance)?,
        balance_seed: raw.balance_seed.or(defaults.balance_seed),
        health_interval: or_default(
            raw.health_interval.as_ref(),
            defaults.health_interval,
            |v| positive_duration(v, "router.health_interval"),
        )?,
        health_timeout: or_default(raw.health_timeout.as_ref(), defaults.health_timeout, |v| {
            positive_duration(v, "router.health_timeout")
        })?,
        failure_threshold: or_default(
            raw.failure_threshold.as_ref(),
            defaults.failure_threshold,
            |v| at_least_one(v, "router.failure_threshold"),
        )?,
        recovery_threshold: or_default(
            raw.recovery_threshold.as_ref(),
            defaults.recovery_threshold,
            |v| at_least_one(v, "router.recovery_threshold"),
        )?,
        use_read_replicas: raw.use_read_replicas.unwrap_or(defaults.use_read_replicas),
        max_replica_lag: raw
            .max_replica_lag
            .as_ref()
            .map(|v| positive_duration(v, "router.max_replica_lag"))
            .transpose()?,
        read_your_writes: raw
            .read_your_writes
            .as_ref()
            .map_or(defaults.read_your_writes, |v| *v.get_ref()),
        max_connections_per_node,
        min_connections_per_node,
        max_connections_per_user: raw
            .max_connections_per_user
            .as_ref()
            .map_or(defaults.max_connections_per_user, |v| *v.get_ref()),
        max_connections_per_org: raw
            .max_connections_per_org
            .as_ref()
            .map_or(defaults.max_connections_per_org, |v| *v.get_ref()),
        max_idle_time: or_default(raw.max_idle_time.as_ref(), defaults.max_idle_time, |v| {
            positive_duration(v, "router.max_idle_time")
        })?,
        max_lifetime: or_default(raw.max_lifetime.as_ref(), defaults.max_lifetime, |v| {
            positive_duration(v, "router.max_lifetime")
        })?,
        connect_timeout: or_default(
            raw.connect_timeout.as_ref(),
            defaults.connect_timeout,
            |v| positive_duration(v, "router.connect_timeout"),
        )?,
        query_timeout: or_default(raw.query_timeout.as_ref(), defaults.query_timeout, |v| {
            positive_duration(v, "router.query_timeout")
        })?,
        read_retries: or_default(raw.read_retries.as_ref(), defaults.read_retries, |v| {
            at_most(v, READ_RETRIES_MAX, "router.read_retries")
        })?,
        ejection_time,
        ejection_time_max,
        slow_request_ejection: or_default(
            raw.slow_request_ejection.as_ref(),
            defaults.slow_request_ejection,
            |v| duration_value(v, "router.slow_request_ejection"),
        )?,
        max_ejection_percent: raw.max_ejection_percent.as_ref().map(percent).transpose()?,
        outlier_ejection: raw.outlier_ejection.unwrap_or(defaults.outlier_ejection),
        cancel_abandoned: raw.cancel_abandoned.unwrap_or(defaults.cancel_abandoned),
        replica_count: raw.replica_count.or(defaults.replica_count),
        follow_promotion: raw.follow_promotion.unwrap_or(defaults.follow_promotion),
        // TLS is not simulated (the simulated node speaks plain PostgreSQL only): no key sets it.
        sslmode: defaults.sslmode,
        sslrootcert: defaults.sslrootcert,
    };
    // The router's own check is the last word: whatever it would refuse at start-up, `check`
    // refuses here, at the key that set the value.
    config
        .validate()
        .map_err(|error| refused_by_router(raw, error))?;
    Ok(config)
}

/// A [`RouterConfig::validate`] refusal, placed at the key its message starts with (every message
/// names its key first); at no position when the file left that key at its default.
fn refused_by_router(raw: &RawRouter, error: RouterError) -> Issue {
    let message = match error {
        RouterError::InvalidConfig(message) => message,
        other => other.to_string(),
    };
    let key: String = message
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let message = format!("router.{message}");
    match key_span(raw, &key) {
        Some(span) => Issue::at(span, message),
        None => Issue::nowhere(message),
    }
}

/// Where the file set `key` of `[router]`, if it did (only keys the router's check can refuse).
fn key_span(raw: &RawRouter, key: &str) -> Option<Range<usize>> {
    let durations = [
        ("health_interval", &raw.health_interval),
        ("health_timeout", &raw.health_timeout),
        ("max_replica_lag", &raw.max_replica_lag),
        ("max_idle_time", &raw.max_idle_time),
        ("max_lifetime", &raw.max_lifetime),
        ("connect_timeout", &raw.connect_timeout),
        ("query_timeout", &raw.query_timeout),
        ("ejection_time", &raw.ejection_time),
        ("ejection_time_max", &raw.ejection_time_max),
        ("slow_request_ejection", &raw.slow_request_ejection),
    ];
    let numbers = [
        ("failure_threshold", &raw.failure_threshold),
        ("recovery_threshold", &raw.recovery_threshold),
        ("max_connections_per_node", &raw.max_connections_per_node),
        ("min_connections_per_node", &raw.min_connections_per_node),
        ("max_connections_per_user", &raw.max_connections_per_user),
        ("max_connections_per_org", &raw.max_connections_per_org),
        ("read_retries", &raw.read_retries),
        ("max_ejection_percent", &raw.max_ejection_percent),
    ];
    let duration_span = durations
        .iter()
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value.as_ref().map(Spanned::span));
    duration_span.or_else(|| {
        numbers
            .iter()
            .find(|(name, _)| *name == key)
            .and_then(|(_, value)| value.as_ref().map(Spanned::span))
    })
}

/// The name scenario files use for `policy`.
pub(crate) fn balance_name(policy: Balance) -> &'static str {
    BALANCE_NAMES
        .iter()
        .find(|(_, listed)| *listed == policy)
        .map_or("round_robin", |(name, _)| name)
}

/// `router.max_ejection_percent`: a share of a shard's replicas, 0 to 100.
fn percent(value: &Spanned<u32>) -> Result<u32, Issue> {
    let percent = *value.get_ref();
    if percent > 100 {
        return Err(Issue::at(
            value.span(),
            format!("router.max_ejection_percent must be at most 100 (got {percent})"),
        ));
    }
    Ok(percent)
}

/// A balancing policy by name.
fn balance(value: &Spanned<String>) -> Result<Balance, Issue> {
    BALANCE_NAMES
        .iter()
        .find(|(name, _)| name == value.get_ref())
        .map(|&(_, balance)| balance)
        .ok_or_else(|| {
            Issue::at(
                value.span(),
                format!(
                    "router.balance: unknown policy \"{}\" (expected one of: {})",
                    value.get_ref(),
                    super::validate::list(BALANCE_NAMES.iter().map(|(name, _)| *name))
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_has_a_name() {
        for (name, policy) in BALANCE_NAMES {
            let value = Spanned::new(0..1, name.to_owned());
            assert_eq!(balance(&value), Ok(policy));
            assert_eq!(balance_name(policy), name);
        }
        let issue = balance(&Spanned::new(4..9, "fastest".to_owned())).expect_err("unknown");
        assert_eq!(issue.offset, Some(4));
        assert!(
            issue.message.contains("unknown policy \"fastest\""),
            "{issue:?}"
        );
    }

    #[test]
    fn an_empty_section_gives_the_library_defaults() {
        assert_eq!(resolve(&RawRouter::default()), Ok(RouterConfig::default()));
    }

    #[test]
    fn ejection_keys_are_read_and_zero_turns_ejection_off() {
        let text = |value: &str| Some(Spanned::new(0..1, value.to_owned()));
        let raw = RawRouter {
            ejection_time: text("250ms"),
            ejection_time_max: text("4s"),
            slow_request_ejection: text("0s"),
            ..RawRouter::default()
        };
        let config = resolve(&raw).expect("valid");
        assert_eq!(
            (
                config.ejection_time,
                config.ejection_time_max,
                config.slow_request_ejection
            ),
            (
                std::time::Duration::from_millis(250),
                std::time::Duration::from_secs(4),
                std::time::Duration::ZERO
            )
        );
        let off = RawRouter {
            ejection_time: text("0s"),
            ..RawRouter::default()
        };
        assert!(resolve(&off).expect("valid").ejection_time.is_zero());
    }

    #[test]
    fn a_ban_maximum_below_the_first_ban_is_refused() {
        let raw = RawRouter {
            ejection_time: Some(Spanned::new(10..15, "60s".to_owned())),
            ..RawRouter::default()
        };
        let issue = resolve(&raw).expect_err("60 s is above the default 30 s maximum");
        assert_eq!(issue.offset, Some(10), "points at the key the file set");
        assert!(
            issue.message.contains("router.ejection_time_max (30s)"),
            "{issue:?}"
        );
    }

    #[test]
    fn a_lowered_connection_maximum_lowers_the_idle_minimum() {
        let raw = RawRouter {
            max_connections_per_node: Some(Spanned::new(0..1, 4)),
            ..RawRouter::default()
        };
        let config = resolve(&raw).expect("valid");
        assert_eq!(config.max_connections_per_node, 4);
        assert_eq!(config.min_connections_per_node, 4);
    }
}
