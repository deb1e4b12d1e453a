//! The scenario's faults applied on schedule to a real cluster and its fault proxies, each one
//! followed by an observation of its effect (`took_effect` is what was seen, never assumed).
//!
//! Server faults act on the cluster (`crash`, `restart`, `lag`, `pause_replay`, `resume_replay`,
//! `promote`); link faults on the node's proxy (`partition`, `heal`, `latency`,
//! `drop_connections`). `slow` has no real equivalent and is refused before a run starts.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::real::clock::RunClock;
use crate::real::cluster::Cluster;
use crate::real::proxy::FaultProxy;
use crate::real::server_counts::{Snapshot, statement_counts};
use crate::real::sql::Admin;
use crate::record::events::{Micros, NodeIdx};
use crate::record::schedule::{Action, schedule};
use crate::scenario::{FaultKind, Scenario};

/// How long an observation waits for a sign of the fault.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a restarted replica may take to stream again before the run goes on anyway.
const RESTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a partitioned link is watched for an answer that must not come (the schedule waits).
const SILENCE_WAIT: Duration = Duration::from_millis(300);
/// A PostgreSQL SSLRequest: any server answers it with one byte at once.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// What was seen of one fault.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sighting {
    /// Its effect was observed.
    pub took_effect: bool,
    /// Why not, or what went wrong applying it.
    pub note: Option<String>,
    /// What was looked for and whether it was seen, for the report's `faults[].evidence`.
    pub evidence: String,
}

/// The outcome of the whole schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// One per fault of the scenario, in scenario order.
    pub sightings: Vec<Sighting>,
    /// Completed promotions: when (run clock) and which node became primary.
    pub promotions: Vec<(Micros, NodeIdx)>,
    /// The `pg_stat_statements` counts of every server replisim stopped, taken just before.
    pub snapshots: Vec<Snapshot>,
}

/// What the faults act upon.
pub struct Targets<'a> {
    /// The scenario (node models, faults).
    pub scenario: &'a Scenario,
    /// The cluster; `None` when the servers are external (server faults were refused).
    pub cluster: Option<&'a Cluster>,
    /// One proxy per node, in scenario node order.
    pub proxies: &'a [FaultProxy],
    /// The run's clock.
    pub clock: RunClock,
}

/// Applies every fault at its time; returns once the last one was applied and observed.
pub async fn run(targets: &Targets<'_>) -> Injected {
    let mut injected = Injected {
        sightings: vec![Sighting::default(); targets.scenario.faults.len()],
        promotions: Vec::new(),
        snapshots: Vec::new(),
    };
    for action in schedule(targets.scenario) {
        tokio::time::sleep_until(
            targets
                .clock
                .instant_at(crate::real::clock::micros(action.at)),
        )
        .await;
        let sighting = apply(targets, action, &mut injected).await;
        if !action.undo
            && let Some(slot) = injected.sightings.get_mut(action.fault)
        {
            *slot = sighting;
        }
    }
    injected
}

fn seen(took_effect: bool, what: &str) -> Sighting {
    // `what` names what was seen instead of the effect; on success the check itself is the evidence.
    let note = (!took_effect).then(|| format!("not observed: {what}"));
    Sighting {
        took_effect,
        evidence: note
            .clone()
            .unwrap_or_else(|| "observed by the check that follows the fault".to_string()),
        note,
    }
}

fn failed(error: impl std::fmt::Display) -> Sighting {
    Sighting {
        took_effect: false,
        note: Some(error.to_string()),
        evidence: format!("not applied: {error}"),
    }
}

