//! `mcp-proxy --stdio` (`src/stdio_server.rs`): the built-in server on stdin/stdout.
//!
//! - Run directly: stdout carries only JSON-RPC lines (logs go to stderr, even at `debug`),
//!   a bad line is answered and skipped, and closing stdin ends the process with status 0.
//! - Run as the stdio child of the proxy itself (`mcp-proxy -- mcp-proxy --stdio`) and driven
//!   over real loopback HTTP with a 2025 session: initialize, tools/list, echo, and a sampling
//!   request of the child answered by the HTTP client; DELETE ends the child (counted in
//!   `/proc`).
//! - `--stdio` with a COMMAND is refused.

mod support;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use support::{
    EventStream, Proxy, header, must_send, sse_messages, wait_until, wait_until_blocking,
};

const VERSION: &str = "2025-11-25";
/// The bound on every wait for the binary's output.
const WAIT: Duration = Duration::from_secs(10);

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-proxy")
}

/// `mcp-proxy --stdio`, free of the test's `MCP_PROXY_*` environment.
fn stdio_command() -> Command {
    let mut command = Command::new(binary());
    for (var, _) in std::env::vars_os() {
        if var.to_str().is_some_and(|v| v.starts_with("MCP_PROXY_")) {
            command.env_remove(var);
        }
    }
    command.arg("--stdio");
    command
}

/// Kills and reaps the child when dropped, also on panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn initialize_body(id: i64) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": { "sampling": {} },
            "clientInfo": { "name": "stdio-serve-test", "version": "0" },
        },
    })
}

fn request_body(id: i64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

#[test]
fn stdio_mode_writes_only_json_lines_and_exits_0_at_end_of_input() {
    let mut child = KillOnDrop(
        stdio_command()
            .env("RUST_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mcp-proxy --stdio"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let stderr = child.0.stderr.take().expect("piped stderr");
    let (tx, lines) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let logs = thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    let next = || {
        let line = lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no line on stdout within {WAIT:?}: {e}"));
        serde_json::from_str::<Value>(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
    };

    writeln!(stdin, "{}", initialize_body(1)).unwrap();
    let init = next();
    assert_eq!(init["id"], 1, "{init}");
    assert_eq!(init["result"]["protocolVersion"], VERSION, "{init}");
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    let echo = json!({ "name": "echo", "arguments": { "text": "over stdio" } });
    writeln!(stdin, "{}", request_body(2, "tools/call", echo)).unwrap();
    let echoed = next();
    assert_eq!(echoed["id"], 2, "{echoed}");
    assert_eq!(
        echoed["result"]["content"][0]["text"], "over stdio",
        "{echoed}"
    );
    writeln!(stdin, "this is not JSON").unwrap();
    let refused = next();
    assert_eq!(refused["error"]["code"], -32700, "{refused}");
    assert_eq!(refused["id"], Value::Null, "{refused}");

    drop(stdin);
    let status = wait_until_blocking(WAIT, || child.0.try_wait().unwrap().is_some())
        .map(|_| child.0.try_wait().unwrap().expect("exited"))
        .unwrap_or_else(|_| panic!("mcp-proxy --stdio did not exit within {WAIT:?} of EOF"));
    // Whatever else it wrote on stdout is JSON too (the list_changed of the built-in server).
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
        assert!(
            serde_json::from_str::<Value>(&line).is_ok(),
            "stdout: {line}"
        );
    }
    let logs = logs.join().unwrap();
    assert!(status.success(), "{status:?}; stderr:\n{logs}");
    assert!(!logs.is_empty(), "debug logs go to stderr");
}

#[test]
fn stdio_with_a_command_is_refused() {
    let output = stdio_command()
        .args(["--", "cat"])
        .stdin(Stdio::null())
        .output()
        .expect("run mcp-proxy");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--stdio"), "{stderr}");
    assert!(output.stdout.is_empty(), "{output:?}");
}

const ACCEPT_BOTH: (&str, &str) = ("accept", "application/json, text/event-stream");
const JSON: (&str, &str) = ("content-type", "application/json");

/// The headers of a conforming POST on `session`.
fn headers(session: Option<&str>) -> Vec<(&str, &str)> {
    let mut headers = vec![ACCEPT_BOTH, JSON, ("mcp-protocol-version", VERSION)];
    headers.extend(session.map(|s| ("mcp-session-id", s)));
    headers
}

/// POSTs `body`; status, headers and the whole body.
async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> (StatusCode, HeaderMap, String) {
    let reply = must_send(Method::POST, url, headers, body.to_owned()).await;
    (reply.status, reply.headers, reply.body)
}

/// The one JSON-RPC message of a JSON or SSE body.
fn one_message(headers: &HeaderMap, body: &str) -> Value {
    let mut messages = if header(headers, "content-type").starts_with("text/event-stream") {
        sse_messages(body)
    } else {
        vec![serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))]
    };
    assert_eq!(messages.len(), 1, "one message in {body:?}");
    messages.remove(0)
}

/// The first message of an SSE response that `wanted` accepts.
async fn read_until(stream: &mut EventStream, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        let message = stream
            .next_message(WAIT)
            .await
            .expect("the stream ended before the expected message");
        if wanted(&message) {
            return message;
        }
    }
}

