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
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

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

/// The next moment a watch wants to be woken (its next slow-request check), shared with the
/// statement it watches: a statement bounded by its connection's timer (see `pool`) lets that one
/// timer ring for both, so that a watched read registers no timer of its own. Only the attempt's
/// task touches it; atomics make it shareable between the watch and the statement's future.
#[derive(Debug)]
pub(crate) struct Alarm {
    /// Time zero of `at_ns`.
    base: Instant,
    /// Nanoseconds from `base` to the moment to ring at; `u64::MAX`: none.
    at_ns: AtomicU64,
    /// Whether a statement's timer rings at `at_ns`.
    heeded: AtomicBool,
    /// Whether that timer rang at `at_ns` since the watch last looked: the watch learns that the
    /// moment came from the ring instead of reading the clock every time its task is polled.
    rang: AtomicBool,
}

impl Alarm {
    /// An alarm that rings at nothing yet, `base` being a moment at or before any it will ring at.
    pub(crate) fn new(base: Instant) -> Alarm {
        Alarm {
            base,
            at_ns: AtomicU64::new(u64::MAX),
            heeded: AtomicBool::new(false),
            rang: AtomicBool::new(false),
        }
    }

    /// The moment to ring at, if any.
    pub(crate) fn at(&self) -> Option<Instant> {
        match self.at_ns.load(Ordering::Relaxed) {
            u64::MAX => None,
            ns => self.base.checked_add(Duration::from_nanos(ns)),
        }
    }

    fn set(&self, at: Option<Instant>) {
        let ns = at.map_or(u64::MAX, |at| {
            u64::try_from(at.saturating_duration_since(self.base).as_nanos())
                .unwrap_or(u64::MAX - 1)
        });
        self.at_ns.store(ns, Ordering::Relaxed);
        self.rang.store(false, Ordering::Relaxed);
    }

    /// The statement's timer rang at [`Alarm::at`].
    pub(crate) fn ring(&self) {
        self.rang.store(true, Ordering::Relaxed);
    }

    fn has_rung(&self) -> bool {
        self.rang.load(Ordering::Relaxed)
    }

    /// A statement's timer rings at [`Alarm::at`] from now on.
    pub(crate) fn heed(&self) {
        self.heeded.store(true, Ordering::Relaxed);
    }

    fn is_heeded(&self) -> bool {
        self.heeded.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn set_for_test(&self, at: Option<Instant>) {
        self.set(at);
    }

    #[cfg(test)]
    pub(crate) fn is_heeded_for_test(&self) -> bool {
        self.is_heeded()
    }

    #[cfg(test)]
    pub(crate) fn has_rung_for_test(&self) -> bool {
        self.has_rung()
    }
}

impl Watch<'_> {
    /// Runs `work`, the node's part of one attempt on `node` that started at `started` (the caller's
    /// clock reading, taken just before: one reading per attempt instead of one per layer), under
    /// this watch. If `work` ends in a statement that heeds `alarm`, the watch's slow-request
    /// checks ride on that statement's timer; until then (a connect), or without `alarm`, the
    /// watch arms a timer of its own.
    pub(crate) async fn run<T>(
        self,
        node: &Node,
        started: Instant,
        alarm: Option<&Alarm>,
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
        let mut next_slow = self
            .slow_after
            .and_then(|slow_after| started.checked_add(slow_after));
        if let Some(alarm) = alarm {
            alarm.set(next_slow);
        }
        // Created (and registered) only while no statement heeds the alarm.
        let mut own_timer: Option<Pin<Box<Sleep>>> = None;
        loop {
            tokio::select! {
                biased;
                result = &mut work => return result,
                () = &mut ejected => {
                    if can_leave() {
                        return Err(abandoned(node, started));
                    }
                    // Nowhere else to go: this node may still answer. Its statement's timer
                    // stops ringing for the watch and keeps only its own limit.
                    if let Some(alarm) = alarm {
                        alarm.set(None);
                    }
                    return work.await;
                }
                () = slow_check(&mut own_timer, next_slow, alarm), if next_slow.is_some() => {
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
                    next_slow = match self.slow_after {
                        Some(every) if !ejected_now => Some(Instant::now() + every),
                        _ => None,
                    };
                    if let Some(alarm) = alarm {
                        // The statement re-arms its timer when `work` is next polled, at once.
                        alarm.set(next_slow);
                    }
                }
            }
        }
    }
}

/// Completes once `at` has come: on the timer of the statement that heeds `alarm` if one does
/// (which wakes the task then and says it rang), else on `own_timer`, armed on demand.
async fn slow_check(
    own_timer: &mut Option<Pin<Box<Sleep>>>,
    at: Option<Instant>,
    alarm: Option<&Alarm>,
) {
    let Some(at) = at else {
        return std::future::pending().await;
    };
    std::future::poll_fn(|cx| {
        if let Some(alarm) = alarm.filter(|alarm| alarm.is_heeded()) {
            *own_timer = None;
            return if alarm.has_rung() {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        let timer = own_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        timer.as_mut().poll(cx)
    })
    .await
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
