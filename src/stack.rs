//! [`McpStack`]: the standard Streamable HTTP stack in one expression.
//!
//! From the outside in (one request's path):
//!
//! 1. tower-http's CORS ([`McpCors`] preset) answers preflights; the RFC 9728 metadata document
//!    (with [`McpStack::protected_resource`]) is served ahead of it with its own open CORS.
//! 2. A small router answers `GET /ping` and 404 for unknown paths (with
//!    [`McpStack::endpoint_path`]), and marks a session busy while its request is read.
//! 3. [`ChallengeLayer`] adds `WWW-Authenticate` to 401/403 rejections.
//! 4. [`JsonRpcErrorLayer`] renders every rejection below as a JSON-RPC error.
//! 5. [`OriginLayer`] refuses browsers from origins not allowed (loopback by default).
//! 6. [`AuthLayer`] (with [`McpStack::authenticate`]) finds the [`Principal`](crate::Principal),
//!    before any body is read.
//! 7. tower-http's [`RequestBodyLimitLayer`] caps the body (default 10 MiB, 413).
//! 8. [`JsonRpcBodyLayer`] parses the POST body once.
//! 9. [`ScopeLayer`] checks required and per-tool scopes (403 step-up).
//! 10. [`RoutingHeadersLayer`] checks 2026-07-28 routing headers against the body.
//! 11. [`ModernLayer`] decides the era and validates 2026-07-28 `_meta`; those requests skip
//!     the session layer (off with [`McpStack::modern`]).
//! 12. [`LegacySseLayer`] serves the legacy HTTP+SSE transport at `/sse` and `/messages` (off
//!     unless [`McpStack::legacy_sse`] turns it on).
//! 13. [`SessionLayer`] routes by `Mcp-Session-Id`.
//! 14. [`SseLayer`] frames answers as SSE or JSON, stores events for resumption and serves the
//!     standalone GET stream.
//! 15. [`McpEndpoint`] hands messages to the [`McpService`](crate::McpService).
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::{McpStack, SessionContext, everything::EverythingServer};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mcp = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new())
//!     .session_idle_timeout(Duration::from_secs(600))
//!     .max_sessions(10_000)
//!     .into_service();
//! // Mount it in axum beside the app's own routes:
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my app" }))
//!     .route_service("/mcp", mcp);
//! # let _ = app;
//! # }
//! ```

use crate::auth::{
    Auth, AuthLayer, Authenticator, BoxAuthenticator, Challenge, ChallengeLayer, MetadataService,
    ProtectedResourceMetadata, Scope, ScopeLayer, ScopePolicy,
};
use crate::cors::{McpCors, McpCorsService};
use crate::endpoint::McpEndpoint;
use crate::error_map::{JsonRpcError, JsonRpcErrorLayer};
use crate::jsonrpc_body::{JsonRpcBody, JsonRpcBodyLayer};
use crate::legacy_sse::{LegacySse, LegacySseLayer};
use crate::modern::{Modern, ModernLayer};
use crate::origin::{Origin, OriginLayer};
use crate::routing_headers::{RoutingHeaders, RoutingHeadersLayer};
use crate::service::MakeMcpService;
use crate::session::{AttachGuard, MCP_SESSION_ID, SessionLayer, SessionRegistry, SessionService};
use crate::sse::{SseLayer, SseService};
use crate::subscriptions::ListenHub;
use crate::tasks::Tasks;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::cors::Cors;
use tower_http::limit::{RequestBodyLimit, RequestBodyLimitLayer};

/// The default body limit: 10 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 10 * 1024 * 1024;

/// Builds the standard stack around a [`MakeMcpService`]; see the [module docs](crate::stack).
#[derive(Debug)]
pub struct McpStack<M> {
    make: M,
    endpoint_path: Option<String>,
    max_body_size: usize,
    origin: OriginLayer,
    session: SessionLayer,
    sse: SseLayer,
    client_request_timeout: Duration,
    streamable_http: bool,
    legacy: Option<LegacyPaths>,
    cors: McpCors,
    authenticator: Option<BoxAuthenticator>,
    challenge: ChallengeLayer,
    metadata: Option<ProtectedResourceMetadata>,
    scopes: ScopePolicy,
    modern: bool,
    request_state_key: Option<[u8; 32]>,
    request_state_ttl: Option<Duration>,
    max_listeners: Option<usize>,
    tasks: Option<Option<Tasks>>,
}

/// Where the legacy HTTP+SSE transport is served.
#[derive(Clone, Debug)]
struct LegacyPaths {
    sse: String,
    messages: String,
}

