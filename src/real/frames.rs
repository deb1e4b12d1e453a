//! An incremental parser of the PostgreSQL frontend (client to server) byte stream, fed whatever
//! each read returned, and the per-connection map that attributes an Execute to its statement text.
//!
//! Framing: the first message is untagged (4-byte length, itself included, then a 4-byte code:
//! protocol version 3.x, or an SSL/GSSAPI/cancel request); after an SSL or GSSAPI request that the
//! server declined, another untagged message follows. Every later message is a tag byte and a
//! 4-byte length. Only a bounded prefix of each message is kept; the rest is counted and skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Longest startup message accepted (PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`).
pub const STARTUP_BYTES_MAX: usize = 10_000;
/// Bytes kept of a tagged message's body: enough for statement text worth recording.
pub const CAPTURE_BYTES_MAX: usize = 1024;
/// Longest tagged message accepted (PostgreSQL refuses 1 GiB and more).
const MESSAGE_BYTES_MAX: usize = 1 << 30;
/// Prepared statements and portals remembered per connection.
const NAMES_MAX: usize = 1024;

const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
const CANCEL_REQUEST_CODE: u32 = 80_877_102;
const PROTOCOL_MAJOR_3: u32 = 3;

/// One frontend message, reduced to what the proxy records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The startup message.
    Startup {
        /// Its `application_name` parameter.
        application_name: Option<String>,
    },
    /// An SSL or GSSAPI encryption request; another untagged message follows.
    Negotiation,
    /// A cancel request (a connection of its own that carries nothing else).
    Cancel,
    /// `Q`: a simple query.
    Query {
        /// Its text (truncated to a bounded prefix).
        text: String,
    },
    /// `P`: a statement prepared under a name (`""` = the unnamed statement).
    Parse {
        /// Statement name.
        statement: String,
        /// Its text (truncated).
        text: String,
    },
    /// `B`: a portal bound to a prepared statement.
    Bind {
        /// Portal name.
        portal: String,
        /// Statement name.
        statement: String,
        /// Its parameters read as `bigint` (8-byte binary or decimal text); `None` for any other
        /// value, a NULL, or one beyond the kept prefix.
        params: Vec<Option<i64>>,
    },
    /// `E`: a portal executed.
    Execute {
        /// Portal name.
        portal: String,
    },
    /// `C` with `S`: a prepared statement closed.
    CloseStatement {
        /// Statement name.
        statement: String,
    },
    /// Any other message.
    Other {
        /// Its tag byte.
        tag: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Expecting an untagged message (startup or an encryption request).
    Untagged,
    /// Expecting tagged messages.
    Tagged,
    /// After a cancel request or a malformed length: nothing more is parsed.
    Stopped,
}

/// The parser; keeps at most one header and one bounded body prefix.
#[derive(Debug)]
pub struct FrontendParser {
    phase: Phase,
    header: [u8; 5],
    header_len: usize,
    /// Body bytes still to come of the current message; `None` while reading a header.
    body_remaining: Option<usize>,
    tag: u8,
    capture: Vec<u8>,
}

impl Default for FrontendParser {
    fn default() -> Self {
        FrontendParser::new()
    }
}

impl FrontendParser {
    /// A parser at the start of a connection.
    pub fn new() -> FrontendParser {
        FrontendParser {
            phase: Phase::Untagged,
            header: [0; 5],
            header_len: 0,
            body_remaining: None,
            tag: 0,
            capture: Vec::new(),
        }
    }

