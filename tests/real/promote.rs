//! Real mode with a promotion (a scenario built in code): the fault is observed, the roles in the
//! evidence follow it, and the writes the fenced old primary refused are counted alike by the
//! proxy evidence (the server's answers), the clients and the server's log, as the run's own
//! cross-check also finds.

use std::path::Path;
use std::time::Duration;

use replisim::real::prerequisites::{Needs, skip_without_postgres};
use replisim::real::scenario_run;
use replisim::record::events::{NodeRole, Purpose, StatementKind};
use replisim::scenario::{Fault, FaultKind, Invariant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_moves_roles_and_refused_writes_agree_on_every_side() {
    if skip_without_postgres(Needs::Server) {
        return;
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/real-smoke.toml");
    let mut scenario = match replisim::scenario::load(&file) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let position = |name: &str| scenario.nodes.iter().position(|n| n.name == name);
    let (Some(old), Some(new)) = (position("primary-1"), position("replica-1")) else {
        panic!("real-smoke.toml lost its nodes");
    };
    scenario.duration = Duration::from_secs(5);
    scenario.faults = vec![Fault {
        at: Duration::from_secs(2),
        kind: FaultKind::Promote,
        target: new,
        duration: None,
    }];
    scenario.invariants = vec![Invariant::OrgRouting];
    let ran = match scenario_run::run(&scenario, 1, None).await {
        Ok(ran) => ran,
        Err(e) => panic!("{e}"),
    };
    let faults = &ran.outcome.faults;
    assert!(faults.first().is_some_and(|f| f.took_effect), "{faults:?}");
    let statements = &ran.outcome.events.statements;
    let promoted_at = statements
        .iter()
        .filter(|s| s.node == new && s.role == NodeRole::Primary)
        .map(|s| s.start_us)
        .min();
    let Some(promoted_at) = promoted_at else {
        panic!("no statement saw replica-1 as a primary");
    };
    assert!(
        promoted_at >= 2_000_000,
        "primary before the fault: {promoted_at}"
    );
    assert!(
        statements
            .iter()
            .filter(|s| s.node == old && s.start_us >= promoted_at)
            .all(|s| s.role == NodeRole::Replica)
    );
    let refused_by_evidence = statements
        .iter()
        .filter(|s| {
            s.node == old
                && s.purpose == Purpose::Workload
                && s.kind == StatementKind::Write
                && s.sqlstate.as_deref() == Some("25006")
        })
        .count() as u64;
    let details = &ran.details;
    let refused_by_clients = details
        .client_read_only_errors
        .get("primary-1")
        .copied()
        .unwrap_or(0);
    let refused_by_log = details
        .server_counts
        .iter()
        .find(|c| c.name == "primary-1")
        .map_or(0, |c| c.log_read_only_errors);
    println!(
        "refused writes on the old primary: evidence {refused_by_evidence}, clients \
         {refused_by_clients}, log {refused_by_log}"
    );
    assert_eq!(refused_by_evidence, refused_by_log, "{details:?}");
    assert_eq!(refused_by_clients, refused_by_log, "{details:?}");
    // The run's own cross-check reached the same verdict, node by node.
    let check = &details.cross_check;
    assert!(check.passed, "{check:?}");
    let refused = check
        .comparisons
        .iter()
        .find(|c| c.node == "primary-1" && c.figure == "refused_writes");
    assert_eq!(
        refused.map(|c| (c.inferred, c.server)),
        Some((refused_by_evidence, Some(refused_by_log)))
    );
}
