//! Reading a [`RouterConfig`] from the environment variables of the design document the router grew from.
//!
//! | variable | field | format |
//! |---|---|---|
//! | `USE_READ_REPLICAS` | `use_read_replicas` | `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`) |
//! | `REPLICA_COUNT` | `replica_count` | integer |
//! | `REPLICA_HEALTH_CHECK_INTERVAL` | `health_interval` | milliseconds (`30000`), or a duration (`30s`) |
//! | `DB_MAX_CONNECTIONS` | `max_connections_per_node` | integer |
//! | `DB_MIN_CONNECTIONS` | `min_connections_per_node` | integer |
//! | `DB_MAX_IDLE_TIME` | `max_idle_time` | duration (`10m`) |
//! | `DB_MAX_LIFETIME` | `max_lifetime` | duration (`1h`) |
//! | `DB_CONNECTION_TIMEOUT` | `connect_timeout` | duration (`30s`) |
//! | `DB_QUERY_TIMEOUT` | `query_timeout` | duration (`60s`) |
//! | `DB_SSLMODE` | `sslmode` | `disable`, `prefer`, `require`, `verify-ca` or `verify-full` |
//! | `DB_SSLROOTCERT` | `sslrootcert` | path of a PEM file, or `system` |
//!
//! Durations are a number (decimals allowed) followed by `ms`, `s`, `m` or `h`. A variable that is
//! unset or empty keeps the default.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::router::config::RouterConfig;
use crate::router::error::RouterError;
use crate::router::tls::{RootCerts, SslMode};

/// The variables [`RouterConfig::from_env`] reads.
pub const ENV_VARIABLES: [&str; 11] = [
    "USE_READ_REPLICAS",
    "REPLICA_COUNT",
    "REPLICA_HEALTH_CHECK_INTERVAL",
    "DB_MAX_CONNECTIONS",
    "DB_MIN_CONNECTIONS",
    "DB_MAX_IDLE_TIME",
    "DB_MAX_LIFETIME",
    "DB_CONNECTION_TIMEOUT",
    "DB_QUERY_TIMEOUT",
    "DB_SSLMODE",
    "DB_SSLROOTCERT",
];

/// Which variable sets which field, to name the variable when a combination of values is invalid.
const FIELD_VARIABLES: [(&str, &str); 9] = [
    ("health_interval", "REPLICA_HEALTH_CHECK_INTERVAL"),
    ("max_connections_per_node", "DB_MAX_CONNECTIONS"),
    ("min_connections_per_node", "DB_MIN_CONNECTIONS"),
    ("max_idle_time", "DB_MAX_IDLE_TIME"),
    ("max_lifetime", "DB_MAX_LIFETIME"),
    ("connect_timeout", "DB_CONNECTION_TIMEOUT"),
    ("query_timeout", "DB_QUERY_TIMEOUT"),
    ("sslmode", "DB_SSLMODE"),
    ("sslrootcert", "DB_SSLROOTCERT"),
];

