//! Runs one statement against a node: waits the node's service time (and, for a write or a
//! locking read, the row's lock), executes it in the connection's transaction or on its own,
//! logs the statement to the event log (executed or refused), and says what it answers.

use std::sync::Arc;

use bytes::Bytes;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use super::answer::Answer;
use super::cancel::{CancelSlot, Running};
use super::clock::{now_us, wall_us};
use super::state::{CommitEnd, LockAttempt, Positions, SimNode, TxnStatus};
use super::statement::{Column, LsnArg, ProbeFunc, ProbeItem, Read, ReadColumn, Statement, Write};
use super::value::{SqlType, Value, encode_row, parse_lsn};
use crate::record::events::{Micros, NodeRole, Purpose, StatementEvent, StatementKind};

/// Who is asking: the connection's number on its node, and why it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Connection number on the node.
    pub(crate) conn: u64,
    /// Workload or check.
    pub(crate) purpose: Purpose,
}

/// Where a statement's parameters come from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Params<'a> {
    /// The simple protocol: there are none.
    None,
    /// A bound portal's values and their formats.
    Bound {
        /// Raw values, `None` = NULL.
        values: &'a [Option<Bytes>],
        /// Text or binary, per parameter.
        format: &'a Format,
    },
}

/// An error answered to the client as a PostgreSQL ErrorResponse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SqlError {
    /// SQLSTATE.
    pub(crate) code: &'static str,
    /// Primary message.
    pub(crate) message: String,
    /// Optional hint.
    pub(crate) hint: Option<&'static str>,
    /// Severity FATAL: the server closes the connection after sending it.
    pub(crate) fatal: bool,
}

impl SqlError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> SqlError {
        SqlError {
            code,
            message: message.into(),
            hint: None,
            fatal: false,
        }
    }

    /// What a connection whose transaction the node terminated gets (PostgreSQL's answer to a
    /// backend ended by `pg_terminate_backend`).
    fn terminated() -> SqlError {
        SqlError {
            fatal: true,
            ..SqlError::new(
                "57P01",
                "terminating connection due to administrator command",
            )
        }
    }

    fn cancelled() -> SqlError {
        SqlError::new("57014", "canceling statement due to user request")
    }
}

impl From<SqlError> for PgWireError {
    fn from(error: SqlError) -> PgWireError {
        let severity = if error.fatal { "FATAL" } else { "ERROR" };
        let mut info = ErrorInfo::new(severity.to_owned(), error.code.to_owned(), error.message);
        info.hint = error.hint.map(str::to_owned);
        PgWireError::UserError(Box::new(info))
    }
}

/// What executing a statement produced, and what the event log records of it.
struct Outcome {
    org: i64,
    key: i64,
    user: i64,
    version: i64,
    lsn: u64,
    row: Result<Option<Vec<Value>>, SqlError>,
    /// The answer of a transaction-control statement instead of a row, and the kind it is
    /// logged as (a `COMMIT` of a failed transaction is a rollback).
    control: Option<(Control, StatementKind)>,
}

/// The answer of `BEGIN`, `COMMIT` or `ROLLBACK`: a command tag, and whether a transaction block
/// starts or ends (pgwire derives the ReadyForQuery status from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Start(&'static str),
    End(&'static str),
}

impl Outcome {
    fn refused(error: SqlError) -> Outcome {
        Outcome {
            org: 0,
            key: 0,
            user: 0,
            version: 0,
            lsn: 0,
            row: Err(error),
            control: None,
        }
    }

    fn control(control: Control, kind: StatementKind, lsn: u64) -> Outcome {
        Outcome {
            lsn,
            row: Ok(None),
            control: Some((control, kind)),
            ..Outcome::refused(SqlError::new("00000", ""))
        }
    }

    /// The same attribution, answered with `error` instead.
    fn failed(self, error: SqlError) -> Outcome {
        Outcome {
            version: 0,
            lsn: 0,
            row: Err(error),
            control: None,
            ..self
        }
    }
}

