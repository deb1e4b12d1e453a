//! The WAL stream between simulated nodes: fixed-size frames, one tag byte each. This is not
//! PostgreSQL's replication protocol (a non-goal of the simulation), only what it must carry.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::error::NodeError;
use super::state::{StartRefusal, WalRecord};

/// One message of the WAL stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalMessage {
    /// Downstream -> upstream, first: stream every record after `after_lsn`, whose own record is
    /// on `timeline`.
    Start {
        /// Last LSN the downstream has.
        after_lsn: u64,
        /// Timeline of the downstream's last record.
        timeline: u32,
    },
    /// Upstream -> downstream: one committed record.
    Record(WalRecord),
    /// Upstream -> downstream, when idle: still alive, WAL ends here.
    Keepalive {
        /// End of the upstream's WAL.
        end_lsn: u64,
    },
    /// Downstream -> upstream, periodically: still alive, and how far it got.
    Feedback {
        /// Last received LSN.
        receive_lsn: u64,
        /// Last applied LSN.
        replay_lsn: u64,
    },
    /// Upstream -> downstream: cannot stream from the requested position.
    Refused(StartRefusal),
}

const TAG_START: u8 = b'S';
const TAG_RECORD: u8 = b'W';
const TAG_KEEPALIVE: u8 = b'K';
const TAG_FEEDBACK: u8 = b'F';
const TAG_REFUSED: u8 = b'R';

fn payload_len(tag: u8) -> Option<usize> {
    match tag {
        TAG_START => Some(12),
        TAG_RECORD => Some(52),
        TAG_KEEPALIVE => Some(8),
        TAG_FEEDBACK => Some(16),
        TAG_REFUSED => Some(1),
        _ => None,
    }
}

/// Encoder and decoder of [`WalMessage`] frames.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WalCodec;

impl Encoder<WalMessage> for WalCodec {
    type Error = NodeError;

    fn encode(&mut self, message: WalMessage, out: &mut BytesMut) -> Result<(), NodeError> {
        match message {
            WalMessage::Start {
                after_lsn,
                timeline,
            } => {
                out.put_u8(TAG_START);
                out.put_u64(after_lsn);
                out.put_u32(timeline);
            }
            WalMessage::Record(r) => {
                out.put_u8(TAG_RECORD);
                out.put_u64(r.lsn);
                out.put_u32(r.timeline);
                out.put_i64(r.org);
                out.put_i64(r.key);
                out.put_i64(r.version);
                out.put_i64(r.updated_by);
                out.put_u64(r.commit_us);
            }
            WalMessage::Keepalive { end_lsn } => {
                out.put_u8(TAG_KEEPALIVE);
                out.put_u64(end_lsn);
            }
            WalMessage::Feedback {
                receive_lsn,
                replay_lsn,
            } => {
                out.put_u8(TAG_FEEDBACK);
                out.put_u64(receive_lsn);
                out.put_u64(replay_lsn);
            }
            WalMessage::Refused(reason) => {
                out.put_u8(TAG_REFUSED);
                out.put_u8(match reason {
                    StartRefusal::Ahead => 0,
                    StartRefusal::Diverged => 1,
                });
            }
        }
        Ok(())
    }
}

impl Decoder for WalCodec {
    type Item = WalMessage;
    type Error = NodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<WalMessage>, NodeError> {
        let Some(&tag) = src.first() else {
            return Ok(None);
        };
        let len = payload_len(tag).ok_or(NodeError::WalFrame { tag })?;
        if src.len() < 1 + len {
            src.reserve(1 + len - src.len());
            return Ok(None);
        }
        src.advance(1);
        let message = match tag {
            TAG_START => WalMessage::Start {
                after_lsn: src.get_u64(),
                timeline: src.get_u32(),
            },
            TAG_RECORD => WalMessage::Record(WalRecord {
                lsn: src.get_u64(),
                timeline: src.get_u32(),
                org: src.get_i64(),
                key: src.get_i64(),
                version: src.get_i64(),
                updated_by: src.get_i64(),
                commit_us: src.get_u64(),
            }),
            TAG_KEEPALIVE => WalMessage::Keepalive {
                end_lsn: src.get_u64(),
            },
            TAG_FEEDBACK => WalMessage::Feedback {
                receive_lsn: src.get_u64(),
                replay_lsn: src.get_u64(),
            },
            _ => WalMessage::Refused(match src.get_u8() {
                0 => StartRefusal::Ahead,
                _ => StartRefusal::Diverged,
            }),
        };
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_even_when_split() {
        let messages = [
            WalMessage::Start {
                after_lsn: 7,
                timeline: 2,
            },
            WalMessage::Record(WalRecord {
                lsn: 0x0300_0080,
                timeline: 1,
                org: -3,
                key: 4,
                version: 5,
                updated_by: 6,
                commit_us: 7_000,
            }),
            WalMessage::Keepalive { end_lsn: 9 },
            WalMessage::Feedback {
                receive_lsn: 10,
                replay_lsn: 8,
            },
            WalMessage::Refused(StartRefusal::Diverged),
        ];
        let mut wire = BytesMut::new();
        for m in messages {
            WalCodec.encode(m, &mut wire).expect("encoding cannot fail");
        }
        let mut decoded = Vec::new();
        let mut src = BytesMut::new();
        for byte in wire {
            src.put_u8(byte);
            while let Some(m) = WalCodec.decode(&mut src).expect("valid frames") {
                decoded.push(m);
            }
        }
        assert_eq!(decoded, messages);
    }

    #[test]
    fn unknown_tag_is_an_error() {
        let mut src = BytesMut::from(&b"Zjunk"[..]);
        assert!(matches!(
            WalCodec.decode(&mut src),
            Err(NodeError::WalFrame { tag: b'Z' })
        ));
    }
}
