//! What one executed statement answers, before it becomes messages: its row, if any, and its
//! command tag. The unnamed portal's round trip (see `unnamed_portal`) writes it out as `DataRow`
//! and `CommandComplete` itself; pgwire's handlers get it as a `Response` (`into_response`), for
//! which the result columns are described too. Keeping the two apart spares the round trip that
//! nearly every statement takes the column descriptions, the result stream and the formatted tag,
//! which it never sends.

use std::fmt::Write;
use std::sync::Arc;

use pgwire::api::results::{FieldFormat, QueryResponse, Response, Tag};
use pgwire::messages::data::DataRow;
use pgwire::messages::response::CommandComplete;

use super::execute;
use super::statement::Statement;

/// A statement's answer.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A statement that returns rows: at most one here, already encoded in the result formats, and
    /// the tag's words before the row count (`SELECT`, or `INSERT 0` as PostgreSQL tags an insert).
    Rows {
        row: Option<DataRow>,
        tag: &'static str,
    },
    /// `BEGIN`: a transaction block starts.
    Start(&'static str),
    /// `COMMIT` or `ROLLBACK`: the block ends.
    End(&'static str),
}

impl Answer {
    /// The `CommandComplete` of a statement that returned `rows` rows under `tag`: the same text
    /// as pgwire's `Tag::new(tag).with_rows(rows)`, without going through `format!`.
    pub(crate) fn rows_complete(tag: &'static str, rows: usize) -> CommandComplete {
        let mut text = String::with_capacity(tag.len() + 4);
        text.push_str(tag);
        text.push(' ');
        match u8::try_from(rows) {
            // Nearly every statement here returns one row or none.
            Ok(digit @ 0..=9) => text.push(char::from(b'0' + digit)),
            // Writing to a `String` cannot fail.
            _ => drop(write!(text, "{rows}")),
        }
        CommandComplete::new(text)
    }

    /// The answer as pgwire's handlers take it, with `statement`'s result columns described in
    /// `formats`.
    pub(crate) fn into_response(self, statement: &Statement, formats: &[FieldFormat]) -> Response {
        match self {
            Answer::Rows { row, tag } => {
                let fields = Arc::new(execute::fields(&statement.columns(), formats));
                let mut response = QueryResponse::new(fields, futures::stream::iter(row.map(Ok)));
                response.set_command_tag(tag);
                Response::Query(response)
            }
            Answer::Start(tag) => Response::TransactionStart(Tag::new(tag)),
            Answer::End(tag) => Response::TransactionEnd(Tag::new(tag)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rows_tag_reads_as_pgwire_writes_it() {
        for (tag, rows) in [
            ("SELECT", 0),
            ("SELECT", 1),
            ("INSERT 0", 1),
            ("SELECT", 9),
            ("SELECT", 10),
            ("SELECT", 12_345),
        ] {
            let ours = Answer::rows_complete(tag, rows);
            let pgwires = CommandComplete::from(Tag::new(tag).with_rows(rows));
            assert_eq!(ours, pgwires, "{tag} {rows}");
        }
    }
}
