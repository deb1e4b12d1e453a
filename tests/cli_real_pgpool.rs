//! `replisim real --router pgpool`: a shipped scenario through pgpool-II instead of the in-process
//! router, judged from the same proxy evidence; and the scenarios it refuses before anything starts.

mod cli_support;

use std::path::Path;

use cli_support::*;
use replisim::real::prerequisites::{Needs, skip_without_pgpool, skip_without_postgres};

#[test]
fn the_smoke_scenario_runs_through_pgpool_and_its_replicas_serve_reads() {
    if skip_without_postgres(Needs::ServerAndStatements) || skip_without_pgpool() {
        return;
    }
    let dir = scratch("cli_real_pgpool_smoke");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/real-smoke.toml");
    // pgpool has no statement timeout and can leave a client waiting out its whole
    // query_timeout (30 s by default): a shorter one keeps the test short.
    let tuned = read(&shipped).replacen("[router]\n", "[router]\nquery_timeout = \"2s\"\n", 1);
    assert!(
        tuned.contains("query_timeout"),
        "real-smoke.toml has no [router] section"
    );
    let scenario = write(&dir, "real-smoke.toml", &tuned);
    let output = replisim(&[
        "real",
        &scenario,
        "--router",
        "pgpool",
        "--out",
        &dir.display().to_string(),
        "--quiet",
    ]);
    let stdout = text(&output.stdout);
    // pgpool may fail an invariant (it restarts its children when it detaches the crashed
    // replica, so clients see errors): exit 1 is a verdict; 2 or 3 would mean the run did not happen.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "stdout: {stdout}\nstderr: {}",
        text(&output.stderr)
    );
    let report = dir.join("real-smoke-seed1-real.json");
    let json: serde_json::Value = match std::fs::read_to_string(&report)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(json) => json,
        Err(e) => panic!("{}: {e}", report.display()),
    };
    assert_eq!(json["mode"], "real");
    assert_eq!(json["real"]["router"], "pgpool");
    assert!(
        json["real"]["router_unhonoured"]
            .as_array()
            .is_some_and(|list| !list.is_empty()),
        "no unhonoured settings listed"
    );
    // The replicas' reads are what crossed their proxies: pgpool, not the client, chose them.
    let nodes = json["nodes"].as_array().cloned().unwrap_or_default();
    let count = |name: &str, figure: &str| {
        nodes
            .iter()
            .find(|n| n["name"] == name)
            .and_then(|n| n[figure].as_u64())
            .unwrap_or(0)
    };
    let replica_reads = count("replica-1", "reads") + count("replica-2", "reads");
    assert!(replica_reads > 100, "replicas served {replica_reads} reads");
    assert_eq!(
        count("replica-1", "writes") + count("replica-2", "writes"),
        0
    );
    assert!(count("primary-1", "writes") > 0);
    // Every statement was matched to the operation that sent it, but for those of operations cut
    // off while their statement was out: the client's timeout closed the connection, or pgpool
    // closed it or failed the statement (as it does while it detaches the crashed replica). pgpool
    // may already have read such a statement and still forward it, after the operation's end. The
    // evidence counts such a statement as executed, unmatched. Operations that failed to connect
    // sent nothing.
    let cut_off: u64 = json["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter(|e| {
                    e["message"].as_str().is_some_and(|m| {
                        m.contains("did not finish within")
                            || m.starts_with("running the statement")
                    })
                })
                .filter_map(|e| e["count"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    let unmatched = json["real"]["unmatched_statements"].as_u64();
    assert!(
        unmatched.is_some_and(|n| n <= cut_off),
        "{unmatched:?} unmatched statements, {cut_off} operations cut off with a statement out; \
         errors: {}",
        json["errors"]
    );
    // The evidence agrees with the servers' own statement counts.
    assert_eq!(
        json["real"]["cross_check"]["passed"], true,
        "{}",
        json["real"]["cross_check"]
    );
}

#[test]
fn pgpool_refuses_a_scenario_with_two_shards() {
    let dir = scratch("cli_real_pgpool_shards");
    let scenario = write(
        &dir,
        "two-shards.toml",
        r#"
name = "two-shards"
duration = "1s"
[[shard]]
name = "s1"
orgs = [0, 100]
primary = "primary-1"
replicas = ["replica-1"]
[[shard]]
name = "s2"
orgs = [100, 200]
primary = "primary-2"
replicas = ["replica-2"]
[workload]
clients = 2
orgs = 200
[[invariant]]
kind = "writes_only_primary"
"#,
    );
    let out = dir.join("out");
    let output = replisim(&[
        "real",
        &scenario,
        "--router",
        "pgpool",
        "--out",
        &out.display().to_string(),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains("needs one shard"), "{stderr}");
    assert!(!out.exists(), "a refused run wrote reports");
}
