//! The Streamable HTTP endpoint: the terminal service that hands JSON-RPC messages to an
//! [`McpService`].
//!
//! [`McpEndpoint`] applies the POST rules of the transport and leaves framing to
//! [`SseLayer`](crate::sse::SseLayer):
//!
//! | request | answer |
//! |---|---|
//! | POST of notifications and/or responses only | 202, empty body |
//! | POST `initialize` | the result; the session is initialized only if it succeeds |
//! | POST with requests, [`ResponseMode::Json`] | the answers, handled inline: no task, no channel |
//! | POST with requests, [`ResponseMode::Sse`] | a stream: the handler runs in its own task, so a dropped connection does not cancel it |
//! | other methods | 405 `Allow: GET, POST, DELETE` |
//!
//! It reads the parsed [`Payload`], the [`Session`], the [`ProtocolVersion`] and the
//! [`ResponseMode`] from the request extensions, so it runs inside
//! [`JsonRpcBodyLayer`](crate::jsonrpc_body::JsonRpcBodyLayer),
//! [`SessionLayer`](crate::session::SessionLayer) and [`SseLayer`](crate::sse::SseLayer); the
//! [`McpStack`](crate::McpStack) builder puts them in that order.
//!
//! Its future is boxed: the `McpService` futures are `impl Future` and cannot be named in a
//! `Service::Future` type. That is one allocation per request, the same as axum's handlers.

mod sessionless;

pub use self::sessionless::CacheScope;

use crate::error::{TransportError, TransportErrorKind};
use crate::input::StateSealer;
use crate::jsonrpc::{ErrorCode, ErrorObject, Id, Message, Payload, Request};
use crate::jsonrpc_body::ParsedBody;
use crate::modern::RequestMeta;
use crate::protocol::ProtocolVersion;
use crate::routing_headers::ToolHeaders;
use crate::service::{
    Context, LazyStream, MakeMcpService, McpService, NotificationContext, Peer, RequestContext,
    Route, SessionContext,
};
use crate::session::Session;
use crate::sse::{MessageStream, Outgoing, ResponseMode, StreamEvent};
use crate::subscriptions::ListenHub;
use crate::tasks::{TaskRuntime, Tasks};
use crate::{Principal, trace};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{Either, select};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tower::Service;
use tracing::{Instrument, Span};

/// The default time a server→client request waits for the client's answer.
pub const DEFAULT_CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How many messages may queue on one POST response stream before the handler waits.
const STREAM_CAPACITY: usize = 32;

/// The boxed response future of [`McpEndpoint`].
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// The terminal service of the stack; see the [module docs](crate::endpoint).
pub struct McpEndpoint<M> {
    make: Arc<M>,
    client_request_timeout: Duration,
    sessionless: Arc<sessionless::Shared>,
}

impl<M> Clone for McpEndpoint<M> {
    fn clone(&self) -> Self {
        Self {
            make: self.make.clone(),
            client_request_timeout: self.client_request_timeout,
            sessionless: self.sessionless.clone(),
        }
    }
}

impl<M> std::fmt::Debug for McpEndpoint<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpEndpoint")
            .field("client_request_timeout", &self.client_request_timeout)
            .finish_non_exhaustive()
    }
}

impl<M: MakeMcpService> McpEndpoint<M> {
    /// An endpoint building its servers with `make`.
    pub fn new(make: M) -> Self {
        Self {
            make: Arc::new(make),
            client_request_timeout: DEFAULT_CLIENT_REQUEST_TIMEOUT,
            sessionless: Arc::new(sessionless::Shared::default()),
        }
    }

    /// How long a server→client request waits for the client's answer (default 60 s).
    pub fn client_request_timeout(mut self, timeout: Duration) -> Self {
        self.client_request_timeout = timeout;
        self
    }

    fn sessionless(mut self, change: impl FnOnce(&mut sessionless::Shared)) -> Self {
        self.sessionless = Arc::new(self.sessionless.rebuilt(change));
        self
    }

    /// 2026-07-28: the caching hints stamped on `server/discover`, the list methods and
    /// `resources/read` when the server sets none (default `ttlMs: 0`, `cacheScope: "private"`).
    pub fn cache_hints(self, ttl: Duration, scope: CacheScope) -> Self {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.sessionless(|s| {
            s.ttl_ms = ttl_ms;
            s.cache_scope = scope;
        })
    }

