//! The statements a simulated node understands (SPEC sections 2a and 6.3): their parameters,
//! result columns, and how they are classified in the event log.

use pgwire::api::Type;

use super::value::SqlType;
use crate::record::events::StatementKind;

/// A recognised statement. Parameter references are 0-based (`$1` is 0).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Statement {
    /// `SELECT version, $3::bigint AS reader FROM replisim_kv WHERE org_id = $1 AND key = $2`.
    Read(Read),
    /// `INSERT INTO replisim_kv ... ON CONFLICT (org_id, key) DO UPDATE ... RETURNING version`.
    Write(Write),
    /// `SELECT` of probe functions, no `FROM`.
    Probe(Vec<ProbeItem>),
    /// The workload read with `FOR UPDATE`: it takes the row's lock first (SPEC 6.3).
    LockingRead(Read),
    /// `BEGIN` or `START TRANSACTION`.
    Begin,
    /// `COMMIT` or `END`.
    Commit,
    /// `ROLLBACK` or `ABORT`.
    Rollback,
    /// Anything else: refused with SQLSTATE 0A000 when executed. `params` is the highest `$n`
    /// in the text, so that clients can still bind and execute it.
    Unsupported {
        /// Number of parameters the client must bind.
        params: usize,
    },
}

/// The workload read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Read {
    /// Parameter holding the org.
    pub(crate) org: usize,
    /// Parameter holding the key.
    pub(crate) key: usize,
    /// The select list.
    pub(crate) columns: Vec<ReadColumn>,
}

/// One item of the read's select list.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ReadColumn {
    /// The row's `version`.
    Version {
        /// Column name.
        name: String,
    },
    /// A parameter echoed back as `bigint` (the reader's user id).
    Param {
        /// The parameter.
        index: usize,
        /// Column name.
        name: String,
    },
}

/// The workload write (an upsert that bumps the version).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Write {
    /// Parameter holding the org.
    pub(crate) org: usize,
    /// Parameter holding the key.
    pub(crate) key: usize,
    /// Parameter holding the writing user.
    pub(crate) user: usize,
}

/// One item of a probe's select list.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProbeItem {
    /// The function.
    pub(crate) func: ProbeFunc,
    /// `::type` after the call, if any (already checked to be allowed).
    pub(crate) cast: Option<SqlType>,
    /// Column name (the alias, else the function's name, as PostgreSQL does).
    pub(crate) name: String,
}

/// The probe functions PostgreSQL has and the node answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeFunc {
    /// `pg_is_in_recovery()`.
    IsInRecovery,
    /// `pg_current_wal_lsn()`.
    CurrentWalLsn,
    /// `pg_last_wal_receive_lsn()`.
    LastWalReceiveLsn,
    /// `pg_last_wal_replay_lsn()`.
    LastWalReplayLsn,
    /// `pg_last_xact_replay_timestamp()`.
    LastXactReplayTimestamp,
    /// `now()`.
    Now,
    /// `pg_wal_lsn_diff(a, b)` = a - b in bytes.
    WalLsnDiff(LsnArg, LsnArg),
}

/// An argument of `pg_wal_lsn_diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LsnArg {
    /// `pg_current_wal_lsn()`.
    Current,
    /// `pg_last_wal_receive_lsn()`.
    Receive,
    /// `pg_last_wal_replay_lsn()`.
    Replay,
    /// A `pg_lsn` parameter.
    Param(usize),
    /// A literal such as `'0/3000060'`.
    Literal(u64),
}

/// A result column.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Column {
    /// Its name.
    pub(crate) name: String,
    /// Its type.
    pub(crate) sql_type: SqlType,
}

impl ProbeFunc {
    /// The function's own result type, before any cast.
    pub(crate) fn sql_type(self) -> SqlType {
        match self {
            ProbeFunc::IsInRecovery => SqlType::Bool,
            ProbeFunc::CurrentWalLsn
            | ProbeFunc::LastWalReceiveLsn
            | ProbeFunc::LastWalReplayLsn => SqlType::PgLsn,
            ProbeFunc::LastXactReplayTimestamp | ProbeFunc::Now => SqlType::Timestamptz,
            ProbeFunc::WalLsnDiff(..) => SqlType::Numeric,
        }
    }
}

