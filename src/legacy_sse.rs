//! The legacy HTTP+SSE transport (protocol 2024-11-05), for clients that predate Streamable HTTP.
//!
//! | request | answer |
//! |---|---|
//! | GET `/sse` (configurable) | a `text/event-stream` whose first event is `endpoint` with the URI to POST to, then `event: message` frames and keep-alive comments; the session lives as long as this stream |
//! | POST `/messages?sessionId=ID` (exact path, configurable) | 202; the answer goes out on the session's stream |
//! | POST without `sessionId` | 400 |
//! | POST with an unknown, ended or other principal's `sessionId` | 404 |
//! | GET `/sse` at the session limit | 503 + `Retry-After` |
//!
//! Each open stream is a session and counts against the session limit. In an
//! [`McpStack`](crate::McpStack) that limit is the one of Streamable HTTP
//! ([`SessionLayer::max_sessions`](crate::session::SessionLayer::max_sessions)): one number
//! bounds both transports. A stream whose client does not complete the handshake (`initialize`,
//! then any other message) within the handshake timeout (default 60 s) is closed.
//!
//! [`LegacySseLayer`] intercepts exactly those two paths and passes everything else to the
//! service it wraps. It dispatches through the same [`McpEndpoint`] as Streamable HTTP, so both
//! transports share one server implementation, and it sits inside the same outer layers (Origin,
//! auth, body limit, [`JsonRpcBodyLayer`](crate::jsonrpc_body::JsonRpcBodyLayer)), so the same
//! rules apply to both.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::endpoint::McpEndpoint;
//! use mcp_tower_http::everything::EverythingServer;
//! use mcp_tower_http::jsonrpc_body::{JsonRpcBodyLayer, ParsedBody};
//! use mcp_tower_http::legacy_sse::LegacySseLayer;
//! use mcp_tower_http::SessionContext;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let endpoint = McpEndpoint::new(|_: &SessionContext<'_>| EverythingServer::new());
//! let service = ServiceBuilder::new()
//!     .layer(JsonRpcBodyLayer::new())
//!     .layer(LegacySseLayer::new(endpoint))
//!     .service_fn(|_req: Request<ParsedBody>| async {
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
//!     });
//!
//! let response = service.oneshot(Request::get("/sse").body(Full::<Bytes>::default()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! let first = response.into_body().frame().await.unwrap().unwrap().into_data().unwrap();
//! assert!(first.starts_with(b"event: endpoint\ndata: /messages?sessionId="));
//! # }
//! ```

use crate::endpoint::McpEndpoint;
use crate::error::{TransportError, TransportErrorKind};
use crate::jsonrpc::Payload;
use crate::jsonrpc_body::ParsedBody;
use crate::principal::Principal;
use crate::protocol::ProtocolVersion;
use crate::service::MakeMcpService;
use crate::session::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_RETRY_AFTER_SECS, Session, SessionLimit, SessionRegistry,
};
use crate::sse::{
    DEFAULT_KEEP_ALIVE, EventStream, Outgoing, ResponseBody, ResponseMode, Source, StreamEvent,
    sse_headers,
};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::sync::mpsc;
use tower::{Layer, Service};

/// Serves the legacy HTTP+SSE transport; see the [module docs](crate::legacy_sse).
pub struct LegacySseLayer<M> {
    shared: Arc<Shared<M>>,
}

struct Shared<M> {
    endpoint: McpEndpoint<M>,
    sse_path: String,
    messages_path: String,
    keep_alive: Option<Duration>,
    limit: Arc<SessionLimit>,
    handshake_timeout: Option<Duration>,
    sessions: Arc<SessionRegistry>,
    enabled: bool,
}

impl<M> Clone for LegacySseLayer<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<M> std::fmt::Debug for LegacySseLayer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacySseLayer")
            .field("sse_path", &self.shared.sse_path)
            .field("messages_path", &self.shared.messages_path)
            .finish_non_exhaustive()
    }
}

impl<M: MakeMcpService> LegacySseLayer<M> {
    /// Serves `GET /sse` and `POST /messages` through `endpoint`.
    pub fn new(endpoint: McpEndpoint<M>) -> Self {
        let limit = SessionLimit::new(None);
        Self {
            shared: Arc::new(Shared {
                endpoint,
                sse_path: "/sse".to_owned(),
                messages_path: "/messages".to_owned(),
                keep_alive: Some(DEFAULT_KEEP_ALIVE),
                sessions: Arc::new(SessionRegistry::new(
                    limit.clone(),
                    None,
                    Some(DEFAULT_HANDSHAKE_TIMEOUT),
                )),
                limit,
                handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
                enabled: true,
            }),
        }
    }

    /// A layer that passes every request through, for stacks serving Streamable HTTP only.
    pub fn disabled(endpoint: McpEndpoint<M>) -> Self {
        Self::new(endpoint).edit(|s| s.enabled = false)
    }

