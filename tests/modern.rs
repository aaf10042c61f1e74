//! MCP 2026-07-28 ("modern", sessionless) over real loopback sockets, beside the 2025 revisions
//! on one endpoint: every row of the validation table of `mcp-2026-07-28.md` §1 (status, content
//! type, JSON-RPC code, the request id echoed), `server/discover` and result stamping, sealed
//! `requestState` (round trips, tampering, replay, other principals, expiry), `subscriptions/listen`
//! (acknowledgement, filtering, tags, the bound), per-request log levels, cancellation by closing
//! the response stream, and `.modern(false)`.

mod common;

use common::*;
use http::{HeaderMap, Method, StatusCode};
use hyper::body::Incoming;
use mcp_tower_http::auth::ApiKeys;
use mcp_tower_http::jsonrpc::{ErrorObject, Request};
use mcp_tower_http::{McpService, McpStack, RequestContext, SessionContext};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const V: &str = "2026-07-28";
const LATEST: &str = "2025-11-25";
const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
const KEY: &str = "key-0-6f1c2b9a5e";
const KEY2: &str = "key-1-a83d77e0c4";

type Exchange = (StatusCode, HeaderMap, String);
type Headers = Vec<(String, String)>;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `_meta` of a 2026-07-28 request declaring `capabilities`.
fn meta(capabilities: Value) -> Value {
    json!({
        PROTOCOL_VERSION: V,
        CLIENT_CAPABILITIES: capabilities,
        CLIENT_INFO: { "name": "modern-socket-test", "version": "0" },
    })
}

/// A 2026-07-28 request; `params` gets a `_meta` (no capabilities) unless it has one.
fn rpc(id: impl Into<Value>, method: &str, mut params: Value) -> Value {
    if params.get("_meta").is_none() {
        params["_meta"] = meta(json!({}));
    }
    json!({ "jsonrpc": "2.0", "id": id.into(), "method": method, "params": params })
}

/// `tools/call` params.
fn tool(name: &str, arguments: Value) -> Value {
    json!({ "name": name, "arguments": arguments })
}

/// `params` with `_meta` declaring `capabilities`.
fn with_caps(mut params: Value, capabilities: Value) -> Value {
    params["_meta"] = meta(capabilities);
    params
}

/// The headers a conforming 2026-07-28 client sends for `body`: `Accept`, `Content-Type`,
/// `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, and `Mcp-Param-Region` for the fixture's
/// `x-mcp-header` argument.
fn routing(body: &Value) -> Headers {
    let mut headers: Headers = vec![
        (ACCEPT_BOTH.0.into(), ACCEPT_BOTH.1.into()),
        (JSON.0.into(), JSON.1.into()),
        ("mcp-protocol-version".into(), V.into()),
    ];
    let method = body["method"].as_str().unwrap_or_default();
    headers.push(("mcp-method".into(), method.into()));
    let params = &body["params"];
    let name = match method {
        "tools/call" | "prompts/get" => &params["name"],
        "resources/read" => &params["uri"],
        _ => &Value::Null,
    };
    if let Some(name) = name.as_str() {
        headers.push(("mcp-name".into(), name.into()));
    }
    if let Some(region) = params["arguments"]["region"].as_str() {
        headers.push(("mcp-param-region".into(), region.into()));
    }
    headers
}

/// `headers` without `name`.
fn without(mut headers: Headers, name: &str) -> Headers {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers
}

/// `headers` with `name` set to `value` (replacing it).
fn set(headers: Headers, name: &str, value: &str) -> Headers {
    let mut headers = without(headers, name);
    headers.push((name.into(), value.into()));
    headers
}

/// `headers` with one more `name: value` (kept beside an existing one).
fn add(mut headers: Headers, name: &str, value: &str) -> Headers {
    headers.push((name.into(), value.into()));
    headers
}

/// `headers` as the common helpers take them.
fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

async fn post_with(url: &str, headers: &[(String, String)], body: &str) -> Exchange {
    post(url, &borrowed(headers), body).await
}

/// POSTs `body` with the conforming headers.
async fn call(url: &str, body: &Value) -> Exchange {
    post_with(url, &routing(body), &body.to_string()).await
}

/// POSTs `body` with the conforming headers plus `extra` (e.g. credentials).
async fn call_as(url: &str, extra: &[(&str, &str)], body: &Value) -> Exchange {
    let mut headers = routing(body);
    for (n, v) in extra {
        headers.push(((*n).into(), (*v).into()));
    }
    post_with(url, &headers, &body.to_string()).await
}

/// A refusal with an HTTP status of its own: status, JSON error `code`, id echoed, no session
/// minted. Returns the error object.
fn assert_refused(exchange: &Exchange, status: StatusCode, code: i64, id: Value) -> Value {
    let (got, headers, body) = exchange;
    assert_eq!(*got, status, "status; body {body}");
    assert_rpc_error(headers, body, code, id);
    assert!(headers.get("mcp-session-id").is_none(), "{headers:?}");
    json_body(body)["error"].clone()
}

/// An in-band error: 200, JSON error `code`, id echoed. Returns the error object.
fn assert_in_band(exchange: &Exchange, code: i64, id: Value) -> Value {
    assert_refused(exchange, StatusCode::OK, code, id)
}

/// A result: 200, the single message answers `id` with a result. Returns the result.
fn assert_result(exchange: &Exchange, id: Value) -> Value {
    let (status, headers, body) = exchange;
    assert_eq!(*status, StatusCode::OK, "{body}");
    assert!(headers.get("mcp-session-id").is_none(), "{headers:?}");
    let message = one_message(headers, body);
    assert_eq!(message["id"], id, "{body}");
    assert!(message.get("error").is_none(), "{body}");
    message["result"].clone()
}

/// The text of a tool result's first content block.
fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

/// Learns the server's `x-mcp-header` table the way a client would: a `tools/list`.
async fn list_tools(url: &str) -> Value {
    let body = rpc(100, "tools/list", json!({}));
    assert_result(&call(url, &body).await, json!(100))
}

/// Reads the SSE messages of a 2026-07-28 stream one by one, across frame boundaries. Modern
/// streams carry no event ids.
struct SseReader {
    body: Incoming,
    buf: String,
}

impl SseReader {
    fn new(response: http::Response<Incoming>) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = header(response.headers(), "content-type");
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        assert!(response.headers().get("mcp-session-id").is_none());
        assert_eq!(header(response.headers(), "x-accel-buffering"), "no");
        Self {
            body: response.into_body(),
            buf: String::new(),
        }
    }

    /// The next message, `None` at the end of the stream.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(event) = sse_events(&block).into_iter().find(|e| !e.data.is_empty()) {
                    assert_eq!(event.id, None, "2026-07-28 streams carry no event ids");
                    return Some(json_body(&event.data));
                }
                continue;
            }
            let frame = next_frame(&mut self.body, TIMEOUT).await?;
            let text = String::from_utf8(frame.to_vec()).expect("utf-8 frame");
            self.buf.push_str(&text.replace("\r\n", "\n"));
        }
    }

    /// The next message, which must be there.
    async fn message(&mut self) -> Value {
        self.next().await.expect("the stream ended early")
    }
}

/// Opens a `subscriptions/listen` stream for `notifications`.
async fn listen(url: &str, id: impl Into<Value>, notifications: Value) -> SseReader {
    let body = rpc(
        id,
        "subscriptions/listen",
        json!({ "notifications": notifications }),
    );
    let headers = routing(&body);
    let headers = borrowed(&headers);
    SseReader::new(open(Method::POST, url, &headers, body.to_string()).await)
}

/// Asserts an acknowledgement of subscription `id` honouring `honoured`.
fn assert_ack(message: &Value, id: Value, honoured: Value) {
    assert_eq!(
        message["method"], "notifications/subscriptions/acknowledged",
        "{message}"
    );
    assert!(message.get("id").is_none(), "{message}");
    assert_eq!(message["params"]["notifications"], honoured, "{message}");
    assert_eq!(message["params"]["_meta"][SUBSCRIPTION_ID], id, "{message}");
}

