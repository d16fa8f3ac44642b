//! The accept loop of `cairn serve`, plain HTTP and HTTPS alike: each connection is served
//! by hyper's HTTP/1.1 connection with a header-read timeout (which also ends idle
//! keep-alive connections), a body-idle timeout on request bodies and a send timeout on
//! responses the client does not read; TLS handshakes run off the accept loop, bounded per
//! client and globally by shedding the oldest pending one. Graceful shutdown stops
//! accepting, lets in-flight requests finish and closes idle connections.
//! (`axum::serve` has none of these knobs.)

use axum::extract::connect_info::ConnectInfo;
use axum::extract::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The most a connection buffers of a request it reads (so also the largest request
/// head) and of a response it has not sent yet, instead of hyper's ~400 KiB: with a vault
/// read chunk and an upload's write buffer this keeps a stalled connection under about
/// 600 KiB.
const CONNECTION_BUFFER: usize = 64 << 10;

/// How long a client may take at each stage of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the start of waiting for a request (a new connection or an idle keep-alive
    /// one) until its headers are complete.
    pub header_read: Duration,
    /// The longest a request body may deliver nothing, and the longest a response may
    /// wait for the client to take more bytes.
    pub body_idle: Duration,
}

/// Bounds on TLS handshakes in progress.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// A new connection must send its first bytes (the ClientHello) within this.
    pub hello: Duration,
    /// The whole handshake must finish within this.
    pub handshake: Duration,
    /// Handshakes pending at once; a new one beyond it closes the oldest.
    pub max_pending: usize,
    /// Handshakes pending at once from one client address (an IPv6 /64); a new one
    /// beyond it closes that client's oldest.
    pub max_pending_per_client: usize,
}

/// The application as one service per request (axum's router after path normalisation).
pub type App = cairn_web::Service;

/// Serves `app` on `tcp` (over TLS when `tls` is given) until `shutdown` resolves, then
/// drains: no new connections, in-flight requests finish, idle connections close.
pub async fn serve(
    tcp: TcpListener,
    tls: Option<(Arc<ServerConfig>, HandshakeLimits)>,
    app: App,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Connection tasks hold a receiver each; `closed()` on the sender waits for them all.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let pending = tls.map(|(config, limits)| {
        (
            TlsAcceptor::from(config),
            limits,
            Arc::new(Pending::new(limits)),
        )
    });
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp_conn, peer) = tokio::select! {
            r = tcp.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off, as axum does.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp_conn.set_nodelay(true);
        let (app, stop, done) = (app.clone(), stop_rx.clone(), done_rx.clone());
        match &pending {
            None => {
                tokio::spawn(async move {
                    serve_connection(tcp_conn, peer, app, timeouts, stop).await;
                    drop(done);
                });
            }
            Some((acceptor, limits, pending)) => {
                let (acceptor, limits) = (acceptor.clone(), *limits);
                let (slot, shed) = pending.admit(peer.ip());
                tokio::spawn(async move {
                    let tls = tokio::select! {
                        tls = handshake(&acceptor, tcp_conn, limits) => tls,
                        // Shed for a newer handshake, or the server is stopping.
                        _ = shed => None,
                    };
                    drop(slot);
                    match tls {
                        Some(tls) => serve_connection(tls, peer, app, timeouts, stop).await,
                        None => tracing::debug!(%peer, "TLS handshake failed or timed out"),
                    }
                    drop(done);
                });
            }
        }
    }
    drop(tcp);
    // Handshakes still pending are abandoned: their connections close now.
    if let Some((_, _, pending)) = pending {
        let mut g = pending.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.order.clear();
        g.per_client.clear();
    }
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    limits: HandshakeLimits,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    // A client that connects and sends nothing is dropped quickly; one that started its
    // handshake gets the longer limit to finish it.
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(limits.hello, tcp.peek(&mut first))
        .await
        .ok()?
        .ok()?;
    if n == 0 {
        return None;
    }
    tokio::time::timeout(limits.handshake, acceptor.accept(tcp))
        .await
        .ok()?
        .ok()
}

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    app: App,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Request targets with raw `"` and the like (Entra's filters) are percent-encoded
    // under hyper, whose URI parser would refuse them; heads hyper would refuse anyway
    // become a stand-in request answered here with the reason (see `cairn_wire`).
    let (io, refusals) = cairn_wire::io::RewriteIo::new(io, CONNECTION_BUFFER);
    let io = TokioIo::new(SendTimeout::new(io, timeouts.body_idle));
    let idle = timeouts.body_idle;
    // hyper calls the service once per head it parses, in order: the count names the
    // request a refusal is for.
    let requests = AtomicU64::new(0);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let refused = refusals
            .of(requests.fetch_add(1, Ordering::Relaxed))
            .cloned();
        let mut req: Request = req.map(|b| axum::body::Body::new(IdleBody::new(b, idle)));
        // What `into_make_service_with_connect_info` would add: handlers read the peer.
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            match refused {
                Some(r) => Ok(refusal_response(peer, r)),
                None => app.oneshot(req).await,
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_buf_size(CONNECTION_BUFFER);
    let mut conn = std::pin::pin!(builder.serve_connection(io, service));
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            r = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The answer to a request head the HTTP layer would refuse: a SCIM error body with
/// the reason (hyper's own answer has none), and the connection closes.
fn refusal_response(peer: SocketAddr, r: cairn_wire::Refusal) -> axum::response::Response {
    use axum::response::IntoResponse;
    tracing::info!(%peer, status = r.status, reason = %r.reason, "request head refused");
    let mut resp = cairn_web::scim::response::ApiError(cairn_scim::ScimError::new(
        r.status,
        None,
        format!("the HTTP request could not be read: {}", r.reason),
    ))
    .into_response();
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// The TLS handshakes in progress, oldest first, and how many each client has.
struct Pending {
    limits: HandshakeLimits,
    inner: Mutex<PendingInner>,
}

#[derive(Default)]
struct PendingInner {
    next: u64,
    /// Dropping a sender ends that handshake.
    order: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    per_client: HashMap<IpAddr, usize>,
}

/// A client's key: its IPv4 address, or its IPv6 /64 (one host usually holds a whole
/// /64, RFC 4291 §2.5.1).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl PendingInner {
    fn remove(&mut self, id: u64) {
        if let Some((client, _)) = self.order.remove(&id) {
            if let Some(n) = self.per_client.get_mut(&client) {
                *n -= 1;
                if *n == 0 {
                    self.per_client.remove(&client);
                }
            }
        }
    }
}

impl Pending {
    fn new(limits: HandshakeLimits) -> Self {
        Pending {
            limits,
            inner: Mutex::new(PendingInner::default()),
        }
    }

    /// Registers a new handshake, shedding the oldest one of the same client, or the
    /// oldest of all, when a bound is reached: the accept loop never waits, and a client
    /// that opens silent connections pushes out its own before anyone else's.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> (Slot, oneshot::Receiver<()>) {
        let client = client_key(ip);
        let (tx, rx) = oneshot::channel();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mine = g.per_client.get(&client).copied().unwrap_or(0);
        if mine >= self.limits.max_pending_per_client.max(1) {
            let oldest = g
                .order
                .iter()
                .find(|(_, (c, _))| *c == client)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                g.remove(id);
            }
        }
        if g.order.len() >= self.limits.max_pending.max(1) {
            if let Some(id) = g.order.keys().next().copied() {
                g.remove(id);
            }
        }
        let id = g.next;
        g.next += 1;
        g.order.insert(id, (client, tx));
        *g.per_client.entry(client).or_insert(0) += 1;
        (
            Slot {
                pending: self.clone(),
                id,
            },
            rx,
        )
    }
}