    /// 2026-07-28: the key sealing `requestState` of `input_required` results (default: random
    /// per process). Give every instance behind one load balancer the same key.
    pub fn request_state_key(self, key: [u8; 32]) -> Self {
        self.sessionless(|s| s.sealer = StateSealer::new(key))
    }

    /// 2026-07-28: how long a sealed `requestState` stays valid (default 10 min).
    pub fn request_state_ttl(self, ttl: Duration) -> Self {
        self.sessionless(|s| s.sealer = s.sealer.clone().ttl(ttl))
    }

    /// 2026-07-28: the bound on open `subscriptions/listen` streams (default 1024).
    pub fn max_listeners(self, max: usize) -> Self {
        self.sessionless(|s| s.hub = Arc::new(ListenHub::new(max)))
    }

    /// 2026-07-28: the table of tools' `x-mcp-header` annotations the endpoint fills from its
    /// `tools/list` answers (share it with a
    /// [`RoutingHeadersLayer`](crate::routing_headers::RoutingHeadersLayer)).
    pub fn tool_headers(self, tools: ToolHeaders) -> Self {
        self.sessionless(|s| s.tools = tools)
    }

    /// 2026-07-28: how `tools/call` handlers run as tasks (the tasks extension, see
    /// [`crate::tasks`]); `None` turns tasks off. Default: [`Tasks::default`], an in-memory store.
    pub fn tasks(self, tasks: impl Into<Option<Tasks>>) -> Self {
        let tasks = tasks.into();
        self.sessionless(|s| {
            s.tasks = tasks.map(|t| Arc::new(TaskRuntime::new(t, s.hub.clone())));
        })
    }

    /// The open `subscriptions/listen` streams (to end them at shutdown:
    /// [`ListenHub::close_all`]).
    pub fn listeners(&self) -> &Arc<ListenHub> {
        &self.sessionless.hub
    }
}

fn respond(status: StatusCode, outgoing: Option<Outgoing>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = status;
    if let Some(outgoing) = outgoing {
        response.extensions_mut().insert(outgoing);
    }
    response
}

impl<M> Service<http::Request<ParsedBody>> for McpEndpoint<M>
where
    M: MakeMcpService,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<ParsedBody>) -> Self::Future {
        if req.method() != Method::POST {
            let rejection = TransportError::method_not_allowed("GET, POST, DELETE").into_response();
            return Box::pin(std::future::ready(Ok(rejection)));
        }
        let (mut parts, _body) = req.into_parts();
        let Some(payload) = parts.extensions.remove::<Payload>() else {
            return missing_layer("JsonRpcBodyLayer");
        };
        // The answer is framed by `SseLayer`; without it a client would get an empty 200.
        let Some(mode) = parts.extensions.get::<ResponseMode>().copied() else {
            return missing_layer("SseLayer");
        };
        if let Some(meta) = parts.extensions.get::<Arc<RequestMeta>>().cloned() {
            let (make, shared) = (self.make.clone(), self.sessionless.clone());
            let span = match &payload {
                Payload::Single(Message::Request(request)) => {
                    let principal = parts.extensions.get::<Principal>();
                    trace::request_span(request, None, principal, meta.protocol_version)
                }
                _ => Span::none(),
            };
            // `map`, not an `async` block: the block would hold a second copy of the arguments.
            let run = sessionless::run(make, shared, parts, payload, meta).instrument(span.clone());
            return Box::pin(run.map(move |response| {
                trace::record_response(&span, &response);
                Ok(response)
            }));
        }
        // `SessionLayer` (or the legacy transport) negotiated the revision of a 2025 request.
        let Some(version) = parts.extensions.get::<ProtocolVersion>().copied() else {
            return missing_layer("SessionLayer");
        };
        let call = Call {
            mode,
            version,
            session: parts.extensions.get::<Arc<Session>>().cloned(),
            timeout: self.client_request_timeout,
        };
        let make = self.make.clone();
        Box::pin(call.run(make, parts, payload).map(Ok))
    }
}

/// A 500 naming the layer a miscomposed stack lacks in front of the endpoint (logged too): a
/// wrong order fails loudly, never with a silent empty answer.
fn missing_layer(layer: &'static str) -> ResponseFuture {
    let error = crate::error::missing_layer("McpEndpoint", layer);
    Box::pin(std::future::ready(Ok(error.into_response())))
}