/// Asserts a `method` notification tagged with subscription `id`.
fn assert_tagged(message: &Value, method: &str, id: &Value) {
    assert_eq!(message["method"], method, "{message}");
    assert!(message.get("id").is_none(), "{message}");
    assert_eq!(
        message["params"]["_meta"][SUBSCRIPTION_ID], *id,
        "{message}"
    );
}

/// Runs the first round of an `input_required` tool: its `requestState` and `inputRequests`.
async fn first_round(url: &str, auth: &[(&str, &str)], params: &Value) -> (String, Value) {
    let body = rpc(1, "tools/call", params.clone());
    let result = assert_result(&call_as(url, auth, &body).await, json!(1));
    assert_eq!(result["resultType"], "input_required", "{result}");
    let state = result["requestState"]
        .as_str()
        .expect("requestState")
        .to_owned();
    (state, result["inputRequests"].clone())
}

/// A retry of `params` (new id) with `responses` and `state`.
fn retry(id: i64, params: &Value, responses: Value, state: &str) -> Value {
    let mut params = params.clone();
    params["inputResponses"] = responses;
    params["requestState"] = state.into();
    rpc(id, "tools/call", params)
}

fn accepted(field: &str, value: Value) -> Value {
    json!({ "action": "accept", "content": { field: value } })
}

/// `state` with one character in its middle changed to another of the base64url alphabet.
fn flip_one_char(state: &str) -> String {
    let mut bytes = state.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

// ---------------------------------------------------------------------------------------------
// A server of the tests' own: tools only, a slow streaming tool, integer/boolean header params
// ---------------------------------------------------------------------------------------------

/// Sets its flag when dropped: the handler future that owns it was dropped (or finished).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Offers `tools` (with `listChanged`) and nothing else. Its tool `slow` sends one notification,
/// then sleeps an hour; `weather` has `x-mcp-header` arguments of all three types.
struct Probe {
    slow_dropped: Arc<AtomicBool>,
}

impl McpService for Probe {
    async fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        match request.method.as_str() {
            "initialize" => Ok(json!({
                "protocolVersion": LATEST,
                "capabilities": { "tools": { "listChanged": true } },
                "serverInfo": { "name": "probe", "version": "1.2.3" },
            })),
            "tools/list" => Ok(json!({ "tools": [
                { "name": "slow", "inputSchema": { "type": "object", "properties": {} } },
                { "name": "weather", "inputSchema": { "type": "object", "properties": {
                    "region": { "type": "string", "x-mcp-header": "Region" },
                    "days": { "type": "integer", "x-mcp-header": "Days" },
                    "metric": { "type": "boolean", "x-mcp-header": "Metric" },
                } } },
            ] })),
            "tools/call" => {
                let name = request.params.as_ref().map(|p| p["name"].clone());
                if name == Some(json!("weather")) {
                    return Ok(json!({ "content": [{ "type": "text", "text": "sunny" }] }));
                }
                let _flag = DropFlag(self.slow_dropped.clone());
                let progress = json!({ "progressToken": "slow", "progress": 1 });
                let _ = cx
                    .peer()
                    .notify("notifications/progress", Some(progress))
                    .await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(json!({ "content": [] }))
            }
            other => Err(ErrorObject::method_not_found(other)),
        }
    }
}

async fn spawn_probe(slow_dropped: Arc<AtomicBool>) -> TestServer {
    let stack = McpStack::new(move |_: &SessionContext<'_>| Probe {
        slow_dropped: slow_dropped.clone(),
    });
    serve(stack.endpoint_path("/mcp").into_service()).await
}

// =============================================================================================
// §1 Validation table
// =============================================================================================

// --- body version ≠ header version: 400 -32020 (checked before the served-version row) -------

#[tokio::test]
async fn body_version_differing_from_the_header_is_400_header_mismatch() {
    let server = spawn(stack()).await;
    for (header_version, claimed) in [(V, "v999"), (LATEST, V), (V, LATEST), (V, "2026-07-29")] {
        let mut params = json!({});
        params["_meta"] = meta(json!({}));
        params["_meta"][PROTOCOL_VERSION] = claimed.into();
        let body = rpc(3, "tools/list", params);
        let headers = set(routing(&body), "mcp-protocol-version", header_version);
        let exchange = post_with(&server.url, &headers, &body.to_string()).await;
        let error = assert_refused(&exchange, StatusCode::BAD_REQUEST, -32020, json!(3));
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("MCP-Protocol-Version"),
            "{header_version} vs {claimed}: {error}"
        );
    }
}

// --- a claim of a revision not served, header agreeing: 400 -32022 {supported, requested} -----

#[tokio::test]
async fn unserved_claimed_version_with_agreeing_header_is_400_unsupported_version() {
    let server = spawn(stack()).await;
    let discover = assert_result(
        &call(&server.url, &rpc(1, "server/discover", json!({}))).await,
        json!(1),
    );
    for version in ["2099-01-01", "v999", LATEST] {
        let mut params = json!({ "_meta": meta(json!({})) });
        params["_meta"][PROTOCOL_VERSION] = version.into();
        let body = rpc("req-7", "tools/list", params);
        let headers = set(routing(&body), "mcp-protocol-version", version);
        let exchange = post_with(&server.url, &headers, &body.to_string()).await;
        let error = assert_refused(&exchange, StatusCode::BAD_REQUEST, -32022, json!("req-7"));
        assert_eq!(error["data"]["supported"], json!([V]), "{error}");
        assert_eq!(error["data"]["requested"], version, "{error}");
        // Conformance: data.supported ⊆ server/discover supportedVersions.
        for v in error["data"]["supported"].as_array().unwrap() {
            assert!(
                discover["supportedVersions"]
                    .as_array()
                    .unwrap()
                    .contains(v),
                "{v} not in {discover}"
            );
        }
    }
}

// --- order of the checks: mismatch → served version (-32022) → header presence and Mcp-Name --

#[tokio::test]
async fn a_version_mismatch_is_reported_before_missing_headers() {
    let server = spawn(stack()).await;
    let unserved = |id: i64, method: &str, params: Value, version: &str| {
        let mut body = rpc(id, method, params);
        body["params"]["_meta"][PROTOCOL_VERSION] = version.into();
        body
    };
    // Header 2026-07-28, body v999, and Mcp-Method missing: the mismatch is reported.
    let body = unserved(1, "tools/list", json!({}), "v999");
    let headers = without(routing(&body), "mcp-method");
    let exchange = post_with(&server.url, &headers, &body.to_string()).await;
    assert_refused(&exchange, StatusCode::BAD_REQUEST, -32020, json!(1));
}

#[tokio::test]
async fn unserved_version_is_reported_before_header_presence_and_mcp_name() {
    let server = spawn(stack()).await;
    let unserved = |id: i64, method: &str, params: Value, version: &str| {
        let mut body = rpc(id, method, params);
        body["params"]["_meta"][PROTOCOL_VERSION] = version.into();
        body
    };
    // Header and body agree on an unserved revision: -32022 comes before a missing Mcp-Method
    // or a wrong Mcp-Name.
    let body = unserved(2, "tools/list", json!({}), "v999");
    let headers = set(
        without(routing(&body), "mcp-method"),
        "mcp-protocol-version",
        "v999",
    );
    let exchange = post_with(&server.url, &headers, &body.to_string()).await;
    assert_refused(&exchange, StatusCode::BAD_REQUEST, -32022, json!(2));
    let body = unserved(
        3,
        "tools/call",
        tool("echo", json!({ "text": "x" })),
        "v999",
    );
    let headers = set(routing(&body), "mcp-protocol-version", "v999");
    let headers = set(headers, "mcp-name", "other");
    let exchange = post_with(&server.url, &headers, &body.to_string()).await;
    assert_refused(&exchange, StatusCode::BAD_REQUEST, -32022, json!(3));
}

