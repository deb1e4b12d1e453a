//! Passive ejection: the policy that takes a replica out of reads as soon as a request on it fails,
//! without waiting for the health checks (a pure function over small state, unit-tested).
//!
//! A failed workload attempt (connect, statement, timeout, or a request outstanding longer than
//! `slow_request_ejection`) ejects the replica for a ban that starts at `ejection_time` and doubles with
//! each ejection in a row, up to `ejection_time_max`. While the ban lasts no read goes to the node. When
//! it runs out, the node's health probe (a check, never a client read, so no client waits on a node
//! that is still down) decides: a good probe lets the node back, a failed one bans it again for twice
//! as long. A regular health check that starts during the ban ends it early when it succeeds
//! (`recovery_threshold` in a row). The doubling resets once a read that started after the node came
//! back succeeds.
//!
//! Results that predate the current state are ignored: a failure of an attempt that started before the
//! node came back, or a check that started before it was ejected, says nothing about it now.

use std::time::Duration;

use tokio::time::Instant;

/// The settings of passive ejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EjectionPolicy {
    /// The first ban (`ejection_time`).
    pub ejection_time: Duration,
    /// The longest ban (`ejection_time_max`).
    pub ejection_time_max: Duration,
    /// Good checks in a row that end a ban (`recovery_threshold`).
    pub recovery_threshold: u32,
}

impl EjectionPolicy {
    /// The ban of the `ejections`-th ejection in a row: `ejection_time * 2^(ejections - 1)`, at most
    /// `ejection_time_max`.
    pub fn ban(&self, ejections: u32) -> Duration {
        let doublings = ejections.saturating_sub(1).min(31);
        self.ejection_time
            .checked_mul(1u32 << doublings)
            .unwrap_or(Duration::MAX)
            .min(self.ejection_time_max)
    }
}

/// The ejection state of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ejection {
    /// Ejections in a row without a good read since (drives the doubling).
    pub ejections: u32,
    /// When the current ban runs out; `None` when the node is not ejected.
    pub until: Option<Instant>,
    /// When the node was last ejected or let back; `None` if never.
    pub changed_at: Option<Instant>,
    /// Good checks in a row that started during the current ban.
    pub good_checks: u32,
}

/// What one event changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EjectionChange {
    /// Nothing visible: the node is in or out as before.
    Unchanged,
    /// The node was ejected (or banned again) for this long.
    Ejected(Duration),
    /// The node's ban ended: reads may go to it again.
    Readmitted,
}

impl Ejection {
    /// Whether the node is ejected (its ban may have run out while its probe is pending).
    pub fn is_ejected(&self) -> bool {
        self.until.is_some()
    }

