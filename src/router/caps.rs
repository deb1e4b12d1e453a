//! Per-user and per-org connection caps: at most N requests of one user (or org) hold a connection at
//! once; the others wait their turn, at most `connect_timeout`.
//!
//! One FIFO semaphore per user and per org, created on first use and dropped as soon as nobody holds or
//! waits for it, so memory follows the number of active users and orgs, not every id ever seen.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::router::error::{CapScope, RouterError};
use crate::router::metrics::CapTimeouts;

/// The semaphores of one kind of cap.
struct CapTable {
    scope: CapScope,
    max: u32,
    entries: Mutex<BTreeMap<i64, Arc<Semaphore>>>,
    /// Requests refused after waiting `wait` for a slot.
    timeouts: AtomicU64,
}

impl CapTable {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<i64, Arc<Semaphore>>> {
        // Never held across an await; every critical section is a single map operation.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn semaphore(&self, id: i64) -> Arc<Semaphore> {
        let mut entries = self.lock();
        let semaphore = entries
            .entry(id)
            .or_insert_with(|| Arc::new(Semaphore::new(self.max as usize)));
        Arc::clone(semaphore)
    }

    /// Forgets `id`'s semaphore if the map holds the only reference left (no holder, no waiter).
    fn release(&self, id: i64, semaphore: Arc<Semaphore>) {
        let mut entries = self.lock();
        // The map's reference and ours: nobody else holds a permit or waits.
        if Arc::strong_count(&semaphore) == 2 {
            entries.remove(&id);
        }
    }
}

/// How long a settling connection holds its request's slots at most, given the hold asked for
/// and the caps' wait (see [`Caps::settle_hold`]).
pub(crate) fn held_at_most(settle_hold: Duration, wait: Duration) -> Duration {
    settle_hold.min(wait / 2)
}

/// The user and org caps of a router.
pub(crate) struct Caps {
    users: Option<Arc<CapTable>>,
    orgs: Option<Arc<CapTable>>,
    wait: Duration,
    /// How long a connection settling a statement its request gave up on holds the request's
    /// slots at most (see [`SharedCapSlots`]).
    settle_hold: Duration,
}

/// A held cap slot; frees it (and forgets the semaphore if unused) when dropped.
struct CapSlot {
    table: Arc<CapTable>,
    id: i64,
    permit: Option<OwnedSemaphorePermit>,
    semaphore: Option<Arc<Semaphore>>,
}

impl Drop for CapSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        if let Some(semaphore) = self.semaphore.take() {
            self.table.release(self.id, semaphore);
        }
    }
}

/// The cap slots one request holds; dropped when the request is done.
pub(crate) struct CapPermits {
    _user: Option<CapSlot>,
    _org: Option<CapSlot>,
    waited: bool,
}

impl CapPermits {
    /// Whether the request had to wait for a slot (the cap was full when it asked).
    pub(crate) fn waited(&self) -> bool {
        self.waited
    }

    fn is_empty(&self) -> bool {
        self._user.is_none() && self._org.is_none()
    }
}

/// A request's cap slots where the connection of its current attempt can take them over: `None`
/// when no cap is set (nothing to hold, nothing allocated).
///
/// A statement the request gives up on (abandoned for another node, or past its `query_timeout`)
/// runs on at the server until its cancel lands, and its connection settles in the background (see
/// `pool`). The settling takes the slots over ([`SharedCapSlots::settle`]) and the request's next
/// attempt takes fresh ones ([`RequestCaps::ensure`]), waiting like any request if its user or org
/// is at its cap, so that the servers never run more of a user's or an org's statements at once
/// than its cap. The settling holds them at most the hold time from the moment it took them
/// (`health_timeout`, what a health check gives a node to answer, and at most half the caps' own
/// wait, so that the attempt waiting for them gets them in time): a node that has not taken the
/// cancel by then is treated as unreachable, as its checks would, and holding the slots longer
/// would protect no server that anyone can reach while its user waits.
#[derive(Clone, Default)]
pub(crate) struct SharedCapSlots(Option<Arc<CapCell>>);

