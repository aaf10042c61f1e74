//! [`McpStack`]: the standard Streamable HTTP stack in one expression.
//!
//! [`McpStack::into_service`] composes one `ServiceBuilder` chain; a request meets, from the
//! outside in:
//!
//! | # | layer | reads | writes / answers |
//! |---|---|---|---|
//! | 1 | protected-resource metadata ([`McpStack::protected_resource`]) | path | the RFC 9728 document, with its own open CORS |
//! | 2 | [`McpCors`] (tower-http's CORS) | `Origin`, preflights | CORS headers, preflight answers |
//! | 3 | routes ([`McpStack::endpoint_path`]) | path | `GET /ping` → `pong`, 404 for other paths |
//! | 4 | [`ChallengeLayer`] | `AuthError` of the answer | `WWW-Authenticate` on 401/403 |
//! | 5 | [`JsonRpcErrorLayer`] | [`TransportError`](crate::TransportError) / `AuthError` of the answer | status + JSON-RPC error body: the one renderer |
//! | 6 | [`OriginLayer`] | `Origin`, `Host` | 403 |
//! | 7 | [`AuthLayer`] ([`McpStack::authenticate`]) | credentials | [`Principal`](crate::Principal), 401/403 — before any body is read |
//! | 7b | [`PrincipalLimitLayer`] ([`McpStack::principal_limits`]) | [`Principal`](crate::Principal), client address | 429 + `Retry-After` over a caller's request rate — before any body is read |
//! | 8 | [`SessionLookupLayer`](crate::session::SessionLookupLayer) | `Mcp-Session-Id`, [`Principal`](crate::Principal) | the session, busy while its body is read |
//! | 9 | tower-http's [`RequestBodyLimitLayer`] | body | 413 (default 10 MiB) |
//! | 10 | [`JsonRpcBodyLayer`] | body | [`ParsedBody`] + [`Payload`](crate::jsonrpc::Payload); 415, 400 `-32700`/`-32600` |
//! | 10b | the same limits ([`McpStack::principal_limits`]) | [`Principal`](crate::Principal), payload | 429 over a caller's concurrent requests (a POST of only responses passes) |
//! | 11 | [`ScopeLayer`] ([`McpStack::scopes`]) | [`Principal`](crate::Principal), payload | 403 step-up |
//! | 12 | **your layers** ([`McpStack::layer`]) | anything above | anything |
//! | 13 | [`RoutingHeadersLayer`] | 2026-07-28 routing headers, payload | 400 `-32020` |
//! | 14 | [`ModernLayer`] ([`McpStack::modern`]) | payload `_meta` | [`RequestMeta`](crate::modern::RequestMeta); 400 `-32602`/`-32022` |
//! | 15 | `ClusterLayer` (`McpStack::cluster`, feature `redis`) | `Mcp-Session-Id`, [`Principal`](crate::Principal) | another instance's session forwarded to it, a dead one's adopted; 403/503 |
//! | 16 | [`LegacySseLayer`] ([`McpStack::legacy_sse`]) | `/sse`, `/messages` | the 2024-11-05 transport |
//! | 17 | [`SessionLayer`] | session, payload | [`Session`](crate::session::Session), [`ProtocolVersion`](crate::ProtocolVersion); 400/404/503 |
//! | 18 | [`SseLayer`] | `Accept`, `Last-Event-ID` | [`ResponseMode`](crate::sse::ResponseMode); SSE or JSON framing, 406/409 |
//! | 19 | [`McpEndpoint`] | all of the above | dispatch to the [`McpService`](crate::McpService) |
//!
//! The layers from 11 on take only `Request<ParsedBody>`, so none of them can be composed
//! without the body layer in front (a compile error); the endpoint answers 500 naming
//! `SseLayer` or `SessionLayer` when one is missing. Every setting is independent of the order
//! of the builder calls.
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
//!     // A layer of your own, inside the stack: it sees the `Principal` and the parsed body.
//!     .layer(tower::limit::ConcurrencyLimitLayer::new(256))
//!     .into_service();
//! // Mount it in axum beside the app's own routes:
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my app" }))
//!     .route_service("/mcp", mcp);
//! # let _ = app;
//! # }
//! ```

