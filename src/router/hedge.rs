//! Watching one read attempt on a replica: a request outstanding longer than `slow_request_ejection`
//! ejects its node if the node is an outlier among its peers (see `outlier`), and an attempt whose node is ejected (or found down by its health checks) while it
//! waits is given up so that the read can be retried on another node.
//!
//! A blackholed node answers nothing and refuses nothing, so without this a read would wait out the
//! whole `query_timeout` (30 s by default) before its retry. The watch is bounded: it covers only the
//! node's part of the attempt (connect and statement, up to the first row of a streaming read; the
//! wait for a pool slot is queueing in the router and never judges the node, though a read queued
//! for a node that leaves rotation goes elsewhere, see [`Watch::queue`]), and an attempt is given up only
//! if another node could take the read at that moment, so giving up never turns a read that might
//! still succeed into a failure. The abandoned request's connection is closed, not reused.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::router::error::RouterError;
use crate::router::node::Node;
use crate::router::route::{self, ShardRoute, Tried};

/// Where else the read of a watched attempt could go.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Elsewhere<'a> {
    /// The read's shard.
    pub(crate) shard: &'a ShardRoute,
    /// Whether the read may use a replica.
    pub(crate) prefer_replica: bool,
    /// The nodes the read has tried, this attempt's included.
    pub(crate) tried: Tried,
}

impl Elsewhere<'_> {
    fn is_open(&self) -> bool {
        route::can_read_elsewhere(self.shard, self.prefer_replica, self.tried)
    }
}

/// How one attempt is watched.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Watch<'a> {
    /// Eject the node once the attempt has been outstanding this long; `None`: never.
    pub(crate) slow_after: Option<Duration>,
    /// Give the attempt up once its node is ejected, if the read can go elsewhere; `None`: never.
    pub(crate) elsewhere: Option<Elsewhere<'a>>,
}

impl Watch<'static> {
    /// No watch: the attempt runs to its end (writes, primaries, ejection off).
    pub(crate) const OFF: Watch<'static> = Watch {
        slow_after: None,
        elsewhere: None,
    };
}

impl Watch<'_> {
    /// Runs `work`, the node's part of one attempt on `node` that started at `started` (the caller's
    /// clock reading, taken just before: one reading per attempt instead of one per layer), under
    /// this watch.
    pub(crate) async fn run<T>(
        self,
        node: &Node,
        started: Instant,
        work: impl Future<Output = Result<T, RouterError>>,
    ) -> Result<T, RouterError> {
        let can_leave = || self.elsewhere.is_some_and(|elsewhere| elsewhere.is_open());
        if self.slow_after.is_none() && self.elsewhere.is_none() {
            return work.await;
        }
        // The node only ever signals with `notify_waiters`, which a `Notified` receives from the
        // moment it is created: checking health after this line misses no ejection, and the
        // waiter list is locked only once, when `select!` first polls it, not also by `enable`.
        let mut ejected = pin!(node.ejection_signal());
        if !node.is_healthy() && can_leave() {
            // Taken out of rotation while this attempt waited for its pool slot.
            return Err(abandoned(node, started));
        }
        let mut work = pin!(work);
        let deadline = self
            .slow_after
            .and_then(|slow_after| started.checked_add(slow_after));
        let mut slow = pin!(tokio::time::sleep_until(deadline.unwrap_or(started)));
        let mut slow_seen = deadline.is_none();
        loop {
            tokio::select! {
                biased;
                result = &mut work => return result,
                () = &mut ejected => {
                    if can_leave() {
                        return Err(abandoned(node, started));
                    }
                    // Nowhere else to go: this node may still answer.
                    return work.await;
                }
                () = &mut slow, if !slow_seen => {
                    let reason = format!(
                        "a request was outstanding for {:?} while other replicas answered younger \
                         ones (slow_request_ejection)",
                        started.elapsed()
                    );
                    // An ejection wakes `ejected` above. A request slow on a node that is no
                    // outlier (slow everywhere, or the node still answers others) stays where it
                    // is; the question is asked again one `slow_request_ejection` later, as the
                    // peers' answers are evidence that builds up.
                    let ejected_now = node.report_slow(started, &reason);
                    match self.slow_after {
                        Some(every) if !ejected_now => {
                            let next = Instant::now() + every;
                            slow.as_mut().reset(next);
                        }
                        _ => slow_seen = true,
                    }
                }
            }
        }
    }
}

impl Watch<'_> {
    /// Waits for `slot`, the node's pool slot. Queueing is no news about the node, so it never
    /// ejects anything; but once the node leaves rotation (ejected, or found down) a read still
    /// queued for it gives the wait up, as an attempt on it would, if it can go elsewhere.
    pub(crate) async fn queue<T>(
        self,
        node: &Node,
        slot: impl Future<Output = Result<T, RouterError>>,
    ) -> Result<T, RouterError> {
        let Some(elsewhere) = self.elsewhere else {
            return slot.await;
        };
        // Created before the slot is first polled, so that an ejection from then on is seen (see
        // `run`); creating it takes no lock, and it joins the node's waiter list only if the slot
        // is not free at once, which is the exception.
        let mut ejected = pin!(node.ejection_signal());
        let mut slot = pin!(slot);
        if let Poll::Ready(result) = futures::poll!(slot.as_mut()) {
            return result;
        }
        let started = Instant::now();
        tokio::select! {
            biased;
            result = &mut slot => result,
            () = &mut ejected => {
                if elsewhere.is_open() {
                    return Err(abandoned(node, started));
                }
                slot.await
            }
        }
    }
}

fn abandoned(node: &Node, started: Instant) -> RouterError {
    RouterError::Abandoned {
        node: node.name().to_string(),
        waited: Instant::now().saturating_duration_since(started),
    }
}
