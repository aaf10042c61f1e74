//! The 2026-07-28 revision on the same endpoint as the 2025 ones: era decision and `_meta`.
//!
//! 2026-07-28 ("modern") is sessionless: every request carries its protocol revision and the
//! client's capabilities in `params._meta`, and `server/discover` replaces `initialize`.
//! [`ModernLayer`] decides per request which era it belongs to ([`classify`], the body's claim
//! first, the `MCP-Protocol-Version` header only as a hint), validates a modern request's
//! `_meta` and places a [`RequestMeta`] and [`ProtocolVersion::V2026_07_28`] in the request
//! extensions. Legacy requests pass untouched to the session layer; modern ones never touch
//! `Mcp-Session-Id` (it is ignored, never minted).
//!
//! | request | answer |
//! |---|---|
//! | non-POST, posted response, `initialize` without a claim, no claim and a 2025 (or no) header | legacy: passed on unchanged |
//! | `initialize` without a claim but with a 2026-07-28 header | 400 `-32020` |
//! | a batch with a claim in any element | 400 `-32600` |
//! | a request whose `_meta` lacks `protocolVersion` or `clientCapabilities`, or has a bad `logLevel` | 400 `-32602` |
//! | a claim of a revision not served | 400 `-32022`, `data: {supported, requested}` |
//! | modern notification | passed on (the endpoint answers 202) |
//!
//! The routing headers (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`, and the header's agreement
//! with the claim) are checked by [`RoutingHeadersLayer`](crate::routing_headers::RoutingHeadersLayer),
//! which goes outside this layer so that a header/body disagreement is reported first.
//!
//! The layer reads the parsed body, so it runs inside
//! [`JsonRpcBodyLayer`](crate::jsonrpc_body::JsonRpcBodyLayer).
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::jsonrpc_body::{JsonRpcBodyLayer, ParsedBody};
//! use mcp_tower_http::modern::{ModernLayer, RequestMeta};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use std::{convert::Infallible, sync::Arc};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(JsonRpcBodyLayer::new())
//!     .layer(ModernLayer::new())
//!     .service_fn(|req: Request<ParsedBody>| async move {
//!         let modern = req.extensions().get::<Arc<RequestMeta>>().is_some();
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(format!("{modern}"))))
//!     });
//!
//! // A claim of an unknown revision is refused with -32022.
//! let request = Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .body(Full::<Bytes>::from(
//!         r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{
//!             "io.modelcontextprotocol/protocolVersion":"2099-01-01",
//!             "io.modelcontextprotocol/clientCapabilities":{}}}}"#,
//!     ))
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::BAD_REQUEST);
//! # }
//! ```

use crate::error::{TransportError, TransportErrorKind};
use crate::future::ResponseFuture;
use crate::jsonrpc::{Message, Payload};
use crate::jsonrpc_body::ParsedBody;
use crate::protocol::{LogLevel, ProtocolVersion};
use crate::session::MCP_PROTOCOL_VERSION;
use http::{HeaderMap, Method, Request, Response};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// `_meta` key of the request's protocol revision.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client's capabilities.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the client's name and version.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key of the minimum log level the client wants on this request's stream.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// Result `_meta` key of the server's name and version.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// Notification `_meta` key tagging messages of a `subscriptions/listen` stream.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Which protocol era a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// 2025 revisions: `initialize`, sessions, the GET stream, legacy HTTP+SSE.
    Legacy,
    /// 2026-07-28 and later: sessionless, per-request `_meta`.
    Modern,
}

/// What a 2026-07-28 request says about its client, from `params._meta`. In the 2025 eras the
/// same facts come from the session's `initialize`.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestMeta {
    /// The revision the request claims.
    pub protocol_version: ProtocolVersion,
    /// The client's capabilities (`{}` when it declared none).
    pub client_capabilities: Value,
    /// The client's `{name, version}`, if it sent one.
    pub client_info: Option<Value>,
    /// The minimum level of `notifications/message` the client wants; `None`: no log messages.
    pub log_level: Option<LogLevel>,
}

impl RequestMeta {
    /// `true` when the client declared capability `name` (e.g. `"sampling"`).
    pub fn has_capability(&self, name: &str) -> bool {
        self.client_capabilities
            .get(name)
            .is_some_and(|c| !c.is_null())
    }
}

fn claim(params: Option<&Value>) -> Option<&Value> {
    params?.get("_meta")?.get(META_PROTOCOL_VERSION)
}

/// `true` when the `MCP-Protocol-Version` header names a revision of 2026-07-28 or later.
/// Revisions are `YYYY-MM-DD` dates, so string order is date order; anything else (`latest`) is
/// no hint at all and stays with the session layer, which refuses unknown revisions.
fn modern_header(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let value = value.trim();
    let is_date = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    is_date && value >= ProtocolVersion::V2026_07_28.as_str()
}