    /// Whether the ban has run out at `now`, so that the node's probe should decide.
    pub fn probe_due(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now >= until)
    }

    /// A workload attempt that started at `started` failed at `now`: ejects the node unless it is
    /// ejected already or the attempt predates its return.
    pub fn on_failure(
        self,
        started: Instant,
        now: Instant,
        policy: &EjectionPolicy,
    ) -> (Ejection, EjectionChange) {
        if self.is_ejected() || self.predates(started) {
            return (self, EjectionChange::Unchanged);
        }
        self.eject(now, policy)
    }

    /// A workload attempt that started at `started` succeeded: the doubling starts over, if the node
    /// is in and the attempt started after its return.
    pub fn on_success(self, started: Instant) -> Ejection {
        if self.is_ejected() || self.predates(started) {
            return self;
        }
        Ejection {
            ejections: 0,
            ..self
        }
    }

    /// A health check that started at `started` ended at `now`, good or not.
    ///
    /// For an ejected node: `recovery_threshold` good checks in a row that started during the ban let
    /// it back; when more are needed, the next is due one `ejection_time` later. A failed check once
    /// the ban has run out bans the node again, for twice as long; one during the ban changes nothing.
    pub fn on_check(
        self,
        ok: bool,
        started: Instant,
        now: Instant,
        policy: &EjectionPolicy,
    ) -> (Ejection, EjectionChange) {
        let Some(until) = self.until else {
            return (self, EjectionChange::Unchanged);
        };
        if self.predates(started) {
            return (self, EjectionChange::Unchanged);
        }
        if !ok {
            let next = Ejection {
                good_checks: 0,
                ..self
            };
            if now < until {
                return (next, EjectionChange::Unchanged);
            }
            return next.eject(now, policy);
        }
        let good_checks = self.good_checks.saturating_add(1);
        if good_checks >= policy.recovery_threshold {
            let back = Ejection {
                ejections: self.ejections,
                until: None,
                changed_at: Some(now),
                good_checks: 0,
            };
            return (back, EjectionChange::Readmitted);
        }
        let waiting = Ejection {
            good_checks,
            until: Some(until.max(now + policy.ejection_time)),
            ..self
        };
        (waiting, EjectionChange::Unchanged)
    }

    fn predates(&self, started: Instant) -> bool {
        self.changed_at.is_some_and(|changed| started < changed)
    }

    fn eject(self, now: Instant, policy: &EjectionPolicy) -> (Ejection, EjectionChange) {
        let ejections = self.ejections.saturating_add(1);
        let ban = policy.ban(ejections);
        let next = Ejection {
            ejections,
            until: Some(now.checked_add(ban).unwrap_or(now)),
            changed_at: Some(now),
            good_checks: 0,
        };
        (next, EjectionChange::Ejected(ban))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: EjectionPolicy = EjectionPolicy {
        ejection_time: Duration::from_secs(1),
        ejection_time_max: Duration::from_secs(30),
        recovery_threshold: 1,
    };

    fn secs(start: Instant, s: f64) -> Instant {
        start + Duration::from_secs_f64(s)
    }

    #[test]
    fn bans_double_up_to_the_maximum() {
        let bans: Vec<u64> = (1..=8).map(|n| POLICY.ban(n).as_secs()).collect();
        assert_eq!(bans, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(POLICY.ban(0), Duration::from_secs(1), "no ejection yet");
        assert_eq!(POLICY.ban(u32::MAX), Duration::from_secs(30), "no overflow");
        let huge = EjectionPolicy {
            ejection_time: Duration::MAX,
            ejection_time_max: Duration::MAX,
            recovery_threshold: 1,
        };
        assert_eq!(huge.ban(3), Duration::MAX);
    }

    #[test]
    fn a_failure_ejects_at_once_and_later_ones_do_not_stack() {
        let t = Instant::now();
        let (state, change) = Ejection::default().on_failure(t, secs(t, 0.1), &POLICY);
        assert_eq!(change, EjectionChange::Ejected(Duration::from_secs(1)));
        assert!(state.is_ejected());
        assert_eq!(state.until, Some(secs(t, 1.1)));
        let (again, change) = state.on_failure(secs(t, 0.2), secs(t, 0.5), &POLICY);
        assert_eq!((again, change), (state, EjectionChange::Unchanged));
        assert!(!state.probe_due(secs(t, 1.0)));
        assert!(state.probe_due(secs(t, 1.1)));
    }

    #[test]
    fn failed_probes_double_the_ban_and_a_good_one_ends_it() {
        let t = Instant::now();
        let (mut state, _) = Ejection::default().on_failure(t, t, &POLICY);
        let mut bans = Vec::new();
        let mut now = t;
        for _ in 0..6 {
            // The probe starts when the ban runs out and fails one second later.
            let probe_start = state.until.unwrap_or(now);
            now = probe_start + Duration::from_secs(1);
            let (next, change) = state.on_check(false, probe_start, now, &POLICY);
            if let EjectionChange::Ejected(ban) = change {
                bans.push(ban.as_secs());
            }
            state = next;
        }
        assert_eq!(bans, [2, 4, 8, 16, 30, 30]);
        let probe_start = state.until.unwrap_or(now);
        let (back, change) = state.on_check(true, probe_start, probe_start, &POLICY);
        assert_eq!(change, EjectionChange::Readmitted);
        assert!(!back.is_ejected());
        assert_eq!(back.ejections, 7, "the doubling waits for a good read");
        let after = back.on_success(probe_start + Duration::from_millis(5));
        assert_eq!(after.ejections, 0);
        let (next, change) =
            after.on_failure(secs(probe_start, 1.0), secs(probe_start, 1.0), &POLICY);
        assert_eq!(change, EjectionChange::Ejected(Duration::from_secs(1)));
        assert_eq!(next.ejections, 1);
    }

    #[test]
    fn a_node_that_fails_again_right_after_its_return_gets_a_longer_ban() {
        let t = Instant::now();
        let (state, _) = Ejection::default().on_failure(t, t, &POLICY);
        let (back, _) = state.on_check(true, secs(t, 1.0), secs(t, 1.0), &POLICY);
        let (again, change) = back.on_failure(secs(t, 1.5), secs(t, 1.6), &POLICY);
        assert_eq!(change, EjectionChange::Ejected(Duration::from_secs(2)));
        assert_eq!(again.until, Some(secs(t, 3.6)));
    }

    #[test]
    fn a_check_during_the_ban_ends_it_early_only_when_good() {
        let t = Instant::now();
        let policy = EjectionPolicy {
            ejection_time: Duration::from_secs(10),
            ..POLICY
        };
        let (state, _) = Ejection::default().on_failure(t, t, &policy);
        let (failed, change) = state.on_check(false, secs(t, 2.0), secs(t, 2.5), &policy);
        assert_eq!(change, EjectionChange::Unchanged);
        assert_eq!(
            failed.until, state.until,
            "a failed check keeps the ban as it is"
        );
        let (back, change) = failed.on_check(true, secs(t, 3.0), secs(t, 3.1), &policy);
        assert_eq!(change, EjectionChange::Readmitted);
        assert_eq!(back.changed_at, Some(secs(t, 3.1)));
    }

    #[test]
    fn recovery_needs_threshold_good_checks_spaced_by_the_base_ban() {
        let t = Instant::now();
        let policy = EjectionPolicy {
            recovery_threshold: 3,
            ..POLICY
        };
        let (mut state, _) = Ejection::default().on_failure(t, t, &policy);
        let mut readmitted_at = None;
        for _ in 0..5 {
            let Some(due) = state.until else { break };
            let (next, change) = state.on_check(true, due, due, &policy);
            if change == EjectionChange::Readmitted {
                readmitted_at = Some(due);
            }
            state = next;
        }
        assert_eq!(
            readmitted_at,
            Some(secs(t, 3.0)),
            "good checks at 1, 2 and 3 s"
        );
        let (mut state, _) = Ejection::default().on_failure(t, t, &policy);
        (state, _) = state.on_check(true, secs(t, 1.0), secs(t, 1.0), &policy);
        (state, _) = state.on_check(false, secs(t, 2.0), secs(t, 2.0), &policy);
        assert_eq!(state.good_checks, 0, "a failure breaks the run");
        assert_eq!(state.ejections, 2);
    }

    #[test]
    fn results_that_predate_the_current_state_are_ignored() {
        let t = Instant::now();
        let (state, _) = Ejection::default().on_failure(t, secs(t, 1.0), &POLICY);
        // A check that started before the ejection and succeeded after it.
        let (same, change) = state.on_check(true, secs(t, 0.9), secs(t, 1.2), &POLICY);
        assert_eq!((same, change), (state, EjectionChange::Unchanged));
        let (back, _) = state.on_check(true, secs(t, 2.0), secs(t, 2.0), &POLICY);
        // An attempt that started while the node was out fails after its return.
        let (same, change) = back.on_failure(secs(t, 0.5), secs(t, 2.5), &POLICY);
        assert_eq!((same, change), (back, EjectionChange::Unchanged));
        // Nor does an old success reset the doubling.
        assert_eq!(back.on_success(secs(t, 1.5)).ejections, 1);
        // Checks of a node that is in change nothing.
        let (same, change) = back.on_check(false, secs(t, 3.0), secs(t, 3.0), &POLICY);
        assert_eq!((same, change), (back, EjectionChange::Unchanged));
    }
}
