//! What the server said about each statement, read off the backend (server to client) byte stream
//! the fault proxy relays: an incremental parser of the messages that end a statement
//! (`CommandComplete`, `EmptyQueryResponse`, `PortalSuspended`, `ErrorResponse` with its SQLSTATE,
//! `ReadyForQuery`) and of the first column of each `DataRow` (the version a read or a locking
//! read returned), and [`Pending`], the per-connection queue that pairs each answer with the
//! statement it answers.
//!
//! Pairing follows the protocol: the server answers statements in the order they were sent; after
//! an error in the extended protocol it skips every message up to the next Sync and answers that
//! Sync with `ReadyForQuery`. A simple query carries its own Sync.

use std::collections::VecDeque;
use std::sync::Arc;

/// Bytes kept of an `ErrorResponse` body: its severity, SQLSTATE and the start of the message
/// come first, and only the SQLSTATE is read.
const ERROR_CAPTURE_BYTES_MAX: usize = 256;
/// Bytes kept of a `DataRow` body: its column count and first column (a bigint, as text or
/// binary) come first.
const ROW_CAPTURE_BYTES_MAX: usize = 32;
/// Longest backend message accepted (PostgreSQL never sends 1 GiB and more in one message).
const MESSAGE_BYTES_MAX: usize = 1 << 30;
/// Statements and Syncs awaited per connection; a client that pipelines beyond this loses the
/// oldest (their answers stay unknown).
const PENDING_MAX: usize = 4096;

/// What the server answered to one statement, as the proxy saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatementAnswer {
    /// No answer crossed the proxy: the connection ended first, the server stopped, or the
    /// statement was skipped after an earlier error. The server may or may not have run it.
    #[default]
    Unanswered,
    /// The server completed it.
    Completed,
    /// The server completed it, and the first column of its last row was this `bigint` (a
    /// workload read's or locking read's version).
    Returned(i64),
    /// The server refused it or it failed there, with this SQLSTATE.
    Failed(Arc<str>),
}

/// A backend message, reduced to what pairs answers with statements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendMessage {
    /// `C`, `I` or `s`: a statement ended without error.
    Completed,
    /// `E`: an error, with its SQLSTATE (`""` if the field was not found).
    Failed(Arc<str>),
    /// `Z`: the server is ready for the next query (answers a Sync).
    Ready,
    /// `D`: a row, with its first column read as a `bigint` (`None`: NULL, or not a bigint).
    Row(Option<i64>),
}

/// The parser: a header at a time, then a body of which only an `ErrorResponse`'s start is kept.
#[derive(Debug, Default)]
pub struct BackendParser {
    /// Past the untagged single-byte answers to SSL/GSSAPI requests.
    tagged: bool,
    stopped: bool,
    header: [u8; 5],
    header_len: usize,
    body_remaining: Option<usize>,
    capture: Vec<u8>,
}

impl BackendParser {
    /// A parser at the start of a connection.
    pub fn new() -> BackendParser {
        BackendParser::default()
    }

    /// Consumes the next bytes; every message they complete that matters is appended to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<BackendMessage>) {
        while !bytes.is_empty() && !self.stopped {
            if !self.tagged && self.header_len == 0 {
                // A server answers an SSLRequest or GSSENCRequest with one untagged byte; the
                // first tagged message after a startup is `R` (authentication) or `E`.
                if matches!(bytes.first(), Some(b'N' | b'S' | b'G')) {
                    bytes = &bytes[1..];
                    continue;
                }
                self.tagged = true;
            }
            let Some(remaining) = self.body_remaining else {
                bytes = self.read_header(bytes, out);
                continue;
            };
            let take = remaining.min(bytes.len());
            let capture_max = match self.header[0] {
                b'E' => ERROR_CAPTURE_BYTES_MAX,
                b'D' => ROW_CAPTURE_BYTES_MAX,
                _ => 0,
            };
            if capture_max > 0 {
                let room = capture_max.saturating_sub(self.capture.len());
                self.capture.extend_from_slice(&bytes[..take.min(room)]);
            }
            bytes = &bytes[take..];
            if take == remaining {
                self.finish(out);
            } else {
                self.body_remaining = Some(remaining - take);
            }
        }
    }

    fn read_header<'a>(&mut self, bytes: &'a [u8], out: &mut Vec<BackendMessage>) -> &'a [u8] {
        let take = (5 - self.header_len).min(bytes.len());
        self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
        self.header_len += take;
        if self.header_len < 5 {
            return &bytes[take..];
        }
        self.header_len = 0;
        let length = u32::from_be_bytes([
            self.header[1],
            self.header[2],
            self.header[3],
            self.header[4],
        ]) as usize;
        if !(4..MESSAGE_BYTES_MAX).contains(&length) {
            self.stopped = true;
            return &[];
        }
        self.capture.clear();
        if length == 4 {
            self.finish(out);
        } else {
            self.body_remaining = Some(length - 4);
        }
        &bytes[take..]
    }

    fn finish(&mut self, out: &mut Vec<BackendMessage>) {
        self.body_remaining = None;
        match self.header[0] {
            b'C' | b'I' | b's' => out.push(BackendMessage::Completed),
            b'E' => out.push(BackendMessage::Failed(Arc::from(sqlstate(&self.capture)))),
            b'Z' => out.push(BackendMessage::Ready),
            b'D' => out.push(BackendMessage::Row(first_bigint(&self.capture))),
            _ => {}
        }
    }
}

