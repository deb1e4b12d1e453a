//! Health checking: the state machine that turns check results into healthy/unhealthy (a pure
//! function, unit-tested), and the probe that runs one check against a node.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::router::conn::{Conn, Login};
use crate::router::connector::{ConnectPurpose, Connector, NodeAddress};
use crate::router::error::RouterError;
use crate::router::route::ServedRole;

/// The statement a probe runs: it answers on every PostgreSQL server and tells a primary from a
/// replica.
pub const PROBE_SQL: &str = "SELECT pg_is_in_recovery()";

/// `application_name` of probe connections, which servers can tell from workload ones by it.
pub const PROBE_APPLICATION_NAME: &str = "replisim-health";

/// How many consecutive results flip a node's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthThresholds {
    /// Consecutive failed checks that make a healthy node unhealthy.
    pub failure_threshold: u32,
    /// Consecutive good checks that make an unhealthy node healthy.
    pub recovery_threshold: u32,
}

/// The health of one node, as far as checks tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthState {
    /// Whether the router sends work to the node.
    pub healthy: bool,
    /// Failed checks in a row (0 after a good one).
    pub consecutive_failures: u32,
    /// Good checks in a row (0 after a failed one).
    pub consecutive_successes: u32,
    /// When `healthy` last changed; `None` if never.
    pub changed_at: Option<Instant>,
}

/// What one check changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transition {
    /// The node's health is as before.
    Unchanged,
    /// The node just crossed `failure_threshold`.
    BecameUnhealthy,
    /// The node just crossed `recovery_threshold`.
    BecameHealthy,
}

impl Default for HealthState {
    /// Nodes start healthy: the router serves from the first moment and lets checks prove otherwise.
    fn default() -> Self {
        HealthState {
            healthy: true,
            consecutive_failures: 0,
            consecutive_successes: 0,
            changed_at: None,
        }
    }
}

impl HealthState {
    /// The state after one check that succeeded (`ok`) or failed at `now`.
    pub fn observe(
        self,
        ok: bool,
        now: Instant,
        thresholds: HealthThresholds,
    ) -> (HealthState, Transition) {
        let mut next = self;
        if ok {
            next.consecutive_successes = self.consecutive_successes.saturating_add(1);
            next.consecutive_failures = 0;
        } else {
            next.consecutive_failures = self.consecutive_failures.saturating_add(1);
            next.consecutive_successes = 0;
        }
        let transition =
            if self.healthy && next.consecutive_failures >= thresholds.failure_threshold {
                next.healthy = false;
                Transition::BecameUnhealthy
            } else if !self.healthy && next.consecutive_successes >= thresholds.recovery_threshold {
                next.healthy = true;
                Transition::BecameHealthy
            } else {
                Transition::Unchanged
            };
        if transition != Transition::Unchanged {
            next.changed_at = Some(now);
        }
        (next, transition)
    }
}

/// The checker of one node: keeps a probe connection open between checks and reopens it after a
/// failure.
pub(crate) struct Probe {
    node: NodeAddress,
    connector: Arc<dyn Connector>,
    login: Login,
    timeout: Duration,
    conn: Option<Conn>,
}

impl Probe {
    /// A probe of `node` whose every check (connect included) lasts at most `timeout`.
    pub(crate) fn new(
        node: NodeAddress,
        connector: Arc<dyn Connector>,
        login: Login,
        timeout: Duration,
    ) -> Probe {
        Probe {
            node,
            connector,
            login,
            timeout,
            conn: None,
        }
    }

    /// Runs one check: the role the node reports, or why the check failed.
    pub(crate) async fn check(&mut self) -> Result<ServedRole, RouterError> {
        let result = match tokio::time::timeout(self.timeout, self.check_untimed()).await {
            Ok(result) => result,
            Err(_) => Err(RouterError::HealthCheckTimeout {
                node: self.node.name.clone(),
                timeout: self.timeout,
            }),
        };
        if result.is_err() {
            // A failed probe connection may be wedged; the next check starts from a fresh one.
            self.conn = None;
        }
        result
    }

    /// The probe connection, while it is open (lag probes share it).
    pub(crate) fn connection(&mut self) -> Option<&mut Conn> {
        self.conn.as_mut().filter(|conn| !conn.is_closed())
    }