/// A pending handshake's place; dropping it gives the place back.
struct Slot {
    pending: Arc<Pending>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.pending.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.remove(self.id);
    }
}

/// A request body that fails when it delivers nothing for `idle`, so a client that stops
/// sending mid-body does not hold its connection, its buffers and (for an upload) its
/// quota reservation for ever. The clock runs only while the handler waits for the body.
struct IdleBody {
    inner: Incoming,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl IdleBody {
    fn new(inner: Incoming, idle: Duration) -> Self {
        IdleBody {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body idle for longer than {0:?}")]
struct BodyIdle(Duration);

impl Body for IdleBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    let deadline = Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyIdle(this.idle).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once the client has taken no bytes for `idle`: a
/// client that requests a large object and never reads it gives its connection up.
struct SendTimeout<I> {
    inner: I,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<I> SendTimeout<I> {
    fn new(inner: I, idle: Duration) -> Self {
        SendTimeout {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
        }
    }

    /// Turns a write that has been pending for longer than `idle` into an error.
    fn stalled<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.armed {
                    self.armed = true;
                    let deadline = Instant::now() + self.idle;
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "client took no response bytes within the send timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendTimeout<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendTimeout<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.stalled(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.stalled(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.stalled(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.stalled(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_client: usize) -> HandshakeLimits {
        HandshakeLimits {
            hello: Duration::from_secs(1),
            handshake: Duration::from_secs(1),
            max_pending: total,
            max_pending_per_client: per_client,
        }
    }

    /// A client over its bound loses its own oldest handshake; beyond the global bound
    /// the oldest of all goes; a finished handshake frees its place.
    #[test]
    fn pending_handshakes_shed_the_oldest() {
        let p = Arc::new(Pending::new(limits(3, 2)));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let (_a1, mut a1) = p.admit(a);
        let (_a2, mut a2) = p.admit(a);
        let (_a3, mut a3) = p.admit(a);
        assert!(a1
            .try_recv()
            .is_err_and(|e| e == oneshot::error::TryRecvError::Closed));
        assert!(a2
            .try_recv()
            .is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        let (b1_slot, mut b1) = p.admit(b);
        assert!(a2
            .try_recv()
            .is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        let (_b2, mut b2) = p.admit(b);
        // Global bound 3: a2, a3, b1 pending; b2 sheds the oldest, a2.
        assert!(a2
            .try_recv()
            .is_err_and(|e| e == oneshot::error::TryRecvError::Closed));
        assert!(a3
            .try_recv()
            .is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        drop(b1_slot);
        let (_a4, _) = p.admit(a);
        assert!(a3
            .try_recv()
            .is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        assert!(b1.try_recv().is_err());
        assert!(b2
            .try_recv()
            .is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        let g = p.inner.lock().unwrap();
        assert_eq!(g.order.len(), 3);
        assert_eq!(g.per_client.values().sum::<usize>(), 3);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let m: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(m), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
