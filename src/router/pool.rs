//! The connection pool of one node: at most `max_connections_per_node` connections, handed out in
//! the order they were asked for, idle ones reused most-recent first and closed when too old or idle
//! too long.
//!
//! A semaphore with one permit per allowed connection bounds the connections in use and queues
//! waiters fairly (tokio's semaphore is FIFO). Idle connections hold no permit; a holder reuses an
//! idle connection when there is one and opens a new one only when there is none, so in-use plus
//! idle never exceeds the maximum.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::{Instant, Sleep};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, RowStream};

use crate::router::caps::{SettlingCaps, SharedCapSlots};
use crate::router::conn::{Between, Canceller, Conn, Login};
use crate::router::connector::{ConnectPurpose, Connector, NodeAddress};
use crate::router::error::{RouterError, breaks_connection};
use crate::router::hedge::Alarm;

/// Limits of one pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PoolLimits {
    /// Most connections open at once.
    pub(crate) max_connections: u32,
    /// Idle connections are not closed for idleness below this many open.
    pub(crate) min_connections: u32,
    /// Limit on waiting for a free slot, and on opening a connection.
    pub(crate) connect_timeout: Duration,
    /// Limit on one statement.
    pub(crate) query_timeout: Duration,
    /// An idle connection is closed after this long.
    pub(crate) max_idle_time: Duration,
    /// A connection is closed after this long in any case.
    pub(crate) max_lifetime: Duration,
    /// Cancel abandoned statements (`cancel_abandoned`) rather than just close their connection.
    pub(crate) cancel_abandoned: bool,
    /// How long a connection whose statement was cancelled may take to settle before a statement
    /// pipelined behind that one gets a cancel of its own (see [`Pool::settle_cancelled`]).
    pub(crate) recancel_after: Duration,
}

/// An open connection of the pool with the timer that bounds its statements by `query_timeout`.
///
/// The timer lives as long as the connection: tokio re-arms a registered timer for a later deadline
/// with one atomic update, where a timer created per statement takes the runtime's timer lock twice
/// (to register, to deregister). Boxed, as a `Conn` is several hundred bytes and every checkout
/// moves it out of the idle list, into the checkout and back.
struct Pooled {
    conn: Conn,
    statement_timer: Pin<Box<Sleep>>,
}

impl Pooled {
    fn new(conn: Conn) -> Box<Pooled> {
        // Never polled until a statement arms it, so it registers with no timer before.
        let statement_timer = Box::pin(tokio::time::sleep_until(Instant::now()));
        Box::new(Pooled {
            conn,
            statement_timer,
        })
    }
}

impl Deref for Pooled {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// Runs `work` until it ends or `timeout` runs out on `timer` (`None`), whichever comes first; the
/// work is polled first, as `tokio::time::timeout` does, so an answer that is in wins. The timer
/// also rings at `alarm`'s moments, if earlier (see `hedge`): a ring wakes the task, whose watch
/// then does its check.
///
/// `work` comes pinned by the caller so that the statement's future, which is large, is not moved
/// into this one's state.
async fn within<F: Future>(
    mut timer: Pin<&mut Sleep>,
    timeout: Duration,
    alarm: Option<&Alarm>,
    mut work: Pin<&mut F>,
) -> Option<F::Output> {
    let Some(deadline) = Instant::now().checked_add(timeout) else {
        // No instant is that far: no limit.
        return Some(work.await);
    };
    if let Some(alarm) = alarm {
        alarm.heed();
    }
    let mut armed = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        let ring = alarm.and_then(Alarm::at).filter(|&at| at < deadline);
        let target = ring.unwrap_or(deadline);
        if armed != Some(target) {
            timer.as_mut().reset(target);
            armed = Some(target);
        }
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) if ring.is_none() => Poll::Ready(None),
            Poll::Ready(()) => {
                // The alarm rang: the watch checks when this returns and moves the alarm on. Until
                // it does, the timer keeps at least the statement's own limit.
                if let Some(alarm) = alarm {
                    alarm.ring();
                }
                timer.as_mut().reset(deadline);
                armed = Some(deadline);
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    })
    .await
}

