//! Following a promotion: which node of a shard takes writes, as the health checks tell it.
//!
//! Every health check asks `pg_is_in_recovery()`. The answers of one shard's nodes drive a small state
//! machine, [`WriterState::observe`] (a pure function, unit-tested), whose result the routing table
//! publishes: the *writer* (the node writes and primary reads go to) and the *retired* nodes (former
//! writers, which take no work at all).
//!
//! The rule:
//! - The shard starts with its configured primary as the writer, *unconfirmed* until a check of it
//!   answers "not in recovery".
//! - A node that answers "not in recovery" after a check of it answered "in recovery" was promoted:
//!   it becomes the writer, and the writer before it is retired. This is the only way a confirmed
//!   writer is replaced, so an old primary that still answers "not in recovery" (fenced read-only,
//!   as PostgreSQL's `default_transaction_read_only` leaves it) is never chosen back.
//! - While the writer is unconfirmed or unknown, a node never seen in recovery that answers "not in
//!   recovery" becomes the writer (the router started after a failover); the unconfirmed one retires.
//! - Otherwise a node never seen in recovery that claims to be a primary while a confirmed writer
//!   exists is retired: two primaries at once is a split brain, and the one the router followed
//!   keeps the writes.
//! - A writer that answers "in recovery" (demoted and rebuilt as a replica) stops being the writer;
//!   writes then fail with [`crate::router::RouterError::NoPrimary`] until a promotion is seen.
//! - A retired node that answers "in recovery" (rebuilt as a replica) rejoins as a replica.
//!
//! Writes never go anywhere but the writer, and are never retried on another node. A write refused
//! with SQLSTATE 25006 (read-only) or failed by its node, and a writer that turns unhealthy, ask every
//! node of the shard for an immediate check, so that a promotion is seen without waiting for the
//! next health interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::router::route::{PRIMARY_POSITION, ServedRole, ShardRoute};

/// What one shard's checks have told about its roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterState {
    /// Position of the node that takes writes; `None` while no primary is known.
    pub writer: Option<u32>,
    /// Whether a check of the writer answered "not in recovery" since it became the writer.
    pub confirmed: bool,
    /// Positions whose last good check answered "in recovery".
    pub in_recovery: u64,
    /// Former writers (and unexpected primaries) that take no work until they answer "in recovery".
    pub retired: u64,
}

/// What one observation changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriterChange {
    /// Nothing the routing table shows.
    Unchanged,
    /// The writer's first "not in recovery" answer.
    Confirmed,
    /// A new writer; the former one (if any) is retired.
    Promoted {
        /// The former writer.
        from: Option<u32>,
        /// The new writer.
        to: u32,
    },
    /// The writer answered "in recovery": no primary is known.
    Lost {
        /// The former writer.
        from: u32,
    },
    /// A node claimed to be a primary while another is the writer: it takes no work.
    Retired(u32),
    /// A retired node answered "in recovery": it serves reads again.
    Rejoined(u32),
}

fn bit(position: u32) -> u64 {
    1u64.checked_shl(position).unwrap_or(0)
}

impl WriterState {
    /// The state before any check: the configured primary is the (unconfirmed) writer.
    pub fn new() -> WriterState {
        WriterState {
            writer: Some(PRIMARY_POSITION),
            confirmed: false,
            in_recovery: 0,
            retired: 0,
        }
    }

    /// The state after a good check of the node at `position` that reported `role` (`Primary`: not
    /// in recovery), and what changed. See the module doc for the rule.
    pub fn observe(self, position: u32, role: ServedRole) -> (WriterState, WriterChange) {
        let mut next = self;
        let seen_in_recovery = self.in_recovery & bit(position) != 0;
        let retired = self.retired & bit(position) != 0;
        let is_writer = self.writer == Some(position);
        if role == ServedRole::Replica {
            next.in_recovery |= bit(position);
            next.retired &= !bit(position);
            if is_writer {
                next.writer = None;
                next.confirmed = false;
                return (next, WriterChange::Lost { from: position });
            }
            let change = if retired {
                WriterChange::Rejoined(position)
            } else {
                WriterChange::Unchanged
            };
            return (next, change);
        }
        next.in_recovery &= !bit(position);
        if is_writer {
            next.confirmed = true;
            let change = if self.confirmed {
                WriterChange::Unchanged
            } else {
                WriterChange::Confirmed
            };
            return (next, change);
        }
        // A writer only the configuration vouches for yields to any node out of recovery.
        let writer_confirmed = self.confirmed && self.writer.is_some();
        let takes_over = seen_in_recovery || !(retired || writer_confirmed);
        if takes_over {
            if let Some(former) = self.writer {
                next.retired |= bit(former);
            }
            next.retired &= !bit(position);
            next.writer = Some(position);
            next.confirmed = true;
            return (
                next,
                WriterChange::Promoted {
                    from: self.writer,
                    to: position,
                },
            );
        }
        next.retired |= bit(position);
        let change = if retired {
            WriterChange::Unchanged
        } else {
            WriterChange::Retired(position)
        };
        (next, change)
    }
}

impl Default for WriterState {
    fn default() -> Self {
        WriterState::new()
    }
}

/// The role-following state of one shard, beside its routing table entry.
#[derive(Debug)]
pub struct ShardRoles {
    state: Mutex<WriterState>,
    /// false: the writer stays the configured primary whatever the checks say (static roles).
    follow: AtomicBool,
    /// Wakes every check loop of the shard for an immediate check.
    recheck: Notify,
}

impl ShardRoles {
    /// Roles before any check, following promotions.
    pub fn new() -> ShardRoles {
        ShardRoles {
            state: Mutex::new(WriterState::new()),
            follow: AtomicBool::new(true),
            recheck: Notify::new(),
        }
    }

