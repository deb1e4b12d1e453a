//! Transactions: several statements on one pooled connection, with the user's and org's caps held
//! until the transaction ends.
//!
//! [`Router::begin`] opens a transaction on the shard's writer; [`Router::begin_read`] opens a
//! read-only one (`REPEATABLE READ`: every read sees one snapshot) on a replica, or on the primary
//! when no replica is usable, retrying the `BEGIN` on another node like any read. Once the `BEGIN`
//! has run, nothing is ever retried: a statement that fails with its node or connection, or a
//! promotion that moves the shard's writer while a write transaction is open, discards the
//! connection (the server rolls the transaction back) and every later call fails with
//! [`RouterError::TransactionLost`]. A statement error (a constraint, a syntax error) is the
//! application's: the transaction stays open, and PostgreSQL refuses further statements until
//! [`Transaction::rollback`] or [`Transaction::rollback_to`].
//!
//! Dropping a transaction without [`Transaction::commit`] or [`Transaction::rollback`] closes its
//! connection instead of returning it to the pool: the server rolls it back, and no later caller can
//! find itself inside someone else's transaction. The same holds for a `BEGIN` that timed out or
//! was given up: it may still have run on the server, so its connection is closed too.

use std::fmt;

use tokio::time::Instant;
use tokio_postgres::types::{PgLsn, ToSql};
use tokio_postgres::{Row, Statement};

use crate::router::caps::SharedCapSlots;
use crate::router::causal::CausalToken;
use crate::router::error::RouterError;
use crate::router::hedge::Watch;
use crate::router::lag::PRIMARY_LSN_SQL;
use crate::router::lsn::Lsn;
use crate::router::node::Node;
use crate::router::pool::Checkout;
use crate::router::route::{self, Choice, NodeIdx, ShardRoute, Tried};
use crate::router::route_reason::RouteReason;
use crate::router::stats::{AttemptEnd, AttemptGuard};
use crate::router::{Inner, ReadRequest, Router, ServedRole, WriteRequest};

/// What a write transaction sends first.
pub const BEGIN_SQL: &str = "BEGIN";

/// What a read-only transaction sends first: one consistent snapshot for all its reads.
pub const BEGIN_READ_SQL: &str = "BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ";

/// An open transaction on one node. See the [module documentation](self).
pub struct Transaction {
    // Dropped in this order: the connection goes back to its pool (or is closed) before the
    // caller's cap slots free.
    checkout: Checkout,
    _caps: SharedCapSlots,
    router: Router,
    node: NodeIdx,
    shard: usize,
    role: ServedRole,
    /// For a write transaction, the shard position of its node: it must stay the shard's writer.
    writer: Option<u32>,
    state: State,
    /// The error of a statement that failed since `BEGIN` or the last `ROLLBACK TO SAVEPOINT`: the
    /// server has aborted the transaction, and a `COMMIT` will roll it back.
    aborted: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// Lost for this reason; the connection is discarded.
    Lost(String),
    /// Committed or rolled back.
    Ended,
}

impl Router {
    /// Opens a transaction on the shard's writer for `request`'s org. The connection and the caps
    /// are held until [`Transaction::commit`], [`Transaction::rollback`] or drop. Never retried: a
    /// failed `BEGIN` (node down, or refused as read-only by a demoted primary) makes the shard
    /// look for its primary now, like a failed write.
    pub async fn begin(&self, request: WriteRequest) -> Result<Transaction, RouterError> {
        let inner = self.running()?;
        let shard = inner.shard(request.org)?;
        let caps = inner.caps.acquire_for(request.user, request.org).await?;
        let Some(choice) = route::choose_write_node(shard) else {
            return Err(inner.no_writer(shard));
        };
        inner.count_route(choice.node, RouteReason::Write);
        if caps.take_wait() {
            inner.count_route(choice.node, RouteReason::CapWait);
        }
        let opened = inner
            .open_transaction(choice.node, Watch::OFF, BEGIN_SQL)
            .await;
        match opened {
            Ok(checkout) => Ok(self.transaction(checkout, caps.into_slots(), choice, true)),
            Err(error) => {
                if error.is_node_failure() || error.is_read_only() {
                    shard.roles.request_recheck();
                }
                Err(error)
            }
        }
    }

