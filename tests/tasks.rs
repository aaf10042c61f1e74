//! The tasks extension (SEP-2663) over real sockets: 2026-07-28 requests to the whole stack on a
//! loopback port, against the built-in server's task fixtures and a server of the test's own.

mod common;

use common::*;
use http::StatusCode;
use mcp_tower_http::auth::ApiKeys;
use mcp_tower_http::jsonrpc::{ErrorObject, Request};
use mcp_tower_http::modern::{META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION};
use mcp_tower_http::tasks::{EXTENSION_ID, InMemoryTaskStore, TaskSupport, Tasks};
use mcp_tower_http::{McpService, McpStack, RequestContext, SessionContext};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const MODERN: &str = "2026-07-28";

/// Client capabilities declaring the tasks extension (and elicitation).
fn with_tasks() -> Value {
    json!({ "elicitation": {}, "extensions": { EXTENSION_ID: {} } })
}

fn without_tasks() -> Value {
    json!({ "elicitation": {} })
}

/// One 2026-07-28 request with its routing headers; returns the status and the JSON-RPC message.
async fn rpc(
    url: &str,
    key: Option<&str>,
    capabilities: &Value,
    method: &str,
    mut params: Value,
) -> (StatusCode, Value) {
    rpc_named(url, key, capabilities, method, &mut params, None).await
}

async fn rpc_named(
    url: &str,
    key: Option<&str>,
    capabilities: &Value,
    method: &str,
    params: &mut Value,
    mcp_name: Option<&str>,
) -> (StatusCode, Value) {
    let name = match method {
        "tools/call" => params["name"].as_str().map(str::to_owned),
        "tasks/get" | "tasks/update" | "tasks/cancel" => {
            params["taskId"].as_str().map(str::to_owned)
        }
        _ => None,
    };
    if !params["_meta"].is_object() {
        params["_meta"] = json!({});
    }
    params["_meta"][META_PROTOCOL_VERSION] = json!(MODERN);
    params["_meta"][META_CLIENT_CAPABILITIES] = capabilities.clone();
    let mut headers = vec![
        JSON,
        ACCEPT_BOTH,
        ("mcp-protocol-version", MODERN),
        ("mcp-method", method),
    ];
    if let Some(name) = mcp_name.or(name.as_deref()) {
        headers.push(("mcp-name", name));
    }
    if let Some(key) = key {
        headers.push(("x-api-key", key));
    }
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let (status, headers, body) = post(url, &headers, &body.to_string()).await;
    (status, one_message(&headers, &body))
}