async fn apply(targets: &Targets<'_>, action: Action, injected: &mut Injected) -> Sighting {
    let Some(fault) = targets.scenario.faults.get(action.fault) else {
        return Sighting::default();
    };
    let target = fault.target;
    let (Some(model), Some(proxy)) = (
        targets.scenario.nodes.get(target),
        targets.proxies.get(target),
    ) else {
        return failed("the target has no node or proxy");
    };
    let name = model.name.as_str();
    let server = || {
        targets
            .cluster
            .ok_or("server faults need a cluster run by replisim")
    };
    match (&fault.kind, action.undo) {
        (FaultKind::Crash, false) => match server() {
            Ok(cluster) => {
                let taken_us = targets.clock.now_us();
                let counts = counts_before_stop(cluster, name).await;
                let stopped = cluster.crash(name).await;
                injected
                    .snapshots
                    .extend(counts.map(|c| c.stopped(target, taken_us, targets.clock.now_us())));
                match stopped {
                    Ok(()) => seen(!answers(proxy.upstream()).await, "the server still answers"),
                    Err(e) => failed(e),
                }
            }
            Err(e) => failed(e),
        },
        (FaultKind::Crash, true) | (FaultKind::Restart, _) => match server() {
            Ok(cluster) => {
                let taken_us = targets.clock.now_us();
                let counts = counts_before_stop(cluster, name).await;
                let restarted = cluster.restart(name).await;
                injected
                    .snapshots
                    .extend(counts.map(|c| c.stopped(target, taken_us, targets.clock.now_us())));
                match restarted {
                    Ok(()) => {
                        if model.initial_role == crate::record::events::NodeRole::Replica {
                            // A replica that does not stream yet still serves (stale) reads.
                            let _ = cluster.wait_streaming(name, RESTREAM_TIMEOUT).await;
                        }
                        seen(
                            answers(proxy.upstream()).await,
                            "the server does not answer",
                        )
                    }
                    Err(e) => failed(e),
                }
            }
            Err(e) => failed(e),
        },
        (FaultKind::Partition, false) => {
            proxy.set_partitioned(true);
            let answered = round_trip(proxy.local_addr(), SILENCE_WAIT).await.is_some();
            seen(!answered, "the link still answers")
        }
        (FaultKind::Partition, true) | (FaultKind::Heal, _) => {
            proxy.set_partitioned(false);
            seen(
                answers(proxy.local_addr()).await,
                "the link does not answer",
            )
        }
        (FaultKind::DropConnections, _) => {
            let reset = proxy.drop_connections();
            seen(reset > 0, "no connection was open")
        }
        (FaultKind::Latency { latency }, undo) => {
            let one_way = if undo {
                model.link_latency
            } else {
                model.link_latency + *latency
            };
            proxy.set_latency(one_way);
            match round_trip(proxy.local_addr(), OBSERVE_TIMEOUT).await {
                Some(took) => seen(took >= one_way * 2, "the round trip was faster"),
                None => seen(false, "the link does not answer"),
            }
        }
        (FaultKind::Lag { delay }, undo) => {
            let delay = if undo {
                model_apply_delay(model.replication_delay)
            } else {
                *delay
            };
            match server() {
                // `set_apply_delay` returns once the server reports the new setting in force.
                Ok(cluster) => match cluster.set_apply_delay(name, delay).await {
                    Ok(()) => seen(true, ""),
                    Err(e) => failed(e),
                },
                Err(e) => failed(e),
            }
        }
        (FaultKind::PauseReplay, false) => match server() {
            Ok(cluster) => match cluster.pause_replay(name).await {
                Ok(()) => observe_value(cluster, name, PAUSE_STATE_SQL, "paused").await,
                Err(e) => failed(e),
            },
            Err(e) => failed(e),
        },
        (FaultKind::PauseReplay, true) | (FaultKind::ResumeReplay, _) => match server() {
            Ok(cluster) => match cluster.resume_replay(name).await {
                Ok(()) => observe_value(cluster, name, PAUSE_STATE_SQL, "not paused").await,
                Err(e) => failed(e),
            },
            Err(e) => failed(e),
        },
        (FaultKind::Promote, _) => match server() {
            Ok(cluster) => match cluster.promote(name).await {
                Ok(()) => {
                    injected.promotions.push((targets.clock.now_us(), target));
                    observe_value(cluster, name, "SELECT pg_is_in_recovery()", "f").await
                }
                Err(e) => failed(e),
            },
            Err(e) => failed(e),
        },
        (FaultKind::Slow { .. }, _) => failed("`slow` has no real equivalent"),
    }
}

/// A running server's counts, taken before it is stopped (`None` if it is not running: a
/// restart after a crash has nothing to lose).
async fn counts_before_stop(cluster: &Cluster, name: &str) -> Option<Counts> {
    let node = cluster.node(name).filter(|n| n.is_running())?;
    // A failed query (no module, or the server not answering) leaves the counts unknown.
    let (reads, writes) = statement_counts(node).await.unwrap_or((None, None));
    Some(Counts { reads, writes })
}

/// Counts of one server before its stop.
struct Counts {
    reads: Option<i64>,
    writes: Option<i64>,
}

impl Counts {
    fn stopped(self, node: NodeIdx, taken_us: Micros, stopped_us: Micros) -> Snapshot {
        Snapshot {
            node,
            taken_us,
            stopped_us,
            reads: self.reads,
            writes: self.writes,
        }
    }
}

const PAUSE_STATE_SQL: &str = "SELECT pg_get_wal_replay_pause_state()";

/// The apply delay a node model asks for: below 1 ms replication is left to its natural speed.
pub fn model_apply_delay(replication_delay: Duration) -> Duration {
    if replication_delay >= Duration::from_millis(1) {
        replication_delay
    } else {
        Duration::ZERO
    }
}

/// Polls `sql` on node `name` until it returns `want` (bounded).
async fn observe_value(cluster: &Cluster, name: &str, sql: &str, want: &str) -> Sighting {
    let Some(node) = cluster.node(name) else {
        return failed(format!("no node `{name}`"));
    };
    let deadline = Instant::now() + OBSERVE_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(admin) = Admin::connect(name, node.port, "postgres").await {
            match admin.value(sql).await {
                Ok(value) if value.as_deref() == Some(want) => return seen(true, ""),
                Ok(value) => last = value,
                Err(e) => last = Some(e.to_string()),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen(
        false,
        &format!("`{sql}` gave {last:?}, not `{want}`, within {OBSERVE_TIMEOUT:?}"),
    )
}

/// Whether a PostgreSQL server at `addr` answers an SSLRequest within the observation limit.
async fn answers(addr: std::net::SocketAddr) -> bool {
    round_trip(addr, OBSERVE_TIMEOUT).await.is_some()
}

/// The time one SSLRequest takes to be answered through `addr`, if it is within `limit`.
async fn round_trip(addr: std::net::SocketAddr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(&SSL_REQUEST).await.ok()?;
        let mut answer = [0u8; 1];
        let n = stream.read(&mut answer).await.ok()?;
        (n == 1).then_some(())
    };
    tokio::time::timeout(limit, exchange)
        .await
        .ok()
        .flatten()
        .map(|()| start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_millisecond_replication_is_left_natural() {
        assert_eq!(
            model_apply_delay(Duration::from_micros(999)),
            Duration::ZERO
        );
        assert_eq!(
            model_apply_delay(Duration::from_millis(5)),
            Duration::from_millis(5)
        );
    }
}
