//! Faults real mode cannot apply, refused before anything starts: `slow` everywhere (a real server's
//! service time is its own), and every fault that needs control of the server process when the
//! servers are external (`--url`).

use crate::scenario::{FaultKind, Scenario};

/// Whether a fault kind acts on the server itself (needs the cluster replisim runs).
pub fn needs_server_control(kind: &FaultKind) -> bool {
    matches!(
        kind,
        FaultKind::Crash
            | FaultKind::Restart
            | FaultKind::Lag { .. }
            | FaultKind::PauseReplay
            | FaultKind::ResumeReplay
            | FaultKind::Promote
    )
}

/// The first fault of `scenario` real mode refuses, as a one-line message; `None` if it can run.
/// `external`: the servers are given with `--url`.
pub fn refusal(scenario: &Scenario, external: bool) -> Option<String> {
    scenario
        .faults
        .iter()
        .enumerate()
        .find_map(|(index, fault)| {
            let target = scenario
                .nodes
                .get(fault.target)
                .map_or("?", |n| n.name.as_str());
            let which = format!(
                "fault {} (`{}` on {target} at {} ms)",
                index + 1,
                fault.kind.name(),
                fault.at.as_millis()
            );
            if matches!(fault.kind, FaultKind::Slow { .. }) {
                return Some(format!(
                    "{which}: `slow` has no real equivalent (a real server's query time is its \
                     own); real mode refuses it"
                ));
            }
            (external && needs_server_control(&fault.kind)).then(|| {
                format!(
                    "{which}: needs control of the server process, which servers given with \
                     --url do not allow; run without --url to let replisim start the cluster"
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::TestRun;
    use crate::scenario::Fault;
    use std::time::Duration;

    fn with(kind: FaultKind) -> Scenario {
        let mut scenario = TestRun::new().scenario;
        scenario.faults = vec![Fault {
            at: Duration::from_secs(2),
            kind,
            target: 1,
            duration: None,
        }];
        scenario
    }

    #[test]
    fn slow_is_refused_everywhere() {
        let scenario = with(FaultKind::Slow { factor: 3.0 });
        let message = refusal(&scenario, false).unwrap_or_default();
        assert!(message.starts_with("fault 1 (`slow` on "), "{message}");
        assert!(!message.contains('\n'));
        assert!(refusal(&scenario, true).is_some());
    }

    #[test]
    fn server_faults_are_refused_only_for_external_servers() {
        let crash = with(FaultKind::Crash);
        assert_eq!(refusal(&crash, false), None);
        assert!(refusal(&crash, true).is_some_and(|m| m.contains("--url")));
        let partition = with(FaultKind::Partition);
        assert_eq!(refusal(&partition, true), None);
    }
}