struct IdleConn {
    conn: Box<Pooled>,
    idle_since: Instant,
}

/// The pool of one node.
pub(crate) struct Pool {
    node: NodeAddress,
    connector: Arc<dyn Connector>,
    /// How connections log in; its TLS also carries the CancelRequests.
    login: Login,
    limits: PoolLimits,
    /// One permit per connection in use (checked out, or settling after an abandoned statement).
    slots: Arc<Semaphore>,
    /// One permit per socket that exists: opening, in use, idle, or still closing. A connection
    /// holds its permit until its socket is closed, so the node never sees more than
    /// `max_connections` of ours, even while discarded ones say goodbye.
    sockets: Arc<Semaphore>,
    /// Statements abandoned on this node (timed out, given up, or their caller gone) and the
    /// CancelRequests that reached it for them.
    abandoned: AtomicU64,
    cancels_sent: AtomicU64,
    /// Most recently returned last.
    idle: Mutex<Vec<IdleConn>>,
    open: AtomicU32,
    idle_count: AtomicU32,
    /// Checkouts that found every slot taken and had to wait.
    slot_waits: AtomicU64,
    /// Whether the last wait for a slot or socket ran out: pool exhaustion is logged as a change of
    /// state (exhausted, then free again), not once per waiting request.
    exhausted: AtomicBool,
    /// Notified when one of the pool's connections is ended by the server or the network rather
    /// than by the pool: the node's check loop then checks it at once.
    ended_by_server: Arc<Notify>,
    closed: AtomicBool,
}

impl Pool {
    /// An empty pool; connections are opened on demand.
    pub(crate) fn new(
        node: NodeAddress,
        connector: Arc<dyn Connector>,
        login: Login,
        limits: PoolLimits,
    ) -> Pool {
        Pool {
            node,
            connector,
            login,
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections as usize)),
            sockets: Arc::new(Semaphore::new(limits.max_connections as usize)),
            abandoned: AtomicU64::new(0),
            cancels_sent: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            open: AtomicU32::new(0),
            idle_count: AtomicU32::new(0),
            slot_waits: AtomicU64::new(0),
            exhausted: AtomicBool::new(false),
            ended_by_server: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Notified when a connection of the pool is ended by the server or the network.
    pub(crate) fn connection_ended_by_server(&self) -> &Notify {
        &self.ended_by_server
    }