    async fn check_untimed(&mut self) -> Result<ServedRole, RouterError> {
        let conn = match &mut self.conn {
            Some(conn) if !conn.is_closed() => conn,
            slot => slot.insert(
                // The outer timeout bounds the connect; this one only has to be no shorter.
                Conn::open(
                    self.connector.as_ref(),
                    &self.node,
                    ConnectPurpose::HealthCheck,
                    &self.login,
                    self.timeout,
                    None,
                    None,
                )
                .await?,
            ),
        };
        let rows = conn
            .query(PROBE_SQL, &[])
            .await
            .map_err(|source| RouterError::Query {
                node: self.node.name.clone(),
                source,
            })?;
        let in_recovery = rows
            .first()
            .map(|row| row.try_get::<_, bool>(0))
            .transpose()
            .map_err(|source| RouterError::Query {
                node: self.node.name.clone(),
                source,
            })?;
        match in_recovery {
            Some(true) => Ok(ServedRole::Replica),
            Some(false) => Ok(ServedRole::Primary),
            None => Err(RouterError::Protocol {
                node: self.node.name.clone(),
                detail: format!("no row for {PROBE_SQL}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: HealthThresholds = HealthThresholds {
        failure_threshold: 3,
        recovery_threshold: 1,
    };

    /// Feeds `results` to a fresh state one second apart; returns the final state and every transition.
    fn run(
        results: &[bool],
        thresholds: HealthThresholds,
    ) -> (HealthState, Vec<(usize, Transition)>) {
        let start = Instant::now();
        let mut state = HealthState::default();
        let mut transitions = Vec::new();
        for (i, ok) in results.iter().enumerate() {
            let (next, transition) =
                state.observe(*ok, start + Duration::from_secs(i as u64), thresholds);
            if transition != Transition::Unchanged {
                transitions.push((i, transition));
            }
            state = next;
        }
        (state, transitions)
    }

    #[test]
    fn nodes_start_healthy() {
        assert!(HealthState::default().healthy);
    }

    #[test]
    fn threshold_failures_in_a_row_make_a_node_unhealthy() {
        let (state, transitions) = run(&[false, false, false], DEFAULTS);
        assert!(!state.healthy);
        assert_eq!(transitions, vec![(2, Transition::BecameUnhealthy)]);
        assert_eq!(state.consecutive_failures, 3);
    }

    #[test]
    fn a_good_check_resets_the_failure_count() {
        let (state, transitions) = run(&[false, false, true, false, false], DEFAULTS);
        assert!(state.healthy);
        assert!(transitions.is_empty());
        assert_eq!(state.consecutive_failures, 2);
    }

    #[test]
    fn recovery_needs_threshold_successes_in_a_row() {
        let thresholds = HealthThresholds {
            failure_threshold: 1,
            recovery_threshold: 3,
        };
        let (state, transitions) = run(&[false, true, true, false, true, true, true], thresholds);
        assert!(state.healthy);
        assert_eq!(
            transitions,
            vec![
                (0, Transition::BecameUnhealthy),
                (6, Transition::BecameHealthy)
            ]
        );
    }

    #[test]
    fn change_time_is_the_check_that_flipped_it() {
        let start = Instant::now();
        let later = start + Duration::from_secs(30);
        let thresholds = HealthThresholds {
            failure_threshold: 1,
            recovery_threshold: 1,
        };
        let (down, _) = HealthState::default().observe(false, start, thresholds);
        let (still_down, _) = down.observe(false, later, thresholds);
        assert_eq!(
            still_down.changed_at,
            Some(start),
            "an unchanged state keeps its change time"
        );
        let (up, transition) = still_down.observe(true, later, thresholds);
        assert_eq!(
            (up.healthy, transition, up.changed_at),
            (true, Transition::BecameHealthy, Some(later))
        );
    }

    #[test]
    fn counters_saturate() {
        let state = HealthState {
            healthy: false,
            consecutive_failures: u32::MAX,
            consecutive_successes: 0,
            changed_at: None,
        };
        let (next, transition) = state.observe(false, Instant::now(), DEFAULTS);
        assert_eq!(
            (next.consecutive_failures, transition),
            (u32::MAX, Transition::Unchanged)
        );
    }
}
