//! In-flight requests, counted for graceful shutdown (step 2 of "Graceful shutdown" in the
//! crate docs).

use crate::conn::{Activity, RequestGuard};
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::sync::Notify;

/// Counts requests whose work is not done: every non-GET request until its response body has
/// ended (an SSE answer stream ends with the answer). GETs (standalone and legacy SSE streams,
/// `/ping`) are not counted: they only end when their session does.
#[derive(Clone, Debug)]
pub(crate) struct InFlight(Arc<InFlightState>);

/// A counter that only wakes anyone once shutdown waits for it to drain: the per-request cost is
/// two atomic operations.
#[derive(Debug, Default)]
pub(crate) struct InFlightState {
    pub(crate) count: AtomicUsize,
    pub(crate) draining: AtomicBool,
    pub(crate) idle: Notify,
}

impl InFlight {
    pub(crate) fn new() -> Self {
        Self(Arc::default())
    }

    pub(crate) fn enter(&self) -> InFlightGuard {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    pub(crate) fn count(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    pub(crate) async fn idle(&self) {
        self.0.draining.store(true, Ordering::Release);
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a guard dropped in between still wakes us.
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<InFlightState>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let was = self.0.count.fetch_sub(1, Ordering::AcqRel);
        if was == 1 && self.0.draining.load(Ordering::Acquire) {
            self.0.idle.notify_waiters();
        }
    }
}

/// The stack with in-flight accounting around it: the process-wide count of requests for
/// graceful shutdown, and the requests of one connection for its idle rules.
#[derive(Clone, Debug)]
pub(crate) struct Tracked<S> {
    pub(crate) inner: S,
    pub(crate) in_flight: InFlight,
    /// The connection this clone serves (`None` on the shared template).
    pub(crate) connection: Option<Arc<Activity>>,
}

impl<S: Clone> Tracked<S> {
    /// A clone that also counts the requests of one connection.
    pub(crate) fn for_connection(&self, activity: Arc<Activity>) -> Self {
        Self {
            inner: self.inner.clone(),
            in_flight: self.in_flight.clone(),
            connection: Some(activity),
        }
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<Request<Incoming>> for Tracked<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(connection) = &self.connection {
            req.extensions_mut()
                .insert(mcp_tower_http::rate_limit::ClientAddr(connection.peer));
        }
        let guard = (req.method() != Method::GET).then(|| self.in_flight.enter());
        let request = self.connection.as_ref().map(Activity::begin);
        // The request log of --debug; nothing is copied unless it is on.
        let logged = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| (req.method().clone(), req.uri().path().to_owned()));
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            if let Some((method, path)) = logged {
                tracing::debug!(%method, path, status = response.status().as_u16(), "HTTP request");
            }
            Ok(response.map(|inner| TrackedBody {
                inner,
                guard,
                request,
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts as in flight until it ends or is dropped.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: Option<InFlightGuard>,
        request: Option<RequestGuard>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.guard.take();
            this.request.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