/// The org, key and user a workload statement names (0 where it names none or cannot be
/// decoded), so that the log can attribute a statement that was refused before it ran.
fn attribution(statement: &Statement, params: Params<'_>) -> Outcome {
    let value = |index: usize| int8_param(params, index).ok().flatten().unwrap_or(0);
    let (org, key, user) = match statement {
        Statement::Read(read) | Statement::LockingRead(read) => {
            let user = read.columns.iter().find_map(|c| match c {
                ReadColumn::Param { index, .. } => Some(value(*index)),
                ReadColumn::Version { .. } => None,
            });
            (value(read.org), value(read.key), user.unwrap_or(0))
        }
        Statement::Write(write) => (value(write.org), value(write.key), value(write.user)),
        _ => (0, 0, 0),
    };
    Outcome {
        org,
        key,
        user,
        ..Outcome::refused(SqlError::new("00000", ""))
    }
}

/// Runs `statement` for the connection `identity`, with results in `formats` (one per column).
pub(crate) async fn run(
    node: &SimNode,
    identity: Identity,
    statement: &Statement,
    params: Params<'_>,
    formats: &[FieldFormat],
    cancel: Option<&Arc<CancelSlot>>,
) -> PgWireResult<Answer> {
    let start_us = now_us();
    let (role, fenced) = node.role_and_fence();
    let service_time = node.service_time();
    // Held until the statement is done: a cancel also ends a wait for a row lock.
    let running = cancel.map(CancelSlot::start);
    if !service_time.is_zero() {
        match &running {
            Some(running) => {
                tokio::select! {
                    biased;
                    () = running.cancelled() => {}
                    () = tokio::time::sleep(service_time) => {}
                }
            }
            None => tokio::time::sleep(service_time).await,
        }
    }
    let cancelled = running.as_ref().is_some_and(Running::was_cancelled);
    let conn = identity.conn;
    let txn = node.txn_status(conn);
    let ends_block = matches!(statement, Statement::Commit | Statement::Rollback);
    let is_control = ends_block || matches!(statement, Statement::Begin);
    let outcome = match statement {
        _ if txn == TxnStatus::Terminated => {
            attribution(statement, params).failed(SqlError::terminated())
        }
        // Transaction control is not interrupted (a cancel must not leave a COMMIT half done);
        // like PostgreSQL's, it is over before a cancel could matter.
        _ if cancelled && !is_control => cancelled_outcome(node, conn, statement, params),
        _ if txn == TxnStatus::Failed && !ends_block => {
            attribution(statement, params).failed(SqlError::new(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            ))
        }
        Statement::Read(read) => execute_read(node, conn, read, params),
        Statement::LockingRead(read) => {
            let wait = Wait {
                node,
                conn,
                take: txn == TxnStatus::Open,
                running: running.as_ref(),
            };
            execute_locking_read(read, params, role, fenced, wait).await
        }
        Statement::Write(write) => {
            let wait = Wait {
                node,
                conn,
                take: txn == TxnStatus::Open,
                running: running.as_ref(),
            };
            execute_write(write, params, role, fenced, wait).await
        }
        Statement::Probe(items) => execute_probe(node, items, params, start_us),
        Statement::Begin => {
            node.begin(conn);
            Outcome::control(Control::Start("BEGIN"), StatementKind::Begin, 0)
        }
        Statement::Commit => match node.commit(conn, now_us()) {
            CommitEnd::NoTransaction(lsn) | CommitEnd::Committed(lsn) => {
                Outcome::control(Control::End("COMMIT"), StatementKind::Commit, lsn)
            }
            CommitEnd::RolledBack => {
                Outcome::control(Control::End("ROLLBACK"), StatementKind::Rollback, 0)
            }
        },
        Statement::Rollback => {
            node.rollback(conn);
            Outcome::control(Control::End("ROLLBACK"), StatementKind::Rollback, 0)
        }
        Statement::Unsupported { .. } => Outcome::refused(SqlError::new(
            "0A000",
            "statement not supported by the simulated server (see SPEC sections 2a and 6.3)",
        )),
    };
    drop(running);
    if outcome.row.is_err() && txn == TxnStatus::Open {
        // As in PostgreSQL, any error inside a transaction block aborts the transaction.
        node.fail_txn(conn);
    }
    node.log().statement(StatementEvent {
        node: node.index(),
        conn,
        purpose: identity.purpose,
        kind: outcome
            .control
            .map_or_else(|| statement.kind(), |(_, kind)| kind),
        role,
        org: outcome.org,
        key: outcome.key,
        user: outcome.user,
        start_us,
        end_us: now_us(),
        version: outcome.version,
        sqlstate: outcome.row.as_ref().err().map(|e| e.code.to_owned()),
        lsn: outcome.lsn,
    });
    match outcome.control {
        Some((Control::Start(tag), _)) => return Ok(Answer::Start(tag)),
        Some((Control::End(tag), _)) => return Ok(Answer::End(tag)),
        None => {}
    }
    let row = outcome.row?;
    // PostgreSQL's tag for an insert is `INSERT <oid> <rows>`; the row count is appended later.
    let tag = if matches!(statement, Statement::Write(_)) {
        "INSERT 0"
    } else {
        "SELECT"
    };
    Ok(Answer::Rows {
        row: row.map(|values| encode_row(&values, formats)),
        tag,
    })
}

