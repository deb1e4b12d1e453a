//! Read-your-writes: causal tokens, the reads that honour them, and sessions that carry them.
//!
//! A write returns a [`CausalToken`]: the primary's WAL position right after it (read on the same
//! connection, pipelined behind it, so at least its commit position). A read given a token goes only
//! to a replica that has replayed up to it: one the probes (or earlier reads) already saw there, or
//! else one that says so on the read's own connection, in the same round trip (its replay position
//! before the read); if that replica is behind, the read goes to the primary. Every read returns a
//! token too, at least as new as the state it saw (the node's position after the read), so a
//! [`Session`] that keeps the newest token also never reads older data than it read before.
//!
//! Positions belong to one shard's WAL: a token is only meaningful for orgs of the shard it came
//! from, which is why a session keeps tokens per shard, and within a shard per [`Scope`] (see
//! [`causal_scope`](crate::router::causal_scope)).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use tokio::time::Instant;
use tokio_postgres::Row;
use tokio_postgres::types::{PgLsn, ToSql};

use crate::router::caps::{RequestCaps, SharedCapSlots};
use crate::router::causal_scope::{SCOPE_CAPACITY_DEFAULT, Scope, ShardTokens};
use crate::router::conn::Between;
use crate::router::error::RouterError;
use crate::router::hedge::Watch;
use crate::router::lag::PRIMARY_LSN_SQL;
use crate::router::lsn::{Lsn, ParseLsnError};
use crate::router::node::Node;
use crate::router::route::{NodeIdx, ShardRoute, Tried};
use crate::router::route_reason::RouteReason;
use crate::router::stats::{AttemptEnd, AttemptGuard};
use crate::router::transaction::Transaction;
use crate::router::{Inner, ReadRequest, Routed, Router, WriteRequest};

/// What a read on a replica asks around the statement: how far the replica has replayed.
pub const REPLAY_LSN_SQL: &str = "SELECT pg_last_wal_replay_lsn()";

/// A point in one shard's history: data read with it is at least this new. Written like a WAL
/// position (`0/16B3748`), in text and in serde, so that it can travel between processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CausalToken(pub Lsn);

impl CausalToken {
    /// The WAL position it stands for.
    pub fn lsn(self) -> Lsn {
        self.0
    }
}

impl fmt::Display for CausalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for CausalToken {
    type Err = ParseLsnError;

    fn from_str(text: &str) -> Result<CausalToken, ParseLsnError> {
        text.parse().map(CausalToken)
    }
}

impl serde::Serialize for CausalToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for CausalToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<CausalToken, D::Error> {
        Lsn::deserialize(deserializer).map(CausalToken)
    }
}

/// The newer of two tokens, either of which may be missing.
fn newest(a: Option<Lsn>, b: Option<Lsn>) -> CausalToken {
    CausalToken(a.max(b).unwrap_or_default())
}

/// A sequence of reads and writes that sees its own writes and never goes back in time, per
/// [`Scope`]: every operation's token is kept (per shard and scope), and every read is given the
/// token of its scope. [`Session::read`] and [`Session::write`] use the whole shard as the scope;
/// [`Session::read_in`] and [`Session::write_in`] take the scope the application names, so that a
/// read waits only for the session's operations in that scope (and shard-scoped ones).
pub struct Session {
    router: Router,
    tokens: BTreeMap<String, ShardTokens>,
    scope_capacity: usize,
}

impl Session {
    /// A session with nothing seen yet, keeping at most [`SCOPE_CAPACITY_DEFAULT`] scoped tokens
    /// per shard.
    pub fn new(router: Router) -> Session {
        Session {
            router,
            tokens: BTreeMap::new(),
            scope_capacity: SCOPE_CAPACITY_DEFAULT,
        }
    }

    /// Keeps at most `capacity` scoped tokens per shard (default [`SCOPE_CAPACITY_DEFAULT`]); past
    /// that, the scope updated least recently becomes a floor for every scope, which is safe but
    /// sends more reads to the primary. Applies to shards the session has not touched yet.
    pub fn scope_capacity(&mut self, capacity: usize) -> &mut Self {
        self.scope_capacity = capacity;
        self
    }

