//! [`RewriteIo`]: a connection as hyper reads it through a [`Rewriter`].

use crate::{Refusal, Rewriter};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The refusal of a connection's request, shared between its [`RewriteIo`] (which sets
/// it) and the service hyper calls for each request (which answers it).
#[derive(Clone, Debug, Default)]
pub struct Refusals(Arc<OnceLock<(u64, Refusal)>>);

impl Refusals {
    /// The refusal to answer for the connection's `request`-th request (from 0), if that
    /// request is the stand-in of a refused one. hyper calls its service once per head
    /// it parses, in order, and it parses exactly the heads the rewriter passes on.
    pub fn of(&self, request: u64) -> Option<&Refusal> {
        match self.0.get() {
            Some((n, r)) if *n == request => Some(r),
            _ => None,
        }
    }
}

/// A connection whose reads go through a [`Rewriter`] and whose writes go straight on.
///
/// Bytes are read into the caller's buffer and rewritten there; only a head that grows
/// (its target percent-encoded) spills into a side buffer, served before the next read,
/// so nothing is buffered beyond one head (the rewriter's limit) and one read.
pub struct RewriteIo<I> {
    inner: I,
    rewriter: Rewriter,
    spill: Vec<u8>,
    spilled: usize,
    refusals: Refusals,
}

impl<I> RewriteIo<I> {
    /// `inner` read through a rewriter that passes on heads of up to `limit` bytes (the
    /// HTTP layer's read buffer).
    pub fn new(inner: I, limit: usize) -> (Self, Refusals) {
        let refusals = Refusals::default();
        (
            RewriteIo {
                inner,
                rewriter: Rewriter::new(limit),
                spill: Vec::new(),
                spilled: 0,
                refusals: refusals.clone(),
            },
            refusals,
        )
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for RewriteIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.spilled < this.spill.len() {
                let n = buf.remaining().min(this.spill.len() - this.spilled);
                buf.put_slice(&this.spill[this.spilled..this.spilled + n]);
                this.spilled += n;
                if this.spilled == this.spill.len() {
                    this.spill.clear();
                    this.spilled = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.refusals.0.get().is_some() {
                // The stand-in request closes the connection once answered: nothing
                // after the refused head is read. (An end of file here instead would
                // make hyper drop the connection before it answers.)
                return Poll::Pending;
            }
            let start = buf.filled().len();
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let end = buf.filled().len();
            if end == start {
                return Poll::Ready(Ok(()));
            }
            let kept = this
                .rewriter
                .rewrite_in_place(&mut buf.filled_mut()[start..end], &mut this.spill);
            buf.set_filled(start + kept);
            if let Some(refusal) = this.rewriter.take_refusal() {
                let _ = this.refusals.0.set(refusal);
            }
            if kept > 0 {
                return Poll::Ready(Ok(()));
            }
            // Everything read was held (part of a head) or spilled: serve the spill, or
            // read on (a pending read registers the waker).
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for RewriteIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