// --- MCP-Protocol-Version / Mcp-Method missing, Mcp-Method ≠ body: 400 -32020 -----------------

#[tokio::test]
async fn missing_or_mismatched_standard_headers_are_400_header_mismatch() {
    let server = spawn(stack()).await;
    let body = rpc(4, "tools/list", json!({}));
    let cases: Vec<(&str, Headers)> = vec![
        (
            "no MCP-Protocol-Version",
            without(routing(&body), "mcp-protocol-version"),
        ),
        ("no Mcp-Method", without(routing(&body), "mcp-method")),
        (
            "Mcp-Method in other case",
            set(routing(&body), "mcp-method", "TOOLS/LIST"),
        ),
        (
            "Mcp-Method of another method",
            set(routing(&body), "mcp-method", "prompts/list"),
        ),
        ("Mcp-Method empty", set(routing(&body), "mcp-method", "")),
        (
            "Mcp-Method twice",
            add(routing(&body), "mcp-method", "tools/list"),
        ),
        (
            "MCP-Protocol-Version twice",
            add(routing(&body), "mcp-protocol-version", V),
        ),
    ];
    for (what, headers) in cases {
        let exchange = post_with(&server.url, &headers, &body.to_string()).await;
        let (status, _, text) = &exchange;
        assert_eq!(*status, StatusCode::BAD_REQUEST, "{what}: {text}");
        assert_refused(&exchange, StatusCode::BAD_REQUEST, -32020, json!(4));
    }
    // The conforming request passes.
    assert_result(&call(&server.url, &body).await, json!(4));
}

// --- Mcp-Name missing / mismatched / base64, for tools/call, prompts/get, resources/read -----

#[tokio::test]
async fn mcp_name_is_checked_for_tools_call_prompts_get_and_resources_read() {
    let server = spawn(stack()).await;
    let cases = [
        (
            "tools/call",
            tool("echo", json!({ "text": "hi" })),
            "=?base64?ZWNobw==?=",
        ),
        (
            "prompts/get",
            json!({ "name": "test_simple_prompt" }),
            "=?base64?dGVzdF9zaW1wbGVfcHJvbXB0?=",
        ),
        (
            "resources/read",
            json!({ "uri": "test://static-text" }),
            "=?base64?dGVzdDovL3N0YXRpYy10ZXh0?=",
        ),
    ];
    for (i, (method, params, encoded)) in cases.into_iter().enumerate() {
        let id = json!(10 + i);
        let body = rpc(id.clone(), method, params);
        let text = body.to_string();
        for (what, headers) in [
            ("missing", without(routing(&body), "mcp-name")),
            (
                "mismatched",
                set(routing(&body), "mcp-name", "something-else"),
            ),
            (
                "other case",
                set(
                    routing(&body),
                    "mcp-name",
                    &body["params"]["name"]
                        .as_str()
                        .or(body["params"]["uri"].as_str())
                        .unwrap()
                        .to_uppercase(),
                ),
            ),
            (
                "bad base64",
                set(routing(&body), "mcp-name", "=?base64?ZW*ho?="),
            ),
            (
                "bad padding",
                set(routing(&body), "mcp-name", &encoded.replace('=', "")),
            ),
            ("twice", add(routing(&body), "mcp-name", "something-else")),
        ] {
            let exchange = post_with(&server.url, &headers, &text).await;
            assert_eq!(exchange.0, StatusCode::BAD_REQUEST, "{method} {what}");
            assert_refused(&exchange, StatusCode::BAD_REQUEST, -32020, id.clone());
        }
        // Plain and base64-encoded values both pass.
        assert_result(&call(&server.url, &body).await, id.clone());
        let headers = set(routing(&body), "mcp-name", encoded);
        let exchange = post_with(&server.url, &headers, &text).await;
        let result = assert_result(&exchange, id.clone());
        assert_eq!(result["resultType"], "complete", "{method}: {result}");
    }
    // Body value absent: the header is not expected (the handler answers the bad params).
    let body = rpc(20, "tools/call", json!({ "arguments": {} }));
    assert!(!routing(&body).iter().any(|(n, _)| n == "mcp-name"));
    let error = assert_in_band(&call(&server.url, &body).await, -32602, json!(20));
    assert!(error["message"].is_string(), "{error}");
}

// --- Mcp-Param-{X} from x-mcp-header annotations (test_routing_header's Region) -------------

#[tokio::test]
async fn mcp_param_region_is_checked_after_tools_list() {
    let server = spawn(stack()).await;
    let tools = list_tools(&server.url).await;
    let routing_tool = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "test_routing_header")
        .expect("test_routing_header is listed");
    assert_eq!(
        routing_tool["inputSchema"]["properties"]["region"]["x-mcp-header"],
        "Region"
    );

    let refused = [
        ("eu", None, "missing"),
        ("eu", Some("us"), "mismatched"),
        ("eu", Some("EU"), "other case (values are case-sensitive)"),
        ("eu", Some("=?base64?ZXU?="), "bad base64 padding"),
        ("eu", Some("=?base64?ZX*=?="), "non-alphabet character"),
        ("eu", Some("=?base64?ZXU=?= x"), "junk after the suffix"),
        ("eu", Some(""), "empty"),
    ];
    for (i, (region, header_value, what)) in refused.into_iter().enumerate() {
        let id = json!(30 + i);
        let body = rpc(
            id.clone(),
            "tools/call",
            tool("test_routing_header", json!({ "region": region })),
        );
        let headers = match header_value {
            None => without(routing(&body), "mcp-param-region"),
            Some(v) => set(routing(&body), "mcp-param-region", v),
        };
        let exchange = post_with(&server.url, &headers, &body.to_string()).await;
        assert_eq!(
            exchange.0,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            exchange.2
        );
        let error = assert_refused(&exchange, StatusCode::BAD_REQUEST, -32020, id);
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("mcp-param-region"),
            "{what}: {error}"
        );
    }
    // Sent twice: refused.
    let body = rpc(
        40,
        "tools/call",
        tool("test_routing_header", json!({ "region": "eu" })),
    );
    let headers = add(routing(&body), "mcp-param-region", "eu");
    let exchange = post_with(&server.url, &headers, &body.to_string()).await;
    assert_refused(&exchange, StatusCode::BAD_REQUEST, -32020, json!(40));

    let accepted = [
        ("eu", "eu"),
        ("eu", "=?base64?ZXU=?="),
        ("Zürich", "=?base64?WsO8cmljaA==?="),
        // Only the prefix, or only the suffix: literal text, compared as is.
        ("=?base64?ZXU=", "=?base64?ZXU="),
        ("ZXU=?=", "ZXU=?="),
    ];
    for (i, (region, header_value)) in accepted.into_iter().enumerate() {
        let id = json!(50 + i);
        let body = rpc(
            id.clone(),
            "tools/call",
            tool("test_routing_header", json!({ "region": region })),
        );
        let headers = set(routing(&body), "mcp-param-region", header_value);
        let exchange = post_with(&server.url, &headers, &body.to_string()).await;
        let result = assert_result(&exchange, id);
        assert_eq!(
            text_of(&result),
            format!("Region: {region}"),
            "{header_value}"
        );
    }
}

/// The routing layer checks `Mcp-Param-*` only for tools it has learned from a `tools/list`
/// answer; for a tool it has not, the endpoint checks them once it has described the server.
#[tokio::test]
async fn mcp_param_region_is_checked_on_the_very_first_request() {
    let server = spawn(stack()).await;
    let body = rpc(
        1,
        "tools/call",
        tool("test_routing_header", json!({ "region": "eu" })),
    );
    let headers = set(routing(&body), "mcp-param-region", "us");
    let exchange = post_with(&server.url, &headers, &body.to_string()).await;
    assert_refused(&exchange, StatusCode::BAD_REQUEST, -32020, json!(1));
}