impl<M: MakeMcpService> McpStack<M> {
    /// The stack with defaults: sessions, SSE responses, 10 MiB bodies, 30 min idle timeout.
    pub fn new(make: M) -> Self {
        Self {
            make,
            endpoint_path: None,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            origin: OriginLayer::localhost(),
            session: SessionLayer::new(),
            sse: SseLayer::new(),
            client_request_timeout: crate::endpoint::DEFAULT_CLIENT_REQUEST_TIMEOUT,
            streamable_http: true,
            legacy: None,
            cors: McpCors::new(),
            authenticator: None,
            challenge: ChallengeLayer::new(),
            metadata: None,
            scopes: ScopePolicy::new(),
            modern: true,
            request_state_key: None,
            request_state_ttl: None,
            max_listeners: None,
            tasks: None,
        }
    }

    /// Serves the sessionless 2026-07-28 revision beside the 2025 ones on the same endpoint
    /// (default on); see [`crate::modern`]. Off, 2026-07-28 requests get 400 `-32000` like any
    /// unknown revision, and dual-era clients fall back to `initialize`.
    pub fn modern(mut self, on: bool) -> Self {
        self.modern = on;
        self
    }

    /// The key sealing 2026-07-28 `requestState` values (default: random per process). Give
    /// every instance behind one load balancer the same key; see [`crate::input`].
    pub fn request_state_key(mut self, key: [u8; 32]) -> Self {
        self.request_state_key = Some(key);
        self
    }

    /// How long a sealed 2026-07-28 `requestState` stays valid (default 10 min, whole seconds);
    /// see [`crate::input`].
    pub fn request_state_ttl(mut self, ttl: Duration) -> Self {
        self.request_state_ttl = Some(ttl);
        self
    }

    /// The bound on open 2026-07-28 `subscriptions/listen` streams (default 1024).
    pub fn max_listeners(mut self, max: usize) -> Self {
        self.max_listeners = Some(max);
        self
    }

    /// How 2026-07-28 `tools/call` handlers run as tasks (the tasks extension, see
    /// [`crate::tasks`]): e.g. `Tasks::new(store)` for a store shared by several instances.
    /// `None` turns tasks off. Default: an in-memory store.
    pub fn tasks(mut self, tasks: impl Into<Option<Tasks>>) -> Self {
        self.tasks = Some(tasks.into());
        self
    }

    /// Authenticates every MCP request (both transports) with `authenticator`; the
    /// [`Principal`](crate::Principal) it returns binds the sessions it opens. `/ping`, CORS
    /// preflights and the protected-resource metadata stay open.
    pub fn authenticate(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(BoxAuthenticator::new(authenticator));
        self
    }

    /// Serves the RFC 9728 protected-resource metadata document and points every challenge at
    /// it (`resource_metadata`). Set challenge extras after this, with [`Self::challenge`].
    pub fn protected_resource(mut self, metadata: ProtectedResourceMetadata) -> Self {
        self.challenge = ChallengeLayer::for_metadata(&metadata);
        self.metadata = Some(metadata);
        self
    }

    /// Replaces how `WWW-Authenticate` challenges are built (realm, scope, resource metadata).
    pub fn challenge(mut self, challenge: ChallengeLayer) -> Self {
        self.challenge = challenge;
        self
    }

    /// Scopes every request needs, and per-tool scopes for `tools/call` (403 step-up).
    pub fn scopes(mut self, policy: ScopePolicy) -> Self {
        self.scopes = policy;
        self
    }

    /// Replaces the CORS policy (default: loopback origins); see [`McpCors`].
    pub fn cors(mut self, cors: McpCors) -> Self {
        self.cors = cors;
        self
    }

    /// Also serves the legacy HTTP+SSE transport: `GET sse_path` and `POST messages_path`
    /// (conventionally `/sse` and `/messages`).
    pub fn legacy_sse(
        mut self,
        sse_path: impl Into<String>,
        messages_path: impl Into<String>,
    ) -> Self {
        self.legacy = Some(LegacyPaths {
            sse: sse_path.into(),
            messages: messages_path.into(),
        });
        self
    }

    /// Serves Streamable HTTP at the endpoint path (default on); off serves only the legacy
    /// transport. Only meaningful with [`endpoint_path`](Self::endpoint_path).
    pub fn streamable_http(mut self, on: bool) -> Self {
        self.streamable_http = on;
        self
    }

    /// Serves MCP only at `path` (query strings allowed), `GET /ping` with `pong`, and 404
    /// elsewhere. Without it every request is an MCP request, as when mounted in a router.
    pub fn endpoint_path(mut self, path: impl Into<String>) -> Self {
        self.endpoint_path = Some(path.into());
        self
    }

    /// Replaces the `Origin` policy (default: loopback origins only); see [`OriginLayer`].
    pub fn origin(mut self, origin: OriginLayer) -> Self {
        self.origin = origin;
        self
    }