    /// Whether the parser stopped (cancel request, or a length no PostgreSQL client sends).
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// Consumes the next bytes of the stream; every message they complete is appended to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Frame>) {
        while !bytes.is_empty() && self.phase != Phase::Stopped {
            let Some(remaining) = self.body_remaining else {
                bytes = self.read_header(bytes, out);
                continue;
            };
            let take = remaining.min(bytes.len());
            let room = self.capture_max() - self.capture.len();
            self.capture.extend_from_slice(&bytes[..take.min(room)]);
            bytes = &bytes[take..];
            if take == remaining {
                self.finish(out);
            } else {
                self.body_remaining = Some(remaining - take);
            }
        }
    }

    fn capture_max(&self) -> usize {
        match self.phase {
            Phase::Untagged => STARTUP_BYTES_MAX,
            _ => CAPTURE_BYTES_MAX,
        }
    }

    /// Reads header bytes; returns the rest.
    fn read_header<'a>(&mut self, bytes: &'a [u8], out: &mut Vec<Frame>) -> &'a [u8] {
        let (header_size, limit) = match self.phase {
            Phase::Untagged => (4, STARTUP_BYTES_MAX),
            _ => (5, MESSAGE_BYTES_MAX),
        };
        let take = (header_size - self.header_len).min(bytes.len());
        self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
        self.header_len += take;
        if self.header_len < header_size {
            return &bytes[take..];
        }
        self.header_len = 0;
        let length_at = header_size - 4;
        self.tag = if header_size == 5 { self.header[0] } else { 0 };
        let length = u32::from_be_bytes([
            self.header[length_at],
            self.header[length_at + 1],
            self.header[length_at + 2],
            self.header[length_at + 3],
        ]) as usize;
        if !(4..=limit).contains(&length) {
            self.phase = Phase::Stopped;
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

    /// Decodes the completed message.
    fn finish(&mut self, out: &mut Vec<Frame>) {
        self.body_remaining = None;
        let body = &self.capture;
        if self.phase == Phase::Untagged {
            let code = body
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            match code {
                Some(SSL_REQUEST_CODE | GSSENC_REQUEST_CODE) => out.push(Frame::Negotiation),
                Some(CANCEL_REQUEST_CODE) => {
                    out.push(Frame::Cancel);
                    self.phase = Phase::Stopped;
                }
                Some(version) if version >> 16 == PROTOCOL_MAJOR_3 => {
                    out.push(Frame::Startup {
                        application_name: startup_parameter(&body[4..], "application_name"),
                    });
                    self.phase = Phase::Tagged;
                }
                _ => self.phase = Phase::Stopped,
            }
            return;
        }
        let frame = match self.tag {
            b'Q' => Frame::Query {
                text: c_string(body, 0).0,
            },
            b'P' => {
                let (statement, next) = c_string(body, 0);
                Frame::Parse {
                    statement,
                    text: c_string(body, next).0,
                }
            }
            b'B' => {
                let (portal, next) = c_string(body, 0);
                let (statement, next) = c_string(body, next);
                Frame::Bind {
                    portal,
                    statement,
                    params: bind_params(body.get(next..).unwrap_or_default()),
                }
            }
            b'E' => Frame::Execute {
                portal: c_string(body, 0).0,
            },
            b'C' if body.first() == Some(&b'S') => Frame::CloseStatement {
                statement: c_string(body, 1).0,
            },
            tag => Frame::Other { tag },
        };
        out.push(frame);
    }
}

/// The NUL-terminated string at `start` (or the rest, if the prefix was cut), and where the next
/// field starts.
fn c_string(body: &[u8], start: usize) -> (String, usize) {
    let rest = body.get(start..).unwrap_or_default();
    match rest.iter().position(|&b| b == 0) {
        Some(end) => (
            String::from_utf8_lossy(&rest[..end]).into_owned(),
            start + end + 1,
        ),
        None => (String::from_utf8_lossy(rest).into_owned(), body.len()),
    }
}