#[tokio::test]
async fn the_built_in_server_as_a_stdio_child_of_the_proxy() {
    let command: Vec<OsString> = vec![binary().into(), "--stdio".into()];
    let proxy = Proxy::start(&[], &command);
    let url = proxy.url();

    let (status, h, body) = post(&url, &[ACCEPT_BOTH, JSON], &initialize_body(1).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", proxy.log());
    let init = one_message(&h, &body);
    assert_eq!(init["result"]["protocolVersion"], VERSION, "{init}");
    assert_eq!(
        init["result"]["serverInfo"]["name"], "mcp-tower-http-everything",
        "the answer comes from the child: {init}"
    );
    let session = header(&h, "mcp-session-id").to_owned();
    assert!(!session.is_empty(), "{h:?}");
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, _, body) = post(&url, &headers(Some(&session)), initialized).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let children = proxy.live_children();
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(children[0].comm, "mcp-proxy", "{children:?}");

    let list = request_body(2, "tools/list", json!({})).to_string();
    let (status, h, body) = post(&url, &headers(Some(&session)), &list).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tools = one_message(&h, &body);
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools: {tools}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tool in ["echo", "test_sampling"] {
        assert!(names.contains(&tool), "{tool} in {names:?}");
    }

    let echo = json!({ "name": "echo", "arguments": { "text": "through two hops" } });
    let echo = request_body(3, "tools/call", echo).to_string();
    let (status, h, body) = post(&url, &headers(Some(&session)), &echo).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let echoed = one_message(&h, &body);
    assert_eq!(echoed["id"], 3, "{echoed}");
    assert_eq!(
        echoed["result"]["content"][0]["text"], "through two hops",
        "{echoed}"
    );

    // The child asks for sampling; the request reaches the HTTP client on its POST stream and
    // the client's answer goes back down to the child.
    let sampling = json!({ "name": "test_sampling", "arguments": { "prompt": "say hi" } });
    let sampling = request_body(4, "tools/call", sampling).to_string();
    let mut stream =
        EventStream::request(Method::POST, &url, &headers(Some(&session)), sampling).await;
    assert_eq!(stream.status, StatusCode::OK);
    let request = read_until(&mut stream, |m| m.get("method").is_some()).await;
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let answer = json!({
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": { "role": "assistant", "model": "test", "content": { "type": "text", "text": "hi there" } },
    });
    let (status, _, body) = post(&url, &headers(Some(&session)), &answer.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let result = read_until(&mut stream, |m| m.get("id") == Some(&json!(4))).await;
    assert_eq!(
        result["result"]["content"][0]["text"], "LLM response: hi there",
        "{result}"
    );

    // Ending the session ends the child, and it is reaped.
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", VERSION),
    ];
    let reply = must_send(Method::DELETE, &url, &headers, "").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply}");
    let gone = wait_until(WAIT, || proxy.children().is_empty()).await;
    assert!(
        gone.is_ok(),
        "children left: {:?}\n{}",
        proxy.children(),
        proxy.log()
    );
    let log = proxy.log();
    assert!(
        !log.contains("killing it"),
        "the child exits on EOF:\n{log}"
    );
}

/// A 2026-07-28 `tools/call` with routing headers and `_meta`.
fn modern_call(id: i64, tool: &str, extra: Value) -> (Vec<(&'static str, String)>, String) {
    let mut params = json!({
        "name": tool,
        "arguments": {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": { "elicitation": {}, "sampling": {} },
        },
    });
    if let (Value::Object(p), Value::Object(extra)) = (&mut params, extra) {
        p.extend(extra);
    }
    let headers = vec![
        ("accept", "application/json, text/event-stream".to_owned()),
        ("content-type", "application/json".to_owned()),
        ("mcp-protocol-version", "2026-07-28".to_owned()),
        ("mcp-method", "tools/call".to_owned()),
        ("mcp-name", tool.to_owned()),
    ];
    (headers, request_body(id, "tools/call", params).to_string())
}

/// Through the bridge, the built-in server (a 2025 child here) names its input requests
/// (`_meta` `mcp-tower-http/inputKey`): a 2026-07-28 client sees the key the handler asked under,
/// and its retry finds the waiting call by the sealed state's binding.
#[tokio::test]
async fn a_2025_child_of_this_crate_names_its_input_requests_for_2026_07_28_clients() {
    let command: Vec<OsString> = vec![binary().into(), "--stdio".into()];
    let proxy = Proxy::start(&[], &command);
    let url = proxy.url();
    let post = |headers: Vec<(&'static str, String)>, body: String| {
        let url = url.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(&url, &headers, &body).await
        }
    };

    let (headers, body) = modern_call(1, "test_input_required_result_elicitation", json!({}));
    let (status, h, body) = post(headers, body).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", proxy.log());
    let round = one_message(&h, &body);
    let result = &round["result"];
    assert_eq!(result["resultType"], "input_required", "{round}");
    let request = &result["inputRequests"]["user_name"];
    assert_eq!(request["method"], "elicitation/create", "{round}");
    // The hint is for the relay only.
    assert!(request["params"].get("_meta").is_none(), "{round}");
    let state = result["requestState"]
        .as_str()
        .unwrap_or_else(|| panic!("{round}"));

    let retry = json!({
        "inputResponses": { "user_name": { "action": "accept", "content": { "name": "Ada" } } },
        "requestState": state,
    });
    let (headers, body) = modern_call(2, "test_input_required_result_elicitation", retry);
    let (status, h, body) = post(headers, body).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", proxy.log());
    let done = one_message(&h, &body);
    assert_eq!(done["id"], 2, "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], "Hello, Ada!",
        "{done}"
    );
}