/// Closes a session's type-erased server instance.
pub(crate) fn close_erased<S: McpService>(
    instance: Arc<dyn Any + Send + Sync>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        if let Ok(service) = instance.downcast::<S>() {
            service.close().await;
        }
    })
}

/// Answers one request, containing a panicking handler as a `-32603` error. `None` when the
/// client cancelled it: the handler future is dropped and no answer is owed.
async fn answer<S: McpService>(
    service: &S,
    request: Request,
    cx: RequestContext,
    session: Option<&Arc<Session>>,
) -> Option<Message> {
    let id = request.id.clone();
    let span = trace::request_span(
        &request,
        cx.session_id(),
        cx.principal(),
        cx.protocol_version(),
    );
    // Boxed: a server's future can be kilobytes, and every future around it (this one, the
    // endpoint's boxed future) would otherwise carry and copy it.
    let handled = AssertUnwindSafe(Box::pin(service.handle_request(request, cx)))
        .catch_unwind()
        .instrument(span.clone());
    let outcome = match session {
        Some(session) => {
            let cancelled = session.register_running(&id);
            let outcome = match select(pin!(handled), cancelled).await {
                Either::Left((outcome, _)) => Some(outcome),
                Either::Right((Ok(()), _)) => None,
                // The session ended: nobody can cancel any more; finish the work.
                Either::Right((Err(_), handled)) => Some(handled.await),
            };
            session.finish_running(&id);
            outcome?
        }
        None => handled.await,
    };
    let answer = match outcome {
        Ok(Ok(result)) => Message::result(id, result),
        Ok(Err(error)) => Message::error(Some(id), error),
        Err(_) => {
            span.in_scope(|| tracing::error!(request = %id, "MCP handler panicked"));
            Message::error(Some(id), ErrorObject::internal())
        }
    };
    trace::record_answer(&span, &answer);
    Some(answer)
}

/// What an `initialize` request says about its client.
pub(crate) fn client_of_initialize(
    params: Option<&serde_json::Value>,
    version: ProtocolVersion,
) -> RequestMeta {
    let field = |name: &str| params.and_then(|p| p.get(name)).filter(|v| !v.is_null());
    RequestMeta {
        protocol_version: version,
        client_capabilities: field("capabilities")
            .filter(|c| c.is_object())
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
        client_info: field("clientInfo").cloned(),
        log_level: None,
    }
}

/// The `requestId` of a `notifications/cancelled`.
pub(crate) fn cancelled_request(notification: &crate::jsonrpc::Notification) -> Option<Id> {
    if notification.method != "notifications/cancelled" {
        return None;
    }
    let id = notification.params.as_ref()?.get("requestId")?;
    Id::from_value(id.clone())
}

/// One POST being answered.
struct Call {
    mode: ResponseMode,
    version: ProtocolVersion,
    session: Option<Arc<Session>>,
    timeout: Duration,
}