impl RouterConfig {
    /// The defaults, overridden by the process environment (see the table in `router::env`), validated.
    pub fn from_env() -> Result<RouterConfig, RouterError> {
        let mut vars = BTreeMap::new();
        for name in ENV_VARIABLES {
            match std::env::var(name) {
                Ok(value) => {
                    vars.insert(name.to_string(), value);
                }
                Err(std::env::VarError::NotPresent) => {}
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(env_error(name, "is not valid UTF-8"));
                }
            }
        }
        RouterConfig::from_env_map(&vars)
    }

    /// The defaults, overridden by `vars` (variable name -> value), validated. Other names are ignored.
    pub fn from_env_map(vars: &BTreeMap<String, String>) -> Result<RouterConfig, RouterError> {
        let mut config = RouterConfig::default();
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
        };
        if let Some(value) = get("USE_READ_REPLICAS") {
            config.use_read_replicas = parse_bool(value).ok_or_else(|| {
                env_error(
                    "USE_READ_REPLICAS",
                    &format!("{value:?} is not true or false"),
                )
            })?;
        }
        if let Some(value) = get("REPLICA_COUNT") {
            config.replica_count = Some(parse_count("REPLICA_COUNT", value)?);
        }
        if let Some(value) = get("REPLICA_HEALTH_CHECK_INTERVAL") {
            config.health_interval = match value.parse::<u64>() {
                Ok(millis) => Duration::from_millis(millis),
                Err(_) => parse_duration(value).map_err(|why| {
                    env_error(
                        "REPLICA_HEALTH_CHECK_INTERVAL",
                        &format!("{value:?}: {why}"),
                    )
                })?,
            };
        }
        if let Some(value) = get("DB_MAX_CONNECTIONS") {
            config.max_connections_per_node = parse_count("DB_MAX_CONNECTIONS", value)?;
        }
        if let Some(value) = get("DB_MIN_CONNECTIONS") {
            config.min_connections_per_node = parse_count("DB_MIN_CONNECTIONS", value)?;
        }
        let durations: [(&str, &mut Duration); 4] = [
            ("DB_MAX_IDLE_TIME", &mut config.max_idle_time),
            ("DB_MAX_LIFETIME", &mut config.max_lifetime),
            ("DB_CONNECTION_TIMEOUT", &mut config.connect_timeout),
            ("DB_QUERY_TIMEOUT", &mut config.query_timeout),
        ];
        for (name, field) in durations {
            if let Some(value) = get(name) {
                *field = parse_duration(value)
                    .map_err(|why| env_error(name, &format!("{value:?}: {why}")))?;
            }
        }
        if let Some(value) = get("DB_SSLMODE") {
            config.sslmode = value
                .parse::<SslMode>()
                .map_err(|why| env_error("DB_SSLMODE", &why))?;
        }
        if let Some(value) = get("DB_SSLROOTCERT") {
            config.sslrootcert = Some(RootCerts::parse(value));
        }
        config.validate().map_err(|error| match error {
            RouterError::InvalidConfig(message) => {
                let culprits: Vec<&str> = FIELD_VARIABLES
                    .iter()
                    .filter(|(field, name)| message.contains(field) && get(name).is_some())
                    .map(|(_, name)| *name)
                    .collect();
                RouterError::InvalidConfig(format!("{message} (set by {})", culprits.join(", ")))
            }
            other => other,
        })?;
        Ok(config)
    }
}

fn env_error(name: &str, why: &str) -> RouterError {
    RouterError::InvalidConfig(format!("environment variable {name} {why}"))
}