    fn edit(self, f: impl FnOnce(&mut Shared<M>)) -> Self {
        let shared = &*self.shared;
        let mut copy = Shared {
            endpoint: shared.endpoint.clone(),
            sse_path: shared.sse_path.clone(),
            messages_path: shared.messages_path.clone(),
            keep_alive: shared.keep_alive,
            limit: shared.limit.clone(),
            handshake_timeout: shared.handshake_timeout,
            sessions: shared.sessions.clone(),
            enabled: shared.enabled,
        };
        f(&mut copy);
        Self {
            shared: Arc::new(copy),
        }
    }

    /// The path of the SSE stream (default `/sse`).
    pub fn sse_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|s| s.sse_path = path)
    }

    /// The path clients POST to (default `/messages`), announced in the `endpoint` event.
    pub fn messages_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|s| s.messages_path = path)
    }

    /// The interval of `: keepalive` comments; `None` or zero disables them.
    pub fn keep_alive(self, interval: impl Into<Option<Duration>>) -> Self {
        let interval = interval.into().filter(|d| !d.is_zero());
        self.edit(|s| s.keep_alive = interval)
    }

    /// Counts the legacy sessions against `limit` (GET `/sse` beyond it gets 503), e.g. the
    /// limit of the Streamable HTTP sessions: `registry.limit().clone()`.
    pub fn session_limit(self, limit: Arc<SessionLimit>) -> Self {
        self.edit(|s| {
            s.limit = limit;
            s.sessions = s.new_registry();
        })
    }

    /// Closes a stream whose client has not completed the handshake (`initialize`, then any
    /// other message) within `timeout` (default 60 s); `None` keeps it while it is open.
    pub fn handshake_timeout(self, timeout: impl Into<Option<Duration>>) -> Self {
        let timeout = timeout.into().filter(|t| !t.is_zero());
        self.edit(|s| {
            s.handshake_timeout = timeout;
            s.sessions = s.new_registry();
        })
    }

    /// `true` unless made with [`disabled`](Self::disabled).
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled
    }

    /// `true` for the paths this layer serves.
    pub fn serves_path(&self, path: &str) -> bool {
        self.shared.enabled && (path == self.shared.sse_path || path == self.shared.messages_path)
    }

    /// The live legacy sessions (one per open stream).
    pub fn sessions(&self) -> &Arc<SessionRegistry> {
        &self.shared.sessions
    }
}

impl<M> Shared<M> {
    /// A legacy session lives as long as its stream: no idle timeout.
    fn new_registry(&self) -> Arc<SessionRegistry> {
        Arc::new(SessionRegistry::new(
            self.limit.clone(),
            None,
            self.handshake_timeout,
        ))
    }
}

impl<S, M> Layer<S> for LegacySseLayer<M> {
    type Service = LegacySse<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        LegacySse {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`LegacySseLayer`].
pub struct LegacySse<S, M> {
    inner: S,
    shared: Arc<Shared<M>>,
}

impl<S: Clone, M> Clone for LegacySse<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, M> std::fmt::Debug for LegacySse<S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacySse")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, M> LegacySse<S, M> {
    crate::macros::define_inner_service_accessors!();
}

/// Ends a legacy session when its stream's connection goes away.
struct EndOnDrop {
    sessions: Arc<SessionRegistry>,
    session: Arc<Session>,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        let sessions = self.sessions.clone();
        let id = self.session.id().clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                sessions.terminate(&id).await;
            });
        }
    }
}

/// The `sessionId` query parameter.
fn session_id_param(uri: &http::Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("sessionId="))
}

