//! 2026-07-28 routing headers: `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`.
//!
//! A 2026-07-28 request repeats what a gateway needs for routing in HTTP headers, so the gateway
//! need not parse the body. A server that does read the body MUST cross-check them; this layer
//! does, and a gateway can use it alone (after
//! [`JsonRpcBodyLayer`](crate::jsonrpc_body::JsonRpcBodyLayer)). Requests of the 2025 eras pass
//! untouched ([`crate::modern::classify`] decides).
//!
//! Checked in this order, every failure answered with HTTP 400 and JSON-RPC `-32020` echoing the
//! request id:
//!
//! | header | rule |
//! |---|---|
//! | `MCP-Protocol-Version` | present; equal to `params._meta["io.modelcontextprotocol/protocolVersion"]` |
//! | `Mcp-Method` | present; equal to the body's `method` (case-sensitive) |
//! | `Mcp-Name` | for `tools/call` and `prompts/get` equal to `params.name`, for `resources/read` to `params.uri`, for `tasks/get`, `tasks/update` and `tasks/cancel` to `params.taskId`; required when the body has the value |
//! | `Mcp-Param-{X}` | for a `tools/call` argument whose schema property has `"x-mcp-header": "X"`: equal to the argument (strings exactly, integers numerically, booleans as `true`/`false`); required when the argument is present |
//!
//! Header names are case-insensitive; surrounding whitespace is ignored; a value written
//! `=?base64?…?=` is decoded (strict padding and alphabet) before comparing, and a value with
//! only the prefix or only the suffix is literal text. A routing header sent twice is refused.
//!
//! `Mcp-Param-*` rules come from the tools' input schemas, which the layer learns from
//! `tools/list` results through a shared [`ToolHeaders`] table: in [`McpStack`](crate::McpStack)
//! the endpoint feeds it every `tools/list` answer it gives; a gateway feeds it what it sees or
//! configures it. Arguments of tools it has not learned are not checked.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::jsonrpc_body::{JsonRpcBodyLayer, ParsedBody};
//! use mcp_tower_http::routing_headers::RoutingHeadersLayer;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(JsonRpcBodyLayer::new())
//!     .layer(RoutingHeadersLayer::new())
//!     .service_fn(|_req: Request<ParsedBody>| async {
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
//!     });
//!
//! let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{
//!     "io.modelcontextprotocol/protocolVersion":"2026-07-28",
//!     "io.modelcontextprotocol/clientCapabilities":{}}}}"#;
//! // `Mcp-Method` disagrees with the body: 400.
//! let request = Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .header("mcp-protocol-version", "2026-07-28")
//!     .header("mcp-method", "prompts/list")
//!     .body(Full::<Bytes>::from(body))
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::BAD_REQUEST);
//! # }
//! ```

use crate::error::{TransportError, TransportErrorKind};
use crate::future::ResponseFuture;
use crate::jsonrpc::{Message, Payload};
use crate::jsonrpc_body::ParsedBody;
use crate::modern::{Era, META_PROTOCOL_VERSION, classify};
use crate::protocol::ProtocolVersion;
use crate::session::MCP_PROTOCOL_VERSION;
use base64::Engine;
use http::{HeaderMap, HeaderName, Request, Response};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The `Mcp-Method` header.
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// The `Mcp-Name` header.
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// The prefix of `Mcp-Param-{X}` headers (lower case, as `http` stores names).
pub const MCP_PARAM_PREFIX: &str = "mcp-param-";

/// How many tools a [`ToolHeaders`] table remembers: an upstream listing more cannot make it grow
/// further (the rest are not checked).
const MAX_TOOLS: usize = 10_000;

/// The JSON type of an `x-mcp-header` argument, which decides how its header compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParamType {
    String,
    Integer,
    Boolean,
}

/// One `x-mcp-header` annotation of a tool's input schema.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ParamHeader {
    /// The argument name (a top-level property of the input schema).
    argument: String,
    /// The full header name, lower case: `mcp-param-{x}`.
    header: HeaderName,
    kind: ParamType,
}

