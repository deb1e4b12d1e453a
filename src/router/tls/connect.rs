//! The TLS handshake on a node's stream, as the PostgreSQL client asks for it, and its failures as
//! one-line messages.
//!
//! The PostgreSQL client negotiates (SSLRequest, the server's yes or no) and then hands the stream
//! to [`NodeTls`]; with `sslmode=disable` it never does, so plain connections send exactly the
//! bytes they always did.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::router::connector::BoxedStream;
use crate::router::error::ConnectFailure;
use crate::router::tls::SslMode;

/// The TLS stream over a node's stream.
type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// What the PostgreSQL client says when the server answers an SSLRequest with no.
const SERVER_SAYS_NO: &str = "server does not support TLS";

/// The handshake of the connections to one node: the mode, the name the certificate must carry,
/// and the shared rustls configuration (none when TLS is off). Cheap to clone: each connect
/// consumes one.
#[derive(Clone)]
pub(crate) struct NodeTls {
    mode: SslMode,
    host: Arc<str>,
    connector: Option<MakeRustlsConnect>,
}

impl NodeTls {
    pub(super) fn new(
        mode: SslMode,
        host: Arc<str>,
        connector: Option<MakeRustlsConnect>,
    ) -> NodeTls {
        NodeTls {
            mode,
            host,
            connector,
        }
    }

    /// Why a connection's startup failed: a TLS failure as such, anything else as a startup error.
    pub(crate) fn failure(&self, error: tokio_postgres::Error) -> ConnectFailure {
        let cause = error.source();
        if let Some(handshake) = cause.and_then(|c| c.downcast_ref::<HandshakeError>()) {
            return ConnectFailure::Tls(handshake.to_string());
        }
        // The client's own refusal carries no type of its own; its fixed text identifies it.
        if cause.is_some_and(|c| c.to_string() == SERVER_SAYS_NO) {
            return ConnectFailure::Tls(format!("{SERVER_SAYS_NO} (sslmode={})", self.mode));
        }
        ConnectFailure::Startup(error)
    }
}

impl TlsConnect<Socket> for NodeTls {
    type Stream = TlsStream;
    type Error = HandshakeError;
    type Future = BoxFuture<'static, Result<TlsStream, HandshakeError>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let NodeTls {
            mode,
            host,
            connector,
        } = self;
        Box::pin(async move {
            let Some(mut connector) = connector else {
                // Unreachable through the client with sslmode=disable; refused, not assumed.
                return Err(HandshakeError(format!(
                    "TLS was asked for with sslmode={mode}"
                )));
            };
            let Ok(handshake) = <MakeRustlsConnect as MakeTlsConnect<Socket>>::make_tls_connect(
                &mut connector,
                &host,
            );
            handshake
                .connect(stream)
                .await
                .map_err(|error| HandshakeError::from_io(&host, &error))
        })
    }
}

/// A node's stream as the PostgreSQL client sees it. A named type rather than the boxed trait
/// object itself: a trait object's lifetime inside the client's futures defeats the compiler's
/// proof that they are `Send` (a higher-ranked lifetime it cannot name), a plain struct has none.
pub(crate) struct Socket(pub(crate) BoxedStream);

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// A failed handshake, said in one line.
#[derive(Debug)]
pub(crate) struct HandshakeError(String);

impl HandshakeError {
    /// rustls reports through an `io::Error`; its own error, if inside, says more.
    fn from_io(host: &str, error: &io::Error) -> HandshakeError {
        let rustls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        HandshakeError(match rustls {
            Some(error) => describe(host, error),
            None if error.kind() == io::ErrorKind::InvalidInput => {
                format!("host {host:?} is not a name or address a certificate can carry: {error}")
            }
            None => format!("handshake failed: {error}"),
        })
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandshakeError {}

/// The certificate errors a deployment meets, in the terms of its settings.
fn describe(host: &str, error: &rustls::Error) -> String {
    use rustls::CertificateError as Cert;
    match error {
        rustls::Error::InvalidCertificate(Cert::NotValidForNameContext { presented, .. }) => {
            format!(
                "certificate not valid for name '{host}' (it names {}; sslmode=verify-full)",
                if presented.is_empty() {
                    "no name".to_string()
                } else {
                    presented
                        .iter()
                        .map(|name| bare_name(name))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForName) => {
            format!("certificate not valid for name '{host}' (sslmode=verify-full)")
        }
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => {
            "certificate not signed by a root of sslrootcert (unknown issuer)".to_string()
        }
        other => other.to_string(),
    }
}

/// `DnsName("db.example")` (how rustls lists a certificate's names) as `db.example`.
fn bare_name(listed: &str) -> &str {
    match (listed.find('"'), listed.rfind('"')) {
        (Some(start), Some(end)) if end > start => &listed[start + 1..end],
        _ => listed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_errors_name_the_host() {
        let error = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        assert_eq!(
            describe("127.0.0.1", &error),
            "certificate not valid for name '127.0.0.1' (sslmode=verify-full)"
        );
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, error);
        let message = HandshakeError::from_io("db.example", &wrapped).to_string();
        assert!(message.contains("'db.example'"), "{message}");
    }

    #[test]
    fn listed_names_are_shown_bare() {
        assert_eq!(bare_name("DnsName(\"db.example\")"), "db.example");
        assert_eq!(bare_name("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn other_io_errors_keep_their_text() {
        let error = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let message = HandshakeError::from_io("h", &error).to_string();
        assert_eq!(message, "handshake failed: reset by peer");
    }
}
