//! [`RequestTimeoutLayer`]: a deadline on each JSON-RPC request an [`McpService`] answers.
//!
//! tower-http's `TimeoutLayer` around the HTTP service is the wrong tool for MCP: with SSE the
//! response head goes out at once and the answer follows in the body, so an HTTP timeout never
//! sees a slow answer; and on a JSON answer it replaces the response with a bare 408 that has no
//! JSON-RPC body, so the client cannot match it to its request. This layer bounds the handler
//! itself, one request at a time: when the deadline passes, the handler's future is dropped and
//! the request is answered with the JSON-RPC error `-32001 Request timed out` (`data.timeout` in
//! milliseconds), in whatever framing it was asked: an SSE event, a JSON body, one answer of a
//! batch, the legacy SSE stream, a stdio line. The error is a
//! [`TransportErrorKind::RequestTimeout`], so its code and message come from the crate's one
//! table of transport errors (HTTP 504 where it is rendered as a whole response).
//!
//! Notifications and [`close`](McpService::close) are not bounded. `initialize` may get its own
//! limit ([`RequestTimeoutLayer::initialize_timeout`]), e.g. a longer one for a server that starts
//! slowly.
//!
//! The layer wraps an [`McpService`] or a [`MakeMcpService`] (then every service it makes), so
//! it goes around the server given to [`McpStack`](crate::McpStack):
//!
//! ```
//! use mcp_tower_http::jsonrpc::{ErrorCode, ErrorObject, Id, Request};
//! use mcp_tower_http::timeout::RequestTimeoutLayer;
//! use mcp_tower_http::{McpService, McpStack, RequestContext, SessionContext};
//! use serde_json::{Value, json};
//! use std::time::Duration;
//! use tower::Layer;
//!
//! struct Slow;
//!
//! impl McpService for Slow {
//!     async fn handle_request(&self, _: Request, _: RequestContext) -> Result<Value, ErrorObject> {
//!         tokio::time::sleep(Duration::from_secs(3600)).await;
//!         Ok(json!({}))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let timeout = RequestTimeoutLayer::new(Duration::from_millis(50));
//!
//! // In a stack: every session's server is bounded.
//! let _stack = McpStack::new(timeout.layer(|_: &SessionContext<'_>| Slow)).into_service();
//!
//! // Or one service, called directly.
//! let slow = timeout.layer(Slow);
//! let (cx, _) = RequestContext::detached(Id::Number(1), None, 1);
//! let request = Request { id: Id::Number(1), method: "tools/call".into(), params: None };
//! let error = slow.handle_request(request, cx).await.unwrap_err();
//! assert_eq!(error.code, ErrorCode::REQUEST_TIMEOUT);
//! assert_eq!(error.message, "Request timed out");
//! assert_eq!(error.data, Some(json!({ "timeout": 50 })));
//! # }
//! ```

use crate::error::{TransportError, TransportErrorKind};
use crate::jsonrpc::{ErrorObject, Notification, Request};
use crate::service::{
    MakeMcpService, McpService, NotificationContext, RequestContext, SessionContext,
};
use pin_project_lite::pin_project;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;
use tower::Layer;

/// Bounds every request of the wrapped [`McpService`] (or of each service a
/// [`MakeMcpService`] makes); see the [module docs](crate::timeout).
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeoutLayer {
    limits: Limits,
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    request: Option<Duration>,
    initialize: Option<Duration>,
}

impl Limits {
    fn for_method(&self, method: &str) -> Option<Duration> {
        if method == "initialize" {
            self.initialize
        } else {
            self.request
        }
    }
}

impl RequestTimeoutLayer {
    /// Bounds every request, `initialize` included, by `timeout`; `None` bounds nothing (until
    /// [`initialize_timeout`](Self::initialize_timeout) sets one for `initialize`).
    pub fn new(timeout: impl Into<Option<Duration>>) -> Self {
        let timeout = timeout.into();
        Self {
            limits: Limits {
                request: timeout,
                initialize: timeout,
            },
        }
    }

    /// The bound on `initialize` alone (default: the one given to [`new`](Self::new)); `None`
    /// leaves it unbounded.
    pub fn initialize_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.limits.initialize = timeout.into();
        self
    }
}

impl<T> Layer<T> for RequestTimeoutLayer {
    type Service = RequestTimeout<T>;

    fn layer(&self, inner: T) -> Self::Service {
        RequestTimeout {
            inner,
            limits: self.limits,
        }
    }
}

/// An [`McpService`] (or [`MakeMcpService`]) whose requests are bounded in time; made by
/// [`RequestTimeoutLayer`].
#[derive(Clone, Debug)]
pub struct RequestTimeout<T> {
    inner: T,
    limits: Limits,
}

impl<T> RequestTimeout<T> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<S: McpService> McpService for RequestTimeout<S> {
    fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> impl Future<Output = Result<Value, ErrorObject>> + Send {
        let limit = self.limits.for_method(&request.method);
        let method = limit.map(|_| request.method.clone());
        ResponseFuture {
            inner: self.inner.handle_request(request, cx),
            sleep: limit.map(tokio::time::sleep),
            limit: limit.unwrap_or_default(),
            method,
        }
    }

    fn handle_notification(
        &self,
        notification: Notification,
        cx: NotificationContext,
    ) -> impl Future<Output = ()> + Send {
        self.inner.handle_notification(notification, cx)
    }