    /// Turns promotion following on or off (`RouterConfig::follow_promotion`).
    pub fn set_follow(&self, follow: bool) {
        self.follow.store(follow, Ordering::Relaxed);
    }

    /// The state now.
    pub fn state(&self) -> WriterState {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks every check loop of the shard for an immediate check.
    pub fn request_recheck(&self) {
        self.recheck.notify_waiters();
    }

    /// Completes at the next [`ShardRoles::request_recheck`].
    pub fn recheck_requested(&self) -> Notified<'_> {
        self.recheck.notified()
    }
}

impl Default for ShardRoles {
    fn default() -> Self {
        ShardRoles::new()
    }
}

/// Feeds a good check of the node at `position` of `shard` to the shard's state and publishes the
/// result in the routing table. With promotion following off, nothing changes.
pub(crate) fn observe(shard: &ShardRoute, position: u32, role: ServedRole) -> WriterChange {
    let roles = &shard.roles;
    if !roles.follow.load(Ordering::Relaxed) {
        return WriterChange::Unchanged;
    }
    let mut state = roles.state.lock().unwrap_or_else(PoisonError::into_inner);
    let (next, change) = state.observe(position, role);
    *state = next;
    if change != WriterChange::Unchanged {
        shard.publish_roles(next.writer, next.retired);
    }
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    use ServedRole::{Primary, Replica};

    /// Feeds `(position, role)` answers in order; returns the final state and every change.
    fn run(answers: &[(u32, ServedRole)]) -> (WriterState, Vec<WriterChange>) {
        let mut state = WriterState::new();
        let mut changes = Vec::new();
        for &(position, role) in answers {
            let (next, change) = state.observe(position, role);
            if change != WriterChange::Unchanged {
                changes.push(change);
            }
            state = next;
        }
        (state, changes)
    }

    /// The first round of a healthy shard of a primary and two replicas.
    const HEALTHY: [(u32, ServedRole); 3] = [(0, Primary), (1, Replica), (2, Replica)];

    #[test]
    fn the_configured_primary_is_confirmed_by_its_first_check() {
        let (state, changes) = run(&HEALTHY);
        assert_eq!(state.writer, Some(0));
        assert!(state.confirmed);
        assert_eq!(changes, vec![WriterChange::Confirmed]);
        assert_eq!(state.in_recovery, 0b110);
    }

    #[test]
    fn a_replica_leaving_recovery_becomes_the_writer_and_retires_the_old_one() {
        let mut answers = HEALTHY.to_vec();
        answers.push((1, Primary));
        let (state, changes) = run(&answers);
        assert_eq!(state.writer, Some(1));
        assert_eq!(state.retired, 0b001);
        assert_eq!(
            changes.last(),
            Some(&WriterChange::Promoted {
                from: Some(0),
                to: 1
            })
        );
    }

    #[test]
    fn a_fenced_old_primary_still_out_of_recovery_is_never_chosen_back() {
        let mut answers = HEALTHY.to_vec();
        answers.extend([(1, Primary), (0, Primary), (0, Primary), (1, Primary)]);
        let (state, changes) = run(&answers);
        assert_eq!(state.writer, Some(1));
        assert_eq!(state.retired, 0b001, "the old primary stays retired");
        assert_eq!(changes.len(), 2, "{changes:?}");
    }

    #[test]
    fn a_rebuilt_old_primary_rejoins_as_a_replica_and_can_be_promoted_again() {
        let mut answers = HEALTHY.to_vec();
        answers.extend([(1, Primary), (0, Replica), (0, Primary)]);
        let (state, changes) = run(&answers);
        assert_eq!(
            changes[2..],
            [
                WriterChange::Rejoined(0),
                WriterChange::Promoted {
                    from: Some(1),
                    to: 0
                }
            ]
        );
        assert_eq!((state.writer, state.retired), (Some(0), 0b010));
    }

    #[test]
    fn a_primary_that_restarts_without_a_promotion_stays_the_writer() {
        // Failed checks are not observations: only good answers reach the state machine.
        let mut answers = HEALTHY.to_vec();
        answers.extend([(0, Primary), (2, Replica)]);
        let (state, changes) = run(&answers);
        assert_eq!((state.writer, state.retired), (Some(0), 0));
        assert_eq!(changes, vec![WriterChange::Confirmed]);
    }

    #[test]
    fn a_second_primary_never_seen_in_recovery_is_retired_not_followed() {
        let (state, changes) = run(&[(0, Primary), (1, Primary), (1, Primary)]);
        assert_eq!(state.writer, Some(0));
        assert_eq!(state.retired, 0b010);
        assert_eq!(
            changes,
            vec![WriterChange::Confirmed, WriterChange::Retired(1)]
        );
    }

    #[test]
    fn a_router_started_after_a_failover_finds_the_primary() {
        // The configured primary is down at start; replica 2 is already the primary.
        let (state, changes) = run(&[(1, Replica), (2, Primary)]);
        assert_eq!((state.writer, state.retired), (Some(2), 0b001));
        assert_eq!(
            changes,
            vec![WriterChange::Promoted {
                from: Some(0),
                to: 2
            }]
        );
    }

    #[test]
    fn a_demoted_writer_leaves_no_primary_until_a_promotion() {
        let mut answers = HEALTHY.to_vec();
        answers.push((0, Replica));
        let (state, changes) = run(&answers);
        assert_eq!(state.writer, None);
        assert_eq!(changes.last(), Some(&WriterChange::Lost { from: 0 }));
        let (state, change) = state.observe(2, Primary);
        assert_eq!(state.writer, Some(2));
        assert_eq!(change, WriterChange::Promoted { from: None, to: 2 });
    }
}