fn parse_count(name: &str, value: &str) -> Result<u32, RouterError> {
    value.parse::<u32>().map_err(|_| {
        env_error(
            name,
            &format!("{value:?} is not a whole number from 0 to {}", u32::MAX),
        )
    })
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses `"250ms"`, `"1.5s"`, `"10m"`, `"1h"`: a non-negative decimal number and a unit, exactly (no
/// floating-point rounding).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| "needs a unit: ms, s, m or h (e.g. \"30s\")".to_string())?;
    let (number, unit) = text.split_at(split);
    let unit_nanos: u128 = match unit.trim() {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits_ok(whole) || !digits_ok(fraction) {
        return Err("is not a number followed by a unit".to_string());
    }
    if fraction.len() > 9 {
        return Err("has more than 9 decimals".to_string());
    }
    let too_long = || "is too long".to_string();
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_long())?
    };
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| too_long())?
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_value * unit_nanos / scale))
        .ok_or_else(too_long)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn read(pairs: &[(&str, &str)]) -> Result<RouterConfig, String> {
        RouterConfig::from_env_map(&vars(pairs)).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_parse_exactly() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0.001s"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_are_refused() {
        for text in [
            "",
            "30",
            "s",
            "1.2.3s",
            "-1s",
            "5 parsecs",
            "1d",
            "1.0000000001s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn empty_environment_gives_defaults() {
        assert_eq!(read(&[]), Ok(RouterConfig::default()));
    }

    #[test]
    fn design_document_values_are_read() {
        let config = read(&[
            ("USE_READ_REPLICAS", "false"),
            ("REPLICA_COUNT", "3"),
            ("REPLICA_HEALTH_CHECK_INTERVAL", "30000"),
            ("DB_MAX_CONNECTIONS", "50"),
            ("DB_MIN_CONNECTIONS", "5"),
            ("DB_MAX_IDLE_TIME", "10m"),
            ("DB_MAX_LIFETIME", "1h"),
            ("DB_CONNECTION_TIMEOUT", "30s"),
            ("DB_QUERY_TIMEOUT", "60s"),
            ("UNRELATED", "ignored"),
        ]);
        let Ok(config) = config else {
            panic!("design document values rejected: {config:?}");
        };
        assert!(!config.use_read_replicas);
        assert_eq!(config.replica_count, Some(3));
        assert_eq!(config.health_interval, Duration::from_secs(30));
        assert_eq!(config.max_connections_per_node, 50);
        assert_eq!(config.min_connections_per_node, 5);
        assert_eq!(config.max_idle_time, Duration::from_secs(600));
        assert_eq!(config.max_lifetime, Duration::from_secs(3600));
        assert_eq!(config.connect_timeout, Duration::from_secs(30));
        assert_eq!(config.query_timeout, Duration::from_secs(60));
    }

    #[test]
    fn health_interval_accepts_a_unit_too() {
        let config = read(&[("REPLICA_HEALTH_CHECK_INTERVAL", "2.5s")]).map(|c| c.health_interval);
        assert_eq!(config, Ok(Duration::from_millis(2500)));
    }

    #[test]
    fn empty_values_keep_defaults() {
        assert_eq!(
            read(&[("DB_MAX_CONNECTIONS", "  ")]),
            Ok(RouterConfig::default())
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("USE_READ_REPLICAS", "maybe"),
            ("REPLICA_COUNT", "-1"),
            ("REPLICA_HEALTH_CHECK_INTERVAL", "soon"),
            ("DB_MAX_CONNECTIONS", "many"),
            ("DB_MIN_CONNECTIONS", "1.5"),
            ("DB_MAX_IDLE_TIME", "10"),
            ("DB_MAX_LIFETIME", "1 fortnight"),
            ("DB_CONNECTION_TIMEOUT", "30x"),
            ("DB_QUERY_TIMEOUT", "abc"),
            ("DB_SSLMODE", "verify"),
            ("DB_SSLMODE", "allow"),
        ];
        for (name, value) in cases {
            match read(&[(name, value)]) {
                Ok(config) => panic!("{name}={value:?} accepted: {config:?}"),
                Err(message) => assert!(message.contains(name), "{name}: {message}"),
            }
        }
    }

    #[test]
    fn tls_settings_are_read() {
        let config = read(&[
            ("DB_SSLMODE", "verify-full"),
            ("DB_SSLROOTCERT", "/etc/replisim/root.pem"),
        ]);
        let Ok(config) = config else {
            panic!("TLS settings rejected: {config:?}");
        };
        assert_eq!(config.sslmode, SslMode::VerifyFull);
        assert_eq!(
            config.sslrootcert,
            Some(RootCerts::File("/etc/replisim/root.pem".into()))
        );
        let system = read(&[("DB_SSLMODE", "VERIFY-FULL"), ("DB_SSLROOTCERT", "system")]);
        assert!(
            matches!(&system, Ok(c) if c.sslrootcert == Some(RootCerts::System)),
            "{system:?}"
        );
        for mode in ["disable", "prefer", "require", "verify-ca", " verify-full "] {
            assert!(read(&[("DB_SSLMODE", mode)]).is_ok(), "{mode:?} refused");
        }
    }

    #[test]
    fn tls_defaults_to_plain() {
        let config = read(&[("DB_SSLMODE", "")]).map(|c| (c.sslmode, c.sslrootcert));
        assert_eq!(config, Ok((SslMode::Disable, None)));
    }

    #[test]
    fn bad_tls_values_name_the_variable() {
        let message = read(&[("DB_SSLMODE", "on")]);
        assert!(
            matches!(&message, Err(m) if m.contains("DB_SSLMODE") && m.contains("verify-full")),
            "{message:?}"
        );
        // The system store with a mode that does not check the name: both variables are named.
        let message = read(&[("DB_SSLMODE", "require"), ("DB_SSLROOTCERT", "system")]);
        assert!(
            matches!(&message, Err(m) if m.contains("DB_SSLMODE, DB_SSLROOTCERT")),
            "{message:?}"
        );
        let message = read(&[("DB_SSLROOTCERT", "system")]);
        assert!(
            matches!(&message, Err(m) if m.contains("(set by DB_SSLROOTCERT)")),
            "{message:?}"
        );
    }

    #[test]
    fn values_are_validated_after_reading() {
        let message = read(&[("DB_MAX_CONNECTIONS", "5"), ("DB_MIN_CONNECTIONS", "10")]);
        assert!(
            matches!(&message, Err(m) if m.contains("DB_MAX_CONNECTIONS, DB_MIN_CONNECTIONS")),
            "{message:?}"
        );
        let message = read(&[("DB_QUERY_TIMEOUT", "0s")]);
        assert!(
            matches!(&message, Err(m) if m.contains("(set by DB_QUERY_TIMEOUT)")),
            "{message:?}"
        );
    }
}