#![cfg_attr(
    not(feature = "auth"),
    doc = "\n[`ChallengeLayer`]: crate \"needs the auth feature\""
)]
#![cfg_attr(
    not(feature = "auth"),
    doc = "\n[`AuthLayer`]: crate \"needs the auth feature\""
)]
#![cfg_attr(
    not(feature = "auth"),
    doc = "\n[`ScopeLayer`]: crate \"needs the auth feature\""
)]
#![cfg_attr(
    not(feature = "auth"),
    doc = "\n[`McpStack::protected_resource`]: crate \"needs the auth feature\""
)]
#![cfg_attr(
    not(feature = "auth"),
    doc = "\n[`McpStack::authenticate`]: crate \"needs the auth feature\""
)]
#![cfg_attr(
    not(feature = "auth"),
    doc = "\n[`McpStack::scopes`]: crate \"needs the auth feature\""
)]
#![cfg_attr(
    not(feature = "legacy-sse"),
    doc = "\n[`LegacySseLayer`]: crate \"needs the legacy-sse feature\""
)]
#![cfg_attr(
    not(feature = "legacy-sse"),
    doc = "\n[`McpStack::legacy_sse`]: crate \"needs the legacy-sse feature\""
)]

#[cfg(feature = "auth")]
use crate::auth::{
    Auth, AuthLayer, Authenticator, BoxAuthenticator, Challenge, ChallengeLayer, MetadataService,
    ProtectedResourceMetadata, Scope, ScopeLayer, ScopePolicy,
};
use crate::cors::{McpCors, McpCorsService};
use crate::endpoint::McpEndpoint;
use crate::error_map::{JsonRpcError, JsonRpcErrorLayer};
use crate::jsonrpc_body::{JsonRpcBody, JsonRpcBodyLayer, ParsedBody};
#[cfg(feature = "legacy-sse")]
use crate::legacy_sse::{LegacySse, LegacySseLayer};
use crate::modern::{Modern, ModernLayer};
use crate::origin::{Origin, OriginLayer};
use crate::rate_limit::{PrincipalLimit, PrincipalLimitLayer};
use crate::routing_headers::{RoutingHeaders, RoutingHeadersLayer};
use crate::service::MakeMcpService;
use crate::session::{SessionLayer, SessionLookup, SessionRegistry, SessionService};
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
use std::task::{Context, Poll};
use std::time::Duration;
use tower::layer::util::{Identity, Stack};
use tower::{Layer, Service, ServiceBuilder};
use tower_http::cors::Cors;
use tower_http::limit::{RequestBodyLimit, RequestBodyLimitLayer};

/// The default body limit: 10 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 10 * 1024 * 1024;

/// Builds the standard stack around a [`MakeMcpService`]; see the [module docs](crate::stack).
///
/// `L` are the layers added with [`McpStack::layer`].
#[derive(Debug)]
pub struct McpStack<M, L = Identity> {
    make: M,
    layer: L,
    endpoint_path: Option<String>,
    max_body_size: usize,
    origin: OriginLayer,
    principal_limits: PrincipalLimitLayer,
    session: SessionLayer,
    sse: SseLayer,
    // Applied over `sse` whatever the call order.
    json_response: Option<bool>,
    keep_alive: Option<Option<Duration>>,
    client_request_timeout: Duration,
    streamable_http: bool,
    #[cfg(feature = "legacy-sse")]
    legacy: Option<LegacyPaths>,
    cors: McpCors,
    #[cfg(feature = "auth")]
    authenticator: Option<BoxAuthenticator>,
    #[cfg(feature = "auth")]
    challenge: Option<ChallengeLayer>,
    #[cfg(feature = "auth")]
    metadata: Option<ProtectedResourceMetadata>,
    #[cfg(feature = "auth")]
    scopes: ScopePolicy,
    modern: bool,
    request_state_key: Option<[u8; 32]>,
    request_state_ttl: Option<Duration>,
    max_listeners: Option<usize>,
    tasks: Option<Option<Tasks>>,
    #[cfg(feature = "redis")]
    cluster: Option<crate::cluster::Cluster>,
}

