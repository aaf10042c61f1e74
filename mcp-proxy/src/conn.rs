//! Connection hygiene: the rules of "Connections" in the crate docs (header-read and
//! keep-alive deadlines, HTTP/2 detection, the connection limit).

use crate::config::ConnConfig;
use crate::drain::{InFlightGuard, Tracked};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// The HTTP/2 connection preface, which a cleartext HTTP/2 client sends first.
pub(crate) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How an HTTP/2 connection closed for idleness may take to send GOAWAY and close.
pub(crate) const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// How connections are served and when they are closed.
#[derive(Debug)]
pub(crate) struct ConnSettings {
    pub(crate) http1: hyper::server::conn::http1::Builder,
    pub(crate) http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    pub(crate) header_read_timeout: Option<Duration>,
    pub(crate) keep_alive_timeout: Option<Duration>,
}

impl ConnSettings {
    pub(crate) fn new(config: &ConnConfig) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // hyper's timer starts when the connection goes idle, so it cannot tell keep-alive
            // from a slow head; the watchdog below times both.
            .header_read_timeout(None)
            .max_header_size(config.max_header_size as usize);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(config.max_header_size)
            .keep_alive_interval(config.http2_keep_alive_interval)
            .keep_alive_timeout(config.http2_keep_alive_timeout);
        Self {
            http1,
            http2,
            header_read_timeout: config.header_read_timeout,
            keep_alive_timeout: config.keep_alive_timeout,
        }
    }
}

/// The cap on open connections: a permit per connection, waited for before `accept`.
pub(crate) struct ConnectionLimit {
    pub(crate) slots: Option<Arc<Semaphore>>,
    pub(crate) max: usize,
    pub(crate) last_warning: Option<Instant>,
}

impl ConnectionLimit {
    pub(crate) fn new(max: Option<usize>) -> Self {
        Self {
            slots: max.map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)))),
            max: max.unwrap_or(usize::MAX),
            last_warning: None,
        }
    }

    /// Room for one more connection (`None` without a cap); at the cap, waits for a connection
    /// to close, saying so in the log at most once a minute.
    pub(crate) async fn acquire(&mut self) -> Option<OwnedSemaphorePermit> {
        let slots = self.slots.as_ref()?;
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!(
                max_connections = self.max,
                "connection limit reached: new connections wait until one closes (--max-connections)"
            );
            self.last_warning = Some(Instant::now());
        }
        slots.clone().acquire_owned().await.ok()
    }
}

/// Why a connection is closed by its watchdog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// No complete first request within the header-read timeout.
    FirstRequest,
    /// An HTTP/1 request head took longer than the header-read timeout.
    Header,
    /// No request in flight for the keep-alive timeout.
    Idle,
}

impl Expiry {
    fn reason(self) -> &'static str {
        match self {
            Self::FirstRequest => "no complete request within the header-read timeout",
            Self::Header => "request head not complete within the header-read timeout",
            Self::Idle => "idle for the keep-alive timeout",
        }
    }
}

/// No HTTP/1 head has started arriving since the connection went idle.
pub(crate) const NO_HEAD: u64 = u64::MAX;

/// What one connection is doing, shared by its reader, its requests and its watchdog. Times are
/// milliseconds since the connection was accepted.
#[derive(Debug)]
pub(crate) struct Activity {
    pub(crate) accepted: Instant,
    /// The client, for the per-caller limits of unauthenticated requests.
    pub(crate) peer: SocketAddr,
    /// Requests whose response has not ended.
    pub(crate) in_flight: AtomicUsize,
    /// A first request has arrived.
    pub(crate) started: AtomicBool,
    pub(crate) http2: AtomicBool,
    /// When the last response ended.
    pub(crate) idle_since: AtomicU64,
    /// When the first bytes of the next HTTP/1 head arrived, or [`NO_HEAD`].
    pub(crate) head_started: AtomicU64,
}

impl Activity {
    fn new(peer: SocketAddr) -> Self {
        Self {
            accepted: Instant::now(),
            peer,
            in_flight: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NO_HEAD),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes arrived: on an idle HTTP/1 connection they start the next head.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Relaxed)
            && self.head_started.load(Ordering::Relaxed) == NO_HEAD
        {
            self.head_started.store(self.now(), Ordering::Release);
        }
    }

    /// A request arrived (its head is complete).
    pub(crate) fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if !self.started.load(Ordering::Relaxed) {
            self.started.store(true, Ordering::Release);
        }
        self.head_started.store(NO_HEAD, Ordering::Release);
        RequestGuard(self.clone())
    }

    /// When the connection is due to close and why; `None` while a request is in flight.
    fn deadline(&self, settings: &ConnSettings) -> Option<(u64, Expiry)> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = if !self.started.load(Ordering::Acquire) {
            Some((0, Expiry::FirstRequest))
        } else if self.http2.load(Ordering::Relaxed) {
            None
        } else {
            match self.head_started.load(Ordering::Acquire) {
                NO_HEAD => None,
                at => Some((at, Expiry::Header)),
            }
        };
        if let (Some((from, why)), Some(limit)) = (head, settings.header_read_timeout) {
            return Some((from.saturating_add(ms(limit)), why));
        }
        let idle_since = self.idle_since.load(Ordering::Acquire);
        settings
            .keep_alive_timeout
            .map(|limit| (idle_since.saturating_add(ms(limit)), Expiry::Idle))
    }
}

