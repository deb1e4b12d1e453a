//! `replisim real`: a shipped scenario against a real PostgreSQL 15 cluster (exit 0 and a report the
//! SPEC's checker accepts), and the faults it refuses before anything starts (exit 2, one line).

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cli_support::*;
use replisim::real::prerequisites::{Needs, skip_without_postgres};

/// A one-replica scenario with one fault of `kind` on the replica.
fn with_fault(kind_and_keys: &str) -> String {
    format!(
        r#"
name = "refused"
duration = "2s"
[[shard]]
name = "s1"
orgs = [0, 100]
primary = "primary-1"
replicas = ["replica-1"]
[workload]
clients = 2
orgs = 100
[[fault]]
at = "1s"
target = "replica-1"
{kind_and_keys}
[[invariant]]
kind = "writes_only_primary"
"#
    )
}

/// Asserts exit 2 with one line on stderr containing `needle`, and no report written.
fn assert_refused(output: &Output, needle: &str, out: &Path) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    let written = std::fs::read_dir(out).map_or(0, |d| d.count());
    assert_eq!(written, 0, "a refused run wrote reports");
}

#[test]
fn slow_has_no_real_equivalent_and_is_refused() {
    let dir = scratch("cli_real_slow");
    let scenario = write(
        &dir,
        "slow.toml",
        &with_fault("kind = \"slow\"\nfactor = 3.0"),
    );
    let out = dir.join("out");
    let output = replisim(&["real", &scenario, "--out", &out.display().to_string()]);
    assert_refused(&output, "`slow` has no real equivalent", &out);
}

#[test]
fn url_servers_refuse_faults_that_need_server_control() {
    let dir = scratch("cli_real_url");
    let scenario = write(&dir, "crash.toml", &with_fault("kind = \"crash\""));
    let out = dir.join("out");
    // Nothing listens on these ports: a refusal must come before any connect.
    let output = replisim(&[
        "real",
        &scenario,
        "--out",
        &out.display().to_string(),
        "--url",
        "primary-1=postgres://postgres@127.0.0.1:1/replisim",
        "--url",
        "replica-1=postgres://postgres@127.0.0.1:2/replisim",
    ]);
    assert_refused(&output, "needs control of the server process", &out);
}

#[test]
fn url_must_name_every_node() {
    let dir = scratch("cli_real_url_missing");
    let scenario = write(&dir, "partition.toml", &with_fault("kind = \"partition\""));
    let out = dir.join("out");
    let output = replisim(&[
        "real",
        &scenario,
        "--out",
        &out.display().to_string(),
        "--url",
        "primary-1=postgres://postgres@127.0.0.1:1/replisim",
    ]);
    assert_refused(&output, "replica-1", &out);
}