/// The `x-mcp-header` annotations of known tools, shared between the layer and whoever learns
/// the tools (cloning shares the table).
#[derive(Clone, Debug, Default)]
pub struct ToolHeaders {
    tools: Arc<RwLock<HashMap<String, Arc<[ParamHeader]>>>>,
}

impl ToolHeaders {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns the annotations of every tool in a `tools/list` result (`{"tools": [...]}`),
    /// replacing what was known of those tools.
    pub fn learn_tools_list(&self, result: &Value) {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return;
        };
        let mut learned = Vec::with_capacity(tools.len());
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            learned.push((name.to_owned(), param_headers(tool)));
        }
        let mut table = crate::sync::write(&self.tools);
        for (name, params) in learned {
            if table.len() >= MAX_TOOLS && !table.contains_key(&name) {
                break;
            }
            table.insert(name, params);
        }
    }

    fn get(&self, tool: &str) -> Option<Arc<[ParamHeader]>> {
        crate::sync::read(&self.tools).get(tool).cloned()
    }

    /// The number of tools known.
    pub fn len(&self) -> usize {
        crate::sync::read(&self.tools).len()
    }

    /// `true` when no tool is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The annotated top-level properties of a tool's `inputSchema`.
fn param_headers(tool: &Value) -> Arc<[ParamHeader]> {
    let Some(properties) = tool
        .get("inputSchema")
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    else {
        return Arc::from([]);
    };
    properties
        .iter()
        .filter_map(|(argument, schema)| {
            let suffix = schema.get("x-mcp-header")?.as_str()?;
            let kind = match schema.get("type").and_then(Value::as_str) {
                Some("integer") => ParamType::Integer,
                Some("boolean") => ParamType::Boolean,
                _ => ParamType::String,
            };
            let header =
                HeaderName::from_bytes(format!("{MCP_PARAM_PREFIX}{suffix}").as_bytes()).ok()?;
            Some(ParamHeader {
                argument: argument.clone(),
                header,
                kind,
            })
        })
        .collect()
}

/// Validates routing headers of 2026-07-28 requests; see the [module docs](crate::routing_headers).
#[derive(Clone, Debug)]
pub struct RoutingHeadersLayer {
    tools: ToolHeaders,
    enabled: bool,
}

impl Default for RoutingHeadersLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RoutingHeadersLayer {
    /// A layer with its own, empty [`ToolHeaders`] table.
    pub fn new() -> Self {
        Self {
            tools: ToolHeaders::new(),
            enabled: true,
        }
    }

    /// A layer that checks nothing (for a stack serving only the 2025 revisions).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }

    /// Checks `Mcp-Param-*` headers against `tools` (share it with whoever learns the tools).
    pub fn tool_headers(mut self, tools: ToolHeaders) -> Self {
        self.tools = tools;
        self
    }

    /// The table of learned tool annotations.
    pub fn tools(&self) -> &ToolHeaders {
        &self.tools
    }
}

impl<S> Layer<S> for RoutingHeadersLayer {
    type Service = RoutingHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RoutingHeaders {
            inner,
            tools: self.tools.clone(),
            enabled: self.enabled,
        }
    }
}

/// The service made by [`RoutingHeadersLayer`].
#[derive(Clone, Debug)]
pub struct RoutingHeaders<S> {
    inner: S,
    tools: ToolHeaders,
    enabled: bool,
}

impl<S> RoutingHeaders<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, ResBody> Service<Request<ParsedBody>> for RoutingHeaders<S>
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
        // Requests that are not modern, or not a request at all, are not this layer's business
        // (classification errors are the era layer's to report).
        if let (Ok(Era::Modern), Some(Payload::Single(Message::Request(request)))) =
            (classify(req.method(), req.headers(), payload), payload)
        {
            match check(req.headers(), request, &self.tools) {
                Err(e) => {
                    return ResponseFuture::reject(
                        e.with_id(Some(request.id.clone())).into_response(),
                    );
                }
                Ok(Checked::ParamsOfUnknownTool) => {
                    req.extensions_mut().insert(UncheckedParams);
                }
                Ok(Checked::All) => {}
            }
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}