/// The request's slots, while it holds them.
struct CapCell {
    held: Mutex<Option<CapPermits>>,
    /// A wait for them not yet counted where the request went (see [`RequestCaps::take_wait`]).
    unreported_wait: AtomicBool,
    /// How long a settling connection holds them at most.
    hold: Duration,
}

impl CapCell {
    fn lock(&self) -> MutexGuard<'_, Option<CapPermits>> {
        // Never held across an await; every critical section moves one set of permits.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SharedCapSlots {
    /// No slots: the request holds no cap.
    pub(crate) const NONE: SharedCapSlots = SharedCapSlots(None);

    /// Hands the request's slots over to a connection settling a statement it gave up on.
    pub(crate) fn settle(&self) -> Option<SettlingCaps> {
        let cell = self.0.as_ref()?;
        let permits = cell.lock().take()?;
        Some(SettlingCaps {
            _permits: permits,
            until: Instant::now() + cell.hold,
        })
    }
}

/// A request's slots, held by a connection settling a statement the request gave up on (see
/// [`SharedCapSlots`]); freed when dropped.
pub(crate) struct SettlingCaps {
    _permits: CapPermits,
    until: Instant,
}

impl SettlingCaps {
    /// When the settling must let them go at the latest.
    pub(crate) fn until(&self) -> Instant {
        self.until
    }
}

/// The cap slots of one request, over all its attempts (see [`SharedCapSlots`]); freed when it
/// is dropped, but for those a settling connection holds.
pub(crate) struct RequestCaps<'a> {
    caps: &'a Caps,
    user: i64,
    org: i64,
    slots: SharedCapSlots,
}

impl RequestCaps<'_> {
    /// The slots, for the connection of an attempt to take over if it must settle.
    pub(crate) fn slots(&self) -> SharedCapSlots {
        self.slots.clone()
    }

    /// Whether the request waited for slots since this was last asked: each wait is counted
    /// once, on the node the attempt after it went to.
    pub(crate) fn take_wait(&self) -> bool {
        self.slots
            .0
            .as_ref()
            .is_some_and(|cell| cell.unreported_wait.swap(false, Ordering::Relaxed))
    }

    /// Before an attempt: if the last attempt's connection took the slots over, takes fresh ones
    /// (waiting, within the caps' wait, while the user or org is at its cap).
    pub(crate) async fn ensure(&self) -> Result<(), RouterError> {
        let Some(cell) = &self.slots.0 else {
            return Ok(());
        };
        if cell.lock().is_some() {
            return Ok(());
        }
        // Boxed: rare, and it would otherwise enlarge every read's future.
        let permits = Box::pin(self.caps.acquire(self.user, self.org)).await?;
        if permits.waited() {
            cell.unreported_wait.store(true, Ordering::Relaxed);
        }
        *cell.lock() = Some(permits);
        Ok(())
    }

    /// The slots for something that holds them as long as it lives (a stream, a transaction).
    pub(crate) fn into_slots(mut self) -> SharedCapSlots {
        std::mem::take(&mut self.slots)
    }
}

impl Drop for RequestCaps<'_> {
    fn drop(&mut self) {
        // Whatever else still points at the cell (a checkout), the request is done.
        if let Some(cell) = &self.slots.0 {
            let released = cell.lock().take();
            drop(released);
        }
    }
}

impl Caps {
    /// Caps of `max_per_user` and `max_per_org` (0 = none), each wait bounded by `wait`.
    pub(crate) fn new(max_per_user: u32, max_per_org: u32, wait: Duration) -> Caps {
        let table = |scope, max| {
            (max > 0).then(|| {
                Arc::new(CapTable {
                    scope,
                    max,
                    entries: Mutex::new(BTreeMap::new()),
                    timeouts: AtomicU64::new(0),
                })
            })
        };
        Caps {
            users: table(CapScope::User, max_per_user),
            orgs: table(CapScope::Org, max_per_org),
            wait,
            settle_hold: wait,
        }
    }