impl<S, M, ResBody> Service<Request<ParsedBody>> for LegacySse<S, M>
where
    S: Service<Request<ParsedBody>, Response = Response<ResBody>>,
    M: MakeMcpService,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ParsedBody>) -> Self::Future {
        let path = req.uri().path();
        if !self.shared.enabled {
            return ResponseFuture::inner(self.inner.call(req));
        }
        if path == self.shared.sse_path {
            return match *req.method() {
                Method::GET => ResponseFuture::ready(self.open_stream(&req)),
                _ => {
                    ResponseFuture::ready(TransportError::method_not_allowed("GET").into_response())
                }
            };
        }
        if path == self.shared.messages_path {
            return match *req.method() {
                Method::POST => self.post_message(req),
                _ => ResponseFuture::ready(
                    TransportError::method_not_allowed("POST").into_response(),
                ),
            };
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}

impl<S, M: MakeMcpService> LegacySse<S, M> {
    fn open_stream<B, ResBody>(&self, req: &Request<B>) -> Response<ResponseBody<ResBody>> {
        let subject = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.subject.clone());
        self.shared.sessions.start_sweeper();
        let Some(reservation) = self.shared.sessions.reserve() else {
            return TransportError::too_many_sessions(DEFAULT_RETRY_AFTER_SECS).into_response();
        };
        let session = Arc::new(Session::new(subject, ProtocolVersion::FALLBACK));
        // The endpoint initializes the session on the client's `initialize`; until then it
        // exists only for routing POSTs.
        self.shared.sessions.insert(reservation, session.clone());
        let Some(rx) = session.take_standalone() else {
            return TransportError::new(TransportErrorKind::Internal).into_response();
        };
        let endpoint_event = format!(
            "event: endpoint\ndata: {}?sessionId={}\n\n",
            self.shared.messages_path,
            session.id()
        );
        let owner = EndOnDrop {
            sessions: self.shared.sessions.clone(),
            session: session.clone(),
        };
        let stream = EventStream::new(
            Source::Events(rx),
            Some(Bytes::from(endpoint_event)),
            self.shared.keep_alive,
            None,
        )
        .owned_by(owner);
        let mut response = Response::new(ResponseBody::stream(stream));
        sse_headers(response.headers_mut());
        response
    }

    fn post_message<ResBody, F>(&self, mut req: Request<ParsedBody>) -> ResponseFuture<F, ResBody>
    where
        ResBody: Send + 'static,
    {
        let Some(id) = session_id_param(req.uri()) else {
            return ResponseFuture::ready(
                TransportError::new(TransportErrorKind::MissingSessionId)
                    .with_message("Bad Request: sessionId query parameter is required")
                    .into_response(),
            );
        };
        let subject = req.extensions().get::<Principal>().map(|p| &*p.subject);
        let Some(session) = self.shared.sessions.get_for(id, subject) else {
            return ResponseFuture::ready(
                TransportError::new(TransportErrorKind::SessionNotFound).into_response(),
            );
        };
        let Some(payload) = req.extensions().get::<Payload>() else {
            let error = crate::error::missing_layer("LegacySseLayer", "JsonRpcBodyLayer");
            return ResponseFuture::ready(error.into_response());
        };
        if payload.contains_initialize() && session.is_initialized() {
            return ResponseFuture::ready(
                TransportError::new(TransportErrorKind::InvalidRequest)
                    .with_message("Invalid Request: Server already initialized")
                    .into_response(),
            );
        }
        // Taken now: if the session ends while this request runs (its server died), the answer
        // still goes out before the stream closes.
        let Some(stream) = session.standalone_sender() else {
            return ResponseFuture::ready(
                TransportError::new(TransportErrorKind::SessionNotFound).into_response(),
            );
        };
        // Any message after `initialize` completes the handshake.
        if session.is_initialized() && !payload.contains_initialize() {
            session.establish();
        }
        // Attached while it runs: a slow `initialize` does not count against the handshake.
        let attached = session.attach();
        req.extensions_mut().insert(session.protocol_version());
        req.extensions_mut().insert(ResponseMode::Sse);
        req.extensions_mut().insert(session.clone());
        let mut endpoint = self.shared.endpoint.clone();
        let future = async move {
            let response = match Service::call(&mut endpoint, req).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            drop(attached);
            if let Some(error) = response.extensions().get::<TransportError>() {
                return error.clone().into_response();
            }
            if let Some(outgoing) = response.extensions().get::<Outgoing>().cloned() {
                // Answers travel on the session's stream, not in this response.
                tokio::spawn(forward(outgoing, stream));
            }
            let mut accepted = Response::new(ResponseBody::full(Bytes::new()));
            *accepted.status_mut() = StatusCode::ACCEPTED;
            accepted
        };
        ResponseFuture::boxed(Box::pin(future))
    }
}

/// Forwards an endpoint's answer to the session's stream.
async fn forward(outgoing: Outgoing, stream: mpsc::Sender<StreamEvent>) {
    let messages = match outgoing {
        Outgoing::One(message) => vec![message],
        Outgoing::Batch(messages) => messages,
        Outgoing::Stream(answers) => {
            let Some(mut rx) = answers.take() else {
                return;
            };
            while let Some(event) = rx.recv().await {
                if let StreamEvent::Message(_) = &event
                    && stream.send(event).await.is_err()
                {
                    return;
                }
            }
            return;
        }
    };
    for message in messages {
        if stream.send(StreamEvent::Message(message)).await.is_err() {
            return;
        }
    }
}

pin_project! {
    /// Response future of [`LegacySse`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Ready { response: Option<Response<ResponseBody<B>>> },
        Boxed { future: Pin<Box<dyn Future<Output = Response<ResponseBody<B>>> + Send>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn ready(response: Response<ResponseBody<B>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    fn boxed(future: Pin<Box<dyn Future<Output = Response<ResponseBody<B>>> + Send>>) -> Self {
        Self {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            KindProj::Boxed { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_is_read_from_the_query_only() {
        let uri: http::Uri = "/messages?x=1&sessionId=abc".parse().unwrap();
        assert_eq!(session_id_param(&uri), Some("abc"));
        let uri: http::Uri = "/messages".parse().unwrap();
        assert_eq!(session_id_param(&uri), None);
    }
}
