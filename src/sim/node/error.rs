//! Errors of a simulated node's own machinery (listeners, the WAL stream). SQL errors are not
//! here: they go to the client as PostgreSQL error responses.

use std::io;
use std::time::Duration;

/// Something that stopped a node's listener or one WAL stream.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A listener could not be opened (another host body already bound the port?).
    #[error("node {node}: cannot listen on port {port}: {source}")]
    Listen {
        /// Host name.
        node: String,
        /// The port.
        port: u16,
        /// What turmoil said.
        source: io::Error,
    },
    /// Accepting a connection failed.
    #[error("node {node}: accept on port {port} failed: {source}")]
    Accept {
        /// Host name.
        node: String,
        /// The port.
        port: u16,
        /// What turmoil said.
        source: io::Error,
    },
    /// Reading or writing the WAL stream failed (the peer went away).
    #[error("WAL stream I/O failed: {0}")]
    WalIo(#[from] io::Error),
    /// Bytes on the WAL port that are not a frame of this protocol.
    #[error("malformed WAL frame (tag {tag:#04x}); only simulated nodes may use the WAL port")]
    WalFrame {
        /// The unknown tag byte.
        tag: u8,
    },
    /// A well-formed frame that the peer must not send at this point.
    #[error("unexpected WAL stream message: {0}")]
    WalProtocol(&'static str),
    /// Nothing arrived (or nothing could be sent) for too long: the peer is gone or partitioned.
    #[error("WAL stream silent for {0:?}; the peer is gone or partitioned")]
    WalTimeout(Duration),
    /// The upstream will not stream from this replica's position.
    #[error("upstream refused to stream: {0}")]
    StreamRefused(&'static str),
}