    /// The same caps, whose slots a settling connection holds `settle_hold` at most, and at most
    /// half their wait, so that the request's next attempt, which starts waiting for them once
    /// the settling has taken them, gets them well within its own wait (see [`SharedCapSlots`]).
    pub(crate) fn settle_hold(self, settle_hold: Duration) -> Caps {
        Caps {
            settle_hold: held_at_most(settle_hold, self.wait),
            ..self
        }
    }

    /// Takes a slot of `user` then of `org` (always in that order, so two requests never wait on each
    /// other in a cycle), both within one `wait`.
    pub(crate) async fn acquire(&self, user: i64, org: i64) -> Result<CapPermits, RouterError> {
        if self.users.is_none() && self.orgs.is_none() {
            // No cap is set (the default): nothing to take, and no clock to read.
            return Ok(CapPermits {
                _user: None,
                _org: None,
                waited: false,
            });
        }
        let deadline = Instant::now() + self.wait;
        let mut waited = false;
        let user = match &self.users {
            Some(table) => Some(self.take(table, user, deadline, &mut waited).await?),
            None => None,
        };
        let org = match &self.orgs {
            Some(table) => Some(self.take(table, org, deadline, &mut waited).await?),
            None => None,
        };
        Ok(CapPermits {
            _user: user,
            _org: org,
            waited,
        })
    }