/// The parameters of a Bind body after its two names: format codes, then length-prefixed values.
/// Decoding stops where the kept prefix ends.
fn bind_params(rest: &[u8]) -> Vec<Option<i64>> {
    let mut cursor = Cursor(rest);
    let Some(format_count) = cursor.u16() else {
        return Vec::new();
    };
    let mut formats = Vec::new();
    for _ in 0..format_count {
        match cursor.u16() {
            Some(format) => formats.push(format),
            None => return Vec::new(),
        }
    }
    let Some(count) = cursor.u16() else {
        return Vec::new();
    };
    let mut params = Vec::with_capacity(usize::from(count).min(64));
    for i in 0..usize::from(count) {
        // One format code applies to every parameter; none means text.
        let binary = match formats.len() {
            0 => false,
            1 => formats.first() == Some(&1),
            _ => formats.get(i) == Some(&1),
        };
        let Some(length) = cursor.i32() else {
            break;
        };
        let Ok(length) = usize::try_from(length) else {
            params.push(None);
            continue;
        };
        let Some(value) = cursor.take(length) else {
            break;
        };
        params.push(if binary {
            <[u8; 8]>::try_from(value).ok().map(i64::from_be_bytes)
        } else {
            std::str::from_utf8(value).ok().and_then(|t| t.parse().ok())
        });
    }
    params
}

/// Reads big-endian fields off the front of a byte slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A parameter of a startup message body (after the version): `name\0value\0`... `\0`.
fn startup_parameter(mut body: &[u8], wanted: &str) -> Option<String> {
    loop {
        let (name, next) = c_string(body, 0);
        if name.is_empty() {
            return None;
        }
        let (value, after) = c_string(body, next);
        if name == wanted {
            return Some(value);
        }
        body = body.get(after..)?;
    }
}

/// Which of the two statement-bearing messages was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatementMessage {
    /// `Q`, the simple query protocol.
    Query,
    /// `E`, the extended protocol's Execute.
    Execute,
}

/// A statement sent to the server, as [`StatementTexts::on_frame`] attributes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentStatement {
    /// Query or Execute.
    pub message: StatementMessage,
    /// Its text (empty for an Execute of an unknown portal).
    pub text: Arc<str>,
    /// The portal's Bind parameters as `bigint` (empty for a simple query).
    pub params: Arc<[Option<i64>]>,
}

/// A bound portal: its statement's text and its parameters.
#[derive(Clone, Debug, Default)]
struct Portal {
    text: Arc<str>,
    params: Arc<[Option<i64>]>,
}

/// One connection's prepared statements and portals, so that an Execute can name its text.
#[derive(Debug, Default)]
pub struct StatementTexts {
    statements: BTreeMap<String, Arc<str>>,
    portals: BTreeMap<String, Portal>,
}

impl StatementTexts {
    /// Follows one frame; returns the statement it sends to the server, if it sends one
    /// (an Execute of an unknown portal has empty text).
    pub fn on_frame(&mut self, frame: &Frame) -> Option<SentStatement> {
        match frame {
            Frame::Query { text } => Some(SentStatement {
                message: StatementMessage::Query,
                text: Arc::from(text.as_str()),
                params: Arc::from([]),
            }),
            Frame::Parse { statement, text } => {
                insert_bounded(&mut self.statements, statement, Arc::from(text.as_str()));
                None
            }
            Frame::Bind {
                portal,
                statement,
                params,
            } => {
                let portal_state = Portal {
                    text: self.statements.get(statement).cloned().unwrap_or_default(),
                    params: Arc::from(params.as_slice()),
                };
                insert_bounded(&mut self.portals, portal, portal_state);
                None
            }
            Frame::Execute { portal } => {
                let bound = self.portals.get(portal).cloned().unwrap_or_default();
                Some(SentStatement {
                    message: StatementMessage::Execute,
                    text: bound.text,
                    params: bound.params,
                })
            }
            Frame::CloseStatement { statement } => {
                self.statements.remove(statement);
                None
            }
            _ => None,
        }
    }
}