impl Call {
    async fn run<M: MakeMcpService>(
        self,
        make: Arc<M>,
        parts: http::request::Parts,
        payload: Payload,
    ) -> Response<Full<Bytes>> {
        // A session taken over from another instance gets its server back first.
        if let Some(session) = self.session.as_ref().filter(|s| s.needs_rebuild())
            && !session
                .rebuild_once(self.rebuild(&*make, session, &parts))
                .await
        {
            return TransportError::new(TransportErrorKind::SessionNotFound).into_response();
        }
        let existing = self
            .session
            .as_ref()
            .filter(|s| s.is_initialized())
            .map(|s| s.service::<M::Service>());
        let (service, per_request) = match existing {
            Some(Some(service)) => (service, false),
            Some(None) => {
                tracing::error!("session holds a server of another type");
                return TransportError::new(TransportErrorKind::Internal).into_response();
            }
            None => {
                let cx = SessionContext {
                    session: self.session.as_ref(),
                    parts: &parts,
                    protocol_version: self.version,
                };
                match make.make_service(&cx).await {
                    Ok(service) => (Arc::new(service), true),
                    Err(error) => {
                        let id = payload.first_request_id().cloned();
                        return respond(
                            StatusCode::OK,
                            Some(Outgoing::One(Message::error(id, error))),
                        );
                    }
                }
            }
        };
        // The rest of the request (headers, URI) is dropped here, not carried across awaits.
        let extensions = {
            let parts = parts;
            Arc::new(parts.extensions)
        };
        // A fresh instance on a session-bearing request is that session's `initialize`.
        if per_request
            && payload.as_initialize().is_some()
            && let Some(session) = self.session.clone()
        {
            // Boxed: once per session, and it would otherwise widen every request's future.
            let rebuildable = make.rebuildable();
            return Box::pin(self.initialize(service, session, extensions, payload, rebuildable))
                .await;
        }
        let batch = matches!(payload, Payload::Batch(_));
        if !payload.has_requests() {
            let context = self.context(extensions, Route::Standalone);
            self.deliver(&service, payload, &context).await;
            if per_request {
                service.close().await;
            }
            return respond(StatusCode::ACCEPTED, None);
        }
        match self.mode {
            ResponseMode::Json => {
                let context = self.context(extensions, Route::Standalone);
                let answers = self.deliver(&service, payload, &context).await;
                if per_request {
                    service.close().await;
                }
                let outgoing = match (batch, answers.len()) {
                    (false, 1) => answers.into_iter().next().map(Outgoing::One),
                    _ => Some(Outgoing::Batch(answers)),
                };
                respond(StatusCode::OK, outgoing)
            }
            ResponseMode::Sse => {
                let stream = Arc::new(LazyStream::new(STREAM_CAPACITY));
                let context = self.context(extensions, Route::LazyStream(stream.clone()));
                let mut work = Box::pin(async move {
                    let answers = self.deliver(&service, payload, &context).await;
                    drop(context);
                    // Closed once the answers are out.
                    (answers, per_request.then_some(service))
                });
                // Fast path: a handler that answers without waiting is framed whole, with no
                // task, and no channel unless it sent something first.
                let done = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
                if let Poll::Ready((answers, service)) = done {
                    let mut messages = Vec::new();
                    if let Some(mut rx) = stream.finish() {
                        while let Ok(event) = rx.try_recv() {
                            if let StreamEvent::Message(message) = event {
                                messages.push(message);
                            }
                        }
                    }
                    messages.extend(answers);
                    if let Some(service) = service {
                        service.close().await;
                    }
                    return respond(StatusCode::OK, Some(Outgoing::Batch(messages)));
                }
                let (Some(tx), Some(rx)) = (stream.sender(), stream.take_receiver()) else {
                    return TransportError::new(TransportErrorKind::Internal).into_response();
                };
                // Only the handler's peers and the task below keep the stream open.
                drop(stream);
                // The handler outlives the connection: a client that drops the stream has not
                // cancelled the request (it sends notifications/cancelled for that).
                tokio::spawn(async move {
                    let (answers, service) = work.await;
                    for answer in answers {
                        if tx.send(StreamEvent::Message(answer)).await.is_err() {
                            break;
                        }
                    }
                    if let Some(service) = service {
                        service.close().await;
                    }
                });
                respond(
                    StatusCode::OK,
                    Some(Outgoing::Stream(MessageStream::new(rx))),
                )
            }
        }
    }

    fn context(&self, extensions: Arc<http::Extensions>, route: Route) -> Context {
        let peer = Peer::new(route, self.session.clone(), self.timeout);
        Context::new(self.session.as_ref(), self.version, extensions, peer)
    }

    /// Hands every message of the payload to the service, in order, and collects the answers to
    /// its requests.
    async fn deliver<S: McpService>(
        &self,
        service: &S,
        payload: Payload,
        context: &Context,
    ) -> Vec<Message> {
        // A single message needs no Vec of its own.
        let (single, batch) = match payload {
            Payload::Single(message) => (Some(message), Vec::new()),
            Payload::Batch(messages) => (None, messages),
        };
        let mut answers = Vec::new();
        for message in single.into_iter().chain(batch) {
            match message {
                Message::Request(request) => {
                    let id = request.id.clone();
                    let cx = RequestContext {
                        id: request.id.clone(),
                        progress_token: crate::jsonrpc::progress_token(request.params.as_ref())
                            .cloned(),
                        common: context.clone(),
                        input: None,
                    };
                    match answer(service, request, cx, self.session.as_ref()).await {
                        Some(message) => answers.push(message),
                        None if self.mode == ResponseMode::Json => {
                            // A JSON response must carry something; a stream just ends.
                            answers.push(Message::error(
                                Some(id),
                                ErrorObject::new(ErrorCode::SERVER_ERROR, "Request cancelled"),
                            ));
                        }
                        None => {}
                    }
                }
                Message::Notification(notification) => {
                    if let (Some(id), Some(session)) =
                        (cancelled_request(&notification), &self.session)
                    {
                        session.cancel_running(&id);
                    }
                    let cx = NotificationContext {
                        common: context.clone(),
                    };
                    // Boxed, as requests are: a large future would bloat this one.
                    let handled =
                        AssertUnwindSafe(Box::pin(service.handle_notification(notification, cx)))
                            .catch_unwind()
                            .await;
                    if handled.is_err() {
                        tracing::error!("MCP notification handler panicked");
                    }
                }
                Message::Response(response) => self.route_answer(response.id, Ok(response.result)),
                Message::Error(error) => match error.id {
                    Some(id) => self.route_answer(id, Err(error.error)),
                    None => {
                        tracing::debug!(error = %error.error, "client sent an error without id")
                    }
                },
            }
        }
        answers
    }