/// Where the legacy HTTP+SSE transport is served.
#[cfg(feature = "legacy-sse")]
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
            layer: Identity::new(),
            endpoint_path: None,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            origin: OriginLayer::localhost(),
            principal_limits: PrincipalLimitLayer::new(),
            session: SessionLayer::new(),
            sse: SseLayer::new(),
            json_response: None,
            keep_alive: None,
            client_request_timeout: crate::endpoint::DEFAULT_CLIENT_REQUEST_TIMEOUT,
            streamable_http: true,
            #[cfg(feature = "legacy-sse")]
            legacy: None,
            cors: McpCors::new(),
            #[cfg(feature = "auth")]
            authenticator: None,
            #[cfg(feature = "auth")]
            challenge: None,
            #[cfg(feature = "auth")]
            metadata: None,
            #[cfg(feature = "auth")]
            scopes: ScopePolicy::new(),
            modern: true,
            request_state_key: None,
            request_state_ttl: None,
            max_listeners: None,
            tasks: None,
            #[cfg(feature = "redis")]
            cluster: None,
        }
    }
}

impl<M: MakeMcpService, L> McpStack<M, L> {
    /// Adds a layer of your own inside the stack: after authentication, the body limit, parsing
    /// and the scope checks, so it sees the [`Principal`](crate::Principal) and the parsed
    /// [`Payload`](crate::jsonrpc::Payload); before the 2026-07-28 checks, sessions, SSE and
    /// the endpoint (row 12 of the [table](crate::stack)). E.g. a rate limit keyed by principal.
    /// The first layer added is the outermost. It must keep the request and response types and
    /// answer refusals with a response (`Error = Infallible`).
    pub fn layer<T>(self, layer: T) -> McpStack<M, Stack<T, L>> {
        McpStack {
            make: self.make,
            layer: Stack::new(layer, self.layer),
            endpoint_path: self.endpoint_path,
            max_body_size: self.max_body_size,
            origin: self.origin,
            principal_limits: self.principal_limits,
            session: self.session,
            sse: self.sse,
            json_response: self.json_response,
            keep_alive: self.keep_alive,
            client_request_timeout: self.client_request_timeout,
            streamable_http: self.streamable_http,
            #[cfg(feature = "legacy-sse")]
            legacy: self.legacy,
            cors: self.cors,
            #[cfg(feature = "auth")]
            authenticator: self.authenticator,
            #[cfg(feature = "auth")]
            challenge: self.challenge,
            #[cfg(feature = "auth")]
            metadata: self.metadata,
            #[cfg(feature = "auth")]
            scopes: self.scopes,
            modern: self.modern,
            request_state_key: self.request_state_key,
            request_state_ttl: self.request_state_ttl,
            max_listeners: self.max_listeners,
            tasks: self.tasks,
            #[cfg(feature = "redis")]
            cluster: self.cluster,
        }
    }