/// A request of a connection, until its response ends.
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // Stamped before the count drops, so a watchdog that sees no request in flight sees
        // when the last one ended.
        self.0.idle_since.store(self.0.now(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves when the connection is due to close. It re-reads the connection's state at its
/// deadline, and at least every `min(header-read, keep-alive)` timeout, so requests need not
/// wake it: closing on time costs them a few atomic operations.
pub(crate) async fn watchdog(activity: &Activity, settings: &ConnSettings) -> Expiry {
    let period = [settings.header_read_timeout, settings.keep_alive_timeout]
        .into_iter()
        .flatten()
        .min();
    let Some(period) = period else {
        return std::future::pending().await;
    };
    let period = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    loop {
        let now = activity.now();
        let wake = match activity.deadline(settings) {
            Some((at, why)) if at <= now => return why,
            Some((at, _)) => at.min(now.saturating_add(period)),
            None => now.saturating_add(period),
        };
        tokio::time::sleep_until(activity.accepted + Duration::from_millis(wake)).await;
    }
}

/// One accepted connection and what it needs to be served.
pub(crate) struct Connection<S> {
    pub(crate) peer: SocketAddr,
    pub(crate) service: Tracked<S>,
    pub(crate) settings: Arc<ConnSettings>,
    /// Turns `true` when the proxy shuts down.
    pub(crate) draining: watch::Receiver<bool>,
    pub(crate) _counted: InFlightGuard,
    /// Its room under `--max-connections`.
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

impl<S, B> Connection<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Detects the protocol and serves the connection until it ends or its watchdog closes it.
    pub(crate) async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            peer,
            service,
            settings,
            mut draining,
            ..
        } = self;
        let activity = Arc::new(Activity::new(peer));
        let mut io = Watched {
            io,
            activity: activity.clone(),
        };
        let detected = tokio::select! {
            detected = detect(&mut io) => detected,
            expiry = watchdog(&activity, &settings) => {
                tracing::debug!(%peer, "closing connection: {}", expiry.reason());
                return;
            }
            () = drained(&mut draining) => return,
        };
        let (http2, prefix) = match detected {
            Ok(Some(detected)) => detected,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection failed before its first request");
                return;
            }
        };
        activity.http2.store(http2, Ordering::Release);
        let io = TokioIo::new(Prefixed { prefix, io });
        let service = TowerToHyperService::new(service.for_connection(activity.clone()));
        let ended = if http2 {
            let connection = settings.http2.serve_connection(io, service);
            drive(connection, &activity, &settings, draining, |c| {
                c.graceful_shutdown()
            })
            .await
        } else {
            let connection = settings.http1.serve_connection(io, service);
            drive(connection, &activity, &settings, draining, |c| {
                c.graceful_shutdown()
            })
            .await
        };
        match ended {
            Ok(Some(expiry)) => {
                tracing::debug!(%peer, "closing connection: {}", expiry.reason());
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        }
    }
}

/// Runs a hyper connection: shuts it down gracefully when the proxy drains, closes it when its
/// watchdog says so (HTTP/2 first sends GOAWAY). `Some` names why the watchdog closed it.
pub(crate) async fn drive<C, E>(
    connection: C,
    activity: &Activity,
    settings: &ConnSettings,
    mut draining: watch::Receiver<bool>,
    graceful: impl Fn(Pin<&mut C>),
) -> Result<Option<Expiry>, E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => return ended.map(|()| None),
            expiry = watchdog(activity, settings) => {
                // No stream is open: HTTP/2 says goodbye (GOAWAY) and closes at once. An
                // HTTP/1 connection is dropped: it is idle or has half a head, nothing to finish.
                if activity.http2.load(Ordering::Relaxed) {
                    graceful(connection.as_mut());
                    let _ = tokio::time::timeout(GOAWAY_GRACE, connection.as_mut()).await;
                }
                return Ok(Some(expiry));
            }
            () = drained(&mut draining), if !shutting_down => {
                shutting_down = true;
                graceful(connection.as_mut());
            }
        }
    }
}

/// Resolves once the proxy drains its connections (or is gone).
pub(crate) async fn drained(draining: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across an await.
    let _ = draining.wait_for(|stop| *stop).await;
}

/// Reads the first bytes, as far as they can be the HTTP/2 preface: `(true, preface)` for
/// cleartext HTTP/2, `(false, bytes)` for HTTP/1, `None` if the peer closed without a byte.
pub(crate) async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
) -> std::io::Result<Option<(bool, Bytes)>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    while filled < buf.len() {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok((filled > 0).then(|| (false, Bytes::copy_from_slice(&buf[..filled]))));
        }
        filled += n;
        if buf[..filled] != H2_PREFACE[..filled] {
            return Ok(Some((false, Bytes::copy_from_slice(&buf[..filled]))));
        }
    }
    Ok(Some((true, Bytes::copy_from_slice(&buf))))
}

pin_project_lite::pin_project! {
    /// A connection's stream with the bytes read during protocol detection put back in front.
    struct Prefixed<I> {
        prefix: Bytes,
        #[pin]
        io: I,
    }
}

impl<I: AsyncRead> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        this.io.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// A connection's stream that tells its [`Activity`] when bytes arrive.
    struct Watched<I> {
        #[pin]
        io: I,
        activity: Arc<Activity>,
    }
}

impl<I: AsyncRead> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read();
        }
        polled
    }
}

impl<I: AsyncWrite> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}