    fn route_answer(&self, id: Id, answer: Result<serde_json::Value, ErrorObject>) {
        let delivered = self
            .session
            .as_ref()
            .is_some_and(|s| s.complete_client_request(&id, answer));
        if !delivered {
            tracing::debug!(%id, "client answered a request nobody is waiting for");
        }
    }

    /// Rebuilds the server of an adopted session: a new instance, told the session's original
    /// `initialize` (its answer is dropped) and `notifications/initialized`. `false` if the
    /// server cannot be made; the session is then closed.
    async fn rebuild<M: MakeMcpService>(
        &self,
        make: &M,
        session: &Arc<Session>,
        parts: &http::request::Parts,
    ) -> bool {
        let version = session.protocol_version();
        let cx = SessionContext {
            session: Some(session),
            parts,
            protocol_version: version,
        };
        let service = match make.make_service(&cx).await {
            Ok(service) => Arc::new(service),
            Err(error) => {
                tracing::warn!(session = %session.id(), ?error, "cannot rebuild an adopted session");
                session.close().await;
                return false;
            }
        };
        let params = session.init_params().map(|p| (**p).clone());
        let context = self.context(Arc::new(http::Extensions::new()), Route::Standalone);
        let request = crate::jsonrpc::Request {
            id: Id::String("rebuild".into()),
            method: "initialize".into(),
            params,
        };
        let cx = RequestContext {
            id: request.id.clone(),
            progress_token: None,
            common: context.clone(),
            input: None,
        };
        let _ = answer(&*service, request, cx, None).await;
        let initialized = Payload::Single(Message::Notification(crate::jsonrpc::Notification {
            method: "notifications/initialized".into(),
            params: None,
        }));
        self.deliver(&*service, initialized, &context).await;
        session.initialize(version, service, close_erased::<M::Service>);
        tracing::info!(session = %session.id(), "adopted session rebuilt");
        true
    }

    /// Runs `initialize` inline and initializes the session only if it succeeds.
    async fn initialize<S: McpService>(
        self,
        service: Arc<S>,
        session: Arc<Session>,
        extensions: Arc<http::Extensions>,
        payload: Payload,
        rebuildable: bool,
    ) -> Response<Full<Bytes>> {
        let Payload::Single(Message::Request(request)) = payload else {
            return TransportError::new(TransportErrorKind::Internal).into_response();
        };
        let context = self.context(extensions, Route::Standalone);
        let client = client_of_initialize(request.params.as_ref(), self.version);
        // Kept for a cluster: another instance can rebuild the server from them.
        let init_params = request.params.clone();
        let cx = RequestContext {
            id: request.id.clone(),
            progress_token: None,
            common: context,
            input: None,
        };
        let Some(answer) = answer(&*service, request, cx, None).await else {
            service.close().await;
            return TransportError::new(TransportErrorKind::Internal).into_response();
        };
        match &answer {
            Message::Response(response) => {
                // The server's answer decides the revision (a proxied server negotiates itself).
                let version = response
                    .result
                    .get("protocolVersion")
                    .and_then(|v| v.as_str())
                    .and_then(ProtocolVersion::parse)
                    .unwrap_or(self.version);
                session.set_client(RequestMeta {
                    protocol_version: version,
                    ..client
                });
                session.set_rebuild(init_params, rebuildable);
                session.initialize(version, service, close_erased::<S>);
            }
            _ => service.close().await,
        }
        respond(StatusCode::OK, Some(Outgoing::One(answer)))
    }
}
