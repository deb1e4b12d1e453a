//! Router configuration: every knob with its documented default, validated before use.
//!
//! Build one with [`RouterConfig::builder`] (validated by `build()`), read it from the environment with
//! [`RouterConfig::from_env`] (see `router::env`), or fill the public fields and call
//! [`RouterConfig::validate`].

use std::time::Duration;

use crate::router::error::RouterError;
use crate::router::tls::{self, RootCerts, SslMode};

/// How reads are spread over a shard's usable replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Balance {
    /// Each read goes to the next usable replica in turn (the default).
    #[default]
    RoundRobin,
    /// Uniformly random usable replica.
    Random,
    /// The usable replica with the fewest requests in flight.
    LeastOutstanding,
    /// Random, proportional to each replica's weight.
    Weighted,
    /// Power of two choices over an EWMA of latency and in-flight count.
    P2cEwma,
}

/// Everything the router can be told. Defaults follow the design document the router grew from.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterConfig {
    /// Read balancing policy. Default: round robin.
    pub balance: Balance,
    /// Seed of the random draws of the `random`, `least_outstanding`, `weighted` and `p2c_ewma`
    /// policies (each shard draws its own stream from it): the same seed and order of requests give
    /// the same picks. Default `None`: drawn from the operating system's randomness when the router
    /// starts, so that the application's processes do not all make the same picks in step. The
    /// simulation always sets it, from the run's seed.
    pub balance_seed: Option<u64>,
    /// Time between two health checks of a node (`REPLICA_HEALTH_CHECK_INTERVAL`). Default 30 s.
    pub health_interval: Duration,
    /// Limit on one health check, connect included. Default 1 s.
    pub health_timeout: Duration,
    /// Consecutive failed checks before a node is unhealthy. Default 3.
    pub failure_threshold: u32,
    /// Consecutive good checks before an unhealthy node is healthy again. Default 1.
    pub recovery_threshold: u32,
    /// false sends every read to the primary (`USE_READ_REPLICAS`). Default true.
    pub use_read_replicas: bool,
    /// Replicas lagging more than this are kept out of reads. Default: none (no lag-aware routing).
    pub max_replica_lag: Option<Duration>,
    /// Read-your-writes: lag probes also track each replica's replay position, which lets
    /// [`crate::router::Session`] reads skip replicas that have not applied a session's writes without
    /// asking them first; simulated clients run as sessions. Default false.
    pub read_your_writes: bool,
    /// Most connections open to one node (`DB_MAX_CONNECTIONS`). Default 100.
    pub max_connections_per_node: u32,
    /// Connections kept open to each node even when idle (`DB_MIN_CONNECTIONS`). Default 10.
    pub min_connections_per_node: u32,
    /// Most connections one user may hold at once; 0 = no cap. Default 0.
    pub max_connections_per_user: u32,
    /// Most connections one org may hold at once; 0 = no cap. Default 0.
    pub max_connections_per_org: u32,
    /// An idle connection is closed after this long (`DB_MAX_IDLE_TIME`). Default 10 min.
    pub max_idle_time: Duration,
    /// A connection is closed after this long in any case (`DB_MAX_LIFETIME`). Default 1 h.
    pub max_lifetime: Duration,
    /// Limit on opening one connection (`DB_CONNECTION_TIMEOUT`). Default 5 s.
    pub connect_timeout: Duration,
    /// Limit on one statement (`DB_QUERY_TIMEOUT`). Default 30 s.
    pub query_timeout: Duration,
    /// Retries of a failed read on another node; writes are never retried. Default 1.
    pub read_retries: u32,
    /// First ban of a replica ejected because a request on it failed; each ejection in a row doubles
    /// it. `0` turns passive ejection off (then only health checks take nodes out). Default 1 s.
    pub ejection_time: Duration,
    /// Longest ban of an ejected replica. Default 30 s.
    pub ejection_time_max: Duration,
    /// A replica whose request has waited this long (after getting a pool slot) is ejected if it is an
    /// outlier among the shard's replicas (it has answered nothing younger while another replica has;
    /// see `router::outlier`), and reads still waiting on it are retried elsewhere: this is what
    /// detects a blackholed node well before `query_timeout`, while a query slow on every node runs
    /// once. `0` turns it off. Default 1 s.
    pub slow_request_ejection: Duration,
    /// Most replicas of a shard out at once for a passive judgment (slow or timed-out requests), as a
    /// percentage of its replicas (rounded down; Envoy's `max_ejection_percent`). A replica that
    /// refuses or closes connections is out regardless, and health checks still take any dead node
    /// out. Default: unset, all but one replica.
    pub max_ejection_percent: Option<u32>,
    /// Judge a request slower than `slow_request_ejection` against the shard's other replicas, and
    /// eject only an outlier (see `router::outlier`). false ejects any replica whose request outlasts
    /// `slow_request_ejection`, whatever its peers do. Default true.
    pub outlier_ejection: bool,
    /// Send PostgreSQL a CancelRequest for every statement the router abandons (its
    /// `query_timeout` ran out, it was moved to another node, or its caller went away), and reuse
    /// the connection only once the statement has answered. false just closes the connection and
    /// lets the server run the statement to its end (e.g. behind a proxy that cannot route cancels).
    /// Default true.
    pub cancel_abandoned: bool,
    /// Replicas the deployment expects per shard (`REPLICA_COUNT`); informational. Default: unset.
    pub replica_count: Option<u32>,
    /// Follow a promotion: a replica whose health check finds it out of recovery becomes the shard's
    /// primary (see `router::promotion`). false keeps the configured primaries whatever the checks
    /// say. Default true.
    pub follow_promotion: bool,
    /// TLS to the nodes, with libpq's meaning (`DB_SSLMODE`; see `router::tls`): workload
    /// connections, health probes and CancelRequests alike. Default disable (plain).
    pub sslmode: SslMode,
    /// Root certificates a node's certificate must chain up to: a PEM file, or the system store
    /// (`DB_SSLROOTCERT`; `system`, verify-full only). Default: unset, which for `prefer` and
    /// `require` means no check and for the verify modes libpq's `~/.postgresql/root.crt`.
    pub sslrootcert: Option<RootCerts>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            balance: Balance::RoundRobin,
            balance_seed: None,
            health_interval: Duration::from_secs(30),
            health_timeout: Duration::from_secs(1),
            failure_threshold: 3,
            recovery_threshold: 1,
            use_read_replicas: true,
            max_replica_lag: None,
            read_your_writes: false,
            max_connections_per_node: 100,
            min_connections_per_node: 10,
            max_connections_per_user: 0,
            max_connections_per_org: 0,
            max_idle_time: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(30),
            read_retries: 1,
            ejection_time: Duration::from_secs(1),
            ejection_time_max: Duration::from_secs(30),
            slow_request_ejection: Duration::from_secs(1),
            max_ejection_percent: None,
            outlier_ejection: true,
            cancel_abandoned: true,
            replica_count: None,
            follow_promotion: true,
            sslmode: SslMode::Disable,
            sslrootcert: None,
        }
    }
}

