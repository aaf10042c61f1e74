use super::*;
use crate::jsonrpc::{ErrorCode, Id, Message};
use crate::sse::StreamEvent;
use tokio::sync::mpsc;

#[derive(Deserialize)]
struct AddArgs {
    a: f64,
    b: f64,
}

fn server() -> McpServer {
    McpServer::builder(Implementation::new("test", "1.2.3"))
        .instructions("be nice")
        .tool(
            Tool::new("add", "Adds").input_schema(json!({ "type": "object" })),
            |args: AddArgs, _cx: ServerContext| async move {
                Ok(CallToolResult::text((args.a + args.b).to_string()))
            },
        )
        .tool(Tool::new("later", "Appears later").disabled(), |_: NoArgs, _cx| async {
            Ok(CallToolResult::text("here"))
        })
        .tool(Tool::new("fails", "Fails"), |_: NoArgs, _cx| async {
            Ok(CallToolResult::error("nope"))
        })
        .resource(
            Resource::new("mem://a", "a").mime_type("text/plain"),
            |uri, _cx| async move { Ok(ReadResourceResult::new([ResourceContents::text(uri, "A")])) },
        )
        .resource_template(
            ResourceTemplate::new("mem://items/{id}", "items"),
            |uri, vars: TemplateVariables, _cx| async move {
                let id = vars.get("id").cloned().unwrap_or_default();
                Ok(ReadResourceResult::new([ResourceContents::text(uri, id)]))
            },
        )
        .prompt(
            Prompt::new("greet", "Greets").argument(PromptArgument::required("name", "Who")),
            |args: HashMap<String, String>, _cx| async move {
                let text = format!("Hello, {}", args.get("name").cloned().unwrap_or_default());
                Ok(GetPromptResult::new("greeting", [PromptMessage::user(Content::text(text))]))
            },
        )
        .completion(|request: CompleteRequest, _cx| async move {
            Ok(CompleteResult::matching(["alice", "bob", "alfred"], &request.argument.value))
        })
        .on_subscribe(|_, _| {})
        .build()
}

async fn call_at(
    server: &McpServer,
    version: ProtocolVersion,
    method: &str,
    params: Value,
) -> (Result<Value, ErrorObject>, Vec<Message>) {
    let (mut cx, mut rx): (_, mpsc::Receiver<StreamEvent>) =
        RequestContext::detached(Id::Number(1), None, 16);
    cx.common.protocol_version = version;
    let request = Request {
        id: Id::Number(1),
        method: method.into(),
        params: Some(params),
    };
    let answer = server.handle_request(request, cx).await;
    let mut sent = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let StreamEvent::Message(message) = event {
            sent.push(message);
        }
    }
    (answer, sent)
}

async fn call(server: &McpServer, method: &str, params: Value) -> Result<Value, ErrorObject> {
    call_at(server, ProtocolVersion::LATEST, method, params)
        .await
        .0
}

#[tokio::test]
async fn initialize_negotiates_and_derives_capabilities() {
    let server = server();
    let result = call(
        &server,
        "initialize",
        json!({ "protocolVersion": "2025-06-18" }),
    )
    .await
    .unwrap();
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert_eq!(
        result["serverInfo"],
        json!({ "name": "test", "version": "1.2.3" })
    );
    assert_eq!(result["instructions"], "be nice");
    assert_eq!(
        result["capabilities"],
        json!({
            "logging": {},
            "tools": { "listChanged": true },
            "resources": { "subscribe": true },
            "prompts": {},
            "completions": {},
        })
    );
    let result = call(
        &server,
        "initialize",
        json!({ "protocolVersion": "2026-07-28" }),
    )
    .await
    .unwrap();
    assert_eq!(result["protocolVersion"], ProtocolVersion::LATEST.as_str());
    let err = call(&server, "initialize", json!({ "protocolVersion": 7 }))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::INVALID_PARAMS);
}

#[tokio::test]
async fn nothing_registered_means_method_not_found() {
    let bare = McpServer::builder(Implementation::new("bare", "0")).build();
    let init = call(&bare, "initialize", json!({})).await.unwrap();
    assert_eq!(init["capabilities"], json!({ "logging": {} }));
    assert!(init.get("instructions").is_none());
    for method in [
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/subscribe",
        "prompts/list",
        "completion/complete",
        "server/discover",
        "nope",
    ] {
        let err = call(&bare, method, json!({})).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::METHOD_NOT_FOUND, "{method}");
    }
    assert_eq!(call(&bare, "ping", json!({})).await.unwrap(), json!({}));
}

#[tokio::test]
async fn tools_list_and_call() {
    let server = server();
    let list = call(&server, "tools/list", json!({})).await.unwrap();
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "fails"]);
    assert_eq!(
        list["tools"][1]["inputSchema"],
        json!({ "type": "object", "properties": {} })
    );
    assert!(list.get("nextCursor").is_none());

    let sum = call(
        &server,
        "tools/call",
        json!({ "name": "add", "arguments": { "a": 2, "b": 3 } }),
    )
    .await
    .unwrap();
    assert_eq!(sum, json!({ "content": [{ "type": "text", "text": "5" }] }));
    let failed = call(&server, "tools/call", json!({ "name": "fails" }))
        .await
        .unwrap();
    assert_eq!(failed["isError"], true);

    for params in [
        json!({ "name": "nope" }),
        json!({ "name": "later" }),
        json!({}),
        json!(5),
    ] {
        let err = call(&server, "tools/call", params.clone())
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_PARAMS, "{params}");
    }
}

