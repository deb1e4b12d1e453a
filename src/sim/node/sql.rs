//! Recognises the statements of SPEC sections 2a and 6.3 in SQL text, case- and whitespace-insensitively,
//! with comments, optional `AS`, optional `::bigint` on parameters and any order of the `WHERE`
//! conditions. Anything else becomes [`Statement::Unsupported`].

use super::statement::{
    LsnArg, ProbeFunc, ProbeItem, Read, ReadColumn, Statement, Write, cast_allowed,
};
use super::value::{SqlType, parse_lsn};

/// The one table.
const TABLE: &str = "replisim_kv";

/// Highest `$n` accepted: the count must fit the i16 of a ParameterDescription message.
const MAX_PARAMS: usize = i16::MAX as usize;

/// Parses SQL text into a statement; never fails (unknown text is `Unsupported`).
pub(crate) fn parse(sql: &str) -> Statement {
    let Some(tokens) = lex(sql) else {
        return Statement::Unsupported { params: 0 };
    };
    let params = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Param(index) => Some(index + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let attempts: [fn(&mut Parser) -> Option<Statement>; 4] = [
        parse_read,
        parse_write,
        parse_probe,
        parse_transaction_control,
    ];
    for attempt in attempts {
        let mut parser = Parser {
            tokens: &tokens,
            pos: 0,
        };
        if let Some(statement) = attempt(&mut parser) {
            return statement;
        }
    }
    Statement::Unsupported { params }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// An identifier or keyword, lower-cased unless it was double-quoted.
    Word(String),
    /// `$n`, 0-based.
    Param(usize),
    /// An unsigned integer literal.
    Number(String),
    /// A single-quoted string literal.
    Str(String),
    /// Punctuation.
    Sym(&'static str),
}

const SYMBOLS: [&str; 14] = [
    "::", "<=", ">=", "<>", "(", ")", ",", ";", "=", ".", "+", "-", "*", "/",
];

/// Splits SQL into tokens; `None` on anything the recogniser has no use for (such as an
/// unterminated literal), which makes the statement unsupported.
fn lex(sql: &str) -> Option<Vec<Token>> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::with_capacity(32);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if sql[i..].starts_with("--") {
            i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
        } else if sql[i..].starts_with("/*") {
            i = i + 2 + sql[i + 2..].find("*/")? + 2;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let end = scan(bytes, i, |b| {
                b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
            });
            tokens.push(Token::Word(sql[i..end].to_ascii_lowercase()));
            i = end;
        } else if c.is_ascii_digit() {
            let end = scan(bytes, i, |b| b.is_ascii_digit());
            tokens.push(Token::Number(sql[i..end].to_owned()));
            i = end;
        } else if c == b'$' {
            let end = scan(bytes, i + 1, |b| b.is_ascii_digit());
            let n: usize = sql.get(i + 1..end)?.parse().ok()?;
            if n > MAX_PARAMS {
                return None;
            }
            tokens.push(Token::Param(n.checked_sub(1)?));
            i = end;
        } else if c == b'\'' || c == b'"' {
            let (text, end) = quoted(sql, i, c)?;
            tokens.push(if c == b'\'' {
                Token::Str(text)
            } else {
                Token::Word(text)
            });
            i = end;
        } else {
            let symbol = SYMBOLS.iter().find(|s| sql[i..].starts_with(**s))?;
            tokens.push(Token::Sym(symbol));
            i += symbol.len();
        }
    }
    Some(tokens)
}

fn scan(bytes: &[u8], from: usize, accept: impl Fn(u8) -> bool) -> usize {
    bytes[from..]
        .iter()
        .position(|b| !accept(*b))
        .map_or(bytes.len(), |n| from + n)
}