/// How a write or a locking read waits for its row's lock.
struct Wait<'a> {
    node: &'a SimNode,
    conn: u64,
    /// Inside a transaction: keep the lock until it ends. Outside: only wait until it is free.
    take: bool,
    running: Option<&'a Running>,
}

/// Why a wait for a row lock ended without the lock.
enum WaitEnd {
    Cancelled,
    Terminated,
}

impl Wait<'_> {
    /// Waits until row (`org`, `key`) is free of other transactions' locks (taking it if asked).
    /// Non-locking reads never come here.
    async fn row(&self, org: i64, key: i64) -> Result<(), WaitEnd> {
        let _waiting = Waiting {
            node: self.node,
            conn: self.conn,
        };
        loop {
            // Registered before looking, so that a release in between is not missed.
            let released = self.node.lock_released().notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.node.try_lock_row(self.conn, org, key, self.take) {
                LockAttempt::Acquired => return Ok(()),
                LockAttempt::Terminated => return Err(WaitEnd::Terminated),
                LockAttempt::Held => self.node.set_lock_waiting(self.conn, true),
            }
            match self.running {
                Some(running) => tokio::select! {
                    biased;
                    () = running.cancelled() => return Err(WaitEnd::Cancelled),
                    () = &mut released => {}
                },
                None => released.await,
            }
        }
    }
}

/// Clears the connection's lock-waiting mark however the wait ends (the lock, a cancel, or the
/// statement's future dropped with its connection).
struct Waiting<'a> {
    node: &'a SimNode,
    conn: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.node.set_lock_waiting(self.conn, false);
    }
}

impl From<WaitEnd> for SqlError {
    fn from(end: WaitEnd) -> SqlError {
        match end {
            WaitEnd::Cancelled => SqlError::cancelled(),
            WaitEnd::Terminated => SqlError::terminated(),
        }
    }
}

/// Result column descriptions in the given formats.
pub(crate) fn fields(columns: &[Column], formats: &[FieldFormat]) -> Vec<FieldInfo> {
    columns
        .iter()
        .zip(formats)
        .map(|(column, format)| {
            FieldInfo::new(
                column.name.clone(),
                None,
                None,
                column.sql_type.pg_type(),
                *format,
            )
            .with_type_size(column.sql_type.type_size())
        })
        .collect()
}

