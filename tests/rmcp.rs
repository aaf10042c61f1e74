//! The rmcp adapter over real sockets: an rmcp `#[tool_router]` server served by the whole
//! `McpStack` on 127.0.0.1, driven by hyper (Rust-only tests) and by the official TypeScript and
//! Python clients (`#[ignore]`d: `.ci/run` installs the clients and runs them; without them they
//! fail rather than pass).
#![cfg(feature = "rmcp")]

mod common;

use common::{
    ACCEPT_BOTH, JSON, TestServer, bounded, initialize, one_message, post, request_body, serve,
    session_headers, sse_messages,
};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use mcp_tower_http::McpStack;
use mcp_tower_http::Principal;
use mcp_tower_http::auth::ApiKeys;
use mcp_tower_http::rmcp::RmcpService;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

#[derive(Clone)]
struct Tools {
    tools: ToolRouter<Self>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
struct Name {
    /// Your name.
    name: String,
}
rmcp::elicit_safe!(Name);

#[tool_router]
impl Tools {
    fn new() -> Self {
        Self {
            tools: Self::tool_router(),
        }
    }

    #[tool(description = "Add two integers")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    /// Asks the client for a name (a server→client elicitation request) and greets it.
    #[tool(description = "Ask for your name, then greet you")]
    async fn greet(&self, peer: Peer<RoleServer>) -> Result<CallToolResult, ErrorData> {
        match peer.elicit::<Name>("What is your name?").await {
            Ok(Some(Name { name })) => Ok(CallToolResult::success(vec![ContentBlock::text(
                format!("Hello, {name}!"),
            )])),
            Ok(None) => Ok(CallToolResult::error(vec![ContentBlock::text(
                "no name given",
            )])),
            Err(e) => Err(ErrorData::internal_error(e.to_string(), None)),
        }
    }

    /// Reports progress under the client's token (to the call's own stream), then answers.
    #[tool(description = "Count to two, reporting progress")]
    async fn count(&self, context: RequestContext<RoleServer>) -> String {
        if let Some(token) = context.meta.get_progress_token() {
            for i in 1..=2 {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(i));
                let _ = context.peer.notify_progress(progress.with_total(2.0)).await;
            }
        }
        "counted".into()
    }

    /// A notification unrelated to the call: it goes to the session's standalone GET stream.
    #[tool(description = "Announce that the tool list changed")]
    async fn announce(&self, peer: Peer<RoleServer>) -> String {
        match peer.notify_tool_list_changed().await {
            Ok(()) => "announced".into(),
            Err(e) => format!("failed: {e}"),
        }
    }

    /// The principal the stack's auth layer found, from rmcp's request extensions.
    #[tool(description = "Who is calling")]
    fn whoami(&self, Extension(principal): Extension<Principal>) -> String {
        principal.subject.to_string()
    }

    #[tool(description = "Panics")]
    fn explode(&self) -> String {
        panic!("boom")
    }
}

#[tool_handler(router = self.tools)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("rmcp-tools", "1.0.0"))
            .with_instructions("Call `add` or `greet`.")
    }
}

async fn spawn_rmcp() -> TestServer {
    let service = McpStack::new(RmcpService::new(Tools::new))
        .endpoint_path("/mcp")
        .legacy_sse("/sse", "/messages")
        .into_service();
    serve(service).await
}

fn tool_text(message: &Value) -> &str {
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {message}"))
}

