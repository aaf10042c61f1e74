//! Session routing for Streamable HTTP: `Mcp-Session-Id` minting, lookup, termination and expiry.
//!
//! [`SessionLayer`] mints a session id on a successful `initialize`, routes later requests by
//! their `Mcp-Session-Id` header, answers `DELETE`, validates `MCP-Protocol-Version` and enforces
//! the batch rule of the negotiated revision. It places the [`Session`] and the request's
//! [`ProtocolVersion`](crate::ProtocolVersion) in the request extensions for the layers and the endpoint below.
//!
//! | request | answer |
//! |---|---|
//! | POST `initialize`, no session header | a new session; `Mcp-Session-Id` on the response if it succeeds |
//! | POST/GET, no header | 400 `-32000` |
//! | any, unknown / ended / other principal's id | 404 `-32001` |
//! | DELETE with a live id | 200, the session ends; then 404 |
//! | `MCP-Protocol-Version` unsupported | 400 `-32000` listing the supported revisions |
//! | session limit reached | 503 + `Retry-After` |
//! | stateless mode, GET / DELETE | 405 `Allow: POST` |
//!
//! Sessions idle for longer than the idle timeout (default 30 min) are closed by a background
//! sweep, except while a stream or request is attached to them. A session whose client sends
//! nothing after the `initialize` answer ends after the shorter handshake timeout (default 60 s).
//!
//! The layer reads the parsed body from the request extensions, so it runs inside
//! [`JsonRpcBodyLayer`](crate::jsonrpc_body::JsonRpcBodyLayer).
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::jsonrpc_body::{JsonRpcBodyLayer, ParsedBody};
//! use mcp_tower_http::session::{Session, SessionLayer};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use std::{convert::Infallible, sync::Arc, time::Duration};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(JsonRpcBodyLayer::new())
//!     .layer(SessionLayer::new().idle_timeout(Duration::from_secs(600)))
//!     .service_fn(|req: Request<ParsedBody>| async move {
//!         // The endpoint below sees the session the request belongs to.
//!         let has_session = req.extensions().get::<Arc<Session>>().is_some();
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(format!("{has_session}"))))
//!     });
//!
//! // A request without `Mcp-Session-Id` that is not `initialize` is refused.
//! let request = Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .body(Full::<Bytes>::from(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#))
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::BAD_REQUEST);
//! # }
//! ```

mod future;
mod layer;
mod registry;

pub use self::future::ResponseFuture;
#[cfg(any(feature = "legacy-sse", feature = "redis"))]
pub(crate) use self::layer::DEFAULT_RETRY_AFTER_SECS;
#[cfg(feature = "redis")]
pub(crate) use self::layer::was_looked_up;
pub use self::layer::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, LookupFuture, SessionLayer, SessionLookup,
    SessionLookupLayer, SessionService,
};
pub(crate) use self::registry::AttachGuard;
pub use self::registry::{Session, SessionCloser, SessionId, SessionLimit, SessionRegistry};

/// The session header, as MCP names it (header names are case-insensitive).
pub const MCP_SESSION_ID: http::HeaderName = http::HeaderName::from_static("mcp-session-id");

/// The protocol revision header.
pub const MCP_PROTOCOL_VERSION: http::HeaderName =
    http::HeaderName::from_static("mcp-protocol-version");

#[cfg(test)]
mod tests;