#[tokio::test]
async fn integer_and_boolean_param_headers_compare_by_type() {
    let server = spawn_probe(Arc::new(AtomicBool::new(false))).await;
    list_tools(&server.url).await;
    let arguments = json!({ "region": "eu", "days": 3, "metric": true });
    let body = rpc(1, "tools/call", tool("weather", arguments));
    let base = set(routing(&body), "mcp-param-days", "3");
    let base = set(base, "mcp-param-metric", "true");
    let text = body.to_string();
    // Integers compare numerically.
    for days in ["3", "03", " 3 "] {
        let headers = set(base.clone(), "mcp-param-days", days);
        let result = assert_result(&post_with(&server.url, &headers, &text).await, json!(1));
        assert_eq!(text_of(&result), "sunny");
    }
    for (name, value) in [
        ("mcp-param-days", "4"),
        ("mcp-param-days", "three"),
        ("mcp-param-metric", "false"),
        ("mcp-param-metric", "True"),
        ("mcp-param-metric", "1"),
    ] {
        let headers = set(base.clone(), name, value);
        let exchange = post_with(&server.url, &headers, &text).await;
        assert_refused(&exchange, StatusCode::BAD_REQUEST, -32020, json!(1));
    }
    // Arguments absent from the body: their headers are not expected.
    let body = rpc(2, "tools/call", tool("weather", json!({})));
    assert_result(&call(&server.url, &body).await, json!(2));
}

// --- header names in any case, values with surrounding whitespace: accepted -----------------

