//! Model Context Protocol over HTTP as a stack of tower middleware.
//!
//! MCP hosts talk JSON-RPC 2.0 to MCP servers; over HTTP that is the *Streamable HTTP* transport:
//! POST/GET/DELETE on one endpoint, `Mcp-Session-Id` sessions, JSON or Server-Sent-Events
//! answers. This crate serves it as independent tower layers around an [`McpService`], so a host
//! can take the whole stack ([`McpStack`]) or one layer alone, in axum or bare hyper.
//!
//! One endpoint serves the session revisions (2025-03-26, 2025-06-18, 2025-11-25) and the
//! sessionless 2026-07-28 side by side ([`modern`]): the same [`McpService`] answers both, and
//! asks the client for input with [`RequestContext::ask`] in either ([`input`]).
//!
//! Most users start with [`McpServer`] (a server from tools, resources and
//! prompts, answering the lifecycle itself) inside [`McpStack`] (every layer, in the right
//! order, with a [`layer`](McpStack::layer) point for their own). The layers, in the order
//! [`McpStack`] composes them ([`stack`] has what each reads and writes):
//!
//! | module | layer | concern |
//! |---|---|---|
//! | [`cors`] | [`McpCorsLayer`](cors::McpCorsLayer) | tower-http's CORS with the MCP headers |
//! | [`auth`] | `ChallengeLayer`, `AuthLayer`, `ScopeLayer` | `WWW-Authenticate`; API key / JWT / introspection → [`Principal`]; scopes (403 step-up) |
//! | [`rate_limit`] | [`PrincipalLimitLayer`](rate_limit::PrincipalLimitLayer) | per-caller request rate and concurrent requests (429 + `Retry-After`) |
//! | [`error_map`] | [`JsonRpcErrorLayer`](error_map::JsonRpcErrorLayer) | the one renderer: typed rejections → HTTP status + JSON-RPC error body |
//! | [`origin`] | [`OriginLayer`](origin::OriginLayer) | DNS-rebinding protection: `Origin` (and `Host`) validation, 403 |
//! | [`session`] | [`SessionLookupLayer`](session::SessionLookupLayer) | the session looked up once, before the body, for the request's principal |
//! | [`jsonrpc_body`] | [`JsonRpcBodyLayer`](jsonrpc_body::JsonRpcBodyLayer) | read and parse the body once into a [`ParsedBody`](jsonrpc_body::ParsedBody) (415, 400 `-32700`/`-32600`, 413) |
//! | [`routing_headers`] | [`RoutingHeadersLayer`](routing_headers::RoutingHeadersLayer) | 2026-07-28 `MCP-Protocol-Version`/`Mcp-Method`/`Mcp-Name`/`Mcp-Param-*` against the body (400 `-32020`) |
//! | [`modern`] | [`ModernLayer`](modern::ModernLayer) | era decision; 2026-07-28 `_meta` (400 `-32602`, `-32022`) |
//! | [`legacy_sse`] | [`LegacySseLayer`] | the 2024-11-05 HTTP+SSE transport: `GET /sse` + `POST /messages?sessionId=` |
//! | [`session`] | [`SessionLayer`](session::SessionLayer) | `Mcp-Session-Id`, DELETE, idle expiry, limits, protocol version |
//! | [`sse`] | [`SseLayer`](sse::SseLayer) | SSE or JSON framing, priming, keep-alive, standalone GET stream |
//! | [`stdio`] | [`StdioCommand`] (a `MakeMcpService`) | a stdio MCP server per session, relayed both ways |
//! | [`timeout`] | [`RequestTimeoutLayer`](timeout::RequestTimeoutLayer) (around an `McpService`) | bounds each JSON-RPC request (`-32001 Request timed out`), SSE answers included |
//! | `rmcp` (feature `rmcp`) | `RmcpService` (a `MakeMcpService`) | a server written with rmcp, the official Rust SDK, inside the stack |
//! | [`endpoint`] | [`McpEndpoint`](endpoint::McpEndpoint) (service) | POST rules, 202, dispatch to the `McpService`; 2026-07-28 `server/discover`, stamps, `input_required`, `subscriptions/listen` ([`subscriptions`]) |
//!
//! The layers from the body layer on take only `Request<ParsedBody>`: composing one without
//! [`JsonRpcBodyLayer`](jsonrpc_body::JsonRpcBodyLayer) in front is a compile error; an
//! endpoint missing [`SseLayer`](sse::SseLayer) or [`SessionLayer`](session::SessionLayer)
//! answers 500 naming it.
//!
//! Layers hand typed values to each other through request and response extensions: the parsed
//! [`Payload`](jsonrpc::Payload), the [`Session`](session::Session), the negotiated
//! [`ProtocolVersion`], a 2026-07-28 request's [`RequestMeta`](modern::RequestMeta), the
//! [`Principal`] an auth layer found, and [`TransportError`] rejections.
//!
//! # Example: a hyper server
//!
//! ```no_run
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto::Builder;
//! use hyper_util::service::TowerToHyperService;
//! use mcp_tower_http::{McpStack, SessionContext, everything::EverythingServer};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let service = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new())
//!     .endpoint_path("/mcp")
//!     .into_service();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     stream.set_nodelay(true)?;
//!     let service = TowerToHyperService::new(service.clone());
//!     tokio::spawn(async move {
//!         let _ = Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(stream), service)
//!             .await;
//!     });
//! }
//! # }
//! ```
//!
//! # Features
//!
//! The default build is the Streamable HTTP core: every layer above except the optional ones
//! below, the [`McpStack`] builder, sessions, SSE, the 2026-07-28 revision and tasks.
//!
//! | feature | turns on |
//! |---|---|
//! | `auth` | [`auth`]: `AuthLayer`, API keys, scopes, `WWW-Authenticate` challenges, RFC 9728 metadata, [`McpStack::authenticate`] |
//! | `jwt` | `auth` + `JwtAuthenticator` (HS256, RS256/ES256 from a JWKS file or URL) |
//! | `introspection` | `auth` + `IntrospectionAuthenticator` (RFC 7662) |
//! | `http-client` | the plain-HTTP client `jwt` and `introspection` fetch with |
//! | `https-client` | HTTPS (rustls) for that client |
//! | `legacy-sse` | [`legacy_sse`]: the 2024-11-05 HTTP+SSE transport |
//! | `stdio` | [`stdio`] (a stdio child per session, the 2026-07-28 pool) and [`stdio_server`] |
//! | `everything` | [`everything`]: the built-in server exercising every MCP feature |
//! | `rmcp` | `rmcp`: `RmcpService`, a server written with rmcp (the official Rust SDK) inside the stack |
//! | `redis` | `cluster`: several instances behind one load balancer sharing sessions, SSE events, tasks and the sealing key through Redis |
//! | `metrics` | `metrics`: Prometheus metrics (`MetricsLayer` for HTTP, `RpcMetricsLayer` for JSON-RPC) |
//!
#![cfg_attr(feature = "auth", doc = "\n[`auth`]: crate::auth")]
#![cfg_attr(
    not(feature = "auth"),
    doc = "\n[`auth`]: crate \"needs the auth feature\""
)]
#![cfg_attr(
    feature = "auth",
    doc = "\n[`McpStack::authenticate`]: McpStack::authenticate"
)]
#![cfg_attr(
    not(feature = "auth"),
    doc = "\n[`McpStack::authenticate`]: crate \"needs the auth feature\""
)]
#![cfg_attr(feature = "legacy-sse", doc = "\n[`legacy_sse`]: crate::legacy_sse")]
#![cfg_attr(
    not(feature = "legacy-sse"),
    doc = "\n[`legacy_sse`]: crate \"needs the legacy-sse feature\""
)]
#![cfg_attr(
    feature = "legacy-sse",
    doc = "\n[`LegacySseLayer`]: legacy_sse::LegacySseLayer"
)]
#![cfg_attr(
    not(feature = "legacy-sse"),
    doc = "\n[`LegacySseLayer`]: crate \"needs the legacy-sse feature\""
)]
#![cfg_attr(feature = "stdio", doc = "\n[`stdio`]: crate::stdio")]
#![cfg_attr(
    not(feature = "stdio"),
    doc = "\n[`stdio`]: crate \"needs the stdio feature\""
)]
#![cfg_attr(feature = "stdio", doc = "\n[`stdio_server`]: crate::stdio_server")]
#![cfg_attr(
    not(feature = "stdio"),
    doc = "\n[`stdio_server`]: crate \"needs the stdio feature\""
)]
#![cfg_attr(feature = "stdio", doc = "\n[`StdioCommand`]: stdio::StdioCommand")]
#![cfg_attr(
    not(feature = "stdio"),
    doc = "\n[`StdioCommand`]: crate \"needs the stdio feature\""
)]
#![cfg_attr(feature = "everything", doc = "\n[`everything`]: crate::everything")]
#![cfg_attr(
    not(feature = "everything"),
    doc = "\n[`everything`]: crate \"needs the everything feature\""
)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod macros;
mod sync;