impl ProbeItem {
    /// The column's type, after the cast.
    pub(crate) fn sql_type(&self) -> SqlType {
        self.cast.unwrap_or_else(|| self.func.sql_type())
    }
}

/// Whether `value::target` is a cast the node supports from a value of type `from`.
pub(crate) fn cast_allowed(from: SqlType, target: SqlType) -> bool {
    from == target
        || target == SqlType::Text
        || (from == SqlType::Numeric && matches!(target, SqlType::Int8 | SqlType::Float8))
}

impl Statement {
    /// How the event log classifies it.
    pub(crate) fn kind(&self) -> StatementKind {
        match self {
            Statement::Read(_) => StatementKind::Read,
            Statement::Write(_) => StatementKind::Write,
            Statement::Probe(_) => StatementKind::Probe,
            Statement::Unsupported { .. } => StatementKind::Unsupported,
            Statement::LockingRead(_) => StatementKind::LockingRead,
            Statement::Begin => StatementKind::Begin,
            Statement::Commit => StatementKind::Commit,
            Statement::Rollback => StatementKind::Rollback,
        }
    }

    /// The parameter types, `$1` first, as PostgreSQL would infer them.
    pub(crate) fn param_types(&self) -> Vec<Type> {
        let mut types = vec![Type::INT8; self.param_count()];
        if let Statement::Probe(items) = self {
            for item in items {
                if let ProbeFunc::WalLsnDiff(a, b) = item.func {
                    for arg in [a, b] {
                        if let LsnArg::Param(index) = arg
                            && let Some(slot) = types.get_mut(index)
                        {
                            *slot = Type::PG_LSN;
                        }
                    }
                }
            }
        }
        types
    }

    /// How many parameters a client must bind: the highest `$n` referenced.
    pub(crate) fn param_count(&self) -> usize {
        match self {
            Statement::Read(read) | Statement::LockingRead(read) => {
                let echoed = read.columns.iter().filter_map(|c| match c {
                    ReadColumn::Param { index, .. } => Some(index + 1),
                    ReadColumn::Version { .. } => None,
                });
                echoed
                    .chain([read.org + 1, read.key + 1])
                    .max()
                    .unwrap_or(0)
            }
            Statement::Write(write) => (write.org.max(write.key).max(write.user)) + 1,
            Statement::Probe(items) => items
                .iter()
                .flat_map(|item| match item.func {
                    ProbeFunc::WalLsnDiff(a, b) => [a, b],
                    _ => [LsnArg::Current, LsnArg::Current],
                })
                .filter_map(|arg| match arg {
                    LsnArg::Param(index) => Some(index + 1),
                    _ => None,
                })
                .max()
                .unwrap_or(0),
            Statement::Unsupported { params } => *params,
            Statement::Begin | Statement::Commit | Statement::Rollback => 0,
        }
    }

    /// How many result columns it has.
    pub(crate) fn column_count(&self) -> usize {
        match self {
            Statement::Read(read) | Statement::LockingRead(read) => read.columns.len(),
            Statement::Write(_) => 1,
            Statement::Probe(items) => items.len(),
            Statement::Unsupported { .. }
            | Statement::Begin
            | Statement::Commit
            | Statement::Rollback => 0,
        }
    }

    /// The result columns (none for an unsupported or transaction-control statement).
    pub(crate) fn columns(&self) -> Vec<Column> {
        match self {
            Statement::Read(read) | Statement::LockingRead(read) => read
                .columns
                .iter()
                .map(|c| match c {
                    ReadColumn::Version { name } | ReadColumn::Param { name, .. } => Column {
                        name: name.clone(),
                        sql_type: SqlType::Int8,
                    },
                })
                .collect(),
            Statement::Write(_) => vec![Column {
                name: "version".to_owned(),
                sql_type: SqlType::Int8,
            }],
            Statement::Probe(items) => items
                .iter()
                .map(|item| Column {
                    name: item.name.clone(),
                    sql_type: item.sql_type(),
                })
                .collect(),
            Statement::Unsupported { .. }
            | Statement::Begin
            | Statement::Commit
            | Statement::Rollback => Vec::new(),
        }
    }
}