/// The first column of a `DataRow` body (`count: i16`, then `length: i32, bytes` per column) as a
/// `bigint`: text digits (the simple protocol) or 8 big-endian bytes (tokio-postgres asks for
/// binary results). A binary version would need bytes that are all ASCII digits to be misread,
/// which takes a value above 2^61.
fn first_bigint(body: &[u8]) -> Option<i64> {
    let length = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let value = body.get(6..6 + usize::try_from(length).ok()?)?;
    let text = std::str::from_utf8(value)
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
    match text {
        Some(text) => text.parse().ok(),
        None => Some(i64::from_be_bytes(value.try_into().ok()?)),
    }
}

/// The `C` (code) field of an `ErrorResponse` body: `type byte, text\0`... `\0`.
fn sqlstate(mut body: &[u8]) -> &str {
    while let Some((&field, rest)) = body.split_first() {
        if field == 0 {
            break;
        }
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if field == b'C' {
            return std::str::from_utf8(&rest[..end]).unwrap_or_default();
        }
        body = rest.get(end + 1..).unwrap_or_default();
    }
    ""
}

/// One awaited answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaited {
    /// A statement (the index of its proxy record, `None` if it was not kept).
    Statement(Option<usize>),
    /// A Sync (explicit, or the end of a simple query or function call).
    Sync,
}

/// One connection's statements still awaiting their answers, in the order they were sent.
#[derive(Debug, Default)]
pub struct Pending {
    awaited: VecDeque<Awaited>,
    /// The first column of the last row the oldest awaited statement returned so far.
    row: Option<i64>,
}

impl Pending {
    /// A statement was sent (Execute, or a simple Query followed by [`Pending::synced`]).
    pub fn sent(&mut self, record: Option<usize>) {
        self.push(Awaited::Statement(record));
    }

    /// A Sync was sent (or a message that implies one).
    pub fn synced(&mut self) {
        self.push(Awaited::Sync);
    }

    fn push(&mut self, awaited: Awaited) {
        if self.awaited.len() >= PENDING_MAX {
            self.awaited.pop_front();
        }
        self.awaited.push_back(awaited);
    }