#[tokio::test]
async fn invalid_arguments_follow_the_revision() {
    let server = server();
    let params = json!({ "name": "add", "arguments": { "a": "2", "b": 3 } });
    let (answer, _) = call_at(
        &server,
        ProtocolVersion::V2025_11_25,
        "tools/call",
        params.clone(),
    )
    .await;
    let answer = answer.unwrap();
    assert_eq!(answer["isError"], true);
    assert!(
        answer["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Invalid arguments for tool add: "),
        "{answer}"
    );
    let (answer, _) = call_at(&server, ProtocolVersion::V2025_06_18, "tools/call", params).await;
    assert_eq!(answer.unwrap_err().code, ErrorCode::INVALID_PARAMS);
}

#[tokio::test]
async fn disabled_items_appear_per_session_with_a_notification() {
    let server = server();
    let other = server.new_session();
    let (cx, mut rx) = RequestContext::detached(Id::Number(1), None, 4);
    let session = server.session(cx.peer().clone());
    assert_eq!(session.set_tool_enabled("later", true).await, Ok(true));
    assert_eq!(session.set_tool_enabled("later", true).await, Ok(false));
    assert_eq!(session.set_tool_enabled("unknown", true).await, Ok(false));
    match rx.try_recv() {
        Ok(StreamEvent::Message(Message::Notification(n))) => {
            assert_eq!(n.method, "notifications/tools/list_changed");
        }
        other => panic!("{other:?}"),
    }
    assert!(rx.try_recv().is_err(), "one notification only");

    let called = call(&server, "tools/call", json!({ "name": "later" }))
        .await
        .unwrap();
    assert_eq!(called["content"][0]["text"], "here");
    let list = call(&server, "tools/list", json!({})).await.unwrap();
    assert_eq!(list["tools"].as_array().unwrap().len(), 3);
    // Another session still does not see it.
    let list = call(&other, "tools/list", json!({})).await.unwrap();
    assert_eq!(list["tools"].as_array().unwrap().len(), 2);

    assert_eq!(session.set_tool_enabled("add", false).await, Ok(true));
    let err = call(
        &server,
        "tools/call",
        json!({ "name": "add", "arguments": { "a": 1, "b": 1 } }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::INVALID_PARAMS);
}

#[tokio::test]
async fn pages_follow_the_cursor() {
    let server = McpServer::builder(Implementation::new("paged", "0"))
        .page_size(2)
        .tool(Tool::new("a", "a"), |_: NoArgs, _cx| async {
            Ok(CallToolResult::text(""))
        })
        .tool(Tool::new("b", "b"), |_: NoArgs, _cx| async {
            Ok(CallToolResult::text(""))
        })
        .tool(Tool::new("c", "c"), |_: NoArgs, _cx| async {
            Ok(CallToolResult::text(""))
        })
        .build();
    let first = call(&server, "tools/list", json!({})).await.unwrap();
    assert_eq!(first["tools"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    let second = call(&server, "tools/list", json!({ "cursor": cursor }))
        .await
        .unwrap();
    assert_eq!(second["tools"][0]["name"], "c");
    assert!(second.get("nextCursor").is_none());
    let err = call(&server, "tools/list", json!({ "cursor": "x" }))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::INVALID_PARAMS);
}

#[tokio::test]
async fn resources_read_fixed_then_templates() {
    let server = server();
    let list = call(&server, "resources/list", json!({})).await.unwrap();
    assert_eq!(list["resources"][0]["mimeType"], "text/plain");
    let templates = call(&server, "resources/templates/list", json!({}))
        .await
        .unwrap();
    assert_eq!(
        templates["resourceTemplates"][0]["uriTemplate"],
        "mem://items/{id}"
    );

    let a = call(&server, "resources/read", json!({ "uri": "mem://a" }))
        .await
        .unwrap();
    assert_eq!(
        a,
        json!({ "contents": [{ "uri": "mem://a", "text": "A" }] })
    );
    let item = call(&server, "resources/read", json!({ "uri": "mem://items/7" }))
        .await
        .unwrap();
    assert_eq!(item["contents"][0]["text"], "7");
    let err = call(
        &server,
        "resources/read",
        json!({ "uri": "mem://items/7/x" }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::INVALID_PARAMS);
    assert_eq!(err.data, Some(json!({ "uri": "mem://items/7/x" })));

    assert_eq!(
        call(&server, "resources/subscribe", json!({ "uri": "mem://a" }))
            .await
            .unwrap(),
        json!({})
    );
    let session = server.session(
        RequestContext::detached(Id::Number(1), None, 1)
            .0
            .peer()
            .clone(),
    );
    assert!(session.is_subscribed("mem://a"));
    call(
        &server,
        "resources/unsubscribe",
        json!({ "uri": "mem://a" }),
    )
    .await
    .unwrap();
    assert!(!session.is_subscribed("mem://a"));
}

#[tokio::test]
async fn subscriptions_are_bounded() {
    let server = server();
    for i in 0..1024 {
        call(
            &server,
            "resources/subscribe",
            json!({ "uri": format!("mem://{i}") }),
        )
        .await
        .unwrap();
    }
    let err = call(
        &server,
        "resources/subscribe",
        json!({ "uri": "mem://one-more" }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::INVALID_PARAMS);
    // Subscribing again to a subscribed URI is still fine.
    call(&server, "resources/subscribe", json!({ "uri": "mem://3" }))
        .await
        .unwrap();
}

#[tokio::test]
async fn prompts_check_required_arguments() {
    let server = server();
    let got = call(
        &server,
        "prompts/get",
        json!({ "name": "greet", "arguments": { "name": "Ada" } }),
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        json!({
            "description": "greeting",
            "messages": [{ "role": "user", "content": { "type": "text", "text": "Hello, Ada" } }],
        })
    );
    let err = call(&server, "prompts/get", json!({ "name": "greet" }))
        .await
        .unwrap_err();
    assert_eq!(err.message, "Missing required argument: name");
    let err = call(
        &server,
        "prompts/get",
        json!({ "name": "greet", "arguments": { "name": 5 } }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::INVALID_PARAMS);
    let list = call(&server, "prompts/list", json!({})).await.unwrap();
    assert_eq!(
        list["prompts"][0]["arguments"][0],
        json!({ "name": "name", "description": "Who", "required": true })
    );
}

#[tokio::test]
async fn completion_checks_the_reference() {
    let server = server();
    let complete = |reference: Value| {
        let server = server.clone();
        async move {
            let params = json!({ "ref": reference, "argument": { "name": "name", "value": "al" } });
            call(&server, "completion/complete", params).await
        }
    };
    let done = complete(json!({ "type": "ref/prompt", "name": "greet" }))
        .await
        .unwrap();
    assert_eq!(
        done,
        json!({ "completion": { "values": ["alice", "alfred"], "total": 2, "hasMore": false } })
    );
    complete(json!({ "type": "ref/resource", "uri": "mem://items/{id}" }))
        .await
        .unwrap();
    for reference in [
        json!({ "type": "ref/prompt", "name": "nope" }),
        json!({ "type": "ref/resource", "uri": "mem://nope" }),
        json!({ "type": "ref/other" }),
    ] {
        let err = complete(reference.clone()).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_PARAMS, "{reference}");
    }
}

#[test]
fn completion_results_are_capped_at_100() {
    let result = CompleteResult::matching((0..150).map(|i| format!("v{i}")), "v");
    assert_eq!(result.values.len(), 100);
    assert_eq!(result.total, Some(150));
    assert!(result.has_more);
}

#[tokio::test]
async fn log_respects_set_level_and_initialized_runs_once() {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let server = McpServer::builder(Implementation::new("log", "0"))
        .tool(
            Tool::new("log", "logs"),
            |_: NoArgs, cx: ServerContext| async move {
                cx.log(LogLevel::Info, "test", "hello").await;
                Ok(CallToolResult::text("logged"))
            },
        )
        .on_initialized(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .build();
    let (_, sent) = call_at(
        &server,
        ProtocolVersion::LATEST,
        "tools/call",
        json!({ "name": "log" }),
    )
    .await;
    assert!(
        matches!(&sent[..], [Message::Notification(n)] if n.method == "notifications/message"
            && n.params == Some(json!({ "level": "info", "logger": "test", "data": "hello" }))),
        "{sent:?}"
    );
    call(&server, "logging/setLevel", json!({ "level": "warning" }))
        .await
        .unwrap();
    let (_, sent) = call_at(
        &server,
        ProtocolVersion::LATEST,
        "tools/call",
        json!({ "name": "log" }),
    )
    .await;
    assert!(sent.is_empty(), "{sent:?}");
    let err = call(&server, "logging/setLevel", json!({ "level": "loud" }))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::INVALID_PARAMS);

    for _ in 0..2 {
        let (cx, _rx) = RequestContext::detached(Id::Number(1), None, 1);
        let cx = NotificationContext { common: cx.common };
        let initialized = Notification {
            method: "notifications/initialized".into(),
            params: None,
        };
        server.handle_notification(initialized, cx).await;
    }
    assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn call_tool_result_into_value_matches_its_serialization() {
    use crate::server::{CallToolResult, Content};
    let results = [
        CallToolResult::text("hi"),
        CallToolResult::error("no"),
        CallToolResult::new([Content::text("a"), Content::image("AAAA", "image/png")])
            .structured(serde_json::json!({ "n": 1 })),
        CallToolResult::new([]),
    ];
    for result in results {
        let expected = serde_json::to_value(&result).unwrap();
        assert_eq!(result.into_value(), expected);
    }
}