/// A quoted literal or identifier starting at `start`; a doubled quote stands for itself.
fn quoted(sql: &str, start: usize, quote: u8) -> Option<(String, usize)> {
    let bytes = sql.as_bytes();
    let mut text = String::new();
    let mut i = start + 1;
    let mut from = i;
    loop {
        let at = i + bytes.get(i..)?.iter().position(|b| *b == quote)?;
        text.push_str(&sql[from..at]);
        if bytes.get(at + 1) == Some(&quote) {
            text.push(char::from(quote));
            i = at + 2;
            from = i;
        } else {
            return Some((text, at + 1));
        }
    }
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Token::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.peek_word() == Some(word);
        self.pos += usize::from(found);
        found
    }

    fn word_is(&mut self, word: &str) -> Option<()> {
        self.eat_word(word).then_some(())
    }

    fn eat_sym(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Sym(s)) if *s == symbol);
        self.pos += usize::from(found);
        found
    }

    fn sym(&mut self, symbol: &str) -> Option<()> {
        self.eat_sym(symbol).then_some(())
    }

    fn word(&mut self) -> Option<String> {
        let word = self.peek_word()?.to_owned();
        self.pos += 1;
        Some(word)
    }

    fn param(&mut self) -> Option<usize> {
        match self.peek() {
            Some(Token::Param(index)) => {
                let index = *index;
                self.pos += 1;
                Some(index)
            }
            _ => None,
        }
    }

    /// A `bigint` parameter: `$n` with an optional `::bigint` / `::int8`.
    fn int8_param(&mut self) -> Option<usize> {
        let index = self.param()?;
        if self.eat_sym("::") {
            (parse_type(self)? == SqlType::Int8).then_some(())?;
        }
        Some(index)
    }

    /// A column name, optionally qualified by the table.
    fn column(&mut self) -> Option<String> {
        if self.peek_word() == Some(TABLE)
            && matches!(self.tokens.get(self.pos + 1), Some(Token::Sym(".")))
        {
            self.pos += 2;
        }
        self.word()
    }

    /// `[AS] alias`, if present; `from` is never taken as an alias.
    fn alias(&mut self) -> Option<Option<String>> {
        if self.eat_word("as") {
            return self.word().map(Some);
        }
        let bare = matches!(self.peek_word(), Some(w) if w != "from");
        Some(if bare { self.word() } else { None })
    }

    /// An optional `;`, then the end of the text.
    fn end(&mut self) -> Option<()> {
        self.eat_sym(";");
        (self.pos == self.tokens.len()).then_some(())
    }
}

fn parse_type(p: &mut Parser) -> Option<SqlType> {
    let word = p.word()?;
    let sql_type = match word.as_str() {
        "bigint" | "int8" => SqlType::Int8,
        "bool" | "boolean" => SqlType::Bool,
        "pg_lsn" => SqlType::PgLsn,
        "timestamptz" => SqlType::Timestamptz,
        "timestamp" => {
            p.word_is("with")?;
            p.word_is("time")?;
            p.word_is("zone")?;
            SqlType::Timestamptz
        }
        "numeric" => SqlType::Numeric,
        "float8" => SqlType::Float8,
        "double" => {
            p.word_is("precision")?;
            SqlType::Float8
        }
        "text" => SqlType::Text,
        _ => return None,
    };
    Some(sql_type)
}

fn parse_read(p: &mut Parser) -> Option<Statement> {
    p.word_is("select")?;
    let mut columns = Vec::new();
    loop {
        let column = if matches!(p.peek(), Some(Token::Param(_))) {
            let index = p.param()?;
            p.sym("::")?;
            (parse_type(p)? == SqlType::Int8).then_some(())?;
            let name = p.alias()?.unwrap_or_else(|| "int8".to_owned());
            ReadColumn::Param { index, name }
        } else {
            (p.column()? == "version").then_some(())?;
            let name = p.alias()?.unwrap_or_else(|| "version".to_owned());
            ReadColumn::Version { name }
        };
        columns.push(column);
        if !p.eat_sym(",") {
            break;
        }
    }
    p.word_is("from")?;
    p.word_is(TABLE)?;
    p.word_is("where")?;
    let (mut org, mut key) = (None, None);
    loop {
        let column = p.column()?;
        p.sym("=")?;
        let index = p.int8_param()?;
        let slot = match column.as_str() {
            "org_id" => &mut org,
            "key" => &mut key,
            _ => return None,
        };
        slot.is_none().then_some(())?;
        *slot = Some(index);
        if !p.eat_word("and") {
            break;
        }
    }
    let locking = p.eat_word("for");
    if locking {
        p.word_is("update")?;
    }
    p.end()?;
    let read = Read {
        org: org?,
        key: key?,
        columns,
    };
    Some(if locking {
        Statement::LockingRead(read)
    } else {
        Statement::Read(read)
    })
}

