//! Streaming reads: rows reach the caller as the server sends them, over a pooled connection the stream
//! holds until it ends or is dropped.

use std::pin::Pin;

use futures::TryStreamExt;
use tokio_postgres::{Row, RowStream};

use crate::router::caps::SharedCapSlots;
use crate::router::error::RouterError;
use crate::router::pool::Checkout;
use crate::router::stats::{AttemptEnd, AttemptGuard};

/// The rows of one read, in the order the server sends them.
///
/// The router waits for the first row (or the end) before handing the stream out, so a read is retried
/// on another node only while no row has reached the caller. Each wait for a row lasts at most
/// `query_timeout`. Dropping the stream before its end closes the connection rather than returning a
/// half-read one to the pool.
pub struct ReadStream {
    rows: Pin<Box<RowStream>>,
    first: Option<Row>,
    ended: bool,
    // Dropped in this order: the connection goes back to its pool (or takes the cap slots over to
    // settle a statement still running) before the caller's cap slots free.
    checkout: Checkout,
    attempt: Option<AttemptGuard>,
    caps: SharedCapSlots,
}

impl ReadStream {
    /// Wraps a started statement and waits for its first row or its end.
    pub(crate) async fn begin(
        checkout: Checkout,
        rows: RowStream,
        attempt: AttemptGuard,
    ) -> Result<ReadStream, RouterError> {
        let mut stream = ReadStream {
            rows: Box::pin(rows),
            first: None,
            ended: false,
            checkout,
            attempt: Some(attempt),
            caps: SharedCapSlots::NONE,
        };
        stream.first = stream.next_from_server().await?;
        Ok(stream)
    }

    /// Attaches the caller's cap slots, held until the stream is dropped.
    pub(crate) fn hold(&mut self, caps: SharedCapSlots) {
        self.caps = caps;
    }

    /// The next row, `Ok(None)` at the end. After an error the stream yields nothing more.
    pub async fn next_row(&mut self) -> Result<Option<Row>, RouterError> {
        if let Some(row) = self.first.take() {
            return Ok(Some(row));
        }
        self.next_from_server().await
    }

    /// Rows the statement affected, once the stream has ended.
    pub fn rows_affected(&self) -> Option<u64> {
        self.rows.rows_affected()
    }

    async fn next_from_server(&mut self) -> Result<Option<Row>, RouterError> {
        if self.ended {
            return Ok(None);
        }
        let timeout = self.checkout.query_timeout();
        let waited = tokio::time::timeout(timeout, self.rows.as_mut().try_next()).await;
        match self.checkout.settle(waited) {
            Ok(Some(row)) => Ok(Some(row)),
            Ok(None) => {
                self.finish(AttemptEnd::Success);
                Ok(None)
            }
            Err(error) => {
                self.finish(AttemptEnd::Error);
                Err(error)
            }
        }
    }

    fn finish(&mut self, end: AttemptEnd) {
        self.ended = true;
        if let Some(attempt) = self.attempt.take() {
            attempt.end(end);
        }
    }
}

impl std::fmt::Debug for ReadStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadStream")
            .field("first_row_buffered", &self.first.is_some())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Drop for ReadStream {
    fn drop(&mut self) {
        if !self.ended {
            // The server is still sending rows: a connection in that state is no use to the next
            // caller.
            self.checkout.discard();
        }
    }
}