    /// Limits each caller's request rate (row 7b of the [table](crate::stack): after
    /// authentication, before the body is read) and concurrent requests (row 10b, once the
    /// body is parsed); see [`crate::rate_limit`]. Default: no limits.
    pub fn principal_limits(mut self, limits: PrincipalLimitLayer) -> Self {
        self.principal_limits = limits;
        self
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

    /// Serves as one instance of `cluster` (feature `redis`, see [`crate::cluster`]): sessions
    /// are published to Redis and a request for another instance's session is forwarded there;
    /// SSE events go to the cluster's [`RedisEventStore`](crate::cluster::RedisEventStore)
    /// (replacing the [`SseLayer`]'s store), 2026-07-28 tasks to its
    /// [`RedisTaskStore`](crate::cluster::RedisTaskStore) unless [`tasks`](Self::tasks) sets a
    /// store, and `requestState` is sealed with the cluster's shared key unless
    /// [`request_state_key`](Self::request_state_key) sets one.
    /// Ignored when [`stateless`](Self::stateless).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn cluster(mut self, cluster: crate::cluster::Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    #[cfg(feature = "auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
    /// Authenticates every MCP request (both transports) with `authenticator`; the
    /// [`Principal`](crate::Principal) it returns binds the sessions it opens. `/ping`, CORS
    /// preflights and the protected-resource metadata stay open.
    pub fn authenticate(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(BoxAuthenticator::new(authenticator));
        self
    }

    #[cfg(feature = "auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
    /// Serves the RFC 9728 protected-resource metadata document and points every challenge at
    /// it (`resource_metadata`, unless [`Self::challenge`] sets one).
    pub fn protected_resource(mut self, metadata: ProtectedResourceMetadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    #[cfg(feature = "auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
    /// Replaces how `WWW-Authenticate` challenges are built (realm, scope, resource metadata).
    pub fn challenge(mut self, challenge: ChallengeLayer) -> Self {
        self.challenge = Some(challenge);
        self
    }

    #[cfg(feature = "auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
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

    #[cfg(feature = "legacy-sse")]
    #[cfg_attr(docsrs, doc(cfg(feature = "legacy-sse")))]
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
    /// [`Self::json_response`] and [`Self::keep_alive`], called before or after, still apply.
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
        self.json_response = Some(json);
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

    /// See [`SessionLayer::session_limit`]: one cap for the sessions of several stacks.
    pub fn session_limit(mut self, limit: Arc<crate::session::SessionLimit>) -> Self {
        self.session = self.session.session_limit(limit);
        self
    }

    /// See [`SseLayer::keep_alive`].
    pub fn keep_alive(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.keep_alive = Some(interval.into());
        self
    }

    /// See [`McpEndpoint::client_request_timeout`].
    pub fn client_request_timeout(mut self, timeout: Duration) -> Self {
        self.client_request_timeout = timeout;
        self
    }
}

/// The MCP core that [`McpStack::layer`] layers wrap: rows 13–19 of the [table](crate::stack).
pub type McpCore<M> = RoutingHeaders<Modern<Clustered<Sessions<M>>>>;

/// The cluster row (feature `redis`): passes everything through without a cluster.
#[cfg(feature = "redis")]
type Clustered<S> = crate::cluster::ClusterService<S>;
#[cfg(not(feature = "redis"))]
type Clustered<S> = S;

/// The session layer and what it wraps (the legacy transport in front, when it is built).
#[cfg(feature = "legacy-sse")]
type Sessions<M> = LegacySse<SessionService<SseService<McpEndpoint<M>>>, M>;
#[cfg(not(feature = "legacy-sse"))]
type Sessions<M> = SessionService<SseService<McpEndpoint<M>>>;

/// The response body of [`McpCore`].
#[cfg(feature = "legacy-sse")]
pub type McpCoreBody = crate::sse::ResponseBody<crate::sse::ResponseBody<Full<Bytes>>>;
/// The response body of [`McpCore`].
#[cfg(not(feature = "legacy-sse"))]
pub type McpCoreBody = crate::sse::ResponseBody<Full<Bytes>>;

/// Everything inside authentication.
#[cfg(feature = "auth")]
type Authenticated<U> =
    PrincipalLimit<SessionLookup<RequestBodyLimit<JsonRpcBody<PrincipalLimit<Scope<U>>>>>>;
#[cfg(not(feature = "auth"))]
type Authenticated<U> =
    PrincipalLimit<SessionLookup<RequestBodyLimit<JsonRpcBody<PrincipalLimit<U>>>>>;

/// Rows 5–11 and `U`.
#[cfg(not(feature = "auth"))]
type Guarded<U> = JsonRpcError<Origin<Authenticated<U>>>;
/// Rows 4–11 and `U`, the core wrapped in the user's layers.
#[cfg(feature = "auth")]
type Guarded<U> = Challenge<
    JsonRpcError<
        Origin<tower::util::Either<Auth<Authenticated<U>, BoxAuthenticator>, Authenticated<U>>>,
    >,
>;

/// Rows 3–11 and `U`.
type Inner<U> = Routes<Guarded<U>>;

/// The composed stack made by [`McpStack::into_service`].
pub struct McpHttpService<M, L = Identity>
where
    L: Layer<McpCore<M>>,
{
    inner: MetadataFront<McpCorsService<Cors<Inner<L::Service>>>>,
    sessions: Arc<SessionRegistry>,
    listeners: Arc<ListenHub>,
    #[cfg(feature = "legacy-sse")]
    legacy_sessions: Arc<SessionRegistry>,
}

impl<M, L> McpStack<M, L>
where
    M: MakeMcpService,
    L: Layer<McpCore<M>>,
{
    /// Composes the stack: one chain, read top to bottom as in the [table](crate::stack).
    pub fn into_service(self) -> McpHttpService<M, L> {
        let session = self.session;
        let sessions = session.registry().clone();
        let (routing, modern) = if self.modern {
            (RoutingHeadersLayer::new(), ModernLayer::new())
        } else {
            (RoutingHeadersLayer::disabled(), ModernLayer::disabled())
        };
        // A stateless stack has no sessions to share.
        #[cfg(feature = "redis")]
        let cluster = self.cluster.filter(|_| !session.is_stateless());
        #[cfg(feature = "redis")]
        let (request_state_key, cluster_layer) = match &cluster {
            Some(cluster) => (
                self.request_state_key.or(Some(cluster.request_state_key())),
                crate::cluster::ClusterLayer::new(cluster.clone(), sessions.clone()),
            ),
            None => (
                self.request_state_key,
                crate::cluster::ClusterLayer::disabled(),
            ),
        };
        #[cfg(not(feature = "redis"))]
        let (request_state_key, cluster_layer) = (self.request_state_key, Identity::new());
        let mut endpoint = McpEndpoint::new(self.make)
            .client_request_timeout(self.client_request_timeout)
            .tool_headers(routing.tools().clone());
        if let Some(key) = request_state_key {
            endpoint = endpoint.request_state_key(key);
        }
        // After the key, which replaces the sealer.
        if let Some(ttl) = self.request_state_ttl {
            endpoint = endpoint.request_state_ttl(ttl);
        }
        if let Some(max) = self.max_listeners {
            endpoint = endpoint.max_listeners(max);
        }
        #[cfg(feature = "redis")]
        let tasks = match (self.tasks, &cluster) {
            // A cluster shares its tasks unless the host chose a store.
            (None, Some(cluster)) => Some(Some(crate::tasks::Tasks::new(cluster.task_store()))),
            (tasks, _) => tasks,
        };
        #[cfg(not(feature = "redis"))]
        let tasks = self.tasks;
        if let Some(tasks) = tasks {
            endpoint = endpoint.tasks(tasks);
        }
        let listeners = endpoint.listeners().clone();
        let mut sse = self.sse;
        if let Some(json) = self.json_response {
            sse = sse.json_response(json);
        }
        if let Some(interval) = self.keep_alive {
            sse = sse.keep_alive(interval);
        }
        #[cfg(feature = "redis")]
        if let Some(cluster) = &cluster {
            sse = sse.event_store(cluster.event_store());
        }
        #[cfg(feature = "legacy-sse")]
        let legacy = match &self.legacy {
            Some(paths) => LegacySseLayer::new(endpoint.clone())
                .sse_path(paths.sse.clone())
                .messages_path(paths.messages.clone())
                .keep_alive(sse.keep_alive_interval())
                // One session cap for both transports, and the same handshake deadline.
                .session_limit(sessions.limit().clone())
                .handshake_timeout(sessions.handshake_timeout()),
            None => LegacySseLayer::disabled(endpoint.clone()),
        };
        #[cfg(feature = "legacy-sse")]
        let (legacy_sessions, legacy_paths) = (
            legacy.sessions().clone(),
            self.legacy
                .as_ref()
                .map(|paths| (Arc::from(&*paths.sse), Arc::from(&*paths.messages))),
        );
        #[cfg(not(feature = "legacy-sse"))]
        let (legacy, legacy_paths) = (Identity::new(), None);
        // Without the auth feature these rows are `Identity`: the chain reads the same.
        #[cfg(feature = "auth")]
        let (metadata, challenge, authenticate, scope) = (
            self.metadata.as_ref().map(|m| m.clone().into_service()),
            match (self.challenge, &self.metadata) {
                (Some(challenge), _) => challenge,
                (None, Some(metadata)) => ChallengeLayer::for_metadata(metadata),
                (None, None) => ChallengeLayer::new(),
            },
            tower::util::option_layer(self.authenticator.map(AuthLayer::new)),
            ScopeLayer::new(self.scopes),
        );
        #[cfg(not(feature = "auth"))]
        let (metadata, challenge, authenticate, scope) =
            (None, Identity::new(), Identity::new(), Identity::new());
        let routes = RoutesLayer {
            path_routing: self.endpoint_path.is_some(),
            endpoint_path: self
                .endpoint_path
                .filter(|_| self.streamable_http)
                .map(Arc::from),
            legacy: legacy_paths,
        };
        let inner = ServiceBuilder::new()
            .layer(MetadataFrontLayer { metadata })
            .layer(self.cors.layer())
            .layer(routes)
            .layer(challenge)
            .layer(JsonRpcErrorLayer::new())
            .layer(self.origin)
            // Before the body is read: unauthenticated bodies are never buffered.
            .layer(authenticate)
            .layer(self.principal_limits.rate_only())
            .layer(session.lookup())
            .layer(RequestBodyLimitLayer::new(self.max_body_size))
            .layer(JsonRpcBodyLayer::new())
            .layer(self.principal_limits.concurrency_only())
            .layer(scope)
            .layer(self.layer)
            // Header/body disagreements first, then the era decision and `_meta`.
            .layer(routing)
            .layer(modern)
            .layer(cluster_layer)
            .layer(legacy)
            .layer(session)
            .layer(sse)
            .service(endpoint);
        McpHttpService {
            inner,
            sessions,
            listeners,
            #[cfg(feature = "legacy-sse")]
            legacy_sessions,
        }
    }
}

impl<M, L> Clone for McpHttpService<M, L>
where
    L: Layer<McpCore<M>>,
    L::Service: Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            sessions: self.sessions.clone(),
            listeners: self.listeners.clone(),
            #[cfg(feature = "legacy-sse")]
            legacy_sessions: self.legacy_sessions.clone(),
        }
    }
}