    /// The newest token of the shard serving `org` (every scope), to hand to another process or
    /// session.
    pub fn token(&self, org: i64) -> Option<CausalToken> {
        self.token_in(org, Scope::Shard)
    }

    /// The token a read in `scope` of `org`'s shard waits for.
    pub fn token_in(&self, org: i64, scope: Scope) -> Option<CausalToken> {
        let shard = self.router.shard_name(org)?;
        self.tokens.get(shard).map(|tokens| tokens.token(scope))
    }

    /// Makes later reads for orgs of `org`'s shard, in every scope, at least as new as `token`
    /// (e.g. one another process wrote with).
    pub fn observe(&mut self, org: i64, token: CausalToken) {
        self.observe_in(org, Scope::Shard, token);
    }

    /// Makes later reads in `scope` of `org`'s shard (and shard-scoped ones) at least as new as
    /// `token`.
    pub fn observe_in(&mut self, org: i64, scope: Scope, token: CausalToken) {
        let Some(shard) = self.router.shard_name(org) else {
            return;
        };
        let capacity = self.scope_capacity;
        let tokens = self
            .tokens
            .entry(shard.to_string())
            .or_insert_with(|| ShardTokens::new(capacity));
        if tokens.is_full()
            && let Some(replayed) = self.router.replayed_everywhere(org)
        {
            // Before a scope is folded into the floor, drop those that restrict nothing any more.
            tokens.forget_replayed(replayed);
        }
        tokens.observe(scope, token);
    }