/// `BEGIN`, `COMMIT`, `ROLLBACK` and their PostgreSQL synonyms, each with the optional noise word
/// `WORK` or `TRANSACTION`. Options (isolation levels, `AND CHAIN`) and savepoints are not
/// supported: no client of the node sends them.
fn parse_transaction_control(p: &mut Parser) -> Option<Statement> {
    let statement = match p.word()?.as_str() {
        "begin" => Statement::Begin,
        "start" => {
            p.word_is("transaction")?;
            p.end()?;
            return Some(Statement::Begin);
        }
        "commit" | "end" => Statement::Commit,
        "rollback" | "abort" => Statement::Rollback,
        _ => return None,
    };
    if !p.eat_word("work") {
        p.eat_word("transaction");
    }
    p.end()?;
    Some(statement)
}

/// A value in the write's `VALUES` list.
enum InsertValue {
    Param(usize),
    One,
}

fn parse_write(p: &mut Parser) -> Option<Statement> {
    p.word_is("insert")?;
    p.word_is("into")?;
    p.word_is(TABLE)?;
    p.sym("(")?;
    let mut names = Vec::with_capacity(4);
    loop {
        names.push(p.word()?);
        if !p.eat_sym(",") {
            break;
        }
    }
    p.sym(")")?;
    p.word_is("values")?;
    p.sym("(")?;
    let mut values = Vec::with_capacity(4);
    loop {
        let value = match p.peek() {
            Some(Token::Number(n)) if n == "1" => {
                p.pos += 1;
                InsertValue::One
            }
            _ => InsertValue::Param(p.int8_param()?),
        };
        values.push(value);
        if !p.eat_sym(",") {
            break;
        }
    }
    p.sym(")")?;
    if names.len() != 4 || values.len() != 4 {
        return None;
    }
    let (mut org, mut key, mut user, mut version_one) = (None, None, None, false);
    for (name, value) in names.iter().zip(values) {
        match (name.as_str(), value) {
            ("org_id", InsertValue::Param(i)) if org.is_none() => org = Some(i),
            ("key", InsertValue::Param(i)) if key.is_none() => key = Some(i),
            ("updated_by", InsertValue::Param(i)) if user.is_none() => user = Some(i),
            ("version", InsertValue::One) if !version_one => version_one = true,
            _ => return None,
        }
    }
    let (org, key, user) = (org?, key?, user?);
    version_one.then_some(())?;

    p.word_is("on")?;
    p.word_is("conflict")?;
    p.sym("(")?;
    let first = p.word()?;
    p.sym(",")?;
    let second = p.word()?;
    p.sym(")")?;
    let target_ok = matches!(
        (first.as_str(), second.as_str()),
        ("org_id", "key") | ("key", "org_id")
    );
    target_ok.then_some(())?;
    p.word_is("do")?;
    p.word_is("update")?;
    p.word_is("set")?;
    let (mut bumps_version, mut sets_user) = (false, false);
    loop {
        match p.word()?.as_str() {
            "version" if !bumps_version => {
                p.sym("=")?;
                p.word_is(TABLE)?;
                p.sym(".")?;
                p.word_is("version")?;
                p.sym("+")?;
                matches!(p.peek(), Some(Token::Number(n)) if n == "1").then_some(())?;
                p.pos += 1;
                bumps_version = true;
            }
            "updated_by" if !sets_user => {
                p.sym("=")?;
                if p.eat_word("excluded") {
                    p.sym(".")?;
                    p.word_is("updated_by")?;
                } else {
                    (p.int8_param()? == user).then_some(())?;
                }
                sets_user = true;
            }
            _ => return None,
        }
        if !p.eat_sym(",") {
            break;
        }
    }
    (bumps_version && sets_user).then_some(())?;
    p.word_is("returning")?;
    (p.column()? == "version").then_some(())?;
    p.end()?;
    Some(Statement::Write(Write { org, key, user }))
}

fn parse_probe(p: &mut Parser) -> Option<Statement> {
    p.word_is("select")?;
    let mut items = Vec::new();
    loop {
        let (func, default_name) = parse_probe_call(p)?;
        let cast = if p.eat_sym("::") {
            let target = parse_type(p)?;
            cast_allowed(func.sql_type(), target).then_some(())?;
            Some(target)
        } else {
            None
        };
        let name = p.alias()?.unwrap_or_else(|| default_name.to_owned());
        items.push(ProbeItem { func, cast, name });
        if !p.eat_sym(",") {
            break;
        }
    }
    p.end()?;
    Some(Statement::Probe(items))
}