    /// Follows one backend message; returns the statement it answers (its record index) and
    /// the answer, if it answers one.
    pub fn on_message(&mut self, message: BackendMessage) -> Option<(usize, StatementAnswer)> {
        let answer = match message {
            BackendMessage::Row(value) => {
                self.row = value;
                return None;
            }
            BackendMessage::Completed => match self.row.take() {
                Some(value) => StatementAnswer::Returned(value),
                None => StatementAnswer::Completed,
            },
            BackendMessage::Failed(sqlstate) => {
                self.row = None;
                StatementAnswer::Failed(sqlstate)
            }
            BackendMessage::Ready => {
                self.row = None;
                // Everything up to the first Sync is over: answered, or skipped after an error.
                if let Some(sync) = self.awaited.iter().position(|a| *a == Awaited::Sync) {
                    self.awaited.drain(..=sync);
                }
                return None;
            }
        };
        // The answer belongs to the oldest statement of the current batch; with none (an error
        // in a Parse or a Describe, a second result of a multi-statement query) it answers none.
        match self.awaited.front() {
            Some(Awaited::Statement(record)) => {
                let record = *record;
                self.awaited.pop_front();
                record.map(|r| (r, answer))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    fn error(code: &str) -> Vec<u8> {
        let mut body = b"SERROR\0VERROR\0C".to_vec();
        body.extend_from_slice(code.as_bytes());
        body.extend_from_slice(b"\0Mcannot execute INSERT in a read-only transaction\0\0");
        message(b'E', &body)
    }

    /// The server's side of: authentication, a completed Execute, a refused one, an idle Sync.
    fn stream() -> Vec<u8> {
        let mut bytes = b"N".to_vec();
        bytes.extend(message(b'R', &0u32.to_be_bytes()));
        bytes.extend(message(b'S', b"application_name\0replisim\0"));
        bytes.extend(message(b'Z', b"I"));
        bytes.extend(message(b'2', b""));
        bytes.extend(message(b'D', &[0, 1, 0, 0, 0, 1, b'7']));
        bytes.extend(message(b'C', b"SELECT 1\0"));
        bytes.extend(message(b'Z', b"I"));
        bytes.extend(error("25006"));
        bytes.extend(message(b'Z', b"I"));
        bytes
    }

    fn expected() -> Vec<BackendMessage> {
        vec![
            BackendMessage::Ready,
            BackendMessage::Row(Some(7)),
            BackendMessage::Completed,
            BackendMessage::Ready,
            BackendMessage::Failed(Arc::from("25006")),
            BackendMessage::Ready,
        ]
    }

    #[test]
    fn parses_the_same_at_every_split_point() {
        let bytes = stream();
        for split in 0..=bytes.len() {
            let mut parser = BackendParser::new();
            let mut out = Vec::new();
            parser.feed(&bytes[..split], &mut out);
            parser.feed(&bytes[split..], &mut out);
            assert_eq!(out, expected(), "split at {split}");
        }
    }

    #[test]
    fn a_row_gives_its_first_bigint_as_text_or_binary() {
        let binary = [
            &[0, 2, 0, 0, 0, 8][..],
            &42_i64.to_be_bytes(),
            &[0, 0, 0, 1, b'9'],
        ]
        .concat();
        assert_eq!(first_bigint(&binary), Some(42));
        assert_eq!(first_bigint(&[0, 1, 0, 0, 0, 2, b'1', b'2']), Some(12));
        assert_eq!(first_bigint(&[0, 1, 0xff, 0xff, 0xff, 0xff]), None, "NULL");
        assert_eq!(
            first_bigint(&[0, 1, 0, 0, 0, 1, b'x']),
            None,
            "not a bigint"
        );
        assert_eq!(first_bigint(&[0, 1, 0, 0]), None, "cut short");
    }

    #[test]
    fn a_statement_that_returned_rows_answers_with_the_last_rows_first_column() {
        let mut pending = Pending::default();
        pending.sent(Some(1));
        pending.sent(Some(2));
        pending.synced();
        let answers: Vec<_> = [
            BackendMessage::Row(Some(3)),
            BackendMessage::Row(Some(4)),
            BackendMessage::Completed,
            BackendMessage::Completed,
            BackendMessage::Ready,
        ]
        .into_iter()
        .filter_map(|m| pending.on_message(m))
        .collect();
        assert_eq!(
            answers,
            vec![
                (1, StatementAnswer::Returned(4)),
                (2, StatementAnswer::Completed)
            ]
        );
    }

    #[test]
    fn an_error_without_a_code_field_has_an_empty_sqlstate() {
        let mut parser = BackendParser::new();
        let mut out = Vec::new();
        parser.feed(&message(b'E', b"SERROR\0Mboom\0\0"), &mut out);
        assert_eq!(out, vec![BackendMessage::Failed(Arc::from(""))]);
    }

    #[test]
    fn a_malformed_length_stops_the_parser() {
        let mut parser = BackendParser::new();
        let mut out = Vec::new();
        parser.feed(&[b'C', 0, 0, 0, 2], &mut out);
        parser.feed(&message(b'C', b"SELECT 1\0"), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn answers_pair_with_statements_in_order_and_skips_end_at_sync() {
        let mut pending = Pending::default();
        // Batch 1: one Execute, answered.
        pending.sent(Some(1));
        pending.synced();
        // Batch 2: two Executes; the first fails, the server skips the second.
        pending.sent(Some(2));
        pending.sent(Some(3));
        pending.synced();
        // Batch 3: a simple query.
        pending.sent(Some(4));
        pending.synced();
        let answers: Vec<_> = [
            BackendMessage::Completed,
            BackendMessage::Ready,
            BackendMessage::Failed(Arc::from("25006")),
            BackendMessage::Ready,
            BackendMessage::Completed,
            BackendMessage::Ready,
        ]
        .into_iter()
        .filter_map(|m| pending.on_message(m))
        .collect();
        assert_eq!(
            answers,
            vec![
                (1, StatementAnswer::Completed),
                (2, StatementAnswer::Failed(Arc::from("25006"))),
                (4, StatementAnswer::Completed),
            ]
        );
        assert!(pending.awaited.is_empty());
    }

    #[test]
    fn an_error_before_any_execute_answers_no_statement() {
        let mut pending = Pending::default();
        // A Parse that failed: its batch has no Execute.
        pending.synced();
        pending.sent(Some(9));
        pending.synced();
        assert_eq!(
            pending.on_message(BackendMessage::Failed(Arc::from("42601"))),
            None
        );
        assert_eq!(pending.on_message(BackendMessage::Ready), None);
        assert_eq!(
            pending.on_message(BackendMessage::Completed),
            Some((9, StatementAnswer::Completed))
        );
    }
}
