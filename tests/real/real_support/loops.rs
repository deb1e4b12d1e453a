//! Clients that read through the router in a loop until stopped, recording who served each read,
//! and what to make of those records.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use replisim::record::workload::READ_SQL;
use replisim::router::{ReadRequest, Router};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{AnyError, step};

/// Records kept by one set of read loops; beyond it reads still run but are only counted.
const READ_LOGS_MAX: usize = 200_000;

/// One read of a read loop, as the client saw it.
#[derive(Clone, Debug)]
pub struct ReadLog {
    /// When it started.
    pub start: Instant,
    /// How long it took.
    pub took: Duration,
    /// The node that served it, if it succeeded.
    pub node: Option<String>,
    /// Attempts it took (retries included).
    pub attempts: u32,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Concurrent clients that read through a router until stopped.
pub struct ReadLoops {
    stop: Arc<AtomicBool>,
    logs: Arc<Mutex<Vec<ReadLog>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts `clients` loops, each reading key `i mod keys` of `org` (replica allowed), pausing
/// `pause` between reads.
pub fn spawn_read_loops(
    router: &Router,
    clients: usize,
    org: i64,
    keys: i64,
    pause: Duration,
) -> ReadLoops {
    let stop = Arc::new(AtomicBool::new(false));
    let logs = Arc::new(Mutex::new(Vec::new()));
    let tasks = (0..clients)
        .map(|client| {
            let router = router.clone();
            let stop = Arc::clone(&stop);
            let logs = Arc::clone(&logs);
            let user = i64::try_from(client).unwrap_or(i64::MAX);
            tokio::spawn(async move {
                let mut key = user % keys.max(1);
                while !stop.load(Ordering::Relaxed) {
                    let log = read_once(&router, org, key, user).await;
                    {
                        let mut logs = logs.lock().unwrap_or_else(PoisonError::into_inner);
                        if logs.len() < READ_LOGS_MAX {
                            logs.push(log);
                        }
                    }
                    key = (key + 1) % keys.max(1);
                    tokio::time::sleep(pause).await;
                }
            })
        })
        .collect();
    ReadLoops { stop, logs, tasks }
}

async fn read_once(router: &Router, org: i64, key: i64, user: i64) -> ReadLog {
    let start = Instant::now();
    let request = ReadRequest {
        org,
        user,
        prefer_replica: true,
    };
    let result = step(router.read(request, READ_SQL, &[&org, &key, &user])).await;
    let took = start.elapsed();
    match result {
        Ok(routed) => ReadLog {
            start,
            took,
            node: Some(routed.node),
            attempts: routed.attempts,
            error: None,
        },
        Err(error) => ReadLog {
            start,
            took,
            node: None,
            attempts: 0,
            error: Some(error.to_string()),
        },
    }
}

impl ReadLoops {
    /// Reads served by `node` that started at or after `since`, so far.
    pub fn served_since(&self, node: &str, since: Instant) -> usize {
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        served(&logs, node, since, None)
    }

    /// Stops every loop after its current read and returns every read, in completion order.
    pub async fn stop(self) -> Result<Vec<ReadLog>, AnyError> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            step(task).await?;
        }
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(logs.clone())
    }
}

/// Reads served by `node` that started in `[since, until)` (`until` open when `None`).
pub fn served(logs: &[ReadLog], node: &str, since: Instant, until: Option<Instant>) -> usize {
    logs.iter()
        .filter(|log| log.node.as_deref() == Some(node))
        .filter(|log| log.start >= since && until.is_none_or(|until| log.start < until))
        .count()
}

/// The failed reads, as their error messages.
pub fn failures(logs: &[ReadLog]) -> Vec<String> {
    logs.iter().filter_map(|log| log.error.clone()).collect()
}

/// Reads per serving node (failed reads under `failed`).
pub fn per_node(logs: &[ReadLog]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for log in logs {
        let node = log.node.clone().unwrap_or_else(|| "failed".to_string());
        *counts.entry(node).or_insert(0) += 1;
    }
    counts
}

/// The median of `times` (zero when empty).
pub fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Polls the router's view of `node` every 5 ms until its health is `healthy`; returns how long
/// that took.
pub async fn wait_health(
    router: &Router,
    node: &str,
    healthy: bool,
    limit: Duration,
) -> Result<Duration, AnyError> {
    let start = Instant::now();
    loop {
        let now_healthy = router.stats().node(node).map(|n| n.healthy);
        if now_healthy == Some(healthy) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(format!(
                "the router did not see {node} as healthy = {healthy} within {limit:?}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