    /// Connections open, idle or in use.
    pub(crate) fn open_connections(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections open and idle.
    pub(crate) fn idle_connections(&self) -> u32 {
        self.idle_count.load(Ordering::Relaxed)
    }

    /// Statements abandoned on this node so far, and the cancel requests delivered for them.
    pub(crate) fn cancels(&self) -> (u64, u64) {
        (
            self.abandoned.load(Ordering::Relaxed),
            self.cancels_sent.load(Ordering::Relaxed),
        )
    }

    /// Whether a checkout would get a slot now without waiting.
    pub(crate) fn has_free_slot(&self) -> bool {
        self.slots.available_permits() > 0
    }

    /// Checkouts so far that had to wait for a slot.
    pub(crate) fn slot_waits(&self) -> u64 {
        self.slot_waits.load(Ordering::Relaxed)
    }

    /// The pool's limits.
    pub(crate) fn limits(&self) -> PoolLimits {
        self.limits
    }

    /// Waits (at most `connect_timeout`, in arrival order) for a slot: the right to use one connection.
    /// The wait is queueing in the router, not work on the node, so it is kept apart from
    /// [`Slot::open`].
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Slot, RouterError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RouterError::ShutDown);
        }
        let wait = self.limits.connect_timeout;
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => {
                // A slot free on arrival ends an exhaustion; one freed for a waiter does not. A
                // plain load first keeps the common checkout free of a write to a shared word.
                if self.exhausted.load(Ordering::Relaxed)
                    && self.exhausted.swap(false, Ordering::Relaxed)
                {
                    tracing::info!(node = %self.node.name, "pool has free connection slots again");
                }
                permit
            }
            // Boxed: waiting is the exception, and its future (a timer and a semaphore waiter)
            // would otherwise enlarge every checkout's, which the watch moves into place.
            Err(TryAcquireError::NoPermits) => Box::pin(self.wait_for_slot(wait)).await?,
            Err(TryAcquireError::Closed) => return Err(RouterError::ShutDown),
        };
        Ok(Slot {
            pool: Arc::clone(self),
            permit,
        })
    }

    /// Waits at most `wait`, in arrival order, for a slot; counts the wait.
    async fn wait_for_slot(&self, wait: Duration) -> Result<OwnedSemaphorePermit, RouterError> {
        self.slot_waits.fetch_add(1, Ordering::Relaxed);
        self.permit_within(&self.slots, wait).await
    }

    /// A permit of `semaphore` (slots or sockets) within `wait`, or the pool's backpressure error.
    async fn permit_within(
        &self,
        semaphore: &Arc<Semaphore>,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, RouterError> {
        match tokio::time::timeout(wait, Arc::clone(semaphore).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(RouterError::ShutDown),
            Err(_) => {
                if !self.exhausted.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        node = %self.node.name,
                        max = self.limits.max_connections,
                        ?wait,
                        reason = "every connection slot stayed in use",
                        "pool exhausted: requests wait out their slot and go elsewhere or fail"
                    );
                }
                Err(RouterError::PoolTimeout {
                    node: self.node.name.clone(),
                    max: self.limits.max_connections,
                    timeout: wait,
                })
            }
        }
    }

    /// Pops the most recently used idle connection that is still open and young enough, closing the bad
    /// ones met on the way; also says how many of those the other end had closed.
    fn take_idle(&self, now: Instant) -> (Option<Box<Pooled>>, u32) {
        let mut closed = 0u32;
        loop {
            let idle = {
                let mut idle = self.lock_idle();
                let Some(entry) = idle.pop() else {
                    return (None, closed);
                };
                self.idle_count.store(idle.len() as u32, Ordering::Relaxed);
                entry
            };
            // Idleness is the reaper's business: it keeps `min_connections` open past `max_idle_time`.
            if self.still_good(&idle.conn, now) {
                return (Some(idle.conn), closed);
            }
            if idle.conn.is_closed() {
                closed = closed.saturating_add(1);
            }
            self.discard(idle.conn);
        }
    }

    fn still_good(&self, conn: &Conn, now: Instant) -> bool {
        !conn.is_closed()
            && now.saturating_duration_since(conn.opened_at()) < self.limits.max_lifetime
    }

    /// Takes a connection back from a checkout.
    fn check_in(&self, conn: Box<Pooled>, reusable: bool) {
        let now = Instant::now();
        if !reusable || self.closed.load(Ordering::Acquire) || !self.still_good(&conn, now) {
            self.discard(conn);
            return;
        }
        let mut idle = self.lock_idle();
        idle.push(IdleConn {
            conn,
            idle_since: now,
        });
        self.idle_count.store(idle.len() as u32, Ordering::Relaxed);
    }

    /// Closes idle connections that died, outlived `max_lifetime`, or sat idle past `max_idle_time`
    /// (the latter only while more than `min_connections` are open). Run periodically.
    pub(crate) fn reap(&self, now: Instant) {
        let removed = {
            let mut idle = self.lock_idle();
            let mut open = self.open_connections();
            let mut removed = Vec::new();
            // Oldest-idle first, so that the connections kept for `min_connections` are the fresh ones.
            let mut kept = Vec::with_capacity(idle.len());
            for entry in idle.drain(..) {
                let idle_too_long = now.saturating_duration_since(entry.idle_since)
                    >= self.limits.max_idle_time
                    && open > self.limits.min_connections;
                if idle_too_long || !self.still_good(&entry.conn, now) {
                    open = open.saturating_sub(1);
                    removed.push(entry.conn);
                } else {
                    kept.push(entry);
                }
            }
            *idle = kept;
            self.idle_count.store(idle.len() as u32, Ordering::Relaxed);
            removed
        };
        for conn in removed {
            self.discard(conn);
        }
    }

    /// Closes every idle connection (the node just failed its health checks: they are likely dead).
    pub(crate) fn clear_idle(&self) {
        let removed = {
            let mut idle = self.lock_idle();
            self.idle_count.store(0, Ordering::Relaxed);
            std::mem::take(&mut *idle)
        };
        for entry in removed {
            self.discard(entry.conn);
        }
    }

    /// Refuses new checkouts, wakes waiters with `ShutDown`, closes idle connections; connections in
    /// use are closed when returned.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.slots.close();
        self.clear_idle();
    }

    /// The right to open one more socket. A holder of a slot with no idle connection to take waits
    /// here only for sockets still closing, which end within the connection's close grace.
    async fn socket(&self) -> Result<OwnedSemaphorePermit, RouterError> {
        self.permit_within(&self.sockets, self.limits.connect_timeout)
            .await
    }

    /// Cancels the statement abandoned on `conn`. If `reuse`, then waits for the connection to
    /// settle (the cancelled statement answered): only then does it go back to the pool; otherwise
    /// it is closed. `permit` keeps the connection counted as in use meanwhile. Inside a transaction
    /// (`reuse` false) the connection is closed at once instead, since it never serves again and
    /// closing it is what rolls the transaction back (the server ends it as soon as the cancel
    /// stops the statement). `caps`, its request's user and org slots, are held until the
    /// statement has ended at the server or its cancel could not be delivered, at most their hold
    /// time (see [`SharedCapSlots`]).
    async fn settle_abandoned(
        self: Arc<Self>,
        conn: Box<Pooled>,
        permit: OwnedSemaphorePermit,
        caps: Option<SettlingCaps>,
        reuse: bool,
        behind: u8,
    ) {
        let Some(caps) = caps else {
            return self.cancel_abandoned(conn, permit, reuse, behind).await;
        };
        let until = caps.until();
        let mut cancel = pin!(self.cancel_abandoned(conn, permit, reuse, behind));
        tokio::select! {
            biased;
            () = &mut cancel => drop(caps),
            () = tokio::time::sleep_until(until) => {
                drop(caps);
                cancel.await;
            }
        }
    }

    /// The cancel and the settling of [`Pool::settle_abandoned`], without the caps.
    async fn cancel_abandoned(
        self: Arc<Self>,
        conn: Box<Pooled>,
        permit: OwnedSemaphorePermit,
        reuse: bool,
        behind: u8,
    ) {
        let limit = self.limits.connect_timeout;
        let canceller = conn.canceller();
        let mut kept = if reuse {
            Some((conn, permit))
        } else {
            self.check_in(conn, false);
            drop(permit);
            None
        };
        let delivered = canceller
            .send(self.connector.as_ref(), &self.node, &self.login.tls, limit)
            .await;
        let mut settled = false;
        if delivered.is_ok() {
            self.cancels_sent.fetch_add(1, Ordering::Relaxed);
            if let Some((conn, _)) = kept.as_mut() {
                settled = self
                    .settle_cancelled(&mut conn.conn, &canceller, behind)
                    .await;
            }
        }
        match delivered {
            // Per statement, so below `info`: the counters carry the totals.
            Ok(()) => tracing::debug!(
                node = %self.node.name,
                settled,
                "abandoned statement cancelled"
            ),
            Err(error) => tracing::debug!(
                node = %self.node.name,
                reason = %error,
                "could not cancel an abandoned statement; its connection is closed"
            ),
        }
        if let Some((conn, permit)) = kept {
            self.check_in(conn, settled);
            drop(permit);
        }
    }

    /// Waits for `conn`, whose running statement was just cancelled, to answer everything sent
    /// before (see [`Conn::settle`]), and says whether it may serve again. Up to `behind`
    /// statements of a pipeline may wait behind the cancelled one (a read-your-writes read goes out
    /// between two position probes): the server starts each as soon as the one before it ends, and
    /// a cancel stops only the statement running when it lands, so a read queued behind a
    /// cancelled probe would run to its end for nobody, after its request's cap slots were handed
    /// on. So while the connection has not settled, each `recancel_after` another cancel goes out,
    /// one per statement that may be behind.
    ///
    /// A connection that needed another cancel is closed once settled, never reused: nothing says
    /// when a cancel lands, and one sent while the node was far away can arrive after a settling
    /// statement sent later and answered, and would stop the next caller's statement
    /// (`explore-replica-faults` seed 213: a latency fault ended between the two). A cancel that
    /// lands on the settling statement fails it, and the connection is closed too.
    async fn settle_cancelled(&self, conn: &mut Conn, canceller: &Canceller, behind: u8) -> bool {
        let limit = self.limits.connect_timeout;
        let mut settle = pin!(conn.settle(limit));
        let mut recancelled = false;
        for _ in 0..behind {
            tokio::select! {
                biased;
                settled = &mut settle => return settled && !recancelled,
                () = tokio::time::sleep(self.limits.recancel_after) => {}
            }
            recancelled = true;
            let sent = canceller
                .send(self.connector.as_ref(), &self.node, &self.login.tls, limit)
                .await;
            if sent.is_err() {
                break;
            }
            self.cancels_sent.fetch_add(1, Ordering::Relaxed);
        }
        settle.await && !recancelled
    }

    fn discard(&self, conn: Box<Pooled>) {
        drop(conn);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    fn lock_idle(&self) -> MutexGuard<'_, Vec<IdleConn>> {
        // Never held across an await, and every critical section leaves the vector consistent, so a
        // panic elsewhere cannot have left it half-updated.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The right to one connection of a pool, held until the checkout made from it is dropped.
pub(crate) struct Slot {
    pool: Arc<Pool>,
    permit: OwnedSemaphorePermit,
}

impl Slot {
    /// Hands out an idle connection, or opens a new one within `connect_timeout`. Idle connections
    /// found closed by the other end (a sign that the node went away) are counted to `closed_found`
    /// before any connect starts, so that a caller can act on them without waiting for it. `now` is
    /// the caller's clock reading, taken just before: the idle connections' age is judged by it.
    pub(crate) async fn open(
        self,
        now: Instant,
        closed_found: impl FnOnce(u32),
    ) -> Result<Checkout, RouterError> {
        let pool = self.pool;
        let (idle, closed) = pool.take_idle(now);
        if closed > 0 {
            closed_found(closed);
        }
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let socket = pool.socket().await?;
                // Boxed: opening a connection is rare next to reusing one, and its future (the
                // whole startup handshake) would otherwise make every checkout's future, which is
                // moved into place on every statement, over a kilobyte larger.
                let conn = Box::pin(Conn::open(
                    pool.connector.as_ref(),
                    &pool.node,
                    ConnectPurpose::Workload,
                    &pool.login,
                    pool.limits.connect_timeout,
                    Some(socket),
                    Some(Arc::clone(&pool.ended_by_server)),
                ))
                .await?;
                pool.open.fetch_add(1, Ordering::Relaxed);
                Pooled::new(conn)
            }
        };
        Ok(Checkout {
            pool,
            conn: Some(conn),
            reusable: true,
            busy: false,
            permit: Some(self.permit),
            in_transaction: false,
            caps: SharedCapSlots::NONE,
            pipelined_behind: 0,
        })
    }
}