    /// Runs a read that sees every earlier operation of the session in the shard (see
    /// [`Router::read_causal`]).
    pub async fn read(
        &mut self,
        request: ReadRequest,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Routed<Vec<Row>>, RouterError> {
        self.read_in(Scope::Shard, request, sql, params).await
    }

    /// Runs a read that sees every earlier operation of the session in `scope` and every
    /// shard-scoped one; the token it returns is kept for `scope`.
    pub async fn read_in(
        &mut self,
        scope: Scope,
        request: ReadRequest,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Routed<Vec<Row>>, RouterError> {
        let token = self.token_in(request.org, scope);
        let (routed, next) = self.router.read_causal(request, token, sql, params).await?;
        self.observe_in(request.org, scope, next);
        Ok(routed)
    }

    /// Runs a write that every later read of the session in the shard will see (see
    /// [`Router::write_causal`]).
    pub async fn write(
        &mut self,
        request: WriteRequest,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Routed<Vec<Row>>, RouterError> {
        self.write_in(Scope::Shard, request, sql, params).await
    }

    /// Runs a write that later reads of the session in `scope` (and shard-scoped ones) will see.
    /// The write must touch only what `scope` names, or reads in other scopes may miss it.
    pub async fn write_in(
        &mut self,
        scope: Scope,
        request: WriteRequest,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Routed<Vec<Row>>, RouterError> {
        let (routed, token) = self.router.write_causal(request, sql, params).await?;
        self.observe_in(request.org, scope, token);
        Ok(routed)
    }

    /// Opens a read-only transaction whose snapshot sees every earlier operation of the session in
    /// `scope` (see [`Router::begin_read_after`]).
    pub async fn begin_read_in(
        &mut self,
        scope: Scope,
        request: ReadRequest,
    ) -> Result<Transaction, RouterError> {
        let token = self.token_in(request.org, scope);
        self.router.begin_read_after(request, token).await
    }

    /// Commits `transaction` (a write transaction of `org`'s shard) so that later reads of the
    /// session in `scope` see it.
    pub async fn commit_in(
        &mut self,
        scope: Scope,
        org: i64,
        transaction: Transaction,
    ) -> Result<(), RouterError> {
        let token = transaction.commit_causal().await?;
        self.observe_in(org, scope, token);
        Ok(())
    }
}

/// What one attempt of a causal read asks of its node, and the request's cap slots.
struct CausalAttempt {
    /// Ask a replica, before the read, whether it has replayed up to `token`.
    check_before: bool,
    token: Option<Lsn>,
    caps: SharedCapSlots,
}

/// One read attempt of a causal read.
struct CausalRead {
    rows: Vec<Row>,
    /// false: the replica had not replayed up to the token before the read; the rows are too old.
    reached: bool,
    /// The node's position after the read.
    lsn_after: Option<Lsn>,
}

impl Router {
    /// The name of the shard serving `org`.
    pub fn shard_name(&self, org: i64) -> Option<&str> {
        self.inner
            .table
            .shard_for(org)
            .map(|shard| shard.name.as_str())
    }

    /// The newest position every replica of `org`'s shard is known to have replayed (from probes
    /// and reads); `None` if the shard has no replica or one has not been seen yet.
    pub fn replayed_everywhere(&self, org: i64) -> Option<CausalToken> {
        let inner = self.running().ok()?;
        let shard = inner.shard(org).ok()?;
        let mut oldest: Option<Lsn> = None;
        for &node in &shard.replicas {
            let replayed = inner.nodes.get(node)?.stats.lag.replay_lsn()?;
            oldest = Some(oldest.map_or(replayed, |lsn| lsn.min(replayed)));
        }
        oldest.map(CausalToken)
    }

    /// Runs a write like [`Router::write`] and returns with it the token of its commit. If the
    /// position cannot be read after the write, the write's outcome is unknown, as after any
    /// failed write.
    pub async fn write_causal(
        &self,
        request: WriteRequest,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Routed<Vec<Row>>, CausalToken), RouterError> {
        let inner = self.running()?;
        let routed = inner
            .write_with(request, |node, caps| async move {
                let (_, rows, after) = inner
                    .collect_between(node, Watch::OFF, caps, None, sql, params, PRIMARY_LSN_SQL)
                    .await?;
                Ok((rows, inner.lsn_of(node, &after)?))
            })
            .await?;
        let (rows, lsn) = routed.value;
        let token = newest(lsn, None);
        let routed = Routed {
            value: rows,
            node: routed.node,
            role: routed.role,
            attempts: routed.attempts,
        };
        Ok((routed, token))
    }

    /// Runs a read like [`Router::read`] that sees at least the state of `after` (a token of the
    /// org's shard), and returns with it a token at least as new as what it saw. A replica serves
    /// it only if it has replayed up to `after`; when none is known to have, a replica checks on
    /// the read's own connection and, if behind, the read goes to the primary.
    pub async fn read_causal(
        &self,
        request: ReadRequest,
        after: Option<CausalToken>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Routed<Vec<Row>>, CausalToken), RouterError> {
        let inner = self.running()?;
        let shard = inner.shard(request.org)?;
        let caps = inner.caps.acquire_for(request.user, request.org).await?;
        let token = after.map(CausalToken::lsn);
        let prefer_replica = request.prefer_replica && inner.config.use_read_replicas;
        let mut start = Tried::default();
        let mut check_before = false;
        let mut steered = false;
        if let (Some(lsn), true) = (token, prefer_replica) {
            let readable = inner.readable_replicas(shard);
            let caught_up = inner.caught_up_replicas(shard, lsn);
            let worth_checking = readable & !inner.seemingly_behind_replicas(shard);
            // The shard's writer (the configured primary, or a promoted replica) has every write.
            let writer = shard
                .writer_position()
                .map_or(0, |position| 1u64.checked_shl(position).unwrap_or(0));
            if readable & caught_up != 0 {
                start = start.restricted_to(caught_up | writer);
                steered = readable & !caught_up != 0;
            } else if worth_checking != 0 {
                start = start.restricted_to(worth_checking | writer);
                check_before = true;
                steered = readable & !worth_checking != 0;
            } else if readable != 0 {
                // Every usable replica is still short of a token it was found behind: the primary.
                return inner
                    .read_on_primary(shard, token, &caps, sql, params)
                    .await
                    .map(|routed| finish(routed, token));
            }
        }
        let first = inner
            .read_with_retries(
                shard,
                request.prefer_replica,
                start,
                &caps,
                |node, watch| {
                    if std::mem::take(&mut steered) {
                        inner.count_route(node, RouteReason::ReadYourWrites);
                    }
                    let attempt = CausalAttempt {
                        check_before,
                        token,
                        caps: caps.slots(),
                    };
                    inner.causal_attempt(shard, node, watch, attempt, sql, params)
                },
            )
            .await?;
        if first.value.reached {
            return Ok(finish(first, token));
        }
        // The replica was behind: the primary has every write.
        let second = inner
            .read_on_primary(shard, token, &caps, sql, params)
            .await?;
        let attempts = first.attempts.saturating_add(second.attempts);
        let (mut routed, next) = finish(second, token);
        routed.attempts = attempts;
        drop(caps);
        Ok((routed, next))
    }
}

/// The rows of a causal read and the session's next token.
fn finish(routed: Routed<CausalRead>, token: Option<Lsn>) -> (Routed<Vec<Row>>, CausalToken) {
    let next = newest(token, routed.value.lsn_after);
    let rows = Routed {
        value: routed.value.rows,
        node: routed.node,
        role: routed.role,
        attempts: routed.attempts,
    };
    (rows, next)
}

impl Inner {
    /// A causal read sent to the primary because of its token.
    async fn read_on_primary(
        &self,
        shard: &ShardRoute,
        token: Option<Lsn>,
        caps: &RequestCaps<'_>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Routed<CausalRead>, RouterError> {
        let mut redirected = true;
        self.read_with_retries(shard, false, Tried::default(), caps, |node, watch| {
            if std::mem::take(&mut redirected) {
                self.count_route(node, RouteReason::ReadYourWrites);
            }
            let attempt = CausalAttempt {
                check_before: false,
                token,
                caps: caps.slots(),
            };
            self.causal_attempt(shard, node, watch, attempt, sql, params)
        })
        .await
    }

    /// Positions (bit 1 + i) of the replicas of `shard` that serve as replicas now (not the writer,
    /// a promoted replica, nor a retired node) and pass `test`.
    fn replicas_where(&self, shard: &ShardRoute, test: impl Fn(&Node) -> bool) -> u64 {
        shard
            .replicas
            .iter()
            .zip(1u32..)
            .filter(|(node, _)| self.nodes.get(**node).is_some_and(|node| test(node)))
            .fold(0, |set, (_, position)| set | 1u64 << position)
            & shard.replica_positions()
    }

    /// Replica positions found short of a token they have not been seen to reach since.
    fn seemingly_behind_replicas(&self, shard: &ShardRoute) -> u64 {
        self.replicas_where(shard, |node| node.stats.lag.seems_behind())
    }

    /// Replica positions (bit 1 + i) that routing may use now: healthy, not ejected, fresh.
    fn readable_replicas(&self, shard: &ShardRoute) -> u64 {
        (1..=u32::try_from(shard.replicas.len()).unwrap_or(u32::MAX))
            .filter(|&position| shard.is_usable(position) && shard.is_fresh(position))
            .fold(0, |set, position| set | 1u64 << position)
            & shard.replica_positions()
    }

    /// Replica positions known (from probes and earlier reads) to have replayed up to `lsn`.
    pub(crate) fn caught_up_replicas(&self, shard: &ShardRoute, lsn: Lsn) -> u64 {
        self.replicas_where(shard, |node| {
            node.stats
                .lag
                .replay_lsn()
                .is_some_and(|replayed| replayed >= lsn)
        })
    }

    /// One attempt of a causal read on `node`: the read with the node's position after it, and
    /// before it too when `check_before` asks a replica whether it reached `token`.
    async fn causal_attempt(
        &self,
        shard: &ShardRoute,
        node: NodeIdx,
        watch: Watch<'_>,
        attempt: CausalAttempt,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<CausalRead, RouterError> {
        let CausalAttempt {
            check_before,
            token,
            caps,
        } = attempt;
        // The shard's writer now: a promoted replica answers its current WAL position, not the
        // replay position it stopped at when it left recovery.
        let writer_before = shard.writer_position();
        let position = shard.position_of(node);
        let primary = position.is_some() && position == writer_before;
        let before = (check_before && !primary).then_some(REPLAY_LSN_SQL);
        let after = if primary {
            PRIMARY_LSN_SQL
        } else {
            REPLAY_LSN_SQL
        };
        let (before_rows, rows, after_rows) = self
            .collect_between(node, watch, caps, before, sql, params, after)
            .await?;
        if !primary && position.is_some() && shard.writer_position() == position {
            // The node was promoted while the read ran: it may have taken writes its frozen replay
            // position does not cover, so the read is repeated on the writer.
            return Ok(CausalRead {
                rows,
                reached: false,
                lsn_after: None,
            });
        }
        let stats = self.nodes.get(node).map(|n| &n.stats);
        let reached = match (token, before_rows) {
            (Some(token), Some(before_rows)) => {
                let replayed = self.lsn_of(node, &before_rows)?;
                let reached = replayed.is_some_and(|replayed| replayed >= token);
                if let (false, Some(stats)) = (reached, stats) {
                    stats.lag.mark_behind(token);
                }
                reached
            }
            _ => true,
        };
        let lsn_after = self.lsn_of(node, &after_rows)?;
        if let (false, Some(replayed), Some(stats)) = (primary, lsn_after, stats) {
            stats.lag.observe_replay(replayed);
        }
        Ok(CausalRead {
            rows,
            reached,
            lsn_after,
        })
    }

    /// The position in the first column of the first row of `rows` (NULL: none).
    fn lsn_of(&self, node: NodeIdx, rows: &[Row]) -> Result<Option<Lsn>, RouterError> {
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        row.try_get::<_, Option<PgLsn>>(0)
            .map(|lsn| lsn.map(Lsn::from))
            .map_err(|source| RouterError::Query {
                node: self
                    .nodes
                    .get(node)
                    .map_or_else(String::new, |n| n.name().to_string()),
                source,
            })
    }

    /// One attempt of `before`, a statement and `after` on `node` in one round trip; `caps`: the
    /// request's cap slots.
    #[allow(clippy::too_many_arguments)]
    async fn collect_between(
        &self,
        node: NodeIdx,
        watch: Watch<'_>,
        caps: SharedCapSlots,
        before: Option<&str>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        after: &str,
    ) -> Result<Between, RouterError> {
        let node = &self.nodes[node];
        let attempt = AttemptGuard::borrowing(&node.stats);
        let result = async {
            let slot = watch.queue(node, node.pool.acquire()).await?;
            let started = Instant::now();
            let work = async {
                let mut checkout = slot
                    .open(started, |closed| node.report_closed(closed))
                    .await?;
                checkout.settles_with(caps);
                checkout.query_between(before, sql, params, after).await
            };
            let result = watch.run(node, started, None, work).await;
            node.note_answer(started, &result);
            result
        }
        .await;
        attempt.end(AttemptEnd::of(&result));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_order_by_position_and_read_back_from_text_and_json() {
        let early: CausalToken = "0/16B3748".parse().unwrap_or_default();
        let late: CausalToken = "1/0".parse().unwrap_or_default();
        assert_eq!(early, CausalToken(Lsn(0x16B_3748)));
        assert!(early < late);
        assert_eq!(late.to_string(), "1/0");
        let json = serde_json::to_string(&late).unwrap_or_default();
        assert_eq!(json, "\"1/0\"");
        assert_eq!(serde_json::from_str::<CausalToken>(&json).ok(), Some(late));
        assert!("16B3748".parse::<CausalToken>().is_err());
    }

    #[test]
    fn the_next_token_is_the_newer_of_the_session_and_the_read() {
        assert_eq!(newest(Some(Lsn(9)), Some(Lsn(4))), CausalToken(Lsn(9)));
        assert_eq!(newest(Some(Lsn(4)), Some(Lsn(9))), CausalToken(Lsn(9)));
        assert_eq!(newest(None, Some(Lsn(4))), CausalToken(Lsn(4)));
        assert_eq!(newest(Some(Lsn(4)), None), CausalToken(Lsn(4)));
        assert_eq!(newest(None, None), CausalToken::default());
    }
}