    /// Replaces the SSE layer, e.g. to use another [`EventStore`](crate::sse::EventStore).
    /// Set JSON mode and keep-alive after this call, or on the layer passed.
    pub fn sse(mut self, sse: SseLayer) -> Self {
        self.sse = sse;
        self
    }

    /// Serves without sessions; see [`SessionLayer::stateless`].
    pub fn stateless(mut self, stateless: bool) -> Self {
        self.session = self.session.stateless(stateless);
        self
    }

    /// Answers with one JSON body instead of SSE; see [`SseLayer::json_response`].
    pub fn json_response(mut self, json: bool) -> Self {
        self.sse = self.sse.json_response(json);
        self
    }

    /// The body limit in bytes (default 10 MiB).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// See [`SessionLayer::idle_timeout`].
    pub fn session_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.session = self.session.idle_timeout(timeout);
        self
    }

    /// See [`SessionLayer::handshake_timeout`].
    pub fn session_handshake_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.session = self.session.handshake_timeout(timeout);
        self
    }

    /// See [`SessionLayer::max_sessions`].
    pub fn max_sessions(mut self, max: impl Into<Option<usize>>) -> Self {
        self.session = self.session.max_sessions(max);
        self
    }

    /// See [`SseLayer::keep_alive`].
    pub fn keep_alive(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.sse = self.sse.keep_alive(interval);
        self
    }

    /// See [`McpEndpoint::client_request_timeout`].
    pub fn client_request_timeout(mut self, timeout: Duration) -> Self {
        self.client_request_timeout = timeout;
        self
    }

    /// Composes the stack.
    pub fn into_service(self) -> McpHttpService<M> {
        let sessions = self.session.registry().clone();
        let (routing, modern) = if self.modern {
            (RoutingHeadersLayer::new(), ModernLayer::new())
        } else {
            (RoutingHeadersLayer::disabled(), ModernLayer::disabled())
        };
        let mut endpoint = McpEndpoint::new(self.make)
            .client_request_timeout(self.client_request_timeout)
            .tool_headers(routing.tools().clone());
        if let Some(key) = self.request_state_key {
            endpoint = endpoint.request_state_key(key);
        }
        // After the key, which replaces the sealer.
        if let Some(ttl) = self.request_state_ttl {
            endpoint = endpoint.request_state_ttl(ttl);
        }
        if let Some(max) = self.max_listeners {
            endpoint = endpoint.max_listeners(max);
        }
        if let Some(tasks) = self.tasks {
            endpoint = endpoint.tasks(tasks);
        }
        let listeners = endpoint.listeners().clone();
        let keep_alive = self.sse.keep_alive_interval();
        let legacy = match &self.legacy {
            Some(paths) => LegacySseLayer::new(endpoint.clone())
                .sse_path(paths.sse.clone())
                .messages_path(paths.messages.clone())
                .keep_alive(keep_alive)
                // One session cap for both transports, and the same handshake deadline.
                .session_limit(sessions.limit().clone())
                .handshake_timeout(sessions.handshake_timeout()),
            None => LegacySseLayer::disabled(endpoint.clone()),
        };
        let inner = ServiceBuilder::new()
            .layer(self.challenge)
            .layer(JsonRpcErrorLayer::new())
            .layer(self.origin)
            // Before the body is read: unauthenticated bodies are never buffered.
            .option_layer(self.authenticator.map(AuthLayer::new))
            .layer(RequestBodyLimitLayer::new(self.max_body_size))
            .layer(JsonRpcBodyLayer::new())
            .layer(ScopeLayer::new(self.scopes))
            // Header/body disagreements first, then the era decision and `_meta`.
            .layer(routing)
            .layer(modern)
            .layer(legacy.clone())
            .layer(self.session)
            .layer(self.sse)
            .service(endpoint);
        let routes = Routes {
            inner,
            sessions,
            listeners,
            legacy,
            metadata: self.metadata.map(ProtectedResourceMetadata::into_service),
            path_routing: self.endpoint_path.is_some(),
            endpoint_path: self
                .endpoint_path
                .filter(|_| self.streamable_http)
                .map(Arc::from),
        };
        McpHttpService {
            inner: self.cors.layer().layer(routes),
        }
    }
}

/// Everything inside authentication.
type Limited<M> = RequestBodyLimit<
    JsonRpcBody<
        Scope<RoutingHeaders<Modern<LegacySse<SessionService<SseService<McpEndpoint<M>>>, M>>>>,
    >,
>;

type Inner<M> = Challenge<
    JsonRpcError<Origin<tower::util::Either<Auth<Limited<M>, BoxAuthenticator>, Limited<M>>>>,
>;

/// The composed stack made by [`McpStack::into_service`].
pub struct McpHttpService<M> {
    inner: McpCorsService<Cors<Routes<M>>>,
}

