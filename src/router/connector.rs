//! The one seam between real and simulated networking: how a byte stream to a node is opened.
//!
//! The router speaks PostgreSQL over whatever stream a [`Connector`] hands it
//! (`tokio_postgres::Config::connect_raw` accepts any `AsyncRead + AsyncWrite`), so the same router runs
//! over `tokio::net` in production and over a simulated network in tests.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a node: anything the PostgreSQL client can run over.
pub trait NodeStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> NodeStream for T {}

/// An owned, type-erased stream to a node.
pub type BoxedStream = Box<dyn NodeStream>;

/// Why the router opens a connection: the application's work, or its own health probing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ConnectPurpose {
    /// A pooled connection that runs application statements.
    Workload,
    /// A probe connection (`application_name = 'replisim-health'`).
    HealthCheck,
    /// A connection that carries one CancelRequest for a statement the router abandoned.
    Cancel,
}

/// Where a node listens, and the name the router reports it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    /// Unique node name, used in statistics and error messages.
    pub name: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Share of reads under the `weighted` balancing policy, relative to the shard's other replicas;
    /// at least 1. Default 1.
    pub weight: u32,
}

impl NodeAddress {
    /// A node address from its parts.
    pub fn new(name: impl Into<String>, host: impl Into<String>, port: u16) -> NodeAddress {
        NodeAddress {
            name: name.into(),
            host: host.into(),
            port,
            weight: 1,
        }
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}:{})", self.name, self.host, self.port)
    }
}

/// Opens byte streams to nodes.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Opens a byte stream to `node`. Must not apply its own timeout: the router times every connect.
    async fn connect(&self, node: &NodeAddress, purpose: ConnectPurpose)
    -> io::Result<BoxedStream>;
}

/// The production connector: plain TCP with Nagle's algorithm off (statements are small and
/// latency-bound).
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpConnector;

#[async_trait::async_trait]
impl Connector for TcpConnector {
    async fn connect(
        &self,
        node: &NodeAddress,
        _purpose: ConnectPurpose,
    ) -> io::Result<BoxedStream> {
        let stream = tokio::net::TcpStream::connect((node.host.as_str(), node.port)).await?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}