fn insert_bounded<T>(map: &mut BTreeMap<String, T>, name: &str, value: T) {
    if map.len() >= NAMES_MAX && !map.contains_key(name) {
        map.pop_first();
    }
    map.insert(name.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut body = (3u32 << 16).to_be_bytes().to_vec();
        for (name, value) in params {
            body.extend_from_slice(name.as_bytes());
            body.push(0);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn cstrs(parts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
        out
    }

    /// A session of the extended protocol as tokio-postgres sends it, after an SSL request.
    fn session() -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&8u32.to_be_bytes());
        bytes.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        bytes.extend(startup(&[
            ("user", "postgres"),
            ("application_name", "replisim"),
        ]));
        bytes.extend(tagged(b'Q', &cstrs(&["SELECT 1"])));
        let mut parse = cstrs(&["s0", "SELECT version FROM replisim_kv WHERE org_id = $1"]);
        parse.extend_from_slice(&0u16.to_be_bytes());
        bytes.extend(tagged(b'P', &parse));
        bytes.extend(tagged(b'S', &[]));
        let mut bind = cstrs(&["", "s0"]);
        bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        bytes.extend(tagged(b'B', &bind));
        let mut execute = cstrs(&[""]);
        execute.extend_from_slice(&0u32.to_be_bytes());
        bytes.extend(tagged(b'E', &execute));
        bytes.extend(tagged(b'C', &cstrs(&["Ss0"])));
        bytes.extend(tagged(b'X', &[]));
        bytes
    }

    fn expected_session() -> Vec<Frame> {
        vec![
            Frame::Negotiation,
            Frame::Startup {
                application_name: Some("replisim".to_string()),
            },
            Frame::Query {
                text: "SELECT 1".to_string(),
            },
            Frame::Parse {
                statement: "s0".to_string(),
                text: "SELECT version FROM replisim_kv WHERE org_id = $1".to_string(),
            },
            Frame::Other { tag: b'S' },
            Frame::Bind {
                portal: String::new(),
                statement: "s0".to_string(),
                params: Vec::new(),
            },
            Frame::Execute {
                portal: String::new(),
            },
            Frame::CloseStatement {
                statement: "s0".to_string(),
            },
            Frame::Other { tag: b'X' },
        ]
    }

    #[test]
    fn parses_a_session_in_one_read() {
        let mut parser = FrontendParser::new();
        let mut frames = Vec::new();
        parser.feed(&session(), &mut frames);
        assert_eq!(frames, expected_session());
        assert!(!parser.is_stopped());
    }

    #[test]
    fn parses_the_same_at_every_split_point() {
        let bytes = session();
        for split in 0..=bytes.len() {
            let mut parser = FrontendParser::new();
            let mut frames = Vec::new();
            parser.feed(&bytes[..split], &mut frames);
            parser.feed(&bytes[split..], &mut frames);
            assert_eq!(frames, expected_session(), "split at {split}");
        }
    }

    #[test]
    fn parses_the_same_one_byte_at_a_time() {
        let mut parser = FrontendParser::new();
        let mut frames = Vec::new();
        for byte in session() {
            parser.feed(&[byte], &mut frames);
        }
        assert_eq!(frames, expected_session());
    }

    #[test]
    fn long_messages_are_cut_and_skipped() {
        let long = "x".repeat(CAPTURE_BYTES_MAX * 5);
        let mut bytes = startup(&[]);
        bytes.extend(tagged(b'Q', &cstrs(&[&long])));
        bytes.extend(tagged(b'Q', &cstrs(&["SELECT 2"])));
        let mut parser = FrontendParser::new();
        let mut frames = Vec::new();
        for chunk in bytes.chunks(700) {
            parser.feed(chunk, &mut frames);
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames[0],
            Frame::Startup {
                application_name: None
            }
        );
        match &frames[1] {
            Frame::Query { text } => assert_eq!(text.len(), CAPTURE_BYTES_MAX),
            other => panic!("expected a query, got {other:?}"),
        }
        assert_eq!(
            frames[2],
            Frame::Query {
                text: "SELECT 2".to_string()
            }
        );
    }

    #[test]
    fn cancel_request_stops_parsing() {
        let mut bytes = 16u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend(tagged(b'Q', &cstrs(&["SELECT 1"])));
        let mut parser = FrontendParser::new();
        let mut frames = Vec::new();
        parser.feed(&bytes, &mut frames);
        assert_eq!(frames, vec![Frame::Cancel]);
        assert!(parser.is_stopped());
    }

    #[test]
    fn malformed_lengths_stop_parsing() {
        let mut parser = FrontendParser::new();
        let mut frames = Vec::new();
        parser.feed(&3u32.to_be_bytes(), &mut frames);
        assert!(parser.is_stopped());
        assert!(frames.is_empty());

        let mut parser = FrontendParser::new();
        let mut bytes = startup(&[]);
        bytes.push(b'Q');
        bytes.extend_from_slice(&2u32.to_be_bytes());
        parser.feed(&bytes, &mut frames);
        assert!(parser.is_stopped());
        assert_eq!(frames.len(), 1);

        let mut parser = FrontendParser::new();
        parser.feed(&((STARTUP_BYTES_MAX + 1) as u32).to_be_bytes(), &mut frames);
        assert!(parser.is_stopped());
    }

    #[test]
    fn unknown_protocol_version_stops_parsing() {
        let mut bytes = 8u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(2u32 << 16).to_be_bytes());
        let mut parser = FrontendParser::new();
        let mut frames = Vec::new();
        parser.feed(&bytes, &mut frames);
        assert!(frames.is_empty());
        assert!(parser.is_stopped());
    }

    #[test]
    fn executes_are_attributed_to_their_statement() {
        let mut parser = FrontendParser::new();
        let mut frames = Vec::new();
        parser.feed(&session(), &mut frames);
        let mut texts = StatementTexts::default();
        let sent: Vec<(StatementMessage, String)> = frames
            .iter()
            .filter_map(|frame| texts.on_frame(frame))
            .map(|sent| (sent.message, sent.text.to_string()))
            .collect();
        assert_eq!(
            sent,
            vec![
                (StatementMessage::Query, "SELECT 1".to_string()),
                (
                    StatementMessage::Execute,
                    "SELECT version FROM replisim_kv WHERE org_id = $1".to_string()
                ),
            ]
        );
        // The Close forgot the statement.
        assert!(texts.statements.is_empty());
        let unknown = texts.on_frame(&Frame::Execute {
            portal: "p9".to_string(),
        });
        assert_eq!(
            unknown.map(|sent| (sent.message, sent.text)),
            Some((StatementMessage::Execute, Arc::from("")))
        );
    }

    #[test]
    fn bind_parameters_are_read_as_bigints() {
        let mut body = cstrs(&["p1", "s1"]);
        // Two format codes (binary, text), three values: 8-byte binary, text `-7`, NULL.
        body.extend_from_slice(&[0, 2, 0, 1, 0, 0, 0, 3]);
        body.extend_from_slice(&8i32.to_be_bytes());
        body.extend_from_slice(&42i64.to_be_bytes());
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(b"-7");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&[0, 0]);
        let mut parser = FrontendParser::new();
        let mut bytes = startup(&[]);
        bytes.extend(tagged(b'B', &body));
        let mut frames = Vec::new();
        parser.feed(&bytes, &mut frames);
        assert_eq!(
            frames.last(),
            Some(&Frame::Bind {
                portal: "p1".to_string(),
                statement: "s1".to_string(),
                params: vec![Some(42), Some(-7), None],
            })
        );
        let mut texts = StatementTexts::default();
        texts.on_frame(&Frame::Parse {
            statement: "s1".to_string(),
            text: "SELECT $1".to_string(),
        });
        for frame in &frames {
            texts.on_frame(frame);
        }
        let sent = texts.on_frame(&Frame::Execute {
            portal: "p1".to_string(),
        });
        assert_eq!(
            sent.map(|s| s.params.to_vec()),
            Some(vec![Some(42), Some(-7), None])
        );
    }

    #[test]
    fn statement_names_are_bounded() {
        let mut texts = StatementTexts::default();
        for i in 0..NAMES_MAX + 10 {
            texts.on_frame(&Frame::Parse {
                statement: format!("s{i}"),
                text: "SELECT 1".to_string(),
            });
        }
        assert_eq!(texts.statements.len(), NAMES_MAX);
    }
}