/// Decides the era of a request from its method, headers and parsed body (reference: the TS SDK's
/// `classifyInboundRequest`). The body's `_meta` claim decides; the header alone makes a
/// claim-less POST modern only from 2026-07-28 on. Errors are requests that are neither.
pub fn classify(
    method: &Method,
    headers: &HeaderMap,
    payload: Option<&Payload>,
) -> Result<Era, TransportError> {
    if method != Method::POST {
        return Ok(Era::Legacy);
    }
    let Some(payload) = payload else {
        return Ok(Era::Legacy);
    };
    let message = match payload {
        Payload::Batch(messages) => {
            let claimed = messages.iter().any(|m| match m {
                Message::Request(r) => claim(r.params.as_ref()).is_some(),
                Message::Notification(n) => claim(n.params.as_ref()).is_some(),
                _ => false,
            });
            if claimed {
                return Err(TransportError::new(TransportErrorKind::InvalidRequest)
                    .with_message("Invalid Request: 2026-07-28 requests cannot be batched")
                    .with_id(payload.first_request_id().cloned()));
            }
            return Ok(Era::Legacy);
        }
        Payload::Single(message) => message,
    };
    let (params, is_initialize) = match message {
        Message::Request(r) => (r.params.as_ref(), r.method == "initialize"),
        Message::Notification(n) => (n.params.as_ref(), false),
        Message::Response(_) | Message::Error(_) => return Ok(Era::Legacy),
    };
    if claim(params).is_some() {
        return Ok(Era::Modern);
    }
    if !modern_header(headers) {
        return Ok(Era::Legacy);
    }
    if is_initialize {
        return Err(TransportError::new(TransportErrorKind::HeaderMismatch)
            .with_message("Header mismatch: initialize is not part of protocol 2026-07-28")
            .with_id(message.id().cloned()));
    }
    Ok(Era::Modern)
}

/// Reads and validates a modern request's `_meta`.
fn request_meta(params: Option<&Value>) -> Result<RequestMeta, TransportError> {
    let invalid = |what: &str| {
        TransportError::new(TransportErrorKind::InvalidParams).with_message(format!(
            "Invalid params: {what} (2026-07-28 requests carry params._meta with \
             {META_PROTOCOL_VERSION} and {META_CLIENT_CAPABILITIES})"
        ))
    };
    let meta: &Map<String, Value> = params
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("missing _meta"))?;
    let requested = meta
        .get(META_PROTOCOL_VERSION)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("missing or invalid protocolVersion"))?;
    let capabilities = meta
        .get(META_CLIENT_CAPABILITIES)
        .filter(|c| c.is_object())
        .ok_or_else(|| invalid("missing or invalid clientCapabilities"))?;
    let log_level = match meta.get(META_LOG_LEVEL) {
        None | Some(Value::Null) => None,
        Some(level) => Some(
            level
                .as_str()
                .and_then(LogLevel::parse)
                .ok_or_else(|| invalid("unknown logLevel"))?,
        ),
    };
    let Some(protocol_version) = ProtocolVersion::parse_sessionless(requested) else {
        return Err(TransportError::unsupported_version(requested));
    };
    Ok(RequestMeta {
        protocol_version,
        client_capabilities: capabilities.clone(),
        client_info: meta.get(META_CLIENT_INFO).cloned(),
        log_level,
    })
}

/// Decides each request's era and validates 2026-07-28 `_meta`; see the
/// [module docs](crate::modern).
#[derive(Clone, Copy, Debug)]
pub struct ModernLayer {
    enabled: bool,
}

impl Default for ModernLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ModernLayer {
    /// Serves 2026-07-28 beside the 2025 revisions.
    pub fn new() -> Self {
        Self { enabled: true }
    }

    /// Passes every request on as legacy: 2026-07-28 requests then meet the session layer, which
    /// refuses them as it refuses any unknown revision (400 `-32000`), so dual-era clients fall
    /// back to `initialize`.
    pub fn disabled() -> Self {
        Self { enabled: false }
    }

    /// Whether 2026-07-28 requests are served.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
}

impl<S> Layer<S> for ModernLayer {
    type Service = Modern<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Modern {
            inner,
            enabled: self.enabled,
        }
    }
}

/// The service made by [`ModernLayer`].
#[derive(Clone, Debug)]
pub struct Modern<S> {
    inner: S,
    enabled: bool,
}