/// A function name, optionally qualified by `pg_catalog`.
fn function_name(p: &mut Parser) -> Option<String> {
    if p.peek_word() == Some("pg_catalog")
        && matches!(p.tokens.get(p.pos + 1), Some(Token::Sym(".")))
    {
        p.pos += 2;
    }
    p.word()
}

fn parse_probe_call(p: &mut Parser) -> Option<(ProbeFunc, &'static str)> {
    let name = function_name(p)?;
    p.sym("(")?;
    let call = match name.as_str() {
        "pg_is_in_recovery" => (ProbeFunc::IsInRecovery, "pg_is_in_recovery"),
        "pg_current_wal_lsn" => (ProbeFunc::CurrentWalLsn, "pg_current_wal_lsn"),
        "pg_last_wal_receive_lsn" => (ProbeFunc::LastWalReceiveLsn, "pg_last_wal_receive_lsn"),
        "pg_last_wal_replay_lsn" => (ProbeFunc::LastWalReplayLsn, "pg_last_wal_replay_lsn"),
        "pg_last_xact_replay_timestamp" => (
            ProbeFunc::LastXactReplayTimestamp,
            "pg_last_xact_replay_timestamp",
        ),
        "now" => (ProbeFunc::Now, "now"),
        "pg_wal_lsn_diff" => {
            let a = parse_lsn_arg(p)?;
            p.sym(",")?;
            let b = parse_lsn_arg(p)?;
            (ProbeFunc::WalLsnDiff(a, b), "pg_wal_lsn_diff")
        }
        _ => return None,
    };
    p.sym(")")?;
    Some(call)
}