/// Runs `$work` (a statement on the checkout's connection, named `$conn`) within `query_timeout`,
/// marking the checkout busy while it runs, and settles its outcome (see [`Checkout::settle`]).
macro_rules! timed {
    ($checkout:ident, $conn:ident => $work:expr) => {
        timed!($checkout, None, $conn => $work)
    };
    ($checkout:ident, $alarm:expr, $conn:ident => $work:expr) => {{
        let timeout = $checkout.pool.limits.query_timeout;
        let Some(pooled) = $checkout.conn.as_mut() else {
            return Err(RouterError::ShutDown);
        };
        let Pooled {
            conn: $conn,
            statement_timer,
        } = &mut **pooled;
        $checkout.busy = true;
        let result = {
            let work = pin!($work);
            within(statement_timer.as_mut(), timeout, $alarm, work).await
        };
        $checkout.settle_outcome(result)
    }};
}

/// A connection lent out by a pool, returned to it when dropped (or closed, if it went bad).
pub(crate) struct Checkout {
    pool: Arc<Pool>,
    conn: Option<Box<Pooled>>,
    reusable: bool,
    /// A statement was sent and its outcome not yet seen: if the checkout is dropped now (the caller
    /// gave up on it, or its `query_timeout` ran out), the server may still be running it, so it is
    /// cancelled and the connection is reused only once settled.
    busy: bool,
    /// Released after the connection is back in the idle list, so a waiter woken by it finds the
    /// connection; handed to the settling task when a statement is abandoned.
    permit: Option<OwnedSemaphorePermit>,
    /// A `BEGIN` may have run and no `COMMIT` or `ROLLBACK` has been seen to end it: whatever
    /// happens, the connection is closed when dropped rather than handed to a caller who would
    /// find itself inside the transaction (cancelling a statement does not end one).
    in_transaction: bool,
    /// The cap slots of the request using the connection, taken over if a statement it gave up
    /// on must settle (see [`SharedCapSlots`]).
    caps: SharedCapSlots,
    /// Statements of the one in flight sent behind its first, in one round trip (see
    /// [`Checkout::query_between`]): each needs a cancel of its own if it is abandoned.
    pipelined_behind: u8,
}