/// The per-column result formats a Bind asked for, checked against the column count.
pub(crate) fn result_formats(
    format: &Format,
    columns: usize,
) -> Result<Vec<FieldFormat>, SqlError> {
    match format {
        Format::UnifiedText => Ok(vec![FieldFormat::Text; columns]),
        Format::UnifiedBinary => Ok(vec![FieldFormat::Binary; columns]),
        Format::Individual(codes) if codes.len() == columns => {
            Ok(codes.iter().map(|c| FieldFormat::from(*c)).collect())
        }
        Format::Individual(codes) => Err(SqlError::new(
            "08P01",
            format!(
                "bind message has {} result formats but query has {columns} columns",
                codes.len()
            ),
        )),
    }
}

fn execute_read(node: &SimNode, conn: u64, read: &Read, params: Params<'_>) -> Outcome {
    let decoded = (|| {
        let org = int8_param(params, read.org)?;
        let key = int8_param(params, read.key)?;
        let mut echoed = Vec::with_capacity(read.columns.len());
        for column in &read.columns {
            if let ReadColumn::Param { index, .. } = column {
                echoed.push(int8_param(params, *index)?);
            }
        }
        Ok((org, key, echoed))
    })();
    let (org, key, echoed) = match decoded {
        Ok(decoded) => decoded,
        Err(error) => return Outcome::refused(error),
    };
    let user = echoed.first().copied().flatten().unwrap_or(0);
    let (version, lsn) = match (org, key) {
        (Some(org), Some(key)) => node.read_as(conn, org, key),
        // `= NULL` matches no row.
        _ => (None, node.replay_lsn()),
    };
    let row = version.map(|version| {
        let mut echoed = echoed.iter();
        read.columns
            .iter()
            .map(|column| match column {
                ReadColumn::Version { .. } => Value::Int8(version),
                ReadColumn::Param { .. } => echoed
                    .next()
                    .copied()
                    .flatten()
                    .map_or(Value::Null, Value::Int8),
            })
            .collect()
    });
    Outcome {
        org: org.unwrap_or(0),
        key: key.unwrap_or(0),
        user,
        version: version.unwrap_or(0),
        lsn,
        row: Ok(row),
        control: None,
    }
}

/// The workload read `FOR UPDATE`: refused in recovery (25006, as PostgreSQL does), then it waits
/// for the row's lock and reads like [`execute_read`], its own transaction's writes included.
async fn execute_locking_read(
    read: &Read,
    params: Params<'_>,
    role: NodeRole,
    fenced: bool,
    wait: Wait<'_>,
) -> Outcome {
    let attributed = attribution(&Statement::LockingRead(read.clone()), params);
    if role != NodeRole::Primary || fenced {
        return attributed.failed(SqlError::new(
            "25006",
            "cannot execute SELECT FOR UPDATE in a read-only transaction",
        ));
    }
    let decoded = (|| Ok((int8_param(params, read.org)?, int8_param(params, read.key)?)))();
    let (org, key) = match decoded {
        Ok(decoded) => decoded,
        Err(error) => return Outcome::refused(error),
    };
    // `= NULL` matches no row, so there is nothing to lock. A key without a row is locked all
    // the same (PostgreSQL would lock nothing and let a concurrent upsert through): SPEC 6.3's
    // read-then-write transaction must see one more than what it read on a fresh key too.
    if let (Some(org), Some(key)) = (org, key)
        && let Err(end) = wait.row(org, key).await
    {
        return attributed.failed(end.into());
    }
    execute_read(wait.node, wait.conn, read, params)
}

/// A statement cancelled while it ran: it did no work and answers 57014, but keeps its org, key
/// and user so that the log can attribute it.
fn cancelled_outcome(
    node: &SimNode,
    conn: u64,
    statement: &Statement,
    params: Params<'_>,
) -> Outcome {
    let outcome = match statement {
        // Reading has no effect: decode it as usual, then drop its row.
        Statement::Read(read) => execute_read(node, conn, read, params),
        _ => attribution(statement, params),
    };
    outcome.failed(SqlError::cancelled())
}

