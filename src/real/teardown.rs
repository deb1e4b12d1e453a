//! Tearing a cluster down: every server stopped at once (like a crash: nothing of it is kept),
//! anything left killed, and the directory removed. An async path for normal use and a blocking
//! one for `Drop`, which may run during a panic with no runtime to await on.

use std::time::Duration;

use futures::future::join_all;

use crate::real::cluster::Cluster;
use crate::real::command::{processes_matching, signal, signal_blocking};
use crate::real::error::ClusterError;

/// How long processes may take to exit after a signal before the next, harder one.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// Pause between two looks at /proc.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// Stops every server with `pg_ctl stop -m immediate`, kills what is left, removes the data.
pub(crate) async fn stop_all(cluster: &Cluster) -> Result<(), ClusterError> {
    let stops = cluster
        .nodes()
        .iter()
        .filter(|node| node.is_running() || node.recorded_pid().is_some())
        .map(|node| node.pg_stop_immediate(&cluster.runner, cluster.root()));
    // A failed stop is not final: /proc says what is still running.
    let _ = join_all(stops).await;
    let needle = cluster.process_tag();
    let mut left = processes_matching(&needle);
    if !left.is_empty() {
        signal("KILL", &left).await;
        let _ = tokio::time::timeout(EXIT_WAIT, async {
            while !processes_matching(&needle).is_empty() {
                tokio::time::sleep(EXIT_POLL).await;
            }
        })
        .await;
        left = processes_matching(&needle);
    }
    finish(cluster, &left)
}

/// The same without a runtime: SIGQUIT (PostgreSQL's immediate shutdown) to every process of the
/// cluster, SIGKILL to what is left, then the data removed.
pub(crate) fn stop_all_blocking(cluster: &Cluster) {
    let needle = cluster.process_tag();
    for signal_name in ["QUIT", "KILL"] {
        let left = processes_matching(&needle);
        if left.is_empty() {
            break;
        }
        signal_blocking(signal_name, &left);
        wait_gone_blocking(&needle);
    }
    for node in cluster.nodes() {
        node.set_running(false);
    }
    let left = processes_matching(&needle);
    // Drop has nobody to report to; `finish` keeps the directory if servers still use it.
    let _ = finish(cluster, &left);
}

fn wait_gone_blocking(needle: &str) {
    let polls = EXIT_WAIT.as_millis() / EXIT_POLL.as_millis();
    for _ in 0..polls {
        if processes_matching(needle).is_empty() {
            return;
        }
        std::thread::sleep(EXIT_POLL);
    }
}

/// Removes the cluster directory unless servers still run in it; reports what was left.
fn finish(cluster: &Cluster, left: &[u32]) -> Result<(), ClusterError> {
    if !left.is_empty() {
        return Err(ClusterError::TeardownIncomplete(format!(
            "processes {left:?} of {} did not exit; kill them and remove {}",
            cluster.tag(),
            cluster.root().display()
        )));
    }
    match std::fs::remove_dir_all(cluster.root()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ClusterError::TeardownIncomplete(format!(
            "removing {}: {e}",
            cluster.root().display()
        ))),
    }
}