impl<M, L> std::fmt::Debug for McpHttpService<M, L>
where
    L: Layer<McpCore<M>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHttpService")
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl<M, L> McpHttpService<M, L>
where
    L: Layer<McpCore<M>>,
{
    /// The Streamable HTTP session table (for graceful shutdown: [`SessionRegistry::close_all`]).
    pub fn sessions(&self) -> &Arc<SessionRegistry> {
        &self.sessions
    }

    /// The open 2026-07-28 `subscriptions/listen` streams (for graceful shutdown:
    /// [`ListenHub::close_all`]).
    pub fn listeners(&self) -> &Arc<ListenHub> {
        &self.listeners
    }

    #[cfg(feature = "legacy-sse")]
    #[cfg_attr(docsrs, doc(cfg(feature = "legacy-sse")))]
    /// The legacy HTTP+SSE session table (one session per open `/sse` stream).
    pub fn legacy_sessions(&self) -> &Arc<SessionRegistry> {
        &self.legacy_sessions
    }
}

/// The body of every response of the stack.
pub type StackBody = crate::error_map::ResponseBody<
    crate::rate_limit::ResponseBody<
        tower_http::limit::ResponseBody<crate::rate_limit::ResponseBody<McpCoreBody>>,
    >,
>;

impl<M, L, B> Service<Request<B>> for McpHttpService<M, L>
where
    M: MakeMcpService,
    L: Layer<McpCore<M>>,
    L::Service:
        Service<Request<ParsedBody>, Response = Response<McpCoreBody>, Error = Infallible> + Clone,
    B: Body + Send + 'static,
    B::Error: Into<crate::BoxError>,
    Guarded<L::Service>: Service<Request<B>, Response = Response<StackBody>, Error = Infallible>,
{
    type Response = Response<StackBody>;
    type Error = Infallible;
    type Future = ReadyOr<
        crate::cors::ResponseFuture<ReadyOr<<Guarded<L::Service> as Service<Request<B>>>::Future>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}