/// The upsert: refused on a replica or a fenced node (25006), then it waits for the row's lock.
/// Inside a transaction its new version stays pending until `COMMIT`; outside, it commits at once.
async fn execute_write(
    write: &Write,
    params: Params<'_>,
    role: NodeRole,
    fenced: bool,
    wait: Wait<'_>,
) -> Outcome {
    let decoded = (|| {
        Ok((
            int8_param(params, write.org)?,
            int8_param(params, write.key)?,
            int8_param(params, write.user)?,
        ))
    })();
    let (org, key, user) = match decoded {
        Ok(decoded) => decoded,
        Err(error) => return Outcome::refused(error),
    };
    let mut outcome = Outcome {
        org: org.unwrap_or(0),
        key: key.unwrap_or(0),
        user: user.unwrap_or(0),
        version: 0,
        lsn: 0,
        row: Ok(None),
        control: None,
    };
    let read_only = SqlError::new("25006", "cannot execute INSERT in a read-only transaction");
    if role != NodeRole::Primary || fenced {
        return outcome.failed(read_only);
    }
    let (Some(org), Some(key), Some(user)) = (org, key, user) else {
        let column = match (org, key) {
            (None, _) => "org_id",
            (_, None) => "key",
            _ => "updated_by",
        };
        return outcome.failed(SqlError::new(
            "23502",
            format!(
                "null value in column \"{column}\" of relation \"replisim_kv\" \
                 violates not-null constraint"
            ),
        ));
    };
    if let Err(end) = wait.row(org, key).await {
        return outcome.failed(end.into());
    }
    // The node may have been fenced while the write waited.
    if wait.node.role_and_fence() != (NodeRole::Primary, false) {
        return outcome.failed(read_only);
    }
    let (version, lsn) = if wait.take {
        wait.node.write_in_txn(wait.conn, org, key, user, now_us())
    } else {
        wait.node.commit_write(org, key, user, now_us())
    };
    outcome.version = version;
    outcome.lsn = lsn;
    outcome.row = Ok(Some(vec![Value::Int8(version)]));
    outcome
}

fn execute_probe(
    node: &SimNode,
    items: &[ProbeItem],
    params: Params<'_>,
    start_us: Micros,
) -> Outcome {
    let positions = node.positions();
    let values: Result<Vec<Value>, SqlError> = items
        .iter()
        .map(|item| {
            let value = probe_value(item.func, &positions, params, start_us)?;
            Ok(cast(value, item.cast))
        })
        .collect();
    Outcome {
        org: 0,
        key: 0,
        user: 0,
        version: 0,
        lsn: positions.replay_lsn,
        row: values.map(Some),
        control: None,
    }
}

fn probe_value(
    func: ProbeFunc,
    at: &Positions,
    params: Params<'_>,
    start_us: Micros,
) -> Result<Value, SqlError> {
    let replica = at.role == NodeRole::Replica;
    let value = match func {
        ProbeFunc::IsInRecovery => Value::Bool(replica),
        ProbeFunc::CurrentWalLsn => {
            lsn_arg(LsnArg::Current, at, params)?.map_or(Value::Null, Value::Lsn)
        }
        ProbeFunc::LastWalReceiveLsn => {
            lsn_arg(LsnArg::Receive, at, params)?.map_or(Value::Null, Value::Lsn)
        }
        ProbeFunc::LastWalReplayLsn => {
            lsn_arg(LsnArg::Replay, at, params)?.map_or(Value::Null, Value::Lsn)
        }
        ProbeFunc::LastXactReplayTimestamp => match (replica, at.last_replay_commit_us) {
            (true, Some(commit_us)) => Value::Timestamp(wall_us(commit_us)),
            _ => Value::Null,
        },
        ProbeFunc::Now => Value::Timestamp(wall_us(start_us)),
        ProbeFunc::WalLsnDiff(a, b) => match (lsn_arg(a, at, params)?, lsn_arg(b, at, params)?) {
            (Some(a), Some(b)) => Value::Numeric(i128::from(a) - i128::from(b)),
            _ => Value::Null,
        },
    };
    Ok(value)
}