#[test]
fn the_real_smoke_scenario_holds_against_a_real_cluster() {
    if skip_without_postgres(Needs::Server) {
        return;
    }
    let dir = scratch("cli_real_smoke");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/real-smoke.toml");
    let scenario = scenario.display().to_string();
    let output = replisim(&[
        "real",
        &scenario,
        "--out",
        &dir.display().to_string(),
        "--quiet",
    ]);
    let stdout = stdout_of_success(&output);
    assert!(
        stdout.starts_with("PASS real-smoke seed 1 real"),
        "{stdout}"
    );
    let report = dir.join("real-smoke-seed1-real.json");
    assert!(dir.join("real-smoke-seed1-real.md").is_file());
    let json: serde_json::Value = match std::fs::read_to_string(&report)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(json) => json,
        Err(e) => panic!("{}: {e}", report.display()),
    };
    assert_eq!(json["mode"], "real");
    assert_eq!(json["passed"], true);
    let total = json["ops"]["total"].as_u64().unwrap_or(0);
    assert!(total > 100, "only {total} operations in 8 s");
    // Writes reached only the primary, by the proxies' records and by the servers' own counts.
    let nodes = json["nodes"].as_array().cloned().unwrap_or_default();
    let writes = |name: &str| {
        nodes
            .iter()
            .find(|n| n["name"] == name)
            .and_then(|n| n["writes"].as_u64())
    };
    assert_eq!(writes("primary-1"), json["ops"]["writes"].as_u64());
    assert_eq!(writes("replica-1"), Some(0));
    let counts = json["real"]["server_counts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let primary_stat_writes = counts
        .iter()
        .find(|n| n["name"] == "primary-1")
        .and_then(|n| n["stat_writes"].as_u64());
    if primary_stat_writes.is_some() {
        assert_eq!(primary_stat_writes, writes("primary-1"));
    }
    // The servers' counts were compared with the evidence, node by node, and agree; the crashed
    // replica's counts before its crash were kept.
    let cross_check = &json["real"]["cross_check"];
    assert_eq!(cross_check["passed"], true, "{cross_check}");
    let comparisons = cross_check["comparisons"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(comparisons.len(), 3 * 4, "{cross_check}");
    let snapshots = json["real"]["snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(snapshots.len(), 1, "one crash, one snapshot: {snapshots:?}");
    assert!(
        comparisons
            .iter()
            .filter(|c| c["node"] == "replica-2" && c["figure"] == "reads")
            .all(|c| c["server"].as_u64().is_some_and(|n| n > 0)),
        "{cross_check}"
    );
    let faults = json["faults"].as_array().cloned().unwrap_or_default();
    assert_eq!(faults.len(), 2);
    assert!(
        faults.iter().all(|f| f["took_effect"] == true),
        "{faults:?}"
    );
    // The SPEC's own report checker, when the shared tools are present.
    let checker = Path::new("/work/shared/tools/report-check.py");
    if checker.is_file() {
        let checked = Command::new("python3")
            .arg(checker)
            .arg(&report)
            .arg(&scenario)
            .output();
        match checked {
            Ok(o) => assert!(o.status.success(), "{}", text(&o.stdout)),
            Err(e) => println!("report-check.py not run: {e}"),
        }
    }
}

/// A scenario with only link faults, for servers given with `--url`.
const LINK_FAULTS: &str = r#"
name = "url-links"
duration = "4s"
[[shard]]
name = "s1"
orgs = [0, 100]
primary = "primary-1"
replicas = ["replica-1"]
[router]
health_interval = "1s"
[workload]
clients = 4
think_time = "10ms"
orgs = 100
[[fault]]
at = "1s"
kind = "latency"
latency = "30ms"
target = "replica-1"
duration = "1s"
[[fault]]
at = "2500ms"
kind = "drop_connections"
target = "replica-1"
[[invariant]]
kind = "writes_only_primary"
[[invariant]]
kind = "org_routing"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_servers_run_link_faults_against_a_cluster_started_elsewhere() {
    if skip_without_postgres(Needs::Server) {
        return;
    }
    let spec = replisim::real::ClusterSpec {
        shards: vec![replisim::real::ShardSpec {
            name: "s1".to_string(),
            primary: "primary-1".to_string(),
            replicas: vec!["replica-1".to_string()],
        }],
    };
    let cluster = match replisim::real::Cluster::start(&spec).await {
        Ok(cluster) => cluster,
        Err(e) => panic!("cannot start a cluster: {e}"),
    };
    let url = |name: &str| {
        let port = cluster.node(name).map_or(0, |n| n.port);
        format!("{name}=postgres://postgres:{PASSWORD}@127.0.0.1:{port}/replisim")
    };
    let dir = scratch("cli_real_url_links");
    let scenario = write(&dir, "links.toml", LINK_FAULTS);
    let out = dir.join("out").display().to_string();
    let args = [
        "real".to_string(),
        scenario,
        "--out".to_string(),
        out.clone(),
        // Everything a user could see: info logs on stderr and the whole summary on stdout.
        "-v".to_string(),
        "--url".to_string(),
        url("primary-1"),
        "--url".to_string(),
        url("replica-1"),
    ];
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_replisim"))
        .args(&args)
        .output()
        .await;
    let torn_down = cluster.teardown().await;
    let output = match output {
        Ok(o) => o,
        Err(e) => panic!("cannot run replisim: {e}"),
    };
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(torn_down.is_ok(), "{torn_down:?}");
    let report = Path::new(&out).join("url-links-seed1-real.json");
    let json: serde_json::Value = match std::fs::read_to_string(&report)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(json) => json,
        Err(e) => panic!("{}: {e}", report.display()),
    };
    assert_eq!(json["real"]["servers"], "external");
    // External servers give no counts of their own: nothing is compared, nothing fails.
    let cross_check = &json["real"]["cross_check"];
    assert_eq!(cross_check["passed"], true, "{cross_check}");
    let comparisons = cross_check["comparisons"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        comparisons.iter().all(|c| c["server"].is_null()),
        "{cross_check}"
    );
    let faults = json["faults"].as_array().cloned().unwrap_or_default();
    assert_eq!(faults.len(), 2);
    assert!(
        faults.iter().all(|f| f["took_effect"] == true),
        "{faults:?}"
    );
    assert!(json["ops"]["total"].as_u64().unwrap_or(0) > 50);
    // The password of the URLs appears nowhere: not in what was printed, not in any file written.
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        assert!(
            !text(bytes).contains(PASSWORD),
            "the password was printed on {stream}:\n{}",
            text(bytes)
        );
    }
    let mut written = 0;
    let mut dirs = vec![dir.clone()];
    while let Some(current) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                written += 1;
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(PASSWORD),
                    "the password is in {}",
                    path.display()
                );
            }
        }
    }
    assert!(
        written >= 3,
        "only {written} files written under {}",
        dir.display()
    );
}

/// A password no output may contain.
const PASSWORD: &str = "s3cret-Pa55word-7f4e";

/// Processes whose command line contains `needle` (from /proc).
fn processes_with(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[test]
fn ctrl_c_stops_the_run_and_removes_the_cluster() {
    if skip_without_postgres(Needs::Server) {
        return;
    }
    let dir = scratch("cli_real_ctrl_c");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/real-smoke.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_replisim"))
        .arg("real")
        .arg(&scenario)
        .arg("--out")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => panic!("cannot run replisim: {e}"),
    };
    let tag = format!("replisim-{}-", child.id());
    let root = std::env::temp_dir();
    let cluster_dirs = || -> Vec<PathBuf> {
        std::fs::read_dir(&root)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(&tag))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // Interrupt once the servers exist (during start-up or the run; both must clean up).
    // Up to 60 s for the servers to appear.
    for _ in 0..1200 {
        if !processes_with(&tag).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !processes_with(&tag).is_empty(),
        "no server of {tag} ever ran"
    );
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    let output = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    };
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(processes_with(&tag), Vec::<String>::new());
    assert_eq!(cluster_dirs(), Vec::<PathBuf>::new());
}
