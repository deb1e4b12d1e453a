//! The replay task of a node: applies received WAL records when they fall due (commit time +
//! replication delay), in LSN order, unless replay is paused; carries out promotions; and logs
//! every apply to the event log.

use std::sync::Arc;

use super::clock::{now_us, until_us};
use super::state::{ReplayNext, SimNode, WalRecord};
use crate::record::events::{Micros, WalApplyEvent};

/// Runs until the host stops.
pub(crate) async fn run(node: Arc<SimNode>) {
    let mut applied = Vec::new();
    loop {
        // `notify_one` leaves a permit, so a wake-up between this step and the wait is not lost.
        let wake = node.replay_wake().notified();
        match step(&node, now_us(), &mut applied) {
            ReplayNext::Wait => wake.await,
            ReplayNext::At(due_us) => {
                tokio::select! {
                    biased;
                    () = wake => {}
                    () = tokio::time::sleep(until_us(due_us)) => {}
                }
            }
        }
    }
}

/// Applies what is due at `now_us` (everything, on a promotion) and logs it.
fn step(node: &SimNode, now_us: Micros, applied: &mut Vec<WalRecord>) -> ReplayNext {
    applied.clear();
    node.promote_if_requested(applied);
    let next = node.apply_due(now_us, applied);
    for record in applied.iter() {
        node.log().wal_apply(WalApplyEvent {
            node: node.index(),
            lsn: record.lsn,
            commit_us: record.commit_us,
            applied_us: now_us,
        });
    }
    next
}