/// Answers `/ping` and unknown paths, and marks sessions busy, in front of the stack.
struct Routes<M> {
    inner: Inner<M>,
    sessions: Arc<SessionRegistry>,
    listeners: Arc<ListenHub>,
    legacy: LegacySseLayer<M>,
    /// The protected-resource metadata document, public.
    metadata: Option<MetadataService>,
    /// The Streamable HTTP path, when it is served.
    endpoint_path: Option<Arc<str>>,
    /// Whether unknown paths get 404 (false when mounted in a router).
    path_routing: bool,
}

impl<M> Clone for Routes<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            sessions: self.sessions.clone(),
            listeners: self.listeners.clone(),
            legacy: self.legacy.clone(),
            metadata: self.metadata.clone(),
            endpoint_path: self.endpoint_path.clone(),
            path_routing: self.path_routing,
        }
    }
}

impl<M> Clone for McpHttpService<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<M> std::fmt::Debug for McpHttpService<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.inner.get_ref().get_ref();
        f.debug_struct("McpHttpService")
            .field("endpoint_path", &routes.endpoint_path)
            .field("sessions", &routes.sessions.len())
            .finish_non_exhaustive()
    }
}

impl<M: MakeMcpService> McpHttpService<M> {
    /// The Streamable HTTP session table (for graceful shutdown: [`SessionRegistry::close_all`]).
    pub fn sessions(&self) -> &Arc<SessionRegistry> {
        &self.inner.get_ref().get_ref().sessions
    }

    /// The open 2026-07-28 `subscriptions/listen` streams (for graceful shutdown:
    /// [`ListenHub::close_all`]).
    pub fn listeners(&self) -> &Arc<ListenHub> {
        &self.inner.get_ref().get_ref().listeners
    }

    /// The legacy HTTP+SSE session table (one session per open `/sse` stream).
    pub fn legacy_sessions(&self) -> &Arc<SessionRegistry> {
        self.inner.get_ref().get_ref().legacy.sessions()
    }
}

/// The body of every response of the stack.
pub type StackBody = crate::auth::ResponseBody<
    crate::error_map::ResponseBody<
        tower_http::limit::ResponseBody<
            crate::sse::ResponseBody<crate::sse::ResponseBody<Full<Bytes>>>,
        >,
    >,
>;

fn plain(status: StatusCode, text: &'static str) -> Response<StackBody> {
    let mut response = Response::new(StackBody::full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    if !text.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

impl<M, B> Service<Request<B>> for McpHttpService<M>
where
    M: MakeMcpService,
    B: Body + Send + 'static,
    B::Error: Into<crate::BoxError>,
    Inner<M>: Service<Request<B>, Response = Response<StackBody>, Error = Infallible>,
{
    type Response = Response<StackBody>;
    type Error = Infallible;
    type Future = ResponseFuture<
        crate::cors::ResponseFuture<ResponseFuture<<Inner<M> as Service<Request<B>>>::Future>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The metadata document has its own CORS (any origin, preflights answered), so it is
        // served ahead of the stack's CORS policy.
        let metadata = self.inner.get_ref().get_ref().metadata.as_ref();
        if let Some(document) = metadata.and_then(|m| m.respond_to(&req)) {
            return ResponseFuture::ready(document.map(StackBody::full));
        }
        ResponseFuture {
            kind: Kind::Inner {
                future: self.inner.call(req),
                busy: None,
            },
        }
    }
}

impl<M, B> Service<Request<B>> for Routes<M>
where
    M: MakeMcpService,
    Inner<M>: Service<Request<B>, Response = Response<StackBody>, Error = Infallible>,
{
    type Response = Response<StackBody>;
    type Error = Infallible;
    type Future = ResponseFuture<<Inner<M> as Service<Request<B>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        if req.method() == Method::GET && path == "/ping" {
            return ResponseFuture::ready(plain(StatusCode::OK, "pong"));
        }
        if self.path_routing
            && self.endpoint_path.as_deref() != Some(path)
            && !self.legacy.serves_path(path)
        {
            return ResponseFuture::ready(plain(StatusCode::NOT_FOUND, ""));
        }
        // A session is busy from the moment a request for it arrives: a slow upload must not
        // let the idle sweep end it before the body is read and the session layer runs.
        let busy = req
            .headers()
            .get(MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|id| self.sessions.get(id))
            .map(|session| session.attach());
        ResponseFuture {
            kind: Kind::Inner {
                future: self.inner.call(req),
                busy,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`McpHttpService`] and of its router inside CORS.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F, busy: Option<AttachGuard> },
        Ready { response: Option<Response<StackBody>> },
    }
}

impl<F> ResponseFuture<F> {
    fn ready(response: Response<StackBody>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<StackBody>, Infallible>>,
{
    type Output = Result<Response<StackBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, busy } => {
                let response = ready!(future.poll(cx))?;
                busy.take();
                Poll::Ready(Ok(response))
            }
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}