    /// Opens a read-only transaction (`REPEATABLE READ`) for `request`: on a replica if
    /// `prefer_replica` allows and one is usable, else on the primary. The `BEGIN` is retried on
    /// another node like a read; statements after it never are.
    pub async fn begin_read(&self, request: ReadRequest) -> Result<Transaction, RouterError> {
        self.begin_read_after(request, None).await
    }

    /// Like [`Router::begin_read`], but the snapshot is at least as new as `after` (a token of the
    /// org's shard, e.g. from a [`Session`](crate::router::Session)): only a replica known to have
    /// replayed up to it may serve the transaction, else the shard's writer does.
    pub async fn begin_read_after(
        &self,
        request: ReadRequest,
        after: Option<CausalToken>,
    ) -> Result<Transaction, RouterError> {
        let inner = self.running()?;
        let shard = inner.shard(request.org)?;
        let caps = inner.caps.acquire_for(request.user, request.org).await?;
        let mut start = Tried::default();
        if let Some(token) = after {
            let writer = shard
                .writer_position()
                .map_or(0, |position| 1u64.checked_shl(position).unwrap_or(0));
            start = start.restricted_to(inner.caught_up_replicas(shard, token.lsn()) | writer);
        }
        let mut choice = None;
        let opened = inner
            .read_with_retries(
                shard,
                request.prefer_replica,
                start,
                &caps,
                |node, watch| {
                    choice = Some(node);
                    inner.open_transaction(node, watch, BEGIN_READ_SQL)
                },
            )
            .await?;
        let Some(node) = choice else {
            return Err(RouterError::Protocol {
                node: opened.node,
                detail: "a transaction opened without a node".to_string(),
            });
        };
        let choice = Choice {
            node,
            role: opened.role,
            position: shard.position_of(node).unwrap_or(0),
        };
        Ok(self.transaction(opened.value, caps.into_slots(), choice, false))
    }

    fn transaction(
        &self,
        mut checkout: Checkout,
        caps: SharedCapSlots,
        choice: Choice,
        writes: bool,
    ) -> Transaction {
        let shard_index = self
            .inner
            .table
            .locate(choice.node)
            .map_or(0, |(index, _)| index);
        let writer = writes.then_some(choice.position);
        // A statement of the transaction given up on takes the caps with it until it has settled.
        checkout.settles_with(caps.clone());
        Transaction {
            checkout,
            _caps: caps,
            router: self.clone(),
            node: choice.node,
            shard: shard_index,
            role: choice.role,
            writer,
            state: State::Open,
            aborted: None,
        }
    }
}