/// Most read retries accepted: each retry needs another node of the shard, so more is never useful.
pub const READ_RETRIES_MAX: u32 = 64;

impl RouterConfig {
    /// A builder starting from the defaults; `build` validates.
    ///
    /// ```
    /// use std::time::Duration;
    /// use replisim::router::RouterConfig;
    ///
    /// let config = RouterConfig::builder()
    ///     .health_interval(Duration::from_secs(5))
    ///     .failure_threshold(2)
    ///     .build()
    ///     .expect("a valid configuration");
    /// assert_eq!(config.failure_threshold, 2);
    /// assert_eq!(config.query_timeout, RouterConfig::default().query_timeout);
    ///
    /// // More warm connections than the pool may hold is refused.
    /// let refused = RouterConfig::builder()
    ///     .max_connections_per_node(5)
    ///     .min_connections_per_node(10)
    ///     .build();
    /// assert!(refused.is_err());
    /// ```
    pub fn builder() -> RouterConfigBuilder {
        RouterConfigBuilder {
            config: RouterConfig::default(),
        }
    }

    /// Checks every value: thresholds at least 1, durations above zero (except the ejection ones, where
    /// zero means off), `max >= min` connections and ban lengths.
    pub fn validate(&self) -> Result<(), RouterError> {
        let durations = [
            ("health_interval", self.health_interval),
            ("health_timeout", self.health_timeout),
            ("max_idle_time", self.max_idle_time),
            ("max_lifetime", self.max_lifetime),
            ("connect_timeout", self.connect_timeout),
            ("query_timeout", self.query_timeout),
        ];
        for (key, value) in durations {
            if value.is_zero() {
                return Err(invalid(format!("{key} must be above zero")));
            }
        }
        if self.max_replica_lag.is_some_and(|lag| lag.is_zero()) {
            return Err(invalid(
                "max_replica_lag must be above zero when set".to_string(),
            ));
        }
        let thresholds = [
            ("failure_threshold", self.failure_threshold),
            ("recovery_threshold", self.recovery_threshold),
            ("max_connections_per_node", self.max_connections_per_node),
        ];
        for (key, value) in thresholds {
            if value == 0 {
                return Err(invalid(format!("{key} must be at least 1")));
            }
        }
        if self.min_connections_per_node > self.max_connections_per_node {
            return Err(invalid(format!(
                "min_connections_per_node ({}) must not exceed max_connections_per_node ({})",
                self.min_connections_per_node, self.max_connections_per_node
            )));
        }
        if self.ejection_time_max < self.ejection_time {
            return Err(invalid(format!(
                "ejection_time_max ({:?}) must not be below ejection_time ({:?})",
                self.ejection_time_max, self.ejection_time
            )));
        }
        if let Some(percent) = self.max_ejection_percent
            && percent > 100
        {
            return Err(invalid(format!(
                "max_ejection_percent ({percent}) must be at most 100"
            )));
        }
        tls::validate(self.sslmode, self.sslrootcert.as_ref()).map_err(invalid)?;
        if self.read_retries > READ_RETRIES_MAX {
            return Err(invalid(format!(
                "read_retries ({}) must be at most {READ_RETRIES_MAX}",
                self.read_retries
            )));
        }
        Ok(())
    }
}