impl<S> Modern<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, ResBody> Service<Request<ParsedBody>> for Modern<S>
where
    S: Service<Request<ParsedBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ParsedBody>) -> Self::Future {
        if !self.enabled {
            return ResponseFuture::inner(self.inner.call(req));
        }
        let payload = req.extensions().get::<Payload>();
        match classify(req.method(), req.headers(), payload) {
            Err(e) => return ResponseFuture::reject(e.into_response()),
            Ok(Era::Legacy) => return ResponseFuture::inner(self.inner.call(req)),
            Ok(Era::Modern) => {}
        }
        let message = payload.and_then(|p| p.messages().first());
        let (params, id) = match message {
            Some(Message::Request(r)) => (r.params.as_ref(), Some(r.id.clone())),
            Some(Message::Notification(n)) => (n.params.as_ref(), None),
            _ => (None, None),
        };
        let meta = match request_meta(params) {
            Ok(meta) => meta,
            // A notification has nobody to tell; it is accepted and ignored below.
            Err(_) if id.is_none() => RequestMeta {
                protocol_version: ProtocolVersion::V2026_07_28,
                client_capabilities: Value::Object(Map::new()),
                client_info: None,
                log_level: None,
            },
            Err(e) => return ResponseFuture::reject(e.with_id(id).into_response()),
        };
        req.extensions_mut().insert(meta.protocol_version);
        req.extensions_mut().insert(Arc::new(meta));
        ResponseFuture::inner(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(version: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(v) = version {
            headers.insert(MCP_PROTOCOL_VERSION, v.parse().unwrap());
        }
        headers
    }

    fn payload(value: Value) -> Payload {
        Payload::parse(value.to_string().as_bytes()).unwrap()
    }

    fn meta(version: &str) -> Value {
        json!({ META_PROTOCOL_VERSION: version, META_CLIENT_CAPABILITIES: {} })
    }

    #[test]
    fn the_body_claim_decides_and_the_header_is_only_a_hint() {
        let post = Method::POST;
        let claimed = payload(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta": meta("2026-07-28")}}),
        );
        // A claim is modern whatever the header says, even an unserved revision.
        assert_eq!(
            classify(&post, &headers(None), Some(&claimed)),
            Ok(Era::Modern)
        );
        assert_eq!(
            classify(&post, &headers(Some("2025-06-18")), Some(&claimed)),
            Ok(Era::Modern)
        );
        let plain = payload(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}));
        assert_eq!(
            classify(&post, &headers(Some("2025-11-25")), Some(&plain)),
            Ok(Era::Legacy)
        );
        assert_eq!(
            classify(&post, &headers(None), Some(&plain)),
            Ok(Era::Legacy)
        );
        assert_eq!(
            classify(&post, &headers(Some("2026-07-28")), Some(&plain)),
            Ok(Era::Modern)
        );
        assert_eq!(
            classify(&post, &headers(Some("2027-01-01")), Some(&plain)),
            Ok(Era::Modern)
        );
        // Not a revision: no hint.
        assert_eq!(
            classify(&post, &headers(Some("latest")), Some(&plain)),
            Ok(Era::Legacy)
        );
        // Never on GET or DELETE, and never for a posted response.
        assert_eq!(
            classify(&Method::GET, &headers(Some("2026-07-28")), None),
            Ok(Era::Legacy)
        );
        let response = payload(json!({"jsonrpc":"2.0","id":1,"result":{}}));
        assert_eq!(
            classify(&post, &headers(Some("2026-07-28")), Some(&response)),
            Ok(Era::Legacy)
        );
    }

    #[test]
    fn initialize_and_batches() {
        let post = Method::POST;
        let init = payload(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}));
        assert_eq!(
            classify(&post, &headers(Some("2025-11-25")), Some(&init)),
            Ok(Era::Legacy)
        );
        let e = classify(&post, &headers(Some("2026-07-28")), Some(&init)).unwrap_err();
        assert_eq!(e.kind(), TransportErrorKind::HeaderMismatch);
        let batch = payload(json!([
            {"jsonrpc":"2.0","id":1,"method":"ping"},
            {"jsonrpc":"2.0","id":2,"method":"ping","params":{"_meta": meta("2026-07-28")}}
        ]));
        let e = classify(&post, &headers(None), Some(&batch)).unwrap_err();
        assert_eq!(e.kind(), TransportErrorKind::InvalidRequest);
        let plain = payload(json!([{"jsonrpc":"2.0","id":1,"method":"ping"}]));
        assert_eq!(
            classify(&post, &headers(None), Some(&plain)),
            Ok(Era::Legacy)
        );
    }

    #[test]
    fn meta_validation() {
        let ok = request_meta(Some(&json!({"_meta": {
            META_PROTOCOL_VERSION: "2026-07-28",
            META_CLIENT_CAPABILITIES: {"sampling": {}},
            META_LOG_LEVEL: "warning",
        }})))
        .unwrap();
        assert!(ok.has_capability("sampling"));
        assert!(!ok.has_capability("elicitation"));
        assert_eq!(ok.log_level, Some(LogLevel::Warning));
        assert_eq!(ok.client_info, None);
        for bad in [
            json!({}),
            json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28"}}),
            json!({"_meta": {META_CLIENT_CAPABILITIES: {}}}),
            json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: []}}),
            json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: {}, META_LOG_LEVEL: "loud"}}),
        ] {
            assert_eq!(
                request_meta(Some(&bad)).unwrap_err().kind(),
                TransportErrorKind::InvalidParams,
                "{bad}"
            );
        }
        let e = request_meta(Some(&json!({"_meta": meta("v999")}))).unwrap_err();
        assert_eq!(e.kind(), TransportErrorKind::UnsupportedVersion);
        let body = e.to_message().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], -32022);
        assert_eq!(body["error"]["data"]["requested"], "v999");
        assert_eq!(body["error"]["data"]["supported"], json!(["2026-07-28"]));
    }
}
