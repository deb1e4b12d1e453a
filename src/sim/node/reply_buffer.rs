//! The output buffering of a PostgreSQL backend: the answers to extended-protocol messages (`Parse`,
//! `Bind`, `Describe`, `Execute`, `Close`) wait in a buffer and leave together at the next `Sync` or
//! `Flush`, as PostgreSQL's own output buffer does. pgwire flushes after each of those answers, and
//! over turmoil every flush is a TCP segment of its own: three segments per statement, each one
//! queued, delivered and woken for, where PostgreSQL sends one.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose writes are held while [`ReplyBuffer::hold`] is on; a flush with the hold off sends
/// what was held, in order, ahead of anything written after it.
#[derive(Debug)]
pub(crate) struct ReplyBuffer<S> {
    inner: S,
    held: Vec<u8>,
    /// Bytes of `held` already written to `inner`.
    sent: usize,
    hold: bool,
}

impl<S> ReplyBuffer<S> {
    pub(crate) fn new(inner: S) -> ReplyBuffer<S> {
        ReplyBuffer {
            inner,
            held: Vec::new(),
            sent: 0,
            hold: false,
        }
    }

    /// Whether writes and flushes are held (set before each client message is processed).
    pub(crate) fn hold(&mut self, hold: bool) {
        self.hold = hold;
    }
}

impl<S: AsyncWrite + Unpin> ReplyBuffer<S> {
    /// Writes out everything held.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReplyBuffer<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReplyBuffer<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.hold || !self.held.is_empty() {
            // Behind held bytes, a write joins them, so the order on the wire is kept.
            self.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.hold {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A sink that records each write as one "segment".
    #[derive(Default)]
    struct Segments(Vec<Vec<u8>>);

    impl AsyncWrite for Segments {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn held_answers_leave_together_at_the_first_flush_without_hold() {
        let mut stream = ReplyBuffer::new(Segments::default());
        stream.hold(true);
        stream.write_all(b"bind;").await.unwrap();
        stream.flush().await.unwrap();
        stream.write_all(b"rows;").await.unwrap();
        stream.flush().await.unwrap();
        assert!(stream.inner.0.is_empty(), "nothing leaves while held");
        stream.hold(false);
        stream.write_all(b"ready").await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(stream.inner.0, vec![b"bind;rows;ready".to_vec()]);
    }

    #[tokio::test]
    async fn without_hold_each_write_goes_straight_through() {
        let mut stream = ReplyBuffer::new(Segments::default());
        stream.write_all(b"a").await.unwrap();
        stream.write_all(b"b").await.unwrap();
        assert_eq!(stream.inner.0, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[tokio::test]
    async fn shutdown_sends_what_was_held() {
        let mut stream = ReplyBuffer::new(Segments::default());
        stream.hold(true);
        stream.write_all(b"error").await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(stream.inner.0, vec![b"error".to_vec()]);
    }
}