fn mismatch(message: String) -> TransportError {
    TransportError::new(TransportErrorKind::HeaderMismatch)
        .with_message(format!("Header mismatch: {message}"))
}

/// The one value of a routing header, trimmed; `Ok(None)` when absent. Sent twice, or not
/// visible ASCII / UTF-8, is an error.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a str>, TransportError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(mismatch(format!("{name} is sent more than once")));
    }
    let value = std::str::from_utf8(value.as_bytes())
        .map_err(|_| mismatch(format!("{name} is not UTF-8")))?;
    Ok(Some(value.trim_matches([' ', '\t'])))
}

/// Decodes `=?base64?…?=` (strict padding and alphabet); anything else is literal.
fn decode<'a>(name: &HeaderName, value: &'a str) -> Result<Cow<'a, str>, TransportError> {
    let Some(encoded) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Ok(Cow::Borrowed(value));
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(Cow::Owned)
        .ok_or_else(|| mismatch(format!("{name} is not valid base64")))
}

/// A header that must carry `expected` when the body has a value.
fn expect_header(
    headers: &HeaderMap,
    name: &HeaderName,
    expected: &Value,
    kind: ParamType,
) -> Result<(), TransportError> {
    if expected.is_null() {
        return Ok(());
    }
    let Some(raw) = single(headers, name)? else {
        return Err(mismatch(format!("{name} is required for this request")));
    };
    let value = decode(name, raw)?;
    let equal = match (kind, expected) {
        (ParamType::String, Value::String(s)) => *value == **s,
        (ParamType::Integer, Value::Number(n)) => match (value.parse::<i64>(), n.as_i64()) {
            (Ok(h), Some(b)) => h == b,
            _ => value.parse::<f64>().ok() == n.as_f64(),
        },
        (ParamType::Boolean, Value::Bool(b)) => *value == *if *b { "true" } else { "false" },
        // The body's value is not of the annotated type: compare its JSON text.
        (_, other) => serde_json::to_string(other).is_ok_and(|json| *json == *value),
    };
    if equal {
        Ok(())
    } else {
        Err(mismatch(format!("{name} does not match the body")))
    }
}

/// Placed in the request extensions when a `tools/call` names a tool whose `x-mcp-header`
/// annotations are not known yet: whoever learns them (the endpoint, after describing the
/// server) checks the `Mcp-Param-*` headers with [`check_params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UncheckedParams;

/// What [`check`] could check.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    All,
    ParamsOfUnknownTool,
}

fn check(
    headers: &HeaderMap,
    request: &crate::jsonrpc::Request,
    tools: &ToolHeaders,
) -> Result<Checked, TransportError> {
    let params = request.params.as_ref();
    let Some(version) = single(headers, &MCP_PROTOCOL_VERSION)? else {
        return Err(mismatch("MCP-Protocol-Version is required".into()));
    };
    if let Some(claimed) = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str)
    {
        if claimed != version {
            return Err(mismatch(
                "MCP-Protocol-Version does not match the request's _meta protocolVersion".into(),
            ));
        }
        // An unserved revision is reported (-32022) before the other headers are looked at.
        if ProtocolVersion::parse_sessionless(claimed).is_none() {
            return Ok(Checked::All);
        }
    }
    match single(headers, &MCP_METHOD)? {
        None => return Err(mismatch("Mcp-Method is required".into())),
        Some(method) if method != request.method => {
            return Err(mismatch(
                "Mcp-Method does not match the body's method".into(),
            ));
        }
        Some(_) => {}
    }
    let name_field = match request.method.as_str() {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        // The tasks extension: the task id, so that a balancer can route to the task's instance.
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return Ok(Checked::All),
    };
    let name = params
        .and_then(|p| p.get(name_field))
        .unwrap_or(&Value::Null);
    expect_header(headers, &MCP_NAME, name, ParamType::String)?;
    if request.method != "tools/call" {
        return Ok(Checked::All);
    }
    match check_params(headers, request, tools)? {
        true => Ok(Checked::All),
        false => Ok(Checked::ParamsOfUnknownTool),
    }
}