fn parse_lsn_arg(p: &mut Parser) -> Option<LsnArg> {
    let arg = match p.peek() {
        Some(Token::Param(index)) => {
            let index = *index;
            p.pos += 1;
            LsnArg::Param(index)
        }
        Some(Token::Str(text)) => {
            let lsn = parse_lsn(text)?;
            p.pos += 1;
            LsnArg::Literal(lsn)
        }
        _ => {
            let arg = match function_name(p)?.as_str() {
                "pg_current_wal_lsn" => LsnArg::Current,
                "pg_last_wal_receive_lsn" => LsnArg::Receive,
                "pg_last_wal_replay_lsn" => LsnArg::Replay,
                _ => return None,
            };
            p.sym("(")?;
            p.sym(")")?;
            arg
        }
    };
    if p.eat_sym("::") {
        (parse_type(p)? == SqlType::PgLsn).then_some(())?;
    }
    Some(arg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::events::StatementKind;

    const READ: &str =
        "SELECT version, $3::bigint AS reader FROM replisim_kv WHERE org_id = $1 AND key = $2";
    const WRITE: &str = "INSERT INTO replisim_kv (org_id, key, version, updated_by) \
         VALUES ($1, $2, 1, $3) \
         ON CONFLICT (org_id, key) DO UPDATE \
         SET version = replisim_kv.version + 1, updated_by = $3 \
         RETURNING version";

    #[test]
    fn recognises_the_workload_read() {
        let expected = Statement::Read(Read {
            org: 0,
            key: 1,
            columns: vec![
                ReadColumn::Version {
                    name: "version".to_owned(),
                },
                ReadColumn::Param {
                    index: 2,
                    name: "reader".to_owned(),
                },
            ],
        });
        assert_eq!(parse(READ), expected);
        let shouted = "  select VERSION ,\n $3 :: INT8 reader from REPLISIM_KV -- c\n \
                       where KEY=$2 and org_id = $1 ; ";
        assert_eq!(parse(shouted), expected);
    }

    #[test]
    fn recognises_the_workload_write() {
        let expected = Statement::Write(Write {
            org: 0,
            key: 1,
            user: 2,
        });
        assert_eq!(parse(WRITE), expected);
        assert_eq!(parse(&WRITE.to_lowercase().replace(' ', "\n ")), expected);
        let excluded = WRITE.replace("updated_by = $3", "updated_by = EXCLUDED.updated_by");
        assert_eq!(parse(&excluded), expected);
    }

    #[test]
    fn a_different_write_is_unsupported() {
        let plus_two = WRITE.replace("version + 1", "version + 2");
        assert_eq!(parse(&plus_two), Statement::Unsupported { params: 3 });
        let other_user = WRITE.replace("updated_by = $3", "updated_by = $1");
        assert_eq!(parse(&other_user), Statement::Unsupported { params: 3 });
        assert_eq!(
            parse("DELETE FROM replisim_kv WHERE org_id = $1"),
            Statement::Unsupported { params: 1 }
        );
        assert_eq!(parse("SELECT 1"), Statement::Unsupported { params: 0 });
        assert_eq!(parse("SELECT 'open"), Statement::Unsupported { params: 0 });
    }

    #[test]
    fn recognises_the_locking_read() {
        let Statement::Read(read) = parse(READ) else {
            panic!("not a read");
        };
        let expected = Statement::LockingRead(read);
        assert_eq!(parse(&format!("{READ} FOR UPDATE")), expected);
        assert_eq!(parse(&format!("{READ}\n  for update ;")), expected);
        assert_eq!(
            parse(&format!("{READ} FOR SHARE")),
            Statement::Unsupported { params: 3 }
        );
        assert_eq!(
            parse(&format!("{READ} FOR UPDATE NOWAIT")),
            Statement::Unsupported { params: 3 }
        );
        assert_eq!(
            parse(&format!("{READ} FOR")),
            Statement::Unsupported { params: 3 }
        );
    }

    #[test]
    fn recognises_transaction_control() {
        for (sql, expected) in [
            ("BEGIN", Statement::Begin),
            ("begin;", Statement::Begin),
            ("BEGIN WORK", Statement::Begin),
            ("BEGIN TRANSACTION", Statement::Begin),
            ("START TRANSACTION", Statement::Begin),
            ("COMMIT", Statement::Commit),
            (" commit work ; ", Statement::Commit),
            ("END", Statement::Commit),
            ("ROLLBACK", Statement::Rollback),
            ("ROLLBACK TRANSACTION", Statement::Rollback),
            ("ABORT", Statement::Rollback),
        ] {
            assert_eq!(parse(sql), expected, "{sql}");
        }
        for sql in [
            "START",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "ROLLBACK TO sp1",
            "COMMIT AND CHAIN",
            "SAVEPOINT sp1",
            "BEGIN WORK TRANSACTION",
        ] {
            assert_eq!(parse(sql), Statement::Unsupported { params: 0 }, "{sql}");
        }
        assert_eq!(parse("BEGIN").kind(), StatementKind::Begin);
        assert_eq!(parse("COMMIT").kind(), StatementKind::Commit);
        assert_eq!(parse("ROLLBACK").kind(), StatementKind::Rollback);
        assert_eq!(
            parse(&format!("{READ} FOR UPDATE")).kind(),
            StatementKind::LockingRead
        );
    }

    #[test]
    fn recognises_probes_with_aliases_and_casts() {
        let sql = "SELECT pg_is_in_recovery() AS rec, pg_last_wal_replay_lsn(), now() t, \
                   pg_wal_lsn_diff($1, pg_last_wal_replay_lsn())::bigint AS lag";
        let Statement::Probe(items) = parse(sql) else {
            panic!("not a probe: {sql}");
        };
        let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["rec", "pg_last_wal_replay_lsn", "t", "lag"]);
        assert_eq!(items[3].cast, Some(SqlType::Int8));
        assert_eq!(
            items[3].func,
            ProbeFunc::WalLsnDiff(LsnArg::Param(0), LsnArg::Replay)
        );
        let statement = parse(sql);
        assert_eq!(statement.param_types(), vec![pgwire::api::Type::PG_LSN]);
    }

    #[test]
    fn odd_text_is_unsupported_without_panicking() {
        for sql in [
            "",
            ";",
            "SELECT 'é', \"é\" FROM é",
            "$",
            "$0",
            "$99999999999999999999",
            "$40000",
            "/* open",
            "SELECT pg_wal_lsn_diff('x/y', $1)",
            "select version from replisim_kv",
            "SELECT version FROM replisim_kv WHERE org_id = $1 AND org_id = $2",
        ] {
            assert!(matches!(parse(sql), Statement::Unsupported { .. }), "{sql}");
        }
        for cut in 0..=WRITE.len() {
            let _ = parse(&WRITE[..cut]);
        }
    }

    #[test]
    fn rejects_casts_postgres_lacks() {
        assert_eq!(
            parse("SELECT pg_current_wal_lsn()::bigint"),
            Statement::Unsupported { params: 0 }
        );
        assert!(matches!(
            parse("SELECT pg_wal_lsn_diff('0/3000080', '0/3000000')::float8"),
            Statement::Probe(_)
        ));
    }
}
