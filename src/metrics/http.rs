//! [`MetricsLayer`]: HTTP requests, authentication failures, 429s and open SSE streams.

use super::Metrics;
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prometheus_client::metrics::gauge::Gauge;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// Records every HTTP request of the service it wraps into [`Metrics`]; see the
/// [module docs](crate::metrics). Put it outermost, around the whole
/// [`McpHttpService`](crate::McpHttpService), so that refusals made in front of the MCP layers
/// (authentication, rate limits, unknown paths) are counted too.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Option<Metrics>,
}

impl MetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics: Some(metrics),
        }
    }

    /// Records nothing and passes everything through (the same service type, for a host
    /// where metrics are optional).
    pub fn disabled() -> Self {
        Self { metrics: None }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Option<Metrics>,
}

impl<S> MetricsService<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MetricsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Only the method is kept: the future holds no part of the request.
        let recording = self.metrics.clone().map(|m| (m, req.method().clone()));
        ResponseFuture {
            future: self.inner.call(req),
            recording,
        }
    }
}

pin_project! {
    /// Response future of [`MetricsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        recording: Option<(Metrics, http::Method)>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<MetricsBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        let Some((metrics, method)) = this.recording.take() else {
            return Poll::Ready(Ok(response.map(|body| MetricsBody { body, stream: None })));
        };
        metrics.record_http(&method, response.status());
        if let Some(reason) = auth_failure(&response) {
            metrics.record_auth_failure(reason);
        }
        let stream = is_event_stream(&response).then(|| OpenStream::new(&metrics.0.sse_streams));
        Poll::Ready(Ok(response.map(|body| MetricsBody { body, stream })))
    }
}

/// Why authentication refused the request, if it did.
fn auth_failure<B>(response: &Response<B>) -> Option<&'static str> {
    #[cfg(feature = "auth")]
    if let Some(error) = response.extensions().get::<crate::auth::AuthError>() {
        use crate::auth::AuthErrorKind;
        return Some(match error.kind() {
            AuthErrorKind::MissingCredentials => "missing_credentials",
            AuthErrorKind::InvalidRequest { .. } => "invalid_request",
            AuthErrorKind::InvalidToken { .. } => "invalid_token",
            AuthErrorKind::InsufficientScope { .. } => "insufficient_scope",
            AuthErrorKind::Unavailable => "unavailable",
        });
    }
    // A host's own authentication, rejecting with the typed error.
    response
        .extensions()
        .get::<crate::TransportError>()
        .filter(|e| e.kind().status() == StatusCode::UNAUTHORIZED)
        .map(|_| "unauthorized")
}

fn is_event_stream<B>(response: &Response<B>) -> bool {
    response.status().is_success()
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// One open SSE response, counted until its body is dropped.
struct OpenStream(Gauge);

impl OpenStream {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pin_project! {
    /// Response body of [`MetricsService`]: the inner body, counted as an open SSE stream while
    /// it lives when it is one.
    pub struct MetricsBody<B> {
        #[pin]
        body: B,
        stream: Option<OpenStream>,
    }
}

impl<B> MetricsBody<B> {
    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.body
    }
}

impl<B: Body> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.body.poll_frame(cx));
        if frame.is_none() {
            // Ended: no longer open, even if the body is kept around.
            this.stream.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