/// Checks the `Mcp-Param-*` headers of a `tools/call` against the tool's annotations in `tools`;
/// `Ok(false)` when the tool is not known there (nothing checked).
pub fn check_params(
    headers: &HeaderMap,
    request: &crate::jsonrpc::Request,
    tools: &ToolHeaders,
) -> Result<bool, TransportError> {
    let params = request.params.as_ref();
    let Some(tool) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
        return Ok(true);
    };
    let Some(annotations) = tools.get(tool) else {
        return Ok(false);
    };
    let null = Value::Null;
    let arguments = params.and_then(|p| p.get("arguments")).unwrap_or(&null);
    for param in annotations.iter() {
        let value = arguments.get(&param.argument).unwrap_or(&null);
        expect_header(headers, &param.header, value, param.kind)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::Id;
    use serde_json::json;

    fn request(method: &str, params: Value) -> crate::jsonrpc::Request {
        crate::jsonrpc::Request {
            id: Id::Number(1),
            method: method.into(),
            params: Some(params),
        }
    }

    fn meta() -> Value {
        json!({ META_PROTOCOL_VERSION: "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} })
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn tools() -> ToolHeaders {
        let t = ToolHeaders::new();
        t.learn_tools_list(&json!({"tools": [{
            "name": "weather",
            "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "days": {"type": "integer", "x-mcp-header": "Days"},
                "metric": {"type": "boolean", "x-mcp-header": "Metric"},
                "note": {"type": "string"}
            }}
        }]}));
        t
    }

    fn call(args: Value) -> crate::jsonrpc::Request {
        request(
            "tools/call",
            json!({"name": "weather", "arguments": args, "_meta": meta()}),
        )
    }

    const BASE: [(&str, &str); 3] = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "weather"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut all: Vec<(&str, &str)> = BASE.to_vec();
        all.extend_from_slice(extra);
        headers(&all)
    }

    #[test]
    fn standard_headers() {
        let list = request("tools/list", json!({"_meta": meta()}));
        let ok = headers(&[
            ("mcp-protocol-version", " 2026-07-28 "),
            ("MCP-METHOD", "tools/list"),
        ]);
        assert!(check(&ok, &list, &ToolHeaders::new()).is_ok());
        for bad in [
            headers(&[("mcp-method", "tools/list")]),
            headers(&[
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-method", "tools/list"),
            ]),
            headers(&[("mcp-protocol-version", "2026-07-28")]),
            headers(&[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "TOOLS/LIST"),
            ]),
            headers(&[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
                ("mcp-method", "tools/list"),
            ]),
        ] {
            let e = check(&bad, &list, &ToolHeaders::new()).unwrap_err();
            assert_eq!(e.kind(), TransportErrorKind::HeaderMismatch, "{bad:?}");
        }
    }

    #[test]
    fn name_header() {
        let t = ToolHeaders::new();
        assert!(check(&with(&[]), &call(json!({})), &t).is_ok());
        let wrong = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "other"),
        ]);
        assert!(check(&wrong, &call(json!({})), &t).is_err());
        let missing = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ]);
        assert!(check(&missing, &call(json!({})), &t).is_err());
        let read = request(
            "resources/read",
            json!({"uri": "test://x", "_meta": meta()}),
        );
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "resources/read"),
            ("mcp-name", "=?base64?dGVzdDovL3g=?="),
        ]);
        assert!(check(&h, &read, &t).is_ok());
    }

    #[test]
    fn param_headers_compare_by_type_and_decode_base64() {
        let t = tools();
        let args = json!({"region": "Hello", "days": 3, "metric": true, "note": "x"});
        let good = with(&[
            ("mcp-param-region", "=?base64?SGVsbG8=?="),
            ("Mcp-Param-Days", "03"),
            ("mcp-param-metric", "true"),
        ]);
        assert!(check(&good, &call(args.clone()), &t).is_ok());
        for (header, value) in [
            ("mcp-param-region", "=?base64?SGVsbG8?="),
            ("mcp-param-region", "=?base64?SGVs!!!bG8=?="),
            ("mcp-param-region", "=?base64?SGVsbG8="),
            ("mcp-param-region", "hello"),
        ] {
            let h = with(&[
                (header, value),
                ("mcp-param-days", "3"),
                ("mcp-param-metric", "true"),
            ]);
            assert!(check(&h, &call(args.clone()), &t).is_err(), "{value}");
        }
        // Literal text that merely looks like an encoding.
        let literal = json!({"region": "=?base64?SGVsbG8="});
        let h = with(&[("mcp-param-region", "=?base64?SGVsbG8=")]);
        assert!(check(&h, &call(literal), &t).is_ok());
        // Required when the argument is present, not expected when it is absent.
        assert!(check(&with(&[]), &call(json!({"region": "x"})), &t).is_err());
        assert!(check(&with(&[]), &call(json!({"note": "x"})), &t).is_ok());
    }

    #[test]
    fn the_table_is_bounded() {
        let t = ToolHeaders::new();
        let tools: Vec<Value> = (0..MAX_TOOLS + 5)
            .map(|i| json!({"name": format!("t{i}")}))
            .collect();
        t.learn_tools_list(&json!({ "tools": tools }));
        assert_eq!(t.len(), MAX_TOOLS);
    }
}