fn invalid(message: String) -> RouterError {
    RouterError::InvalidConfig(message)
}

/// Builds a [`RouterConfig`]; every setter starts from the default listed on the field.
#[derive(Clone, Debug)]
pub struct RouterConfigBuilder {
    config: RouterConfig,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        impl RouterConfigBuilder {
            $(
                $(#[$doc])*
                pub fn $name(&mut self, value: $ty) -> &mut Self {
                    self.config.$name = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Read balancing policy (default round robin).
    balance: Balance,
    /// Seed of the balancing policies' random draws (default: from the operating system).
    balance_seed: Option<u64>,
    /// Time between two health checks of a node (default 30 s).
    health_interval: Duration,
    /// Limit on one health check, connect included (default 1 s).
    health_timeout: Duration,
    /// Consecutive failed checks before a node is unhealthy (default 3).
    failure_threshold: u32,
    /// Consecutive good checks before an unhealthy node is healthy again (default 1).
    recovery_threshold: u32,
    /// false sends every read to the primary (default true).
    use_read_replicas: bool,
    /// Lag above which a replica is kept out of reads (default none).
    max_replica_lag: Option<Duration>,
    /// Reads of a connection see at least its own writes (default false).
    read_your_writes: bool,
    /// Most connections open to one node (default 100).
    max_connections_per_node: u32,
    /// Connections kept open to each node even when idle (default 10).
    min_connections_per_node: u32,
    /// Most connections one user may hold at once, 0 = no cap (default 0).
    max_connections_per_user: u32,
    /// Most connections one org may hold at once, 0 = no cap (default 0).
    max_connections_per_org: u32,
    /// An idle connection is closed after this long (default 10 min).
    max_idle_time: Duration,
    /// A connection is closed after this long in any case (default 1 h).
    max_lifetime: Duration,
    /// Limit on opening one connection and on each wait for one (default 5 s).
    connect_timeout: Duration,
    /// Limit on one statement (default 30 s).
    query_timeout: Duration,
    /// Retries of a failed read on another node (default 1).
    read_retries: u32,
    /// First ban of an ejected replica, 0 = no passive ejection (default 1 s).
    ejection_time: Duration,
    /// Longest ban of an ejected replica (default 30 s).
    ejection_time_max: Duration,
    /// Outstanding time after which an outlier replica is ejected, 0 = never (default 1 s).
    slow_request_ejection: Duration,
    /// Most replicas of a shard out for passive reasons, in percent (default all but one).
    max_ejection_percent: Option<u32>,
    /// Eject a slow replica only if it is an outlier among its peers (default true).
    outlier_ejection: bool,
    /// Cancel abandoned statements on the server (default true).
    cancel_abandoned: bool,
    /// Replicas the deployment expects per shard (default unset).
    replica_count: Option<u32>,
    /// Follow a replica's promotion to primary (default true).
    follow_promotion: bool,
    /// TLS to the nodes, libpq's meaning (default disable).
    sslmode: SslMode,
    /// Root certificates for TLS: a PEM file or the system store (default unset).
    sslrootcert: Option<RootCerts>,
}

impl RouterConfigBuilder {
    /// The configuration, if every value is valid.
    pub fn build(&self) -> Result<RouterConfig, RouterError> {
        self.config.validate()?;
        Ok(self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_defaults_match_default() {
        let built = RouterConfig::builder().build().map_err(|e| e.to_string());
        assert_eq!(built, Ok(RouterConfig::default()));
    }

    #[test]
    fn builder_sets_values() {
        let config = RouterConfig::builder()
            .health_interval(Duration::from_millis(250))
            .failure_threshold(2)
            .max_connections_per_user(5)
            .read_retries(3)
            .build()
            .map_err(|e| e.to_string());
        let Ok(config) = config else {
            panic!("valid values rejected: {config:?}");
        };
        assert_eq!(config.health_interval, Duration::from_millis(250));
        assert_eq!(config.failure_threshold, 2);
        assert_eq!(config.max_connections_per_user, 5);
        assert_eq!(config.read_retries, 3);
        assert_eq!(
            config.recovery_threshold, 1,
            "untouched keys keep their default"
        );
    }

    fn build_error(edit: impl FnOnce(&mut RouterConfigBuilder)) -> String {
        let mut builder = RouterConfig::builder();
        edit(&mut builder);
        match builder.build() {
            Ok(config) => panic!("accepted an invalid configuration: {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn builder_rejects_zero_thresholds() {
        assert!(
            build_error(|b| {
                b.failure_threshold(0);
            })
            .contains("failure_threshold")
        );
        assert!(
            build_error(|b| {
                b.recovery_threshold(0);
            })
            .contains("recovery_threshold")
        );
        assert!(
            build_error(|b| {
                b.max_connections_per_node(0);
            })
            .contains("max_connections_per_node")
        );
    }

    #[test]
    fn builder_rejects_zero_durations() {
        assert!(
            build_error(|b| {
                b.connect_timeout(Duration::ZERO);
            })
            .contains("connect_timeout")
        );
        assert!(
            build_error(|b| {
                b.query_timeout(Duration::ZERO);
            })
            .contains("query_timeout")
        );
        assert!(
            build_error(|b| {
                b.health_interval(Duration::ZERO);
            })
            .contains("health_interval")
        );
        assert!(
            build_error(|b| {
                b.max_replica_lag(Some(Duration::ZERO));
            })
            .contains("max_replica_lag")
        );
    }

    #[test]
    fn builder_rejects_min_above_max() {
        let message = build_error(|b| {
            b.max_connections_per_node(4).min_connections_per_node(5);
        });
        assert!(
            message.contains("min_connections_per_node (5)"),
            "{message}"
        );
        let equal = RouterConfig::builder()
            .max_connections_per_node(5)
            .min_connections_per_node(5)
            .build();
        assert!(equal.is_ok(), "min == max is valid");
    }

    #[test]
    fn ejection_bans_must_not_shrink() {
        let message = build_error(|b| {
            b.ejection_time(Duration::from_secs(5))
                .ejection_time_max(Duration::from_secs(2));
        });
        assert!(message.contains("ejection_time_max (2s)"), "{message}");
        let off = RouterConfig::builder()
            .ejection_time(Duration::ZERO)
            .ejection_time_max(Duration::ZERO)
            .slow_request_ejection(Duration::ZERO)
            .build();
        assert!(off.is_ok(), "zero turns ejection off: {off:?}");
    }

    #[test]
    fn tls_defaults_to_plain_and_is_checked() {
        let config = RouterConfig::default();
        assert_eq!(
            (config.sslmode, config.sslrootcert),
            (SslMode::Disable, None)
        );
        let built = RouterConfig::builder()
            .sslmode(SslMode::VerifyFull)
            .sslrootcert(Some(RootCerts::System))
            .build()
            .map(|c| c.sslmode);
        assert!(matches!(built, Ok(SslMode::VerifyFull)), "{built:?}");
        let message = build_error(|b| {
            b.sslmode(SslMode::VerifyCa)
                .sslrootcert(Some(RootCerts::System));
        });
        assert!(message.contains("use verify-full"), "{message}");
    }

    #[test]
    fn builder_rejects_too_many_retries() {
        assert!(
            build_error(|b| {
                b.read_retries(READ_RETRIES_MAX + 1);
            })
            .contains("read_retries")
        );
    }
}