/// An LSN-valued expression; `None` is SQL NULL.
fn lsn_arg(arg: LsnArg, at: &Positions, params: Params<'_>) -> Result<Option<u64>, SqlError> {
    let replica = at.role == NodeRole::Replica;
    match arg {
        LsnArg::Current if replica => Err(SqlError {
            code: "55000",
            message: "recovery is in progress".to_owned(),
            hint: Some("WAL control functions cannot be executed during recovery."),
            fatal: false,
        }),
        LsnArg::Current => Ok(Some(at.end_lsn)),
        LsnArg::Receive => Ok(replica.then_some(at.end_lsn)),
        LsnArg::Replay => Ok(replica.then_some(at.replay_lsn)),
        LsnArg::Literal(lsn) => Ok(Some(lsn)),
        LsnArg::Param(index) => match param(params, index)? {
            None => Ok(None),
            Some((bytes, FieldFormat::Binary)) => match <[u8; 8]>::try_from(bytes) {
                Ok(raw) => Ok(Some(u64::from_be_bytes(raw))),
                Err(_) => Err(binary_format_error(index)),
            },
            Some((bytes, FieldFormat::Text)) => {
                let text = String::from_utf8_lossy(bytes);
                parse_lsn(&text).map(Some).ok_or_else(|| {
                    SqlError::new(
                        "22P02",
                        format!("invalid input syntax for type pg_lsn: \"{text}\""),
                    )
                })
            }
        },
    }
}

fn cast(value: Value, target: Option<SqlType>) -> Value {
    match (target, value) {
        (_, Value::Null) => Value::Null,
        (None, value) => value,
        (Some(SqlType::Text), value) => value.to_text().map_or(Value::Null, Value::Text),
        (Some(SqlType::Int8), Value::Numeric(n)) => {
            Value::Int8(i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX }))
        }
        // Integers of WAL-byte size convert to f64 exactly enough.
        (Some(SqlType::Float8), Value::Numeric(n)) => Value::Float8(n as f64),
        (Some(_), value) => value,
    }
}

/// The raw bytes and format of parameter `index` (`None`: NULL).
fn param(params: Params<'_>, index: usize) -> Result<Option<(&[u8], FieldFormat)>, SqlError> {
    let Params::Bound { values, format } = params else {
        return Err(SqlError::new(
            "42P02",
            format!("there is no parameter ${}", index + 1),
        ));
    };
    let Some(value) = values.get(index) else {
        return Err(SqlError::new(
            "08P01",
            format!(
                "bind message supplies {} parameters, but the statement uses ${}",
                values.len(),
                index + 1
            ),
        ));
    };
    let Some(bytes) = value else {
        return Ok(None);
    };
    let field_format = match format {
        Format::UnifiedText => FieldFormat::Text,
        Format::UnifiedBinary => FieldFormat::Binary,
        Format::Individual(codes) => match codes.get(index) {
            Some(code) => FieldFormat::from(*code),
            None => {
                return Err(SqlError::new(
                    "08P01",
                    format!(
                        "bind message has {} parameter formats but {} parameters",
                        codes.len(),
                        values.len()
                    ),
                ));
            }
        },
    };
    Ok(Some((bytes.as_ref(), field_format)))
}

/// A `bigint` parameter (`None`: NULL).
fn int8_param(params: Params<'_>, index: usize) -> Result<Option<i64>, SqlError> {
    match param(params, index)? {
        None => Ok(None),
        Some((bytes, FieldFormat::Binary)) => match <[u8; 8]>::try_from(bytes) {
            Ok(raw) => Ok(Some(i64::from_be_bytes(raw))),
            Err(_) => Err(binary_format_error(index)),
        },
        Some((bytes, FieldFormat::Text)) => {
            let text = String::from_utf8_lossy(bytes);
            text.trim().parse().map(Some).map_err(|_| {
                SqlError::new(
                    "22P02",
                    format!("invalid input syntax for type bigint: \"{text}\""),
                )
            })
        }
    }
}

fn binary_format_error(index: usize) -> SqlError {
    SqlError::new(
        "22P03",
        format!(
            "incorrect binary data format in bind parameter {}",
            index + 1
        ),
    )
}