/// Property tests of the routing-header parsers (issue 9): any header value is answered with
/// `Ok` or a `-32020` rejection, never a panic; a value sent `=?base64?…?=`-encoded compares
/// equal to the body's; anything else the body does not hold is refused.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::jsonrpc::Id;
    use base64::Engine;
    use proptest::prelude::*;
    use serde_json::json;

    fn call(region: &str) -> crate::jsonrpc::Request {
        crate::jsonrpc::Request {
            id: Id::Number(1),
            method: "tools/call".into(),
            params: Some(json!({
                "name": "weather",
                "arguments": { "region": region },
                "_meta": { META_PROTOCOL_VERSION: "2026-07-28" },
            })),
        }
    }

    fn tools() -> ToolHeaders {
        let t = ToolHeaders::new();
        t.learn_tools_list(
            &json!({"tools": [{"name": "weather", "inputSchema": {"properties": {
            "region": {"type": "string", "x-mcp-header": "Region"}}}}]}),
        );
        t
    }

    fn headers(name: &str, region: &[u8]) -> Option<HeaderMap> {
        let mut h = HeaderMap::new();
        h.insert(
            MCP_PROTOCOL_VERSION,
            http::HeaderValue::from_static("2026-07-28"),
        );
        h.insert(MCP_METHOD, http::HeaderValue::from_static("tools/call"));
        h.insert(MCP_NAME, http::HeaderValue::from_str(name).ok()?);
        h.insert(
            HeaderName::from_static("mcp-param-region"),
            http::HeaderValue::from_bytes(region).ok()?,
        );
        Some(h)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_header_value_is_ok_or_a_header_mismatch(
            value in prop::collection::vec(any::<u8>(), 0..80),
            region in "\\PC{0,20}",
        ) {
            if let Some(h) = headers("weather", &value) {
                match check(&h, &call(&region), &tools()) {
                    Ok(_) => {}
                    Err(e) => prop_assert_eq!(e.kind(), TransportErrorKind::HeaderMismatch),
                }
            }
        }

        #[test]
        fn an_encoded_value_matches_the_body_and_a_different_one_does_not(
            region in "\\PC{0,40}",
            other in "\\PC{0,40}",
        ) {
            let encoded = format!(
                "=?base64?{}?=",
                base64::engine::general_purpose::STANDARD.encode(region.as_bytes())
            );
            let h = headers("weather", encoded.as_bytes());
            prop_assert!(h.is_some());
            if let Some(h) = h {
                prop_assert!(check(&h, &call(&region), &tools()).is_ok());
                if other != region {
                    prop_assert!(check(&h, &call(&other), &tools()).is_err());
                }
            }
        }
    }
}