impl Inner {
    /// Takes a connection of `node` and runs `begin` on it: one attempt of opening a transaction.
    async fn open_transaction(
        &self,
        node: NodeIdx,
        watch: Watch<'_>,
        begin: &str,
    ) -> Result<Checkout, RouterError> {
        let node = &self.nodes[node];
        let attempt = AttemptGuard::borrowing(&node.stats);
        let result = async {
            let slot = watch.queue(node, node.pool.acquire()).await?;
            let started = Instant::now();
            let work = async {
                let mut checkout = slot
                    .open(started, |closed| node.report_closed(closed))
                    .await?;
                // Before BEGIN is sent: if it times out or is given up, it may still run on the
                // server, so the connection must never go back to the pool.
                checkout.set_in_transaction(true);
                checkout.batch(begin).await?;
                Ok(checkout)
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

impl Transaction {
    /// The node the transaction runs on.
    pub fn node(&self) -> &str {
        self.node_state().name()
    }

    /// That node's role when the transaction began.
    pub fn role(&self) -> ServedRole {
        self.role
    }

    /// Runs a statement inside the transaction and collects its rows.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, RouterError> {
        let started = self.usable()?;
        let result = self.checkout.query(sql, params).await;
        self.settle(started, result, false)
    }

    /// Runs a statement inside the transaction and returns how many rows it affected.
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, RouterError> {
        let started = self.usable()?;
        let result = self.checkout.execute(sql, params).await;
        self.settle(started, result, false)
    }

    /// Prepares a statement on the transaction's connection (kept in its statement cache), for
    /// [`Transaction::query_prepared`].
    pub async fn prepare(&mut self, sql: &str) -> Result<Statement, RouterError> {
        let started = self.usable()?;
        let result = self.checkout.prepare(sql).await;
        self.settle(started, result, false)
    }

    /// Runs a statement [`Transaction::prepare`]d by this transaction.
    pub async fn query_prepared(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, RouterError> {
        let started = self.usable()?;
        let result = self.checkout.query_prepared(statement, params).await;
        self.settle(started, result, false)
    }

    /// `SAVEPOINT name`: a point [`Transaction::rollback_to`] can return to.
    pub async fn savepoint(&mut self, name: &str) -> Result<(), RouterError> {
        self.simple(&format!("SAVEPOINT {}", quote_identifier(name)))
            .await
    }

    /// `ROLLBACK TO SAVEPOINT name`: undoes what ran since the savepoint and leaves an aborted
    /// transaction usable again. The savepoint stays.
    pub async fn rollback_to(&mut self, name: &str) -> Result<(), RouterError> {
        self.simple(&format!("ROLLBACK TO SAVEPOINT {}", quote_identifier(name)))
            .await?;
        self.aborted = None;
        Ok(())
    }

    /// `RELEASE SAVEPOINT name`: keeps what ran since the savepoint and forgets the savepoint.
    pub async fn release(&mut self, name: &str) -> Result<(), RouterError> {
        self.simple(&format!("RELEASE SAVEPOINT {}", quote_identifier(name)))
            .await
    }

    /// Commits, and returns the connection to its pool. If the connection fails while `COMMIT` is
    /// on its way, the error says the outcome is unknown. If a statement failed since `BEGIN` (and
    /// no [`Transaction::rollback_to`] undid it), PostgreSQL rolls the transaction back instead of
    /// committing it, and this says so with [`RouterError::TransactionLost`].
    pub async fn commit(mut self) -> Result<(), RouterError> {
        self.send_commit().await
    }

    /// Commits like [`Transaction::commit`] and returns the token of the commit (the writer's WAL
    /// position after it, read on the same connection), for a [`Session`](crate::router::Session)
    /// or another process to read its own writes with.
    pub async fn commit_causal(mut self) -> Result<CausalToken, RouterError> {
        self.send_commit().await?;
        let position = self.checkout.query(PRIMARY_LSN_SQL, &[]).await;
        let lsn = position.ok().and_then(|rows| {
            let lsn: Option<PgLsn> = rows.first()?.try_get(0).ok()?;
            lsn.map(Lsn::from)
        });
        lsn.map(CausalToken).ok_or_else(|| RouterError::Protocol {
            node: self.node().to_string(),
            detail: "the transaction committed, but the position after it could not be read"
                .to_string(),
        })
    }

    /// Rolls back, and returns the connection to its pool.
    pub async fn rollback(mut self) -> Result<(), RouterError> {
        let started = self.usable()?;
        let result = self.checkout.batch("ROLLBACK").await;
        let result = self.settle(started, result, false);
        if result.is_ok() {
            self.end();
        }
        result
    }

    async fn send_commit(&mut self) -> Result<(), RouterError> {
        let started = self.usable()?;
        let result = self.checkout.batch("COMMIT").await;
        self.settle(started, result, true)?;
        self.end();
        match self.aborted.take() {
            // PostgreSQL answers the COMMIT of a failed transaction with the tag ROLLBACK, not an
            // error: the caller must not take it for a commit.
            Some(failure) => Err(self.lost(
                format!("an earlier statement failed ({failure}), so COMMIT rolled it back"),
                false,
            )),
            None => Ok(()),
        }
    }

    async fn simple(&mut self, sql: &str) -> Result<(), RouterError> {
        let started = self.usable()?;
        let result = self.checkout.batch(sql).await;
        self.settle(started, result, false)
    }

    fn node_state(&self) -> &Node {
        &self.router.inner.nodes[self.node]
    }

    fn shard_route(&self) -> Option<&ShardRoute> {
        self.router.inner.table.shards().get(self.shard)
    }

    /// Checks that the transaction may run another statement and starts timing it: it is open,
    /// the router runs, and a write transaction's node is still its shard's writer (after a
    /// promotion, writing on the old primary would split the shard's history).
    fn usable(&mut self) -> Result<(Instant, AttemptGuard), RouterError> {
        self.router.running()?;
        if let Some(position) = self.writer {
            let now = self.shard_route().and_then(ShardRoute::writer_position);
            if now != Some(position) {
                let reason = match now.and_then(|p| self.shard_route()?.node_at(p)) {
                    Some(writer) => format!(
                        "its shard's writer is now node {}",
                        self.router.inner.nodes[writer].name()
                    ),
                    None => "its shard has no known primary any more".to_string(),
                };
                self.lose(reason.clone());
                return Err(self.lost(reason, false));
            }
        }
        match &self.state {
            State::Open => {}
            State::Lost(reason) => {
                return Err(self.lost(format!("earlier: {reason}"), false));
            }
            State::Ended => {
                return Err(self.lost("it already ended".to_string(), false));
            }
        }
        Ok((
            Instant::now(),
            AttemptGuard::start(&self.node_state().stats),
        ))
    }

    /// Counts a statement's outcome, and loses the transaction if its node or connection failed.
    fn settle<T>(
        &mut self,
        (started, attempt): (Instant, AttemptGuard),
        result: Result<T, RouterError>,
        committing: bool,
    ) -> Result<T, RouterError> {
        attempt.end(if result.is_ok() {
            AttemptEnd::Success
        } else {
            AttemptEnd::Error
        });
        let node = &self.router.inner.nodes[self.node];
        node.note_answer(started, &result);
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        // A demoted primary refuses writes as read-only: for a write transaction that is the node's
        // state, not the statement's fault.
        let fenced = self.writer.is_some() && error.is_read_only();
        if !(error.is_node_failure() || fenced) {
            if error.is_answer() {
                self.aborted = Some(error.to_string());
            }
            return Err(error);
        }
        if self.writer.is_some() {
            if let Some(shard) = self.shard_route() {
                shard.roles.request_recheck();
            }
        } else if node.ejects() {
            if matches!(error, RouterError::QueryTimeout { .. }) {
                node.report_slow(started, &error);
            } else if error.is_node_down() {
                node.report_down(started, &error);
            } else {
                node.report_failure(started, &error);
            }
        }
        let reason = error.to_string();
        tracing::warn!(node = node.name(), shard = self.shard_route().map(|s| s.name.as_str()), reason = %reason, "transaction lost");
        self.lose(reason.clone());
        Err(self.lost(reason, committing))
    }

    /// The transaction ended on the server: its connection may serve others again.
    fn end(&mut self) {
        self.state = State::Ended;
        self.checkout.set_in_transaction(false);
    }

    fn lose(&mut self, reason: String) {
        // Still inside the transaction as far as the connection knows, so it is closed when
        // dropped; a statement still running on it (past its `query_timeout`) is cancelled first,
        // with the caps held until it ends (see `pool`).
        self.state = State::Lost(reason);
    }

    fn lost(&self, reason: String, outcome_unknown: bool) -> RouterError {
        RouterError::TransactionLost {
            node: self.node().to_string(),
            reason,
            outcome_unknown,
        }
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("node", &self.node())
            .field("role", &self.role)
            .field("writes", &self.writer.is_some())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// `name` as a quoted SQL identifier: any text is safe inside it.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::quote_identifier;

    #[test]
    fn savepoint_names_are_quoted_whatever_they_contain() {
        assert_eq!(quote_identifier("a"), "\"a\"");
        assert_eq!(
            quote_identifier("x\"; DROP TABLE t; --"),
            "\"x\"\"; DROP TABLE t; --\""
        );
    }
}
