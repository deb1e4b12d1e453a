//! CancelRequest, as PostgreSQL serves it: a client opens a connection of its own, sends the process
//! id and secret key it got in `BackendKeyData`, and the statement running on that other connection
//! ends with SQLSTATE 57014 ("canceling statement due to user request"). A cancel for a connection
//! that is idle, gone, or named with a wrong key does nothing, and the sender is never told.
//!
//! The node keeps one entry per open client connection: its key and whether a statement is running.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use futures::task::AtomicWaker;
use pgwire::messages::startup::SecretKey;

/// The cancel state of one connection.
#[derive(Debug)]
pub(crate) struct CancelSlot {
    secret: SecretKey,
    /// A statement is executing: a cancel now ends it.
    running: AtomicBool,
    /// Set by a cancel that found a statement running; cleared when the next statement starts.
    requested: AtomicBool,
    /// The task of the statement running, while it waits (one statement runs per connection at a
    /// time, so one waker suffices; registering it takes no lock, unlike a `Notify` waiter, and
    /// every statement with a service time registers).
    wake: AtomicWaker,
}

impl CancelSlot {
    /// Marks a statement as running on the connection until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> Running {
        self.requested.store(false, Ordering::Relaxed);
        self.running.store(true, Ordering::Relaxed);
        Running {
            slot: Arc::clone(self),
        }
    }
}

/// A statement running on a connection; a cancel of the connection reaches it.
#[derive(Debug)]
pub(crate) struct Running {
    slot: Arc<CancelSlot>,
}

impl Running {
    /// Completes when a cancel arrives for the statement.
    pub(crate) async fn cancelled(&self) {
        std::future::poll_fn(|cx| {
            // Registered before the flag is read: a cancel in between wakes this waker.
            self.slot.wake.register(cx.waker());
            if self.slot.requested.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Whether a cancel arrived for the statement.
    pub(crate) fn was_cancelled(&self) -> bool {
        self.slot.requested.load(Ordering::Relaxed)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.slot.running.store(false, Ordering::Relaxed);
    }
}

/// The open connections of one node that a cancel may name, by process id.
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    slots: Mutex<BTreeMap<i32, Arc<CancelSlot>>>,
}

impl Cancels {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<i32, Arc<CancelSlot>>> {
        // Never held across an await; every critical section is one map operation.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection at startup, with the key it was given.
    pub(crate) fn register(&self, pid: i32, secret: SecretKey) -> Arc<CancelSlot> {
        let slot = Arc::new(CancelSlot {
            secret,
            running: AtomicBool::new(false),
            requested: AtomicBool::new(false),
            wake: AtomicWaker::new(),
        });
        self.lock().insert(pid, Arc::clone(&slot));
        slot
    }

    /// Forgets a connection that ended.
    pub(crate) fn unregister(&self, pid: i32) {
        self.lock().remove(&pid);
    }

    /// Serves one CancelRequest: ends the statement running on connection `pid` if `secret` is its
    /// key. Returns whether a statement was cancelled (the sender is not told).
    pub(crate) fn cancel(&self, pid: i32, secret: &SecretKey) -> bool {
        let Some(slot) = self.lock().get(&pid).cloned() else {
            return false;
        };
        // A cancel connection never completes startup, so a 4-byte key may decode as bytes there
        // while the connection's own key is an integer: compare values.
        if !slot.secret.eq_value(secret) || !slot.running.load(Ordering::Relaxed) {
            return false;
        }
        slot.requested.store(true, Ordering::Release);
        slot.wake.wake();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_reaches_only_a_running_statement_with_the_right_key() {
        let cancels = Cancels::default();
        let slot = cancels.register(7, SecretKey::I32(42));
        assert!(
            !cancels.cancel(7, &SecretKey::I32(42)),
            "idle: nothing to cancel"
        );
        let running = slot.start();
        assert!(!cancels.cancel(7, &SecretKey::I32(41)), "wrong key");
        assert!(
            !cancels.cancel(8, &SecretKey::I32(42)),
            "no such connection"
        );
        let bytes = |key: i32| SecretKey::Bytes(bytes::Bytes::copy_from_slice(&key.to_be_bytes()));
        assert!(!cancels.cancel(7, &bytes(41)), "wrong key as bytes");
        assert!(!running.was_cancelled());
        // A cancel connection decodes the key as four bytes.
        assert!(cancels.cancel(7, &bytes(42)));
        assert!(running.was_cancelled());
        drop(running);
        let next = slot.start();
        assert!(!next.was_cancelled(), "a cancel ends one statement only");
        drop(next);
        cancels.unregister(7);
        assert!(!cancels.cancel(7, &SecretKey::I32(42)), "gone");
    }
}