#[tokio::test]
async fn header_name_case_and_surrounding_whitespace_are_accepted() {
    let server = spawn(stack()).await;
    list_tools(&server.url).await;
    // Raw bytes on the wire: hyper's client would lower-case the names.
    let raw = |region_header: &str| {
        let body = rpc(
            9,
            "tools/call",
            tool("test_routing_header", json!({ "region": "eu" })),
        )
        .to_string();
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             CONTENT-TYPE: application/json\r\nAccept: application/json, text/event-stream\r\n\
             MCP-PROTOCOL-VERSION: \t{V} \r\nmcp-METHOD:  tools/call\t\r\n\
             MCP-NAME: test_routing_header  \r\nMCP-PARAM-REGION: {region_header}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            server.addr,
            body.len()
        )
    };
    for value in [" eu ", "\t=?base64?ZXU=?=\t"] {
        let answer = raw_exchange(server.addr, raw(value).as_bytes(), TIMEOUT).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{value:?}: {answer}");
        assert!(answer.contains(r#""text":"Region: eu""#), "{answer}");
    }
    // The upper-case name is really read: a wrong value in it is refused.
    let answer = raw_exchange(server.addr, raw("us").as_bytes(), TIMEOUT).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(r#""code":-32020"#), "{answer}");
    assert!(answer.contains(r#""id":9"#), "{answer}");

    // Whitespace through an ordinary client too.
    let body = rpc(10, "tools/list", json!({}));
    let headers = set(routing(&body), "mcp-method", "  tools/list\t");
    let headers = set(headers, "mcp-protocol-version", &format!(" {V} "));
    assert_result(
        &post_with(&server.url, &headers, &body.to_string()).await,
        json!(10),
    );
}

// --- _meta, protocolVersion or clientCapabilities missing: 400 -32602 ------------------------

#[tokio::test]
async fn missing_meta_protocol_version_or_capabilities_is_400_invalid_params() {
    let server = spawn(stack()).await;
    let claim_only = json!({ PROTOCOL_VERSION: V });
    let caps_only = json!({ CLIENT_CAPABILITIES: {} });
    let cases = [
        ("no params", None),
        ("params without _meta", Some(json!({}))),
        ("_meta null", Some(json!({ "_meta": null }))),
        (
            "_meta without protocolVersion",
            Some(json!({ "_meta": caps_only })),
        ),
        (
            "_meta without clientCapabilities",
            Some(json!({ "_meta": claim_only })),
        ),
        (
            "protocolVersion not a string",
            Some(json!({ "_meta": { PROTOCOL_VERSION: 20260728, CLIENT_CAPABILITIES: {} } })),
        ),
        (
            "clientCapabilities not an object",
            Some(json!({ "_meta": { PROTOCOL_VERSION: V, CLIENT_CAPABILITIES: [] } })),
        ),
        (
            "unknown logLevel",
            Some(
                json!({ "_meta": { PROTOCOL_VERSION: V, CLIENT_CAPABILITIES: {}, LOG_LEVEL: "loud" } }),
            ),
        ),
    ];
    for (i, (what, params)) in cases.into_iter().enumerate() {
        let id = json!(60 + i);
        let mut body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" });
        if let Some(params) = params {
            body["params"] = params;
        }
        let exchange = call(&server.url, &body).await;
        assert_eq!(
            exchange.0,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            exchange.2
        );
        assert_refused(&exchange, StatusCode::BAD_REQUEST, -32602, id);
    }
    // `clientCapabilities: {}` and no `clientInfo` are enough.
    let body = rpc(
        70,
        "tools/list",
        json!({ "_meta": { PROTOCOL_VERSION: V, CLIENT_CAPABILITIES: {} } }),
    );
    assert_result(&call(&server.url, &body).await, json!(70));
}

// --- an input request for an undeclared capability: 400 -32021 {requiredCapabilities} -------

#[tokio::test]
async fn undeclared_client_capability_is_400_missing_capability() {
    let server = spawn(stack()).await;
    for (tool_name, capability) in [
        ("test_missing_capability", "sampling"),
        ("test_input_required_result_elicitation", "elicitation"),
        ("test_input_required_result_list_roots", "roots"),
    ] {
        // Declaring the others does not help.
        let others = json!({ "sampling": {}, "elicitation": {}, "roots": {} });
        let mut declared = others.clone();
        declared.as_object_mut().unwrap().remove(capability);
        let body = rpc(
            "cap",
            "tools/call",
            with_caps(tool(tool_name, json!({})), declared),
        );
        let exchange = call(&server.url, &body).await;
        let error = assert_refused(&exchange, StatusCode::BAD_REQUEST, -32021, json!("cap"));
        assert_eq!(
            error["data"]["requiredCapabilities"],
            json!({ capability: {} }),
            "{tool_name}: {error}"
        );
        // Declared: an input_required round asking for it.
        let body = rpc(
            "cap",
            "tools/call",
            with_caps(tool(tool_name, json!({})), others),
        );
        let result = assert_result(&call(&server.url, &body).await, json!("cap"));
        assert_eq!(result["resultType"], "input_required", "{result}");
        let requests = result["inputRequests"].as_object().unwrap();
        assert_eq!(requests.len(), 1, "{result}");
        let method = requests.values().next().unwrap()["method"]
            .as_str()
            .unwrap();
        assert!(
            method.starts_with(match capability {
                "sampling" => "sampling/",
                "elicitation" => "elicitation/",
                _ => "roots/",
            }),
            "{method}"
        );
    }
}

// --- removed methods and unknown methods: 404 -32601 ----------------------------------------

#[tokio::test]
async fn removed_and_unknown_methods_are_404_method_not_found() {
    let server = spawn(stack()).await;
    let initialize_params = json!({
        "protocolVersion": LATEST,
        "capabilities": {},
        "clientInfo": { "name": "x", "version": "0" },
    });
    let cases = [
        ("initialize", initialize_params),
        ("ping", json!({})),
        ("logging/setLevel", json!({ "level": "info" })),
        (
            "resources/subscribe",
            json!({ "uri": "test://static-text" }),
        ),
        (
            "resources/unsubscribe",
            json!({ "uri": "test://static-text" }),
        ),
        ("no/such/method", json!({})),
    ];
    for (i, (method, params)) in cases.into_iter().enumerate() {
        let id = json!(80 + i);
        let body = rpc(id.clone(), method, params);
        let exchange = call(&server.url, &body).await;
        assert_eq!(
            exchange.0,
            StatusCode::NOT_FOUND,
            "{method}: {}",
            exchange.2
        );
        let error = assert_refused(&exchange, StatusCode::NOT_FOUND, -32601, id);
        assert!(error["message"].is_string(), "{error}");
    }
    assert_eq!(
        server.sessions().len(),
        0,
        "initialize with a claim opened a session"
    );
}

#[tokio::test]
async fn methods_of_capabilities_not_advertised_are_404_method_not_found() {
    let server = spawn_probe(Arc::new(AtomicBool::new(false))).await;
    let cases = [
        ("prompts/list", json!({})),
        ("prompts/get", json!({ "name": "p" })),
        ("resources/list", json!({})),
        ("resources/read", json!({ "uri": "test://x" })),
        ("completion/complete", json!({})),
    ];
    for (i, (method, params)) in cases.into_iter().enumerate() {
        let id = json!(i);
        let exchange = call(&server.url, &rpc(id.clone(), method, params)).await;
        assert_eq!(
            exchange.0,
            StatusCode::NOT_FOUND,
            "{method}: {}",
            exchange.2
        );
        assert_refused(&exchange, StatusCode::NOT_FOUND, -32601, id);
    }
    // What it does advertise works.
    assert_result(
        &call(&server.url, &rpc(9, "tools/list", json!({}))).await,
        json!(9),
    );
}

// --- unknown tool / resource: 200, -32602 in-band --------------------------------------------

#[tokio::test]
async fn unknown_tool_and_resource_are_200_invalid_params_in_band() {
    let server = spawn(stack()).await;
    let body = rpc(90, "tools/call", tool("no_such_tool", json!({})));
    let error = assert_in_band(&call(&server.url, &body).await, -32602, json!(90));
    assert!(
        error["message"].as_str().unwrap().contains("no_such_tool"),
        "{error}"
    );
    let body = rpc(
        91,
        "resources/read",
        json!({ "uri": "test://no-such-resource" }),
    );
    let exchange = call(&server.url, &body).await;
    assert_in_band(&exchange, -32602, json!(91));
    assert!(!exchange.2.contains("contents"), "{}", exchange.2);
}

// --- initialize with a 2026-07-28 header and no claim: 400 -32020 ----------------------------

#[tokio::test]
async fn initialize_with_a_modern_header_and_no_claim_is_400_header_mismatch() {
    let server = spawn(stack()).await;
    let body = json_body(&initialize_body(5, LATEST));
    let exchange = call(&server.url, &body).await;
    assert_refused(&exchange, StatusCode::BAD_REQUEST, -32020, json!(5));
    assert_eq!(server.sessions().len(), 0);
    // Without the header it is a 2025 initialize, as before.
    initialize(&server.url, LATEST).await;
    assert_eq!(server.sessions().len(), 1);
}

// --- a batch with a claim in any element: 400 -32600 ------------------------------------------

#[tokio::test]
async fn batch_containing_a_claim_is_400_invalid_request() {
    let server = spawn(stack()).await;
    let batch = json!([
        { "jsonrpc": "2.0", "id": 11, "method": "ping" },
        rpc(12, "tools/list", json!({})),
    ]);
    for headers in [
        routing(&rpc(11, "ping", json!({}))),
        without(routing(&rpc(11, "ping", json!({}))), "mcp-protocol-version"),
    ] {
        let exchange = post_with(&server.url, &headers, &batch.to_string()).await;
        let error = assert_refused(&exchange, StatusCode::BAD_REQUEST, -32600, json!(11));
        assert!(
            error["message"].as_str().unwrap().contains("batch"),
            "{error}"
        );
    }
}

// --- transport rows: 415, 400 -32700, 406 ----------------------------------------------------

#[tokio::test]
async fn non_json_content_type_is_415_and_bad_json_is_400_parse_error() {
    let server = spawn(stack()).await;
    let body = rpc(13, "tools/list", json!({}));
    // The body is not read, so there is no id to echo.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let headers = set(routing(&body), "content-type", content_type);
        let exchange = post_with(&server.url, &headers, &body.to_string()).await;
        assert_refused(
            &exchange,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32000,
            Value::Null,
        );
    }
    let exchange = post_with(&server.url, &routing(&body), r#"{"jsonrpc":"2.0","id":13,"#).await;
    assert_refused(&exchange, StatusCode::BAD_REQUEST, -32700, Value::Null);
    // [rec] in the reference: Accept without text/event-stream is 406 (as Python does).
    let headers = set(routing(&body), "accept", "application/json");
    let exchange = post_with(&server.url, &headers, &body.to_string()).await;
    assert_refused(&exchange, StatusCode::NOT_ACCEPTABLE, -32000, json!(13));
}

// --- notifications: 202, empty; a stray notifications/cancelled too --------------------------

#[tokio::test]
async fn notifications_and_a_stray_cancel_are_202_with_empty_body() {
    let server = spawn(stack()).await;
    let notification = |method: &str, params: Value| {
        let mut params = params;
        params["_meta"] = meta(json!({}));
        json!({ "jsonrpc": "2.0", "method": method, "params": params })
    };
    let cases = [
        notification("notifications/roots/list_changed", json!({})),
        notification(
            "notifications/cancelled",
            json!({ "requestId": 12345, "reason": "user" }),
        ),
        // A claim-less notification under a 2026-07-28 header is modern too.
        json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 1 } }),
    ];
    for body in cases {
        let (status, headers, text) = call(&server.url, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}: {text}");
        assert_eq!(text, "", "{body}");
        assert!(headers.get("content-type").is_none(), "{headers:?}");
        assert!(headers.get("mcp-session-id").is_none(), "{headers:?}");
    }
    assert_eq!(server.sessions().len(), 0);
}

// --- Mcp-Session-Id on a modern request: ignored, never minted; GET/DELETE stay 2025 ---------

#[tokio::test]
async fn session_id_on_a_modern_request_is_ignored_and_none_is_minted() {
    let server = spawn(stack()).await;
    let legacy = initialize(&server.url, LATEST).await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    for (i, session) in [unknown, legacy.as_str(), "not a session"]
        .into_iter()
        .enumerate()
    {
        for method in ["tools/list", "server/discover"] {
            let body = rpc(i, method, json!({}));
            let headers = add(routing(&body), "mcp-session-id", session);
            let exchange = post_with(&server.url, &headers, &body.to_string()).await;
            let result = assert_result(&exchange, json!(i));
            assert_eq!(result["resultType"], "complete");
        }
    }
    let (status, headers, _) = call(&server.url, &rpc(9, "tools/list", json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("mcp-session-id").is_none());
    // No session was minted, and the 2025 session is untouched.
    assert_eq!(server.sessions().len(), 1);
    let (status, _, body) = post(
        &server.url,
        &session_headers(Some(&legacy), LATEST),
        &request_body(2, "ping", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn get_and_delete_keep_their_2025_behaviour() {
    let server = spawn(stack()).await;
    // Without a session: 400 -32000, whatever the version header says.
    for version in [None, Some(V)] {
        let mut headers = vec![ACCEPT_SSE];
        if let Some(v) = version {
            headers.push(("mcp-protocol-version", v));
        }
        let (status, h, body) = get(&server.url, &headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{version:?}: {body}");
        assert_rpc_error(&h, &body, -32000, Value::Null);
        let (status, h, body) = delete(&server.url, &headers[1..]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{version:?}: {body}");
        assert_rpc_error(&h, &body, -32000, Value::Null);
    }
    // On a 2025 session: the standalone stream and DELETE work as before.
    let session = initialize(&server.url, LATEST).await;
    let headers = [
        ACCEPT_SSE,
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", LATEST),
    ];
    let stream = open(Method::GET, &server.url, &headers, "").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(header(stream.headers(), "content-type").starts_with("text/event-stream"));
    drop(stream);
    // A 2026-07-28 header on a session's GET is an unknown revision for that session.
    let modern_get = [
        ACCEPT_SSE,
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", V),
    ];
    let (status, h, body) = get(&server.url, &modern_get).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32000, Value::Null);
    let (status, _, body) = delete(&server.url, &headers[1..]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.sessions().len(), 0);
}

// =============================================================================================
// §1 server/discover and result stamping
// =============================================================================================

#[tokio::test]
async fn server_discover_describes_the_server() {
    let server = spawn(stack()).await;
    let exchange = call(&server.url, &rpc(1, "server/discover", json!({}))).await;
    assert_eq!(
        header(&exchange.1, "content-type"),
        "application/json; charset=utf-8"
    );
    let result = assert_result(&exchange, json!(1));
    assert_eq!(result["resultType"], "complete", "{result}");
    assert_eq!(result["supportedVersions"], json!([V]), "{result}");
    assert_eq!(
        result["capabilities"]["tools"]["listChanged"], true,
        "{result}"
    );
    assert_eq!(
        result["capabilities"]["prompts"]["listChanged"], true,
        "{result}"
    );
    assert_eq!(
        result["capabilities"]["resources"]["subscribe"], true,
        "{result}"
    );
    assert!(result["instructions"].is_string(), "{result}");
    assert_eq!(result["ttlMs"], 0, "{result}");
    assert_eq!(result["cacheScope"], "private", "{result}");
    assert_eq!(
        result["_meta"][SERVER_INFO],
        json!({ "name": "mcp-tower-http-everything", "version": env!("CARGO_PKG_VERSION") }),
        "{result}"
    );
    // serverInfo lives in _meta, not in the body; nothing of initialize leaks.
    assert!(result.get("serverInfo").is_none(), "{result}");
    assert!(result.get("protocolVersion").is_none(), "{result}");

    // A server of the tests' own, described from its initialize answer.
    let probe = spawn_probe(Arc::new(AtomicBool::new(false))).await;
    let result = assert_result(
        &call(&probe.url, &rpc(2, "server/discover", json!({}))).await,
        json!(2),
    );
    // Plus the tasks extension, which the endpoint runs for servers (on by default).
    assert_eq!(
        result["capabilities"],
        json!({ "tools": { "listChanged": true }, "extensions": { "io.modelcontextprotocol/tasks": {} } })
    );
    assert_eq!(
        result["_meta"][SERVER_INFO],
        json!({ "name": "probe", "version": "1.2.3" })
    );
}

#[tokio::test]
async fn every_result_is_stamped_and_only_the_six_cacheable_carry_hints() {
    let server = spawn(stack()).await;
    let cases = [
        ("server/discover", json!({}), true),
        ("tools/list", json!({}), true),
        ("prompts/list", json!({}), true),
        ("resources/list", json!({}), true),
        ("resources/templates/list", json!({}), true),
        (
            "resources/read",
            json!({ "uri": "test://static-text" }),
            true,
        ),
        ("tools/call", tool("echo", json!({ "text": "hi" })), false),
        ("tools/call", tool("add", json!({ "a": 2, "b": 3 })), false),
        (
            "prompts/get",
            json!({ "name": "test_simple_prompt" }),
            false,
        ),
    ];
    for (i, (method, params, cacheable)) in cases.into_iter().enumerate() {
        let exchange = call(&server.url, &rpc(i, method, params)).await;
        let result = assert_result(&exchange, json!(i));
        assert_eq!(result["resultType"], "complete", "{method}: {result}");
        assert_eq!(
            result["_meta"][SERVER_INFO]["name"], "mcp-tower-http-everything",
            "{method}: {result}"
        );
        if cacheable {
            assert!(result["ttlMs"].is_u64(), "{method}: {result}");
            assert!(
                matches!(result["cacheScope"].as_str(), Some("public" | "private")),
                "{method}: {result}"
            );
        } else {
            assert!(result.get("ttlMs").is_none(), "{method}: {result}");
            assert!(result.get("cacheScope").is_none(), "{method}: {result}");
        }
    }
}

// =============================================================================================
// §1 MRTR: input_required rounds and the sealed requestState
// =============================================================================================

#[tokio::test]
async fn multi_round_input_required_completes_after_three_rounds() {
    let server = spawn(stack()).await;
    let params = with_caps(
        tool("test_input_required_result_multi_round", json!({})),
        json!({ "elicitation": {} }),
    );
    // Round 1: asks for step1.
    let (state1, requests) = first_round(&server.url, &[], &params).await;
    assert_eq!(requests.as_object().unwrap().len(), 1, "{requests}");
    assert_eq!(
        requests["step1"]["method"], "elicitation/create",
        "{requests}"
    );
    assert!(requests["step1"]["params"]["requestedSchema"].is_object());

    // Round 2 (new id): answers step1, is asked for step2, with a new state.
    let body = retry(
        2,
        &params,
        json!({ "step1": accepted("name", json!("Ada")) }),
        &state1,
    );
    let result = assert_result(&call(&server.url, &body).await, json!(2));
    assert_eq!(result["resultType"], "input_required", "{result}");
    assert_eq!(
        result["_meta"][SERVER_INFO]["name"],
        "mcp-tower-http-everything"
    );
    assert!(
        result.get("ttlMs").is_none(),
        "MRTR results are not cacheable: {result}"
    );
    let requests = result["inputRequests"].as_object().unwrap();
    assert_eq!(requests.keys().collect::<Vec<_>>(), ["step2"], "{result}");
    let state2 = result["requestState"].as_str().unwrap().to_owned();
    assert_ne!(state1, state2);

    // Round 3: only step2 is sent; step1 comes back from the sealed state.
    let body = retry(
        3,
        &params,
        json!({ "step2": accepted("color", json!("blue")) }),
        &state2,
    );
    let result = assert_result(&call(&server.url, &body).await, json!(3));
    assert_eq!(result["resultType"], "complete", "{result}");
    assert_eq!(
        text_of(&result),
        "Multi-round complete for Ada who likes blue",
        "{result}"
    );
}

#[tokio::test]
async fn tampered_state_is_refused_with_invalid_params() {
    let server = spawn(stack()).await;
    let params = with_caps(
        tool("test_input_required_result_tampered_state", json!({})),
        json!({ "elicitation": {} }),
    );
    let (state, _) = first_round(&server.url, &[], &params).await;
    let answer = json!({ "confirm": accepted("ok", json!(true)) });
    for (what, bad) in [
        ("one character flipped", flip_one_char(&state)),
        ("truncated", state[..state.len() - 4].to_owned()),
        ("not base64url", "!!! not a state !!!".to_owned()),
        ("empty", String::new()),
    ] {
        let body = retry(2, &params, answer.clone(), &bad);
        let error = assert_in_band(&call(&server.url, &body).await, -32602, json!(2));
        assert!(
            error["message"].as_str().unwrap().contains("requestState"),
            "{what}: {error}"
        );
    }
    // Not a string at all.
    let mut body = retry(3, &params, answer.clone(), &state);
    body["params"]["requestState"] = json!(42);
    assert_in_band(&call(&server.url, &body).await, -32602, json!(3));
    // The untouched state still works.
    let body = retry(4, &params, answer, &state);
    let result = assert_result(&call(&server.url, &body).await, json!(4));
    assert_eq!(text_of(&result), "integrity-ok: state verified", "{result}");
}

#[tokio::test]
async fn state_replayed_for_another_tool_or_other_arguments_is_refused() {
    let server = spawn(stack()).await;
    let caps = json!({ "elicitation": {} });
    let params = with_caps(
        tool("test_input_required_result_request_state", json!({})),
        caps.clone(),
    );
    let (state, requests) = first_round(&server.url, &[], &params).await;
    assert!(requests["confirm"].is_object(), "{requests}");
    let answer = json!({ "confirm": accepted("ok", json!(true)) });
    // Another tool asking under the same key.
    let other_tool = with_caps(
        tool("test_input_required_result_tampered_state", json!({})),
        caps.clone(),
    );
    // The same tool with other arguments.
    let other_args = with_caps(
        tool(
            "test_input_required_result_request_state",
            json!({ "x": 1 }),
        ),
        caps.clone(),
    );
    for (i, replayed) in [other_tool, other_args].into_iter().enumerate() {
        let body = retry(10 + i as i64, &replayed, answer.clone(), &state);
        let error = assert_in_band(&call(&server.url, &body).await, -32602, json!(10 + i));
        assert!(
            error["message"].as_str().unwrap().contains("requestState"),
            "{error}"
        );
    }
    // Another method (prompts/get of the input-required prompt).
    let mut prompt = rpc(
        12,
        "prompts/get",
        with_caps(json!({ "name": "test_input_required_result_prompt" }), caps),
    );
    prompt["params"]["inputResponses"] = answer.clone();
    prompt["params"]["requestState"] = state.clone().into();
    assert_in_band(&call(&server.url, &prompt).await, -32602, json!(12));
    // `_meta` is not bound: another logLevel or clientInfo on the retry is fine.
    let mut same = params.clone();
    same["_meta"][LOG_LEVEL] = "debug".into();
    let body = retry(13, &same, answer, &state);
    let result = assert_result(&call(&server.url, &body).await, json!(13));
    assert_eq!(
        text_of(&result),
        "state-ok: requestState validated",
        "{result}"
    );
}

#[tokio::test]
async fn state_replayed_by_another_principal_is_refused() {
    let server = spawn(stack().authenticate(ApiKeys::new().key(KEY).key(KEY2))).await;
    let alice = [("x-api-key", KEY)];
    let bob = [("x-api-key", KEY2)];
    // Authentication runs before the era decision: no key, 401.
    let (status, _, body) = call(&server.url, &rpc(1, "tools/list", json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let params = with_caps(
        tool("test_input_required_result_request_state", json!({})),
        json!({ "elicitation": {} }),
    );
    let (state, _) = first_round(&server.url, &alice, &params).await;
    let answer = json!({ "confirm": accepted("ok", json!(true)) });
    let body = retry(2, &params, answer.clone(), &state);
    let error = assert_in_band(&call_as(&server.url, &bob, &body).await, -32602, json!(2));
    assert!(
        error["message"].as_str().unwrap().contains("requestState"),
        "{error}"
    );
    // The principal it was sealed for completes the call.
    let body = retry(3, &params, answer, &state);
    let result = assert_result(&call_as(&server.url, &alice, &body).await, json!(3));
    assert_eq!(
        text_of(&result),
        "state-ok: requestState validated",
        "{result}"
    );
}

#[tokio::test]
async fn expired_state_is_refused() {
    // TTLs count whole seconds: a zero TTL expires when the clock passes the next second.
    let server = spawn(stack().request_state_ttl(Duration::ZERO)).await;
    let params = with_caps(
        tool("test_input_required_result_request_state", json!({})),
        json!({ "elicitation": {} }),
    );
    let (state, _) = first_round(&server.url, &[], &params).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let body = retry(
        2,
        &params,
        json!({ "confirm": accepted("ok", json!(true)) }),
        &state,
    );
    let error = assert_in_band(&call(&server.url, &body).await, -32602, json!(2));
    assert!(
        error["message"].as_str().unwrap().contains("expired"),
        "{error}"
    );
}

// =============================================================================================
// §1 subscriptions/listen
// =============================================================================================

#[tokio::test]
async fn listen_acknowledges_first_then_delivers_only_the_requested_kinds_tagged() {
    let server = spawn(stack()).await;
    let tools_id = json!("listen-tools");
    let mut tools = listen(
        &server.url,
        tools_id.clone(),
        json!({ "toolsListChanged": true }),
    )
    .await;
    assert_ack(
        &tools.message().await,
        tools_id.clone(),
        json!({ "toolsListChanged": true }),
    );
    let prompts_id = json!(7);
    let asked = json!({ "promptsListChanged": true, "toolsListChanged": false });
    let mut prompts = listen(&server.url, prompts_id.clone(), asked).await;
    assert_ack(
        &prompts.message().await,
        prompts_id.clone(),
        json!({ "promptsListChanged": true }),
    );

    // On other connections: a log message and progress (never on listen streams), then
    // resource, prompt, tool, prompt, tool changes.
    let logging = with_caps(tool("test_logging_tool", json!({})), json!({}));
    let mut logging = rpc(1, "tools/call", logging);
    logging["params"]["_meta"][LOG_LEVEL] = "debug".into();
    logging["params"]["_meta"]["progressToken"] = "p".into();
    let (status, _, text) = call(&server.url, &logging).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("notifications/message"), "{text}");
    for (i, trigger) in [
        "test_trigger_resource_change",
        "test_trigger_prompt_change",
        "test_trigger_tool_change",
        "test_trigger_prompt_change",
        "test_trigger_tool_change",
    ]
    .into_iter()
    .enumerate()
    {
        let body = rpc(10 + i, "tools/call", tool(trigger, json!({})));
        let result = assert_result(&call(&server.url, &body).await, json!(10 + i));
        assert_eq!(text_of(&result), "Mutation triggered");
    }
    // Each stream saw exactly its own kind, twice, in order: anything else would come between.
    for _ in 0..2 {
        assert_tagged(
            &tools.message().await,
            "notifications/tools/list_changed",
            &tools_id,
        );
        assert_tagged(
            &prompts.message().await,
            "notifications/prompts/list_changed",
            &prompts_id,
        );
    }
    // A fresh listener confirms the second ones were the last ones sent.
    let resources_id = json!("r");
    let mut resources = listen(
        &server.url,
        resources_id.clone(),
        json!({ "resourcesListChanged": true }),
    )
    .await;
    assert_ack(
        &resources.message().await,
        resources_id.clone(),
        json!({ "resourcesListChanged": true }),
    );
    let body = rpc(
        20,
        "tools/call",
        tool("test_trigger_resource_change", json!({})),
    );
    assert_result(&call(&server.url, &body).await, json!(20));
    assert_tagged(
        &resources.message().await,
        "notifications/resources/list_changed",
        &resources_id,
    );
    let body = rpc(
        21,
        "tools/call",
        tool("test_trigger_tool_change", json!({})),
    );
    assert_result(&call(&server.url, &body).await, json!(21));
    assert_tagged(
        &tools.message().await,
        "notifications/tools/list_changed",
        &tools_id,
    );
}

#[tokio::test]
async fn listen_honours_only_what_the_server_offers() {
    // The probe offers tools with listChanged, nothing else.
    let server = spawn_probe(Arc::new(AtomicBool::new(false))).await;
    let asked = json!({
        "toolsListChanged": true,
        "promptsListChanged": true,
        "resourcesListChanged": true,
        "resourceSubscriptions": ["test://x"],
    });
    let mut stream = listen(&server.url, "sub", asked).await;
    assert_ack(
        &stream.message().await,
        json!("sub"),
        json!({ "toolsListChanged": true }),
    );
    // Nothing asked: an empty honoured set, still acknowledged first.
    let mut stream = listen(&server.url, 2, json!({})).await;
    assert_ack(&stream.message().await, json!(2), json!({}));
}

#[tokio::test]
async fn listen_streams_are_bounded_and_closing_one_frees_its_place() {
    let server = spawn(stack().max_listeners(2)).await;
    let asked = json!({ "toolsListChanged": true });
    let mut first = listen(&server.url, 1, asked.clone()).await;
    assert_ack(&first.message().await, json!(1), asked.clone());
    let mut second = listen(&server.url, 2, asked.clone()).await;
    assert_ack(&second.message().await, json!(2), asked.clone());

    // The third: an in-band -32603 as one JSON body, no acknowledgement.
    let third = rpc(3, "subscriptions/listen", json!({ "notifications": asked }));
    let exchange = call(&server.url, &third).await;
    assert_in_band(&exchange, -32603, json!(3));
    assert!(!exchange.2.contains("acknowledged"), "{}", exchange.2);

    // Closing the first frees a place (the server learns it from the socket).
    drop(first);
    let deadline = Instant::now() + TIMEOUT;
    let mut fourth = loop {
        let body = rpc(4, "subscriptions/listen", json!({ "notifications": asked }));
        let headers = routing(&body);
        let headers = borrowed(&headers);
        let response = open(Method::POST, &server.url, &headers, body.to_string()).await;
        if header(response.headers(), "content-type").starts_with("text/event-stream") {
            break SseReader::new(response);
        }
        assert!(
            Instant::now() < deadline,
            "no listen place freed within {TIMEOUT:?} of closing a stream"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_ack(&fourth.message().await, json!(4), asked.clone());
    // Both open streams are live.
    let body = rpc(5, "tools/call", tool("test_trigger_tool_change", json!({})));
    assert_result(&call(&server.url, &body).await, json!(5));
    assert_tagged(
        &second.message().await,
        "notifications/tools/list_changed",
        &json!(2),
    );
    assert_tagged(
        &fourth.message().await,
        "notifications/tools/list_changed",
        &json!(4),
    );
}

#[tokio::test]
async fn close_all_ends_listen_streams_with_their_final_result() {
    let service = stack().endpoint_path("/mcp").into_service();
    let listeners = service.listeners().clone();
    let server = serve(service).await;
    let mut stream = listen(&server.url, "bye", json!({ "toolsListChanged": true })).await;
    assert_ack(
        &stream.message().await,
        json!("bye"),
        json!({ "toolsListChanged": true }),
    );
    assert_eq!(listeners.len(), 1);
    listeners.close_all();
    let done = stream.message().await;
    assert_eq!(done["id"], "bye", "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(done["result"]["_meta"][SUBSCRIPTION_ID], "bye", "{done}");
    assert_eq!(
        stream.next().await,
        None,
        "the stream ends after its final result"
    );
    assert_eq!(listeners.len(), 0);
}

// =============================================================================================
// §1 no requests on any stream
// =============================================================================================

#[tokio::test]
async fn streams_carry_notifications_and_the_answer_never_a_request() {
    let server = spawn(stack()).await;
    let mut body = rpc(
        1,
        "tools/call",
        with_caps(
            tool("test_streaming_elicitation", json!({})),
            json!({ "elicitation": {} }),
        ),
    );
    body["params"]["_meta"]["progressToken"] = "tok".into();
    let (status, headers, text) = call(&server.url, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        header(&headers, "content-type").starts_with("text/event-stream"),
        "{text}"
    );
    assert_eq!(header(&headers, "x-accel-buffering"), "no");
    let messages = sse_messages(&text);
    let (answer, notifications) = messages.split_last().expect("messages");
    assert!(!notifications.is_empty(), "{text}");
    for n in notifications {
        assert_eq!(n["method"], "notifications/progress", "{text}");
        assert_eq!(n["params"]["progressToken"], "tok", "{text}");
        assert!(n.get("id").is_none(), "a request on the stream: {n}");
    }
    assert_eq!(answer["id"], 1, "{text}");
    assert_eq!(text_of(&answer["result"]), "Streaming complete", "{text}");
}

// =============================================================================================
// §1 logging: only with _meta logLevel, at or above it, before the result
// =============================================================================================

#[tokio::test]
async fn log_messages_only_when_asked_for_and_at_the_level() {
    let server = spawn(stack()).await;
    let body_at = |id: i64, level: Option<&str>| {
        let mut body = rpc(id, "tools/call", tool("test_logging_tool", json!({})));
        if let Some(level) = level {
            body["params"]["_meta"][LOG_LEVEL] = level.into();
        }
        body
    };
    // No logLevel, or a level above the tool's info: one JSON answer, no log.
    for (id, level) in [(1, None), (2, Some("error")), (3, Some("warning"))] {
        let exchange = call(&server.url, &body_at(id, level)).await;
        assert_eq!(
            header(&exchange.1, "content-type"),
            "application/json; charset=utf-8",
            "{level:?}: {}",
            exchange.2
        );
        assert!(
            !exchange.2.contains("notifications/message"),
            "{}",
            exchange.2
        );
        let result = assert_result(&exchange, json!(id));
        assert_eq!(text_of(&result), "Logging evaluated");
    }
    // info or below: the log message, then the result, on this request's SSE stream.
    for (id, level) in [(4, "info"), (5, "debug")] {
        let (status, headers, text) = call(&server.url, &body_at(id, Some(level))).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(
            header(&headers, "content-type").starts_with("text/event-stream"),
            "{text}"
        );
        assert!(headers.get("mcp-session-id").is_none());
        let events = sse_events(&text);
        assert!(
            events.iter().all(|e| e.id.is_none()),
            "no event ids: {text}"
        );
        let messages = sse_messages(&text);
        assert_eq!(messages.len(), 2, "{text}");
        assert_eq!(messages[0]["method"], "notifications/message", "{text}");
        assert_eq!(messages[0]["params"]["level"], "info", "{text}");
        assert!(messages[0]["params"]["data"].is_string(), "{text}");
        assert_eq!(messages[1]["id"], id, "{text}");
        assert_eq!(text_of(&messages[1]["result"]), "Logging evaluated");
    }
}

// =============================================================================================
// §1 cancellation: closing the response stream cancels the handler
// =============================================================================================

#[tokio::test]
async fn closing_the_response_stream_drops_the_handler() {
    let dropped = Arc::new(AtomicBool::new(false));
    let server = spawn_probe(dropped.clone()).await;
    let body = rpc(1, "tools/call", tool("slow", json!({})));
    let headers = routing(&body);
    let headers = borrowed(&headers);
    let response = open(Method::POST, &server.url, &headers, body.to_string()).await;
    let mut stream = SseReader::new(response);
    let first = stream.message().await;
    assert_eq!(first["method"], "notifications/progress", "{first}");
    // Still running: it sleeps for an hour.
    assert!(
        !dropped.load(Ordering::SeqCst),
        "dropped before the client closed"
    );
    drop(stream);
    let deadline = Instant::now() + TIMEOUT;
    while !dropped.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the handler still runs {TIMEOUT:?} after the client closed its stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// =============================================================================================
// .modern(false)
// =============================================================================================

#[tokio::test]
async fn modern_off_answers_a_modern_request_like_an_unknown_revision() {
    let server = spawn(stack().modern(false)).await;
    // Without a session: the 2025 answer to any non-initialize POST without one.
    for (i, method) in ["server/discover", "tools/list"].into_iter().enumerate() {
        let exchange = call(&server.url, &rpc(i, method, json!({}))).await;
        let error = assert_refused(&exchange, StatusCode::BAD_REQUEST, -32000, json!(i));
        assert!(error.get("data").is_none(), "{error}");
    }
    // On a 2025 session: refused as an unknown revision, never -32022.
    let session = initialize(&server.url, LATEST).await;
    let body = rpc(5, "tools/list", json!({}));
    let headers = add(routing(&body), "mcp-session-id", &session);
    let exchange = post_with(&server.url, &headers, &body.to_string()).await;
    let error = assert_refused(&exchange, StatusCode::BAD_REQUEST, -32000, json!(5));
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(V), "{message}");
    // The 2025 revisions are served as ever.
    let (status, _, text) = post(
        &server.url,
        &session_headers(Some(&session), LATEST),
        &request_body(6, "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
}