/// initialize → tools/list → tools/call at each 2025 revision the clients speak.
#[tokio::test]
async fn lists_and_calls_tools_over_http() {
    let server = spawn_rmcp().await;
    for version in ["2025-11-25", "2025-06-18", "2025-03-26"] {
        let (status, headers, body) = post(
            &server.url,
            &[ACCEPT_BOTH, JSON],
            &common::initialize_body(1, version),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let init = one_message(&headers, &body);
        assert_eq!(init["result"]["protocolVersion"], version, "{body}");
        assert_eq!(init["result"]["serverInfo"]["name"], "rmcp-tools", "{body}");
        assert_eq!(
            init["result"]["instructions"], "Call `add` or `greet`.",
            "{body}"
        );
        assert!(
            init["result"]["capabilities"]["tools"].is_object(),
            "{body}"
        );
    }

    let session = initialize(&server.url, "2025-11-25").await;
    let headers = session_headers(Some(&session), "2025-11-25");
    let (status, h, body) = post(
        &server.url,
        &headers,
        &request_body(2, "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = one_message(&h, &body);
    assert_eq!(list["id"], 2);
    let mut names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["add", "announce", "count", "explode", "greet", "whoami"],
        "{body}"
    );
    let add = list["result"]["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "add"))
        .expect("add");
    assert_eq!(add["inputSchema"]["properties"]["a"]["type"], "integer");

    // Client ids that collide across requests never confuse the relay (it renumbers).
    let calls = (0..8).map(|i| {
        let body = request_body(
            7,
            "tools/call",
            json!({ "name": "add", "arguments": { "a": i, "b": 100 } }),
        );
        let (url, headers) = (server.url.clone(), headers.clone());
        async move {
            let (status, h, body) = post(&url, &headers, &body).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            (i, one_message(&h, &body))
        }
    });
    for (i, answer) in futures_util::future::join_all(calls).await {
        assert_eq!(answer["id"], 7);
        assert_eq!(tool_text(&answer), (i + 100).to_string());
    }

    // An unknown tool is rmcp's own error, passed through.
    let (_, h, body) = post(
        &server.url,
        &headers,
        &request_body(3, "tools/call", json!({ "name": "nope", "arguments": {} })),
    )
    .await;
    let answer = one_message(&h, &body);
    assert!(answer["error"]["code"].is_i64(), "{body}");
}

/// The tool's elicitation goes out on the call's SSE stream; the answer POSTed back reaches
/// rmcp, and the call completes with it.
#[tokio::test]
async fn server_to_client_request_is_answered_over_the_stream() {
    let server = spawn_rmcp().await;
    let session = initialize(&server.url, "2025-11-25").await;
    let headers = session_headers(Some(&session), "2025-11-25");
    let call = request_body(5, "tools/call", json!({ "name": "greet", "arguments": {} }));
    let response = common::open(Method::POST, &server.url, &headers, call).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        common::header(response.headers(), "content-type").starts_with("text/event-stream"),
        "{:?}",
        response.headers()
    );
    let mut body = response.into_body();
    let mut text = String::new();
    // The elicitation request arrives first.
    let request = loop {
        let frame = common::next_frame(&mut body, common::TIMEOUT)
            .await
            .expect("stream ended before the elicitation request");
        text.push_str(&String::from_utf8_lossy(&frame));
        if let Some(m) = sse_messages(&text)
            .into_iter()
            .find(|m| m["method"] == "elicitation/create")
        {
            break m;
        }
    };
    assert_eq!(request["params"]["message"], "What is your name?");
    assert_eq!(
        request["params"]["requestedSchema"]["properties"]["name"]["type"],
        "string"
    );
    let answer = json!({
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": { "action": "accept", "content": { "name": "Ada" } },
    });
    let (status, _, reply) = post(&server.url, &headers, &answer.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let rest = bounded("the rest of the call's stream", body.collect())
        .await
        .expect("stream body")
        .to_bytes();
    text.push_str(&String::from_utf8_lossy(&rest));
    let result = sse_messages(&text)
        .into_iter()
        .find(|m| m["id"] == 5)
        .unwrap_or_else(|| panic!("no answer to the call in {text}"));
    assert_eq!(tool_text(&result), "Hello, Ada!", "{text}");
}

/// rmcp's progress goes to the stream of the call that owns the token, before its answer; a
/// notification unrelated to any call goes to the standalone GET stream.
#[tokio::test]
async fn notifications_reach_the_right_stream() {
    let server = spawn_rmcp().await;
    let session = initialize(&server.url, "2025-11-25").await;
    let headers = session_headers(Some(&session), "2025-11-25");
    let call = request_body(
        4,
        "tools/call",
        json!({ "name": "count", "arguments": {}, "_meta": { "progressToken": "tok" } }),
    );
    let (status, _, body) = post(&server.url, &headers, &call).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let messages = sse_messages(&body);
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{body}");
    assert_eq!(progress[0]["params"]["progressToken"], "tok");
    assert_eq!(progress[1]["params"]["progress"], 2.0);
    assert_eq!(messages.last().map(tool_text), Some("counted"), "{body}");

    let get_headers = [
        common::ACCEPT_SSE,
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let stream = common::open(Method::GET, &server.url, &get_headers, "").await;
    assert_eq!(stream.status(), StatusCode::OK);
    let mut stream = stream.into_body();
    let (_, h, body) = post(
        &server.url,
        &headers,
        &request_body(
            5,
            "tools/call",
            json!({ "name": "announce", "arguments": {} }),
        ),
    )
    .await;
    assert_eq!(tool_text(&one_message(&h, &body)), "announced", "{body}");
    let mut text = String::new();
    loop {
        let frame = common::next_frame(&mut stream, common::TIMEOUT)
            .await
            .expect("standalone stream ended");
        text.push_str(&String::from_utf8_lossy(&frame));
        if sse_messages(&text)
            .iter()
            .any(|m| m["method"] == "notifications/tools/list_changed")
        {
            break;
        }
    }
}

/// The stack's auth guards the rmcp server, and the principal reaches its tools.
#[tokio::test]
async fn the_principal_reaches_rmcp_tools() {
    let service = McpStack::new(RmcpService::new(Tools::new))
        .endpoint_path("/mcp")
        .authenticate(ApiKeys::new().key_with_subject("sekrit", "alice"))
        .into_service();
    let server = serve(service).await;
    let (status, _, _) = post(
        &server.url,
        &[ACCEPT_BOTH, JSON],
        &common::initialize_body(1, "2025-11-25"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let key = ("x-api-key", "sekrit");
    let (status, h, body) = post(
        &server.url,
        &[ACCEPT_BOTH, JSON, key],
        &common::initialize_body(1, "2025-11-25"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = common::header(&h, "mcp-session-id").to_owned();
    let mut headers = session_headers(Some(&session), "2025-11-25");
    headers.push(key);
    let (_, h, body) = post(
        &server.url,
        &headers,
        &request_body(
            2,
            "tools/call",
            json!({ "name": "whoami", "arguments": {} }),
        ),
    )
    .await;
    assert_eq!(tool_text(&one_message(&h, &body)), "alice", "{body}");
}

/// A client without the elicitation capability gets the tool's error, not a hang.
#[tokio::test]
async fn elicitation_without_the_capability_fails_fast() {
    let server = spawn_rmcp().await;
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "bare", "version": "0" } },
    });
    let (status, h, body) = post(&server.url, &[ACCEPT_BOTH, JSON], &init.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = common::header(&h, "mcp-session-id").to_owned();
    let headers = session_headers(Some(&session), "2025-06-18");
    let (_, h, body) = post(
        &server.url,
        &headers,
        &request_body(2, "tools/call", json!({ "name": "greet", "arguments": {} })),
    )
    .await;
    let answer = one_message(&h, &body);
    assert_eq!(answer["id"], 2, "{body}");
    // rmcp checks the capability the session's `initialize` declared.
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("elicitation")),
        "{body}"
    );
}

/// A panicking tool answers `-32603` and the session goes on.
#[tokio::test]
async fn a_panicking_tool_answers_an_error() {
    let server = spawn_rmcp().await;
    let session = initialize(&server.url, "2025-11-25").await;
    let headers = session_headers(Some(&session), "2025-11-25");
    let (_, h, body) = post(
        &server.url,
        &headers,
        &request_body(
            2,
            "tools/call",
            json!({ "name": "explode", "arguments": {} }),
        ),
    )
    .await;
    let answer = one_message(&h, &body);
    assert_eq!(answer["error"]["code"], -32603, "{body}");
    let (_, h, body) = post(
        &server.url,
        &headers,
        &request_body(
            3,
            "tools/call",
            json!({ "name": "add", "arguments": { "a": 2, "b": 3 } }),
        ),
    )
    .await;
    assert_eq!(tool_text(&one_message(&h, &body)), "5");
}

/// DELETE ends the session: the rmcp service is closed and the session is gone.
#[tokio::test]
async fn delete_closes_the_rmcp_service() {
    let server = spawn_rmcp().await;
    let session = initialize(&server.url, "2025-11-25").await;
    let headers = session_headers(Some(&session), "2025-11-25");
    let (status, _, _) = common::delete(&server.url, &headers).await;
    assert!(status.is_success(), "{status}");
    let (status, _, body) = post(
        &server.url,
        &headers,
        &request_body(2, "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// 2026-07-28: no session; the endpoint builds `server/discover` from rmcp's `initialize`
/// answer, tools are listed and called on fresh rmcp services, and a tool's elicitation is an
/// `input_required` round.
#[tokio::test]
async fn sessionless_2026_requests_reach_rmcp() {
    let server = spawn_rmcp().await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "modern", "version": "0" },
    });
    let headers = |method: &'static str| {
        vec![
            ACCEPT_BOTH,
            JSON,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
        ]
    };
    let (status, h, body) = post(
        &server.url,
        &headers("server/discover"),
        &request_body(1, "server/discover", json!({ "_meta": meta })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let discover = one_message(&h, &body);
    // Built by the endpoint from rmcp's `initialize` answer.
    assert_eq!(
        discover["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "rmcp-tools",
        "{body}"
    );
    assert_eq!(
        discover["result"]["instructions"], "Call `add` or `greet`.",
        "{body}"
    );
    assert!(
        discover["result"]["capabilities"]["tools"].is_object(),
        "{body}"
    );
    assert!(
        discover["result"]["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v == "2026-07-28")),
        "{body}"
    );

    let (status, h, body) = post(
        &server.url,
        &headers("tools/list"),
        &request_body(2, "tools/list", json!({ "_meta": meta })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = one_message(&h, &body);
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "add")),
        "{body}"
    );

    let mut call_headers = headers("tools/call");
    call_headers.push(("mcp-name", "add"));
    let (status, h, body) = post(
        &server.url,
        &call_headers,
        &request_body(
            3,
            "tools/call",
            json!({ "name": "add", "arguments": { "a": 40, "b": 2 }, "_meta": meta }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(tool_text(&one_message(&h, &body)), "42", "{body}");

    // The tool's elicitation becomes an `input_required` round; the retry with the answer
    // runs the tool again on a fresh rmcp service, and this time it gets the answer.
    let mut call_headers = headers("tools/call");
    call_headers.push(("mcp-name", "greet"));
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": { "elicitation": {} },
    });
    let (status, h, body) = post(
        &server.url,
        &call_headers,
        &request_body(
            4,
            "tools/call",
            json!({ "name": "greet", "arguments": {}, "_meta": meta }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let round = one_message(&h, &body);
    assert_eq!(round["result"]["resultType"], "input_required", "{body}");
    let requests = round["result"]["inputRequests"]
        .as_object()
        .expect("inputRequests");
    assert_eq!(requests.len(), 1, "{body}");
    let (key, asked) = requests.iter().next().expect("one request");
    assert_eq!(asked["method"], "elicitation/create", "{body}");
    assert_eq!(asked["params"]["message"], "What is your name?", "{body}");
    let retry = json!({
        "name": "greet",
        "arguments": {},
        "_meta": meta,
        "inputResponses": { key: { "action": "accept", "content": { "name": "Grace" } } },
        "requestState": round["result"]["requestState"],
    });
    let (status, h, body) = post(
        &server.url,
        &call_headers,
        &request_body(5, "tools/call", retry),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        tool_text(&one_message(&h, &body)),
        "Hello, Grace!",
        "{body}"
    );
}

// --- The official clients -------------------------------------------------------------------

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

fn require(what: &str, marker: &Path) {
    assert!(
        marker.exists(),
        "{what} is not installed ({} is missing): run `bash .ci/run`, which installs the interop \
         clients and runs the ignored tests",
        marker.display()
    );
}

/// Runs a client script against the rmcp server (Streamable HTTP at `/mcp`, or the legacy
/// HTTP+SSE transport at `/sse`) and checks what it printed.
async fn run_official_client(label: &str, mut cmd: Command, transport: &str) {
    run_client_expecting(label, &mut cmd, transport, &[]).await;
}

/// Runs a client script with the server's URL (after its own arguments) and checks that it
/// listed the tools, called `add`, and answered `greet`'s elicitation, plus `more` lines.
async fn run_client_expecting(label: &str, cmd: &mut Command, transport: &str, more: &[&str]) {
    let server = spawn_rmcp().await;
    cmd.arg(&server.url);
    if transport != "modern" {
        cmd.arg(transport);
    }
    cmd.current_dir(interop_dir())
        .env("NO_PROXY", "127.0.0.1,localhost,::1")
        .env("no_proxy", "127.0.0.1,localhost,::1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("start the client");
    let output = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{label} over {transport}: no exit within {CLIENT_TIMEOUT:?}"))
        .expect("client output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = format!(
        "{label} over {transport}\nexit: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "client failed\n{report}");
    for expected in [
        "tools: add,announce,count,explode,greet,whoami",
        "add -> 5",
        "elicited: What is your name?",
        "greet -> Hello, Interop!",
    ]
    .iter()
    .chain(more)
    {
        assert!(
            stdout.lines().any(|l| l.trim() == *expected),
            "missing `{expected}`\n{report}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the TypeScript SDK client (tests/interop/node_modules): bash .ci/run"]
async fn typescript_client_drives_rmcp_server() {
    let dir = interop_dir();
    require(
        "the TypeScript SDK client",
        &dir.join("node_modules/@modelcontextprotocol/sdk/package.json"),
    );
    for transport in ["streamable", "sse"] {
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("rmcp-client.mjs"));
        run_official_client("TypeScript client", cmd, transport).await;
    }
}

#[tokio::test]
#[ignore = "needs the Python `mcp` client (tests/interop/.venv): bash .ci/run"]
async fn python_client_drives_rmcp_server() {
    let dir = interop_dir();
    let python = dir.join(".venv/bin/python");
    require("the Python `mcp` client (venv)", &python);
    for transport in ["streamable", "sse"] {
        let mut cmd = Command::new(&python);
        cmd.arg(dir.join("rmcp_client.py"));
        run_official_client("Python client", cmd, transport).await;
    }
}

/// The TypeScript client 2.x pinned to 2026-07-28: no session, and the tool's elicitation is an
/// `input_required` round the client fulfils and retries.
#[tokio::test]
#[ignore = "needs the TypeScript client 2.x (tests/interop/node_modules): bash .ci/run"]
async fn typescript_2026_client_drives_rmcp_server() {
    let dir = interop_dir();
    require(
        "the TypeScript client 2.x",
        &dir.join("node_modules/@modelcontextprotocol/client/package.json"),
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("rmcp-modern-client.mjs"));
    run_client_expecting(
        "TypeScript client 2.x",
        &mut cmd,
        "modern",
        &["protocol: 2026-07-28", "retried with inputResponses"],
    )
    .await;
}