    /// [`Caps::acquire`] for a request that may make several attempts (see [`SharedCapSlots`]).
    pub(crate) async fn acquire_for(
        &self,
        user: i64,
        org: i64,
    ) -> Result<RequestCaps<'_>, RouterError> {
        let permits = self.acquire(user, org).await?;
        let slots = if permits.is_empty() {
            SharedCapSlots::NONE
        } else {
            SharedCapSlots(Some(Arc::new(CapCell {
                unreported_wait: AtomicBool::new(permits.waited()),
                held: Mutex::new(Some(permits)),
                hold: self.settle_hold,
            })))
        };
        Ok(RequestCaps {
            caps: self,
            user,
            org,
            slots,
        })
    }

    /// Requests refused so far because a cap stayed full.
    pub(crate) fn timeouts(&self) -> CapTimeouts {
        let count = |table: &Option<Arc<CapTable>>| {
            table
                .as_ref()
                .map_or(0, |t| t.timeouts.load(Ordering::Relaxed))
        };
        CapTimeouts {
            user: count(&self.users),
            org: count(&self.orgs),
        }
    }

    /// Takes a slot of `id`, setting `waited` if none was free at once.
    async fn take(
        &self,
        table: &Arc<CapTable>,
        id: i64,
        deadline: Instant,
        waited: &mut bool,
    ) -> Result<CapSlot, RouterError> {
        let semaphore = table.semaphore(id);
        let mut slot = CapSlot {
            table: Arc::clone(table),
            id,
            permit: None,
            semaphore: Some(Arc::clone(&semaphore)),
        };
        // A free permit means nobody queues before us (tokio hands released permits to waiters
        // first), so taking it at once keeps the order fair.
        if let Ok(permit) = Arc::clone(&semaphore).try_acquire_owned() {
            slot.permit = Some(permit);
            return Ok(slot);
        }
        *waited = true;
        // `slot` already counts as a user of the semaphore, so an early return (timeout, cancelled
        // future) releases the map entry through its Drop.
        // Boxed: waiting is the exception, and its future (a timer and a semaphore waiter) would
        // otherwise enlarge every request's.
        match Box::pin(tokio::time::timeout_at(deadline, semaphore.acquire_owned())).await {
            Ok(Ok(permit)) => {
                slot.permit = Some(permit);
                Ok(slot)
            }
            // Never closed: only a timeout ends the wait.
            Ok(Err(_)) | Err(_) => {
                table.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(RouterError::CapExceeded {
                    scope: table.scope,
                    id,
                    max: table.max,
                    timeout: self.wait,
                })
            }
        }
    }

    /// Users and orgs currently tracked (holding or waiting).
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let count = |table: &Option<Arc<CapTable>>| table.as_ref().map_or(0, |t| t.lock().len());
        (count(&self.users), count(&self.orgs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::router::test_runtime as runtime;

    #[test]
    fn cap_admits_up_to_max_then_times_out_with_a_clear_message() {
        runtime().block_on(async {
            let caps = Caps::new(2, 0, Duration::from_millis(20));
            let first = caps.acquire(7, 1).await;
            let second = caps.acquire(7, 2).await;
            assert!(first.is_ok() && second.is_ok());
            let other_user = caps.acquire(8, 1).await;
            assert!(other_user.is_ok(), "the cap is per user");
            let third = caps
                .acquire(7, 3)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(
                third,
                Err(
                    "user 7 already holds 2 connections (max_connections_per_user = 2); \
                     waited 20ms for one to free"
                        .to_string()
                )
            );
            assert_eq!(caps.timeouts(), CapTimeouts { user: 1, org: 0 });
            drop(first);
            assert!(caps.acquire(7, 3).await.is_ok(), "a freed slot is reusable");
        });
    }

    #[test]
    fn org_cap_applies_across_users() {
        runtime().block_on(async {
            let caps = Caps::new(0, 1, Duration::from_millis(10));
            let held = caps.acquire(1, 42).await;
            assert!(held.is_ok());
            let blocked = caps.acquire(2, 42).await;
            assert!(matches!(
                blocked,
                Err(RouterError::CapExceeded {
                    scope: CapScope::Org,
                    id: 42,
                    ..
                })
            ));
        });
    }

    #[test]
    fn waiters_are_served_in_arrival_order() {
        runtime().block_on(async {
            let caps = Arc::new(Caps::new(1, 0, Duration::from_secs(5)));
            let held = caps.acquire(1, 0).await;
            let order = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for waiter in 0..4 {
                let (caps, order) = (Arc::clone(&caps), Arc::clone(&order));
                tasks.push(tokio::spawn(async move {
                    let permit = caps.acquire(1, 0).await;
                    order
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(waiter);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    drop(permit);
                }));
                // Let each waiter queue up before the next is spawned.
                tokio::task::yield_now().await;
            }
            drop(held);
            for task in tasks {
                assert!(task.await.is_ok());
            }
            let order = order.lock().unwrap_or_else(PoisonError::into_inner).clone();
            assert_eq!(order, vec![0, 1, 2, 3]);
        });
    }

    #[test]
    fn a_request_knows_whether_it_waited() {
        runtime().block_on(async {
            let caps = Arc::new(Caps::new(1, 2, Duration::from_secs(1)));
            let first = caps.acquire(1, 9).await;
            assert!(
                matches!(&first, Ok(p) if !p.waited()),
                "a free cap: no wait"
            );
            let other_user = caps.acquire(2, 9).await;
            assert!(
                matches!(&other_user, Ok(p) if !p.waited()),
                "the org has room"
            );
            let waiter = {
                let caps = Arc::clone(&caps);
                tokio::spawn(async move { caps.acquire(1, 9).await.map(|p| p.waited()) })
            };
            tokio::task::yield_now().await;
            drop(first);
            assert!(
                matches!(waiter.await, Ok(Ok(true))),
                "a full user cap: waited"
            );
            assert_eq!(caps.timeouts(), CapTimeouts::default());
        });
    }

    #[test]
    fn a_settling_connection_keeps_the_slots_until_its_statement_ends() {
        runtime().block_on(async {
            let caps = Caps::new(1, 0, Duration::from_secs(5)).settle_hold(Duration::from_secs(1));
            let taken_at = Instant::now();
            let Ok(request) = caps.acquire_for(7, 1).await else {
                panic!("a free cap refused");
            };
            assert!(!request.take_wait(), "a free cap: no wait");
            assert!(request.ensure().await.is_ok());
            assert!(
                !request.take_wait(),
                "it holds its slots: nothing to wait for"
            );
            let settling = request.slots().settle();
            assert!(
                settling.as_ref().is_some_and(|s| {
                    s.until() >= taken_at + Duration::from_secs(1)
                        && s.until() <= Instant::now() + Duration::from_secs(1)
                }),
                "the connection takes the slots over, for the hold time at most"
            );
            assert!(
                request.slots().settle().is_none(),
                "a second settling takes nothing"
            );
            assert!(
                tokio::time::timeout(Duration::from_millis(20), caps.acquire(7, 2))
                    .await
                    .is_err(),
                "the settling statement holds the user's only slot"
            );
            // The next attempt waits for the statement to end, then takes a fresh slot.
            let started = Instant::now();
            let (ensured, ()) = tokio::join!(request.ensure(), async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                drop(settling);
            });
            assert!(ensured.is_ok(), "it took a slot");
            assert!(started.elapsed() >= Duration::from_millis(30));
            assert!(request.take_wait(), "the wait is counted");
            assert!(!request.take_wait(), "once");
            assert!(
                tokio::time::timeout(Duration::from_millis(20), caps.acquire(7, 2))
                    .await
                    .is_err(),
                "the request holds the user's slot again"
            );
            drop(request);
            assert!(caps.acquire(7, 2).await.is_ok());
        });
    }

    #[test]
    fn the_hold_is_at_most_half_the_caps_wait() {
        let caps = Caps::new(1, 0, Duration::from_millis(500)).settle_hold(Duration::from_secs(5));
        assert_eq!(caps.settle_hold, Duration::from_millis(250));
        let caps = Caps::new(1, 0, Duration::from_secs(5)).settle_hold(Duration::from_secs(1));
        assert_eq!(caps.settle_hold, Duration::from_secs(1));
    }

    #[test]
    fn a_request_ends_holding_nothing_whatever_still_points_at_its_slots() {
        runtime().block_on(async {
            let caps = Caps::new(1, 1, Duration::from_millis(20));
            let Ok(request) = caps.acquire_for(7, 1).await else {
                panic!("a free cap refused");
            };
            let kept_by_a_checkout = request.slots();
            drop(request);
            assert!(
                caps.acquire(7, 1).await.is_ok(),
                "the user's and the org's slots are free"
            );
            assert!(
                kept_by_a_checkout.settle().is_none(),
                "nothing left to settle with"
            );
        });
    }

    #[test]
    fn without_caps_a_request_shares_nothing() {
        runtime().block_on(async {
            let caps = Caps::new(0, 0, Duration::from_millis(20));
            let Ok(request) = caps.acquire_for(7, 1).await else {
                panic!("no cap refused");
            };
            assert!(request.slots().settle().is_none());
            assert!(request.ensure().await.is_ok());
            assert!(!request.take_wait());
        });
    }

    #[test]
    fn idle_entries_are_forgotten() {
        runtime().block_on(async {
            let caps = Caps::new(1, 1, Duration::from_millis(10));
            let held = caps.acquire(1, 100).await;
            assert_eq!(caps.tracked(), (1, 1));
            let timed_out = caps.acquire(1, 200).await;
            assert!(timed_out.is_err());
            assert_eq!(
                caps.tracked(),
                (1, 1),
                "a timed-out wait leaves nothing behind"
            );
            drop(held);
            assert_eq!(caps.tracked(), (0, 0));
            for user in 0..100 {
                drop(caps.acquire(user, user).await);
            }
            assert_eq!(caps.tracked(), (0, 0), "memory stays bounded");
        });
    }

    #[test]
    fn no_caps_means_no_tracking() {
        runtime().block_on(async {
            let caps = Caps::new(0, 0, Duration::from_millis(10));
            let permits: Vec<_> =
                futures::future::join_all((0..50).map(|_| caps.acquire(1, 1))).await;
            assert!(permits.iter().all(Result::is_ok));
            assert_eq!(caps.tracked(), (0, 0));
        });
    }
}