    fn close(&self) -> impl Future<Output = ()> + Send {
        self.inner.close()
    }
}

crate::macros::wrapping_make_service!(RequestTimeout { limits });

pin_project! {
    /// The answer of a [`RequestTimeout`] service: the inner handler's, or `-32001` once the
    /// deadline has passed.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        limit: Duration,
        // For the log line; only kept when the request is bounded.
        method: Option<String>,
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Value, ErrorObject>>,
{
    type Output = Result<Value, ErrorObject>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The answer wins a tie with the deadline.
        if let Poll::Ready(answer) = this.inner.poll(cx) {
            return Poll::Ready(answer);
        }
        let Some(sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        ready!(sleep.poll(cx));
        let ms = u64::try_from(this.limit.as_millis()).unwrap_or(u64::MAX);
        tracing::warn!(
            method = this.method.as_deref().unwrap_or_default(),
            timeout_ms = ms,
            "request to the MCP server timed out"
        );
        Poll::Ready(Err(timed_out(ms)))
    }
}

/// `-32001 Request timed out` with `data.timeout` in milliseconds.
fn timed_out(ms: u64) -> ErrorObject {
    TransportError::new(TransportErrorKind::RequestTimeout)
        .with_data(serde_json::json!({ "timeout": ms }))
        .to_error_object()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{ErrorCode, Id};
    use serde_json::json;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Answers after `params.ms` milliseconds; notes when its future is dropped unfinished.
    #[derive(Default)]
    struct Sleeper {
        cancelled: Arc<AtomicBool>,
    }

    struct OnDrop(Arc<AtomicBool>);

    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl McpService for Sleeper {
        async fn handle_request(
            &self,
            request: Request,
            _: RequestContext,
        ) -> Result<Value, ErrorObject> {
            let ms = request.params.as_ref().and_then(|p| p["ms"].as_u64());
            let armed = OnDrop(self.cancelled.clone());
            tokio::time::sleep(Duration::from_millis(ms.unwrap_or(0))).await;
            std::mem::forget(armed);
            Ok(json!({ "method": request.method }))
        }
    }

    async fn call(service: &impl McpService, method: &str, ms: u64) -> Result<Value, ErrorObject> {
        let (cx, _rx) = RequestContext::detached(Id::Number(7), None, 1);
        let request = Request {
            id: Id::Number(7),
            method: method.into(),
            params: Some(json!({ "ms": ms })),
        };
        service.handle_request(request, cx).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_gets_32001_and_its_handler_is_dropped() {
        let inner = Sleeper::default();
        let cancelled = inner.cancelled.clone();
        let service = RequestTimeoutLayer::new(Duration::from_secs(2)).layer(inner);
        let started = tokio::time::Instant::now();
        let error = call(&service, "tools/call", 10_000).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(error.code, ErrorCode::REQUEST_TIMEOUT);
        assert_eq!(error.code, ErrorCode(-32001));
        assert_eq!(error.message, "Request timed out");
        assert_eq!(error.data, Some(json!({ "timeout": 2000 })));
        assert!(cancelled.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_in_time_passes_untouched() {
        let service = RequestTimeoutLayer::new(Duration::from_secs(2)).layer(Sleeper::default());
        let answer = call(&service, "tools/call", 1_999).await.unwrap();
        assert_eq!(answer, json!({ "method": "tools/call" }));
    }

    #[tokio::test(start_paused = true)]
    async fn initialize_has_its_own_limit_and_none_means_unbounded() {
        let layer = RequestTimeoutLayer::new(Duration::from_secs(1))
            .initialize_timeout(Duration::from_secs(5));
        let service = layer.layer(Sleeper::default());
        assert!(call(&service, "initialize", 4_000).await.is_ok());
        assert!(call(&service, "ping", 4_000).await.is_err());

        let service = RequestTimeoutLayer::new(None).layer(Sleeper::default());
        assert!(call(&service, "tools/call", 3_600_000).await.is_ok());
        let service = RequestTimeoutLayer::new(Duration::from_secs(1))
            .initialize_timeout(None)
            .layer(Sleeper::default());
        assert!(call(&service, "initialize", 3_600_000).await.is_ok());
        let error = call(&service, "tools/list", 3_600_000).await.unwrap_err();
        assert_eq!(error.data, Some(json!({ "timeout": 1000 })));
    }

    #[tokio::test(start_paused = true)]
    async fn wrapping_a_make_service_bounds_every_service_it_makes() {
        let make = RequestTimeoutLayer::new(Duration::from_millis(300))
            .layer(|_: &SessionContext<'_>| Sleeper::default());
        let parts = http::Request::new(()).into_parts().0;
        let cx = SessionContext {
            session: None,
            parts: &parts,
            protocol_version: crate::ProtocolVersion::LATEST,
        };
        let service = make.make_service(&cx).await.unwrap();
        let error = call(&service, "tools/call", 301).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::REQUEST_TIMEOUT);
        assert!(call(&service, "tools/call", 299).await.is_ok());
    }

    #[test]
    fn the_kind_maps_to_504_and_32001() {
        let kind = TransportErrorKind::RequestTimeout;
        assert_eq!(kind.status(), http::StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(kind.code(), ErrorCode::REQUEST_TIMEOUT);
        let response: http::Response<String> = TransportError::new(kind).into_response();
        assert_eq!(response.status(), http::StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            response
                .extensions()
                .get::<TransportError>()
                .map(|e| e.kind()),
            Some(kind)
        );
    }
}