#[cfg(feature = "auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
pub mod auth;
pub mod body;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod cluster;
pub mod cors;
pub mod endpoint;
pub mod error;
pub mod error_map;
#[cfg(feature = "everything")]
#[cfg_attr(docsrs, doc(cfg(feature = "everything")))]
pub mod everything;
pub mod future;
pub mod input;
pub mod jsonrpc;
pub mod jsonrpc_body;
#[cfg(feature = "legacy-sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "legacy-sse")))]
pub mod legacy_sse;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod modern;
pub mod origin;
pub mod principal;
pub mod protocol;
pub mod rate_limit;
#[cfg(feature = "rmcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "rmcp")))]
pub mod rmcp;
pub mod routing_headers;
pub mod server;
pub mod service;
pub mod session;
pub mod sse;
pub mod stack;
#[cfg(feature = "stdio")]
#[cfg_attr(docsrs, doc(cfg(feature = "stdio")))]
pub mod stdio;
#[cfg(feature = "stdio")]
#[cfg_attr(docsrs, doc(cfg(feature = "stdio")))]
pub mod stdio_server;
pub mod subscriptions;
pub mod tasks;
pub mod timeout;
pub mod trace;

pub use crate::error::{TransportError, TransportErrorKind};
pub use crate::principal::Principal;
pub use crate::protocol::ProtocolVersion;
pub use crate::server::McpServer;
pub use crate::service::{
    MakeMcpService, McpService, NotificationContext, Peer, RequestContext, SendError,
    SessionContext,
};
pub use crate::stack::{McpHttpService, McpStack};

/// A type-erased error, as tower and tower-http use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