impl Checkout {
    /// Runs a statement within `query_timeout` and collects its rows.
    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, RouterError> {
        timed!(self, conn => conn.query(sql, params))
    }

    /// [`Checkout::query`] whose timer also rings at `alarm`'s moments (see `hedge`).
    pub(crate) async fn query_alarmed(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        alarm: &Alarm,
    ) -> Result<Vec<Row>, RouterError> {
        timed!(self, Some(alarm), conn => conn.query(sql, params))
    }

    /// Runs `before`, a statement and `after` in one round trip within `query_timeout` (see
    /// [`Conn::query_between`]).
    pub(crate) async fn query_between(
        &mut self,
        before: Option<&str>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        after: &str,
    ) -> Result<Between, RouterError> {
        self.pipelined_behind = if before.is_some() { 2 } else { 1 };
        timed!(self, conn => conn.query_between(before, sql, params, after))
    }

    /// Runs a statement within `query_timeout` and returns how many rows it affected.
    pub(crate) async fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, RouterError> {
        timed!(self, conn => conn.execute(sql, params))
    }

    /// Runs a statement prepared on this connection within `query_timeout`.
    pub(crate) async fn query_prepared(
        &mut self,
        statement: &tokio_postgres::Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, RouterError> {
        timed!(self, conn => conn.query_prepared(statement, params))
    }

    /// Prepares a statement on this connection within `query_timeout`.
    pub(crate) async fn prepare(
        &mut self,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, RouterError> {
        timed!(self, conn => conn.prepare(sql))
    }

    /// Runs parameterless statements over the simple query protocol within `query_timeout`.
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<(), RouterError> {
        timed!(self, conn => conn.batch(sql))
    }

    /// Starts a statement within `query_timeout` and returns its row stream.
    pub(crate) async fn query_stream(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream, RouterError> {
        timed!(self, conn => conn.query_stream(sql, params))
    }

    /// Turns a timed statement's outcome (`Err`: timed out) into the router's error, marking the
    /// connection for closing when it can no longer be trusted.
    pub(crate) fn settle<T>(
        &mut self,
        result: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
    ) -> Result<T, RouterError> {
        self.settle_outcome(result.ok())
    }

    /// [`Checkout::settle`] of an outcome where `None` means timed out.
    fn settle_outcome<T>(
        &mut self,
        result: Option<Result<T, tokio_postgres::Error>>,
    ) -> Result<T, RouterError> {
        self.busy = false;
        if result.is_some() {
            // Answered: nothing of it is left behind at the server.
            self.pipelined_behind = 0;
        }
        match result {
            Some(Ok(value)) => Ok(value),
            Some(Err(source)) => {
                if breaks_connection(&source) {
                    self.reusable = false;
                }
                Err(RouterError::Query {
                    node: self.pool.node.name.clone(),
                    source,
                })
            }
            None => {
                // The server may still be running the statement, or the socket may be wedged: it
                // is cancelled when the checkout is dropped (see `Drop`).
                self.busy = true;
                Err(RouterError::QueryTimeout {
                    node: self.pool.node.name.clone(),
                    timeout: self.pool.limits.query_timeout,
                })
            }
        }
    }

    /// A statement this checkout's request gives up on keeps `caps` until it has settled (at most
    /// their hold time).
    pub(crate) fn settles_with(&mut self, caps: SharedCapSlots) {
        self.caps = caps;
    }

    /// Closes the connection instead of returning it to the pool.
    pub(crate) fn discard(&mut self) {
        self.reusable = false;
    }

    /// Marks the connection as possibly inside a transaction (before its `BEGIN` is sent), or as
    /// out of it again (once a `COMMIT` or `ROLLBACK` succeeded).
    pub(crate) fn set_in_transaction(&mut self, open: bool) {
        self.in_transaction = open;
    }

    /// `query_timeout` of the pool.
    pub(crate) fn query_timeout(&self) -> Duration {
        self.pool.limits.query_timeout
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let permit = self.permit.take();
        if self.busy {
            self.pool.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        // Inside a transaction the connection is closed whatever happens: closing it is what rolls
        // the transaction back. A statement still running is cancelled as well: a server notices
        // a closed connection only once the statement ends, and until then it runs it for nobody.
        let reuse = !self.in_transaction;
        if self.busy && self.reusable && self.pool.limits.cancel_abandoned {
            if let (Ok(runtime), Some(permit)) = (tokio::runtime::Handle::try_current(), permit) {
                let pool = Arc::clone(&self.pool);
                let caps = self.caps.settle();
                let behind = self.pipelined_behind;
                runtime.spawn(pool.settle_abandoned(conn, permit, caps, reuse, behind));
                return;
            }
            // No runtime left to cancel from (the application is shutting down): close it.
            self.pool.check_in(conn, false);
            return;
        }
        self.pool
            .check_in(conn, reuse && self.reusable && !self.busy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::router::test_runtime as runtime;

    /// The connection's timer is re-armed for each statement: one that answers leaves it usable,
    /// and the next statement that hangs still times out, after its own limit.
    #[test]
    fn a_reused_statement_timer_bounds_every_statement() {
        runtime().block_on(async {
            let mut timer = Box::pin(tokio::time::sleep_until(Instant::now()));
            let limit = Duration::from_millis(40);
            let answered = within(timer.as_mut(), limit, None, pin!(async { 7 })).await;
            assert_eq!(answered, Some(7));
            for _ in 0..2 {
                let started = Instant::now();
                let hung = within(
                    timer.as_mut(),
                    limit,
                    None,
                    pin!(std::future::pending::<()>()),
                )
                .await;
                assert_eq!(hung, None, "a hung statement times out");
                assert!(started.elapsed() >= limit, "not before its limit");
            }
        });
    }

    /// An alarm (a watch's slow-request check) earlier than the limit wakes the task but does not
    /// end the statement, which still times out at its own limit, not at the alarm.
    #[test]
    fn an_alarm_wakes_the_watch_but_keeps_the_statement_limit() {
        runtime().block_on(async {
            let mut timer = Box::pin(tokio::time::sleep_until(Instant::now()));
            let started = Instant::now();
            let alarm = Alarm::new(started);
            alarm.set_for_test(Some(started + Duration::from_millis(10)));
            let limit = Duration::from_millis(60);
            let polls = std::sync::atomic::AtomicU32::new(0);
            let hung = std::future::poll_fn(|_| {
                polls.fetch_add(1, Ordering::Relaxed);
                Poll::<()>::Pending
            });
            let outcome = within(timer.as_mut(), limit, Some(&alarm), pin!(hung)).await;
            assert_eq!(outcome, None);
            assert!(started.elapsed() >= limit, "the alarm did not end it");
            assert!(alarm.is_heeded_for_test());
            assert!(
                alarm.has_rung_for_test(),
                "the watch is told the alarm rang"
            );
            // Once at the start, once when the alarm rang, once at the limit (twice without it).
            assert!(
                polls.load(Ordering::Relaxed) >= 3,
                "the alarm woke the task before the limit"
            );
        });
    }
}