/// Serves the protected-resource metadata document ahead of the stack's CORS policy (the
/// document has its own: any origin, preflights answered).
#[derive(Clone)]
struct MetadataFrontLayer {
    metadata: Option<MetadataService>,
}

/// Without the auth feature there is no document to serve.
#[cfg(not(feature = "auth"))]
#[derive(Clone, Debug)]
enum MetadataService {}

#[cfg(not(feature = "auth"))]
impl MetadataService {
    fn respond_to<B>(&self, _: &Request<B>) -> Option<Response<Bytes>> {
        match *self {}
    }
}

impl<S> Layer<S> for MetadataFrontLayer {
    type Service = MetadataFront<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetadataFront {
            inner,
            metadata: self.metadata.clone(),
        }
    }
}

#[derive(Clone)]
struct MetadataFront<S> {
    inner: S,
    metadata: Option<MetadataService>,
}

impl<S, B> Service<Request<B>> for MetadataFront<S>
where
    S: Service<Request<B>, Response = Response<StackBody>>,
{
    type Response = Response<StackBody>;
    type Error = S::Error;
    type Future = ReadyOr<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(document) = self.metadata.as_ref().and_then(|m| m.respond_to(&req)) {
            return ReadyOr::ready(document.map(StackBody::full));
        }
        ReadyOr::inner(self.inner.call(req))
    }
}