async fn call_tool(url: &str, key: Option<&str>, caps: &Value, tool: &str, args: Value) -> Value {
    let (status, message) = rpc(
        url,
        key,
        caps,
        "tools/call",
        json!({ "name": tool, "arguments": args }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{message}");
    message["result"].clone()
}

async fn task_rpc(
    url: &str,
    key: Option<&str>,
    method: &str,
    params: Value,
) -> (StatusCode, Value) {
    rpc(url, key, &with_tasks(), method, params).await
}

/// Polls `tasks/get` until `done` holds for the task.
async fn wait_for(
    url: &str,
    key: Option<&str>,
    task_id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    bounded(&format!("task {task_id}"), async {
        loop {
            let (status, message) =
                task_rpc(url, key, "tasks/get", json!({ "taskId": task_id })).await;
            assert_eq!(status, StatusCode::OK, "{message}");
            let task = &message["result"];
            if done(task) {
                return task.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn terminal(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn discover_advertises_the_extension_and_a_tool_call_becomes_a_task() {
    let server = spawn(stack()).await;
    let (status, discover) = rpc(&server.url, None, &json!({}), "server/discover", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        discover["result"]["capabilities"]["extensions"][EXTENSION_ID],
        json!({})
    );
    assert!(discover["result"]["capabilities"].get("tasks").is_none());

    let created = call_tool(
        &server.url,
        None,
        &with_tasks(),
        "slow_compute",
        json!({ "seconds": 0.3, "label": "socket" }),
    )
    .await;
    assert_eq!(created["resultType"], "task", "{created}");
    assert_eq!(created["status"], "working");
    assert!(created["ttlMs"].as_u64().is_some_and(|t| t > 0));
    assert!(created["pollIntervalMs"].as_u64().is_some_and(|t| t > 0));
    for absent in [
        "result",
        "error",
        "inputRequests",
        "requestState",
        "content",
    ] {
        assert!(created.get(absent).is_none(), "{absent}: {created}");
    }
    let task_id = created["taskId"].as_str().unwrap();

    // Readable at once, then completed with the handler's result inlined.
    let (_, now) = task_rpc(&server.url, None, "tasks/get", json!({ "taskId": task_id })).await;
    assert_eq!(now["result"]["taskId"], task_id);
    assert_eq!(now["result"]["resultType"], "complete");
    let done = wait_for(&server.url, None, task_id, terminal).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(text_of(&done["result"]), "Computed socket in 0.3 s");
    assert!(done["createdAt"].as_str().unwrap().ends_with('Z'));

    // Cancelling a finished task is acknowledged and changes nothing.
    let (status, ack) = task_rpc(
        &server.url,
        None,
        "tasks/cancel",
        json!({ "taskId": task_id }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ack["result"]["resultType"], "complete");
    assert!(ack["result"].get("status").is_none(), "{ack}");
    let after = wait_for(&server.url, None, task_id, terminal).await;
    assert_eq!(after["status"], "completed");

    // Unknown tasks, and the methods the extension removed.
    let (status, unknown) =
        task_rpc(&server.url, None, "tasks/get", json!({ "taskId": "nope" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unknown["error"]["code"], -32602);
    for removed in ["tasks/result", "tasks/list"] {
        let (status, message) =
            task_rpc(&server.url, None, removed, json!({ "taskId": task_id })).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{removed}");
        assert_eq!(message["error"]["code"], -32601, "{removed}");
    }
}

#[tokio::test]
async fn without_the_extension_calls_run_in_line_and_task_methods_are_refused() {
    let server = spawn(stack()).await;
    let result = call_tool(
        &server.url,
        None,
        &without_tasks(),
        "slow_compute",
        json!({ "seconds": 0 }),
    )
    .await;
    assert_eq!(result["resultType"], "complete", "{result}");
    assert!(result.get("taskId").is_none());
    assert_eq!(text_of(&result), "Computed slow_compute in 0 s");

    // A tool that needs a task.
    let (status, refused) = rpc(
        &server.url,
        None,
        &without_tasks(),
        "tools/call",
        json!({ "name": "failing_job", "arguments": {} }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["code"], -32021);
    assert_eq!(
        refused["error"]["data"]["requiredCapabilities"]["extensions"][EXTENSION_ID],
        json!({})
    );

    for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
        let (status, message) = rpc(
            &server.url,
            None,
            &without_tasks(),
            method,
            json!({ "taskId": "t", "inputResponses": {} }),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method}");
        assert_eq!(message["error"]["code"], -32021, "{method}");
    }
}

#[tokio::test]
async fn a_task_asks_for_input_and_resumes_on_tasks_update() {
    let server = spawn(stack()).await;
    let created = call_tool(
        &server.url,
        None,
        &with_tasks(),
        "confirm_delete",
        json!({ "filename": "notes.txt" }),
    )
    .await;
    let task_id = created["taskId"].as_str().unwrap();
    let waiting = wait_for(&server.url, None, task_id, |t| {
        t["status"] == "input_required" || terminal(t)
    })
    .await;
    assert_eq!(waiting["status"], "input_required", "{waiting}");
    assert_eq!(
        waiting["inputRequests"]["confirm"]["method"],
        "elicitation/create"
    );

    // Malformed answers are refused; unknown keys are ignored.
    let (_, bad) = task_rpc(
        &server.url,
        None,
        "tasks/update",
        json!({ "taskId": task_id, "inputResponses": [] }),
    )
    .await;
    assert_eq!(bad["error"]["code"], -32602);
    let answer = json!({ "action": "accept", "content": { "confirm": true } });
    let (status, ack) = task_rpc(
        &server.url,
        None,
        "tasks/update",
        json!({ "taskId": task_id, "inputResponses": { "other": answer, "confirm": answer } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ack["result"]["resultType"], "complete");
    let done = wait_for(&server.url, None, task_id, terminal).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(text_of(&done["result"]), "Deleted notes.txt");
}

#[tokio::test]
async fn input_first_then_a_task() {
    let server = spawn(stack()).await;
    let round = call_tool(
        &server.url,
        None,
        &with_tasks(),
        "test_tool_with_task",
        json!({}),
    )
    .await;
    assert_eq!(round["resultType"], "input_required", "{round}");
    assert!(round.get("taskId").is_none());
    let state = round["requestState"].clone();
    let (_, created) = rpc(
        &server.url,
        None,
        &with_tasks(),
        "tools/call",
        json!({
            "name": "test_tool_with_task",
            "arguments": {},
            "requestState": state,
            "inputResponses": { "user_name": { "action": "accept", "content": { "name": "Alice" } } },
        }),
    )
    .await;
    let created = &created["result"];
    assert_eq!(created["resultType"], "task", "{created}");
    assert!(created.get("requestState").is_none());
    let task_id = created["taskId"].as_str().unwrap();
    let done = wait_for(&server.url, None, task_id, terminal).await;
    assert_eq!(text_of(&done["result"]), "Hello, Alice!");
}

#[tokio::test]
async fn tool_errors_complete_and_protocol_errors_fail() {
    let server = spawn(stack()).await;
    for (tool, status) in [
        ("failing_job", "completed"),
        ("protocol_error_job", "failed"),
    ] {
        let created = call_tool(&server.url, None, &with_tasks(), tool, json!({})).await;
        let task_id = created["taskId"].as_str().unwrap();
        let done = wait_for(&server.url, None, task_id, terminal).await;
        assert_eq!(done["status"], status, "{tool}: {done}");
        if status == "completed" {
            assert_eq!(done["result"]["isError"], true);
        } else {
            assert_eq!(done["error"]["code"], -32603);
            assert!(done.get("result").is_none());
        }
    }
}

#[tokio::test]
async fn the_task_id_is_the_routing_name() {
    let server = spawn(stack()).await;
    let created = call_tool(
        &server.url,
        None,
        &with_tasks(),
        "slow_compute",
        json!({ "seconds": 0 }),
    )
    .await;
    let task_id = created["taskId"].as_str().unwrap();
    let (status, message) = rpc_named(
        &server.url,
        None,
        &with_tasks(),
        "tasks/get",
        &mut json!({ "taskId": task_id }),
        Some("another-task"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    assert_eq!(message["error"]["code"], -32020);
}

#[tokio::test]
async fn tasks_are_visible_only_to_their_principal() {
    let keys = ApiKeys::new().key("key-alice").key("key-bob");
    let server = spawn(stack().authenticate(keys)).await;
    let (alice, bob) = (Some("key-alice"), Some("key-bob"));
    let created = call_tool(
        &server.url,
        alice,
        &with_tasks(),
        "slow_compute",
        json!({ "seconds": 60 }),
    )
    .await;
    let task_id = created["taskId"].as_str().unwrap();
    for method in ["tasks/get", "tasks/cancel", "tasks/update"] {
        let (status, message) = task_rpc(
            &server.url,
            bob,
            method,
            json!({ "taskId": task_id, "inputResponses": {} }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{method}");
        assert_eq!(message["error"]["code"], -32602, "{method}: {message}");
    }
    // Bob's cancel did nothing; Alice's does.
    let (_, own) = task_rpc(
        &server.url,
        alice,
        "tasks/get",
        json!({ "taskId": task_id }),
    )
    .await;
    assert_eq!(own["result"]["status"], "working");
    task_rpc(
        &server.url,
        alice,
        "tasks/cancel",
        json!({ "taskId": task_id }),
    )
    .await;
    let done = wait_for(&server.url, alice, task_id, terminal).await;
    assert_eq!(done["status"], "cancelled");
}

#[tokio::test]
async fn a_full_store_runs_optional_calls_in_line_and_refuses_required_ones() {
    let tasks = Tasks::new(InMemoryTaskStore::new(1, 1));
    let server = spawn(stack().tasks(tasks)).await;
    let first = call_tool(
        &server.url,
        None,
        &with_tasks(),
        "slow_compute",
        json!({ "seconds": 60 }),
    )
    .await;
    assert_eq!(first["resultType"], "task");
    let second = call_tool(
        &server.url,
        None,
        &with_tasks(),
        "slow_compute",
        json!({ "seconds": 0 }),
    )
    .await;
    assert_eq!(second["resultType"], "complete", "{second}");
    assert!(second["content"].is_array());
    let (status, refused) = rpc(
        &server.url,
        None,
        &with_tasks(),
        "tools/call",
        json!({ "name": "failing_job", "arguments": {} }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refused["error"]["code"], -32603, "{refused}");
    let task_id = first["taskId"].as_str().unwrap();
    task_rpc(
        &server.url,
        None,
        "tasks/cancel",
        json!({ "taskId": task_id }),
    )
    .await;
}

#[tokio::test]
async fn a_task_past_its_ttl_is_stopped_and_forgotten() {
    let tasks = Tasks::default().ttl(Duration::from_millis(300));
    let server = spawn(stack().tasks(tasks)).await;
    let created = call_tool(
        &server.url,
        None,
        &with_tasks(),
        "slow_compute",
        json!({ "seconds": 60 }),
    )
    .await;
    assert_eq!(created["ttlMs"], 300);
    let task_id = created["taskId"].as_str().unwrap();
    bounded("expiry", async {
        loop {
            let (_, message) =
                task_rpc(&server.url, None, "tasks/get", json!({ "taskId": task_id })).await;
            if message["error"]["code"] == -32602 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn tasks_can_be_turned_off() {
    let server = spawn(stack().tasks(None)).await;
    let (_, discover) = rpc(&server.url, None, &json!({}), "server/discover", json!({})).await;
    assert!(
        discover["result"]["capabilities"]
            .get("extensions")
            .is_none(),
        "{discover}"
    );
    let result = call_tool(
        &server.url,
        None,
        &with_tasks(),
        "slow_compute",
        json!({ "seconds": 0 }),
    )
    .await;
    assert_eq!(result["resultType"], "complete");
    // The server does not answer tasks/*: 404 -32601 as for any unknown method.
    let (status, message) =
        task_rpc(&server.url, None, "tasks/get", json!({ "taskId": "t" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message["error"]["code"], -32601);
}

/// A server whose one tool reports progress, becomes a task and then works until it is
/// dropped; it records the drop of its handler and the closing of the instance that ran it.
struct Endless {
    dropped: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    called: AtomicBool,
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl McpService for Endless {
    async fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        match request.method.as_str() {
            "initialize" => Ok(json!({
                "protocolVersion": "2025-11-25",
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "endless", "version": "1" },
            })),
            "tools/list" => Ok(json!({ "tools": [
                { "name": "endless", "inputSchema": { "type": "object" } },
                { "name": "instant", "inputSchema": { "type": "object" } },
            ]})),
            // Becomes a task and ends in the same poll.
            "tools/call"
                if request
                    .params
                    .as_ref()
                    .is_some_and(|p| p["name"] == "instant") =>
            {
                cx.run_as_task(TaskSupport::Optional).await?;
                Ok(json!({ "content": [{ "type": "text", "text": "instant" }] }))
            }
            "tools/call" => {
                self.called.store(true, Ordering::SeqCst);
                let _guard = SetOnDrop(self.dropped.clone());
                cx.notify_progress(1.0, None, Some("starting")).await;
                cx.run_as_task(TaskSupport::Required).await?;
                std::future::pending::<()>().await;
                Ok(json!({ "content": [] }))
            }
            other => Err(ErrorObject::method_not_found(other)),
        }
    }

    async fn close(&self) {
        if self.called.load(Ordering::SeqCst) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn cancelling_a_task_drops_its_handler_after_a_streamed_start() {
    let dropped = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    let make = {
        let (dropped, closed) = (dropped.clone(), closed.clone());
        move |_: &SessionContext<'_>| Endless {
            dropped: dropped.clone(),
            closed: closed.clone(),
            called: AtomicBool::new(false),
        }
    };
    let server = serve(McpStack::new(make).endpoint_path("/mcp").into_service()).await;
    // With a progress token the handler's first message opens a stream; the task handle is its
    // last message.
    let mut params =
        json!({ "name": "endless", "arguments": {}, "_meta": { "progressToken": "p" } });
    params["_meta"][META_PROTOCOL_VERSION] = json!(MODERN);
    params["_meta"][META_CLIENT_CAPABILITIES] = with_tasks();
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params });
    let headers = [
        JSON,
        ACCEPT_BOTH,
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "tools/call"),
        ("mcp-name", "endless"),
    ];
    let (status, response_headers, body) = post(&server.url, &headers, &body.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(header(&response_headers, "content-type").starts_with("text/event-stream"));
    let messages = sse_messages(&body);
    assert_eq!(messages.len(), 2, "{body}");
    assert_eq!(messages[0]["method"], "notifications/progress");
    assert_eq!(messages[1]["id"], 7);
    let created = &messages[1]["result"];
    assert_eq!(created["resultType"], "task", "{body}");
    let task_id = created["taskId"].as_str().unwrap();

    // The handler lives on after the response ended.
    let (_, now) = task_rpc(&server.url, None, "tasks/get", json!({ "taskId": task_id })).await;
    assert_eq!(now["result"]["status"], "working");
    assert!(!dropped.load(Ordering::SeqCst));
    assert!(!closed.load(Ordering::SeqCst));

    let (_, ack) = task_rpc(
        &server.url,
        None,
        "tasks/cancel",
        json!({ "taskId": task_id }),
    )
    .await;
    assert_eq!(ack["result"]["resultType"], "complete");
    let done = wait_for(&server.url, None, task_id, terminal).await;
    assert_eq!(done["status"], "cancelled");
    bounded("handler dropped and server closed", async {
        while !(dropped.load(Ordering::SeqCst) && closed.load(Ordering::SeqCst)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Reads a streaming SSE body into `text` until it has carried `n` JSON-RPC messages in all.
async fn read_messages(
    body: &mut hyper::body::Incoming,
    text: &mut String,
    n: usize,
) -> Vec<Value> {
    loop {
        let messages = sse_messages(text);
        if messages.len() >= n {
            return messages;
        }
        let frame = try_next_frame(body, TIMEOUT)
            .await
            .unwrap_or_else(|()| panic!("no message within {TIMEOUT:?}; so far: {text}"))
            .expect("the stream ended early");
        text.push_str(std::str::from_utf8(&frame).expect("utf-8"));
    }
}

#[tokio::test]
async fn listen_streams_carry_status_notifications_of_the_tasks_asked_for() {
    let server = spawn(stack()).await;
    let created = call_tool(
        &server.url,
        None,
        &with_tasks(),
        "confirm_delete",
        json!({ "filename": "a.txt" }),
    )
    .await;
    let task_id = created["taskId"].as_str().unwrap().to_owned();
    wait_for(&server.url, None, &task_id, |t| {
        t["status"] == "input_required"
    })
    .await;

    let listen = |caps: Value| {
        let body = json!({ "jsonrpc": "2.0", "id": "sub", "method": "subscriptions/listen", "params": {
            "notifications": { "taskIds": [task_id.clone()] },
            "_meta": { META_PROTOCOL_VERSION: MODERN, META_CLIENT_CAPABILITIES: caps },
        }});
        let headers = [
            JSON,
            ACCEPT_BOTH,
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "subscriptions/listen"),
        ];
        let url = server.url.clone();
        async move { open(http::Method::POST, &url, &headers, body.to_string()).await }
    };
    // Task notifications need the extension.
    let refused = listen(without_tasks()).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);

    let mut stream = listen(with_tasks()).await.into_body();
    let mut text = String::new();
    let ack = read_messages(&mut stream, &mut text, 1).await;
    assert_eq!(ack[0]["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack[0]["params"]["notifications"]["taskIds"],
        json!([task_id])
    );

    let answer = json!({ "action": "accept", "content": { "confirm": true } });
    task_rpc(
        &server.url,
        None,
        "tasks/update",
        json!({ "taskId": task_id, "inputResponses": { "confirm": answer } }),
    )
    .await;
    let messages = read_messages(&mut stream, &mut text, 3).await;
    let statuses: Vec<&str> = messages[1..]
        .iter()
        .map(|m| {
            assert_eq!(m["method"], "notifications/tasks", "{m}");
            assert_eq!(m["params"]["taskId"], task_id.as_str());
            assert_eq!(
                m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
                "sub"
            );
            m["params"]["status"].as_str().unwrap()
        })
        .collect();
    assert_eq!(statuses, ["working", "completed"]);
    assert_eq!(text_of(&messages[2]["params"]["result"]), "Deleted a.txt");
}

#[tokio::test]
async fn a_handler_that_ends_as_it_becomes_a_task_answers_with_the_finished_task() {
    let make = |_: &SessionContext<'_>| Endless {
        dropped: Arc::new(AtomicBool::new(false)),
        closed: Arc::new(AtomicBool::new(false)),
        called: AtomicBool::new(false),
    };
    // One running task at most: a task left behind as running would turn the second call
    // into an in-line one.
    let stack = McpStack::new(make).tasks(Tasks::default().max_running(1));
    let server = serve(stack.endpoint_path("/mcp").into_service()).await;
    for _ in 0..2 {
        let created = call_tool(&server.url, None, &with_tasks(), "instant", json!({})).await;
        assert_eq!(created["resultType"], "task", "{created}");
        assert_eq!(created["status"], "completed", "{created}");
        let task_id = created["taskId"].as_str().unwrap();
        let done = wait_for(&server.url, None, task_id, terminal).await;
        assert_eq!(text_of(&done["result"]), "instant");
    }
}