/// Answers `GET /ping` and 404 for paths the stack does not serve.
#[derive(Clone)]
struct RoutesLayer {
    /// The legacy transport's paths, when it is served.
    legacy: Option<(Arc<str>, Arc<str>)>,
    /// The Streamable HTTP path, when it is served.
    endpoint_path: Option<Arc<str>>,
    /// Whether unknown paths get 404 (false when mounted in a router).
    path_routing: bool,
}

impl<S> Layer<S> for RoutesLayer {
    type Service = Routes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Routes {
            inner,
            endpoint_path: self.endpoint_path.clone(),
            legacy: self.legacy.clone(),
            path_routing: self.path_routing,
        }
    }
}

#[derive(Clone)]
struct Routes<S> {
    inner: S,
    endpoint_path: Option<Arc<str>>,
    legacy: Option<(Arc<str>, Arc<str>)>,
    path_routing: bool,
}

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

impl<S, B> Service<Request<B>> for Routes<S>
where
    S: Service<Request<B>, Response = Response<StackBody>>,
{
    type Response = Response<StackBody>;
    type Error = S::Error;
    type Future = ReadyOr<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        if req.method() == Method::GET && path == "/ping" {
            return ReadyOr::ready(plain(StatusCode::OK, "pong"));
        }
        let legacy = self
            .legacy
            .as_ref()
            .is_some_and(|(sse, messages)| path == &**sse || path == &**messages);
        if self.path_routing && self.endpoint_path.as_deref() != Some(path) && !legacy {
            return ReadyOr::ready(plain(StatusCode::NOT_FOUND, ""));
        }
        ReadyOr::inner(self.inner.call(req))
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`McpHttpService`]: an answer made in front of the stack, or the
    /// stack's.
    pub struct ReadyOr<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Ready { response: Option<Response<StackBody>> },
    }
}

impl<F> ReadyOr<F> {
    fn ready(response: Response<StackBody>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }
}

impl<F, E> Future for ReadyOr<F>
where
    F: Future<Output = Result<Response<StackBody>, E>>,
{
    type Output = Result<Response<StackBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}
